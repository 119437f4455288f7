"""Layout checks on the rendered SVG: every text box fits its card, no two overlap.

The walker reads only the SVG (as a browser would): each ``<tspan>``'s position, the
``<text>``'s size, weight, anchor and letter spacing, and measures the string with the
vendored font's advance widths. A text must lie inside the ``data-frame`` of its nearest
framed ancestor (a card, chip, pill, chevron) or, without one, inside the canvas.
"""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace

import pytest

import test_render_fixtures as fx
from journeymap.render.export import to_svg
from journeymap.render.i18n import Lang
from journeymap.render.layout.journey import MapOptions, layout_journey_map
from journeymap.render.report import figures
from journeymap.render.scene import Scene
from journeymap.render.text import metrics
from journeymap.render.views import Item

SVG = "{http://www.w3.org/2000/svg}"


@dataclass(frozen=True)
class Box:
    x0: float
    y0: float
    x1: float
    y1: float
    text: str
    frame: tuple[float, float, float, float]

    def inside(self, frame: tuple[float, float, float, float], eps: float = 0.01) -> bool:
        fx0, fy0, fw, fh = frame
        return (
            self.x0 >= fx0 - eps
            and self.y0 >= fy0 - eps
            and self.x1 <= fx0 + fw + eps
            and self.y1 <= fy0 + fh + eps
        )

    def overlaps(self, other: Box, min_px: float = 0.5) -> bool:
        w = min(self.x1, other.x1) - max(self.x0, other.x0)
        h = min(self.y1, other.y1) - max(self.y0, other.y0)
        return w > min_px and h > min_px


def text_boxes(svg: str) -> list[Box]:
    """Every line of text in the SVG as a box, with the frame it must stay in."""
    m = metrics()
    root = ET.fromstring(svg)
    canvas = (0.0, 0.0, float(root.get("width", 0)), float(root.get("height", 0)))
    out: list[Box] = []

    def walk(el: ET.Element, frame: tuple[float, float, float, float]) -> None:
        if el.get("data-frame"):
            x, y, w, h = (float(v) for v in el.get("data-frame", "").split())
            frame = (x, y, w, h)
        if el.tag == f"{SVG}text":
            size = float(el.get("font-size", "16"))
            weight = int(el.get("font-weight", "400"))
            anchor = el.get("text-anchor", "start")
            spacing = float(el.get("letter-spacing", "0"))
            for span in el.iter(f"{SVG}tspan"):
                text = span.text or ""
                x, y = float(span.get("x", "0")), float(span.get("y", "0"))
                w = m.width(text, size, weight, spacing)
                x0 = x - (w / 2 if anchor == "middle" else w if anchor == "end" else 0.0)
                out.append(
                    Box(x0, y - m.ascender * size, x0 + w, y + m.descender * size, text, frame)
                )
            return
        for child in el:
            walk(child, frame)

    walk(root, canvas)
    return out


def assert_text_fits(svg: str) -> int:
    boxes = [b for b in text_boxes(svg) if b.text.strip()]
    outside = [b for b in boxes if not b.inside(b.frame)]
    assert not outside, "text outside its card:\n" + "\n".join(
        f"{b.text!r} {b.x0:.1f},{b.y0:.1f}-{b.x1:.1f},{b.y1:.1f} frame {b.frame}"
        for b in outside[:10]
    )
    # sweep by x so that only neighbours are compared
    boxes.sort(key=lambda b: b.x0)
    clashes = []
    for i, a in enumerate(boxes):
        for b in itertools.islice(boxes, i + 1, None):
            if b.x0 >= a.x1:
                break
            if a.overlaps(b):
                clashes.append((a, b))
    assert not clashes, "overlapping text:\n" + "\n".join(
        f"{a.text!r} × {b.text!r} at {a.x0:.0f},{a.y0:.0f}" for a, b in clashes[:10]
    )
    return len(boxes)


def _svg(scene: Scene) -> str:
    return to_svg(scene, uid="t")


@pytest.mark.parametrize("lang", ["en", "de"])
def test_every_figure_fits(lang: Lang) -> None:
    for fig in figures(fx.report(lang)):
        n = assert_text_fits(_svg(fig.scene))
        assert n > 10, fig.name


@pytest.mark.parametrize("width", [1100.0, 1760.0, 2400.0])
def test_map_fits_at_any_width_with_long_german_text(width: float) -> None:
    data = fx.journey_map("de", "impulsive_mobile")
    long = "Donaudampfschifffahrtsgesellschaftskapitänsmützen-Sonderangebot für Übergrößen " * 3
    phases = list(data.phases)
    phases[2] = replace(
        phases[2],
        label="Präferenzbildungsphase mit Vergleichsportalen",
        goals=(Item(long, "spec"),),
        measures=tuple(Item(f"{k}. {long}", "spec") for k in range(5)),
    )
    data = replace(data, title=long, phases=tuple(phases))
    svg = _svg(layout_journey_map(data, options=MapOptions(width=width)))
    assert_text_fits(svg)
    assert "jm-truncated" in svg  # the long texts were cut with an ellipsis …
    assert "…" in svg
    assert long.strip() in svg.replace("&#10;", "\n")  # … and kept whole in the tooltip


def test_walker_catches_overflow_and_overlap() -> None:
    """The checker itself: a text wider than its frame, and two texts on one spot."""
    bad = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="400" height="100">'
        '<g data-frame="10 10 50 30"><text font-size="12"><tspan x="12" y="25">'
        "far too long for this card</tspan></text></g>"
        '<text font-size="12"><tspan x="200" y="60">one</tspan></text>'
        '<text font-size="12"><tspan x="205" y="62">two</tspan></text></svg>'
    )
    with pytest.raises(AssertionError, match="outside its card"):
        assert_text_fits(bad)
    no_frame = re.sub(r"<g data-frame[^>]*>.*?</g>", "", bad)
    with pytest.raises(AssertionError, match="overlapping text"):
        assert_text_fits(no_frame)
