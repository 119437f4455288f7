"""The HTML report in a real browser: headless Chromium (Debian's package, installed by
.ci/browser.sh), driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``),
so no browser download, driver or websocket library is needed.

The network is off (host resolver maps every name to nothing, and the page is emulated
offline); the test fails on any console error, any request that is not ``file:`` or
``data:``, a phase that is not visible, or a tooltip that does not show its card's text.
Locally the test skips without /usr/bin/chromium; in CI (``CI=true``) it fails instead.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import test_render_fixtures as fx
from journeymap.render.report import render_html

CHROMIUM = os.environ.get("JOURNEYMAP_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--window-size=1920,1200",
    "--remote-debugging-pipe",
]


def _require_chromium() -> str:
    path = shutil.which(CHROMIUM) or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if path is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{CHROMIUM} not found: CI must install it (bash .ci/browser.sh)")
        pytest.skip(f"{CHROMIUM} not found; install with: bash .ci/browser.sh")
    return path


class DevTools:
    """A minimal Chrome DevTools Protocol client over the browser's debugging pipe."""

    def __init__(self, binary: str, profile: str) -> None:
        cmd_r, self._cmd_w = os.pipe()
        self._resp_r, resp_w = os.pipe()

        def child_fds() -> None:  # the browser reads fd 3 and writes fd 4
            a = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(resp_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(3, 4),
            preexec_fn=child_fds,
        )
        os.close(cmd_r)
        os.close(resp_w)
        self._buf = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read(self, timeout: float) -> dict[str, Any] | None:
        while b"\0" not in self._buf:
            ready, _, _ = select.select([self._resp_r], [], [], timeout)
            if not ready:
                return None
            chunk = os.read(self._resp_r, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the debugging pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        msg: dict[str, Any] = json.loads(raw)
        return msg

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            reply = self._read(deadline - time.monotonic())
            if reply is None:
                break
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            self.events.append(reply)
        raise TimeoutError(method)

    def wait_for(self, method: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for i, ev in enumerate(self.events):
            if ev.get("method") == method:
                return self.events.pop(i)
        while time.monotonic() < deadline:
            ev = self._read(deadline - time.monotonic())
            if ev is None:
                break
            if ev.get("method") == method:
                return ev
            self.events.append(ev)
        raise TimeoutError(method)

    def drain(self, seconds: float = 0.3) -> None:
        deadline = time.monotonic() + seconds
        while (ev := self._read(max(0.0, deadline - time.monotonic()))) is not None:
            self.events.append(ev)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.send("Browser.close")
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._cmd_w)
        os.close(self._resp_r)


class Page:
    def __init__(self, devtools: DevTools) -> None:
        self.dt = devtools
        targets = devtools.send("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self.session = devtools.send(
            "Target.attachToTarget", targetId=page["targetId"], flatten=True
        )["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        self.call(
            "Network.emulateNetworkConditions",
            offline=True,
            latency=0,
            downloadThroughput=-1,
            uploadThroughput=-1,
        )

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        return self.dt.send(method, self.session, **params)

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.dt.wait_for("Page.loadEventFired")
        self.dt.drain()

    def eval(self, expression: str) -> Any:
        res = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in res:
            raise AssertionError(f"{expression}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def hover(self, x: float, y: float) -> None:
        self.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        self.dt.drain(0.1)

    def click(self, x: float, y: float) -> None:
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)
        self.dt.drain(0.1)

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def errors(self) -> list[str]:
        out = []
        for ev in self.dt.events:
            method, params = ev.get("method"), ev.get("params", {})
            if method == "Runtime.exceptionThrown":
                out.append(json.dumps(params.get("exceptionDetails", {}))[:300])
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                out.append(json.dumps(params.get("args", []))[:300])
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                out.append(params["entry"].get("text", "")[:300])
        return out

    def requests(self) -> list[str]:
        return [
            ev["params"]["request"]["url"]
            for ev in self.dt.events
            if ev.get("method") == "Network.requestWillBeSent"
        ]


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    binary = _require_chromium()
    profile = tempfile.mkdtemp(prefix="jm-chromium-")
    dt = DevTools(binary, profile)
    try:
        yield Page(dt)
    finally:
        dt.close()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.parametrize("lang", ["en", "de"])
def test_report_offline_in_chromium(page: Page, tmp_path: Path, lang: str) -> None:
    report = fx.report(lang)  # type: ignore[arg-type]
    html = tmp_path / f"report_{lang}.html"
    html.write_text(render_html(report), encoding="utf-8")
    page.dt.events.clear()
    page.open(html.as_uri())
    shots = os.environ.get("JOURNEYMAP_SCREENSHOTS")
    if shots:
        page.screenshot(Path(shots) / f"report_{lang}.png")

    assert page.eval("document.documentElement.classList.contains('jm-ready')")
    assert page.eval("document.fonts.check('700 14px Inter')")

    # every phase of the visible map is on screen and not covered
    phases = page.eval(
        """Array.from(document.querySelectorAll('.jm-map-view:not([hidden]) .jm-phase'))
          .map(g => { const r = g.getBoundingClientRect();
                      const hit = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
                      return {w: r.width, h: r.height, x: r.x, y: r.y, right: r.right,
                              text: g.textContent, covered: !g.contains(hit)}; })"""
    )
    labels = [p.label for p in report.maps[0].phases]
    assert len(phases) == len(labels)
    width = page.eval("window.innerWidth")
    for p, label in zip(phases, labels, strict=True):
        assert p["w"] > 50, p
        assert p["h"] > 30, p
        assert p["x"] >= 0, p
        assert p["right"] <= width, p
        assert not p["covered"], p
        assert label in p["text"]

    # hovering a card shows its full text in the tooltip
    cards = page.eval(
        """Array.from(document.querySelectorAll('.jm-map-view:not([hidden]) g.jm-card'))
          .slice(0, 40).map(g => { const r = g.getBoundingClientRect();
            return {x: r.x + r.width / 2, y: r.y + r.height / 2, tip: g.getAttribute('data-tip'),
                    truncated: g.classList.contains('jm-truncated'), inView: r.y > 60 &&
                    r.bottom < window.innerHeight}; })"""
    )
    visible = [c for c in cards if c["inView"]]
    assert len(visible) >= 10
    for card in visible[:12]:
        page.hover(card["x"], card["y"])
        shown = page.eval(
            "(() => { const t = document.getElementById('jm-tip');"
            " return t.hidden ? null : t.textContent; })()"
        )
        # the innermost element with a tooltip under the pointer (a chip inside a card)
        expected = page.eval(
            f"document.elementFromPoint({card['x']}, {card['y']})"
            ".closest('[data-tip]').getAttribute('data-tip')"
        )
        assert shown == expected
        assert shown is not None
        assert shown.split("\n")[0] in card["tip"]
    page.hover(2, 2)
    assert page.eval("document.getElementById('jm-tip').hidden")

    # clicking a phase spotlights its column
    second = phases[1]
    page.click(second["x"] + second["w"] / 2, second["y"] + second["h"] / 2)
    dimmed = page.eval("document.querySelectorAll('.jm-map-view:not([hidden]) .jm-dim').length")
    assert dimmed > 20

    # the persona switch shows one map at a time
    views = page.eval(
        "Array.from(document.querySelectorAll('#jm-persona option')).map(o => o.value)"
    )
    assert views[0] == "all"
    assert len(views) == len(report.maps)
    page.eval(
        f"(() => {{ const s = document.getElementById('jm-persona'); s.value = {views[2]!r};"
        " s.dispatchEvent(new Event('change')); })()"
    )
    shown_views = page.eval(
        "Array.from(document.querySelectorAll('.jm-map-view[data-view]'))"
        ".filter(v => !v.hidden && v.closest('#map')).map(v => v.dataset.view)"
    )
    assert shown_views == [views[2]]

    assert page.errors() == []
    foreign = [u for u in page.requests() if not u.startswith(("file:", "data:", "blob:"))]
    assert foreign == []
