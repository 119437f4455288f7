// journeymap report: tooltips, phase spotlight, lane toggles, persona switch, SVG download.
// Plain JavaScript, no libraries, no network: the report is one file that works offline.
(function () {
  "use strict";
  var doc = document;
  var tip = doc.getElementById("jm-tip");
  var current = null;

  function place(ev) {
    var pad = 14, w = tip.offsetWidth, h = tip.offsetHeight;
    var x = ev.clientX + pad, y = ev.clientY + pad;
    if (x + w > window.innerWidth - 4) x = ev.clientX - w - pad;
    if (y + h > window.innerHeight - 4) y = ev.clientY - h - pad;
    tip.style.left = Math.max(4, x) + "px";
    tip.style.top = Math.max(4, y) + "px";
  }
  function show(el, ev) {
    var text = el.getAttribute("data-tip");
    if (!text) return hide();
    if (current !== el) {
      tip.textContent = text;
      current = el;
    }
    tip.hidden = false;
    if (ev) place(ev);
  }
  function hide() {
    tip.hidden = true;
    current = null;
  }
  doc.addEventListener("mousemove", function (ev) {
    var el = ev.target.closest ? ev.target.closest("[data-tip]") : null;
    if (el && el.closest("svg")) show(el, ev);
    else hide();
  });
  doc.addEventListener("mouseleave", hide);
  doc.addEventListener("keydown", function (ev) {
    if (ev.key === "Escape") {
      hide();
      spotlight(null, null);
    }
  });

  // click a phase (chevron, pill, card) to spotlight its column; click again to clear
  function spotlight(svg, phase) {
    var svgs = svg ? [svg] : doc.querySelectorAll("svg.jm-map");
    svgs.forEach(function (s) {
      var same = phase !== null && s.getAttribute("data-spot") === phase;
      var on = phase !== null && !same;
      if (on) s.setAttribute("data-spot", phase);
      else s.removeAttribute("data-spot");
      s.querySelectorAll("[data-phase]").forEach(function (el) {
        el.classList.toggle("jm-dim", on && el.getAttribute("data-phase") !== phase);
      });
    });
  }
  doc.addEventListener("click", function (ev) {
    var el = ev.target.closest ? ev.target.closest(".jm-map [data-phase]") : null;
    if (el) spotlight(el.closest("svg"), el.getAttribute("data-phase"));
  });

  // lane toggles fade a lane in every map (the layout stays, so columns keep their place)
  doc.querySelectorAll("input[data-lane-toggle]").forEach(function (box) {
    box.addEventListener("change", function () {
      var lane = box.getAttribute("data-lane-toggle");
      doc.querySelectorAll('[data-lane="' + lane + '"]').forEach(function (el) {
        el.classList.toggle("jm-faded", !box.checked);
      });
    });
  });

  // previous period on or off
  var prev = doc.getElementById("jm-previous");
  if (prev) {
    prev.addEventListener("change", function () {
      doc.body.classList.toggle("jm-no-previous", !prev.checked);
    });
  }

  // persona switcher: one map visible at a time
  var select = doc.getElementById("jm-persona");
  function switchMap() {
    var want = select.value;
    doc.querySelectorAll(".jm-map-view").forEach(function (v) {
      v.hidden = v.getAttribute("data-view") !== want;
    });
  }
  if (select) {
    select.addEventListener("change", switchMap);
    switchMap();
  }

  // download a figure as a standalone SVG (fonts included)
  doc.querySelectorAll("button[data-download]").forEach(function (btn) {
    btn.addEventListener("click", function () {
      var box = btn.closest("section");
      var svg = null;
      box.querySelectorAll("svg.jm-figure").forEach(function (s) {
        if (!svg && !s.closest("[hidden]")) svg = s;
      });
      if (!svg) return;
      var clone = svg.cloneNode(true);
      var style = doc.createElementNS("http://www.w3.org/2000/svg", "style");
      style.textContent = doc.getElementById("jm-fonts").textContent;
      clone.insertBefore(style, clone.firstChild);
      var blob = new Blob([new XMLSerializer().serializeToString(clone)], {type: "image/svg+xml"});
      var a = doc.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = btn.getAttribute("data-download") + ".svg";
      doc.body.appendChild(a);
      a.click();
      setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 0);
    });
  });
  var printBtn = doc.getElementById("jm-print");
  if (printBtn) printBtn.addEventListener("click", function () { window.print(); });
  doc.documentElement.classList.add("jm-ready");
})();
