"""Positioned drawing primitives: what a layout produces and the SVG template draws.

Layouts compute every coordinate in Python (text is measured and wrapped there too); the
Jinja2 template ``figure.svg.j2`` only writes these out, escaping all text. A ``Group`` with a
``frame`` declares the box its texts must stay inside, which the layout tests check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from journeymap.render.text import metrics
from journeymap.render.theme import Type

Anchor = Literal["start", "middle", "end"]


@dataclass(frozen=True)
class TextLine:
    x: float
    y: float  # baseline
    text: str


@dataclass(frozen=True)
class Text:
    kind: ClassVar[str] = "text"
    lines: tuple[TextLine, ...]
    size: float
    weight: int = 400
    fill: str = "#1B2430"
    anchor: Anchor = "start"
    spacing: float = 0.0
    opacity: float = 1.0
    cls: str = ""
    #: a background-coloured outline drawn under the glyphs, so lines behind stay legible
    halo: str = ""


@dataclass(frozen=True)
class Rect:
    kind: ClassVar[str] = "rect"
    x: float
    y: float
    w: float
    h: float
    fill: str = "none"
    stroke: str = ""
    stroke_width: float = 1.0
    rx: float = 0.0
    opacity: float = 1.0
    dash: str = ""
    filter: str = ""
    cls: str = ""


@dataclass(frozen=True)
class Circle:
    kind: ClassVar[str] = "circle"
    cx: float
    cy: float
    r: float
    fill: str = "none"
    stroke: str = ""
    stroke_width: float = 1.0
    opacity: float = 1.0
    cls: str = ""


@dataclass(frozen=True)
class Path:
    kind: ClassVar[str] = "path"
    d: str
    fill: str = "none"
    stroke: str = ""
    stroke_width: float = 1.0
    opacity: float = 1.0
    dash: str = ""
    linecap: str = ""
    cls: str = ""


@dataclass(frozen=True)
class Group:
    kind: ClassVar[str] = "group"
    children: tuple[Text | Rect | Circle | Path | Group, ...]
    cls: str = ""
    #: tooltip text (plain; the HTML report shows it on hover)
    tip: str = ""
    #: the box (x, y, w, h) every text inside must fit, checked by the tests
    frame: tuple[float, float, float, float] | None = None
    #: extra data-* attributes (e.g. phase index, lane id) for the report's script
    data: tuple[tuple[str, str], ...] = ()
    id: str = ""
    transform: str = ""


@dataclass(frozen=True)
class Gradient:
    id: str
    stops: tuple[tuple[float, str, float], ...]  # offset, colour, opacity
    vertical: bool = True


@dataclass(frozen=True)
class Scene:
    """A whole figure: size, accessible title and description, and the drawing."""

    width: float
    height: float
    title: str
    desc: str
    children: tuple[Text | Rect | Circle | Path | Group, ...]
    background: str = "#FFFFFF"
    gradients: tuple[Gradient, ...] = ()
    shadow: bool = False
    cls: str = "jm-figure"
    data: tuple[tuple[str, str], ...] = field(default_factory=tuple)


def text_block(
    x: float,
    top: float,
    lines: tuple[str, ...] | list[str],
    style: Type,
    fill: str,
    anchor: Anchor = "start",
    *,
    cls: str = "",
    opacity: float = 1.0,
    halo: str = "",
) -> Text:
    """Lines stacked from ``top``, each in a line box of ``style.leading`` px."""
    m = metrics()
    leading = style.leading
    # centre the font's ascender + descender box in the line box
    first = top + (leading - (m.ascender + m.descender) * style.size) / 2 + m.ascender * style.size
    return Text(
        tuple(
            TextLine(round(x, 2), round(first + i * leading, 2), line)
            for i, line in enumerate(lines)
        ),
        style.size,
        style.weight,
        fill,
        anchor,
        style.spacing,
        opacity,
        cls,
        halo,
    )


def block_height(n_lines: int, style: Type) -> float:
    return n_lines * style.leading
