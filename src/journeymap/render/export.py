"""Write figures out: SVG (Jinja2), PNG (resvg, no browser), PDF (optional).

Fonts ship with the package (``assets/fonts``, Inter, SIL OFL 1.1) and are the only fonts
resvg may use (``skip_system_fonts``), so a PNG is the same on every machine: the golden-image
tests rely on it. SVG files written on their own embed the fonts (WOFF2, base64) so that text
keeps the widths it was wrapped for; inside the HTML report the fonts are embedded once.
"""

from __future__ import annotations

import base64
import importlib
import itertools
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape

from journeymap.render.scene import Scene
from journeymap.render.text import WEIGHTS
from journeymap.render.theme import FONT_FAMILY

_uids = itertools.count(1)


def _num(value: float) -> str:
    """Coordinates with at most two decimals and no trailing zeros (smaller SVG)."""
    if isinstance(value, int):
        return str(value)
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _tip(value: str) -> Markup:
    """Escaped, with line breaks as ``&#10;`` (XML would fold a raw newline into a space)."""
    return escape(value).replace("\n", Markup("&#10;"))


def _paint(value: str, uid: str) -> str:
    return f"url(#{uid}-{value[5:]})" if value.startswith("grad:") else value


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """Templates with autoescape on for .svg, .html (and their .j2 forms)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("journeymap.render", "templates"),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("svg", "html", "svg.j2", "html.j2"), default=True
        ),
        trim_blocks=False,
        lstrip_blocks=False,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["num"] = _num
    env.filters["paint"] = _paint
    env.filters["tip"] = _tip
    return env


def font_dir() -> Path:
    return Path(str(resources.files("journeymap.render").joinpath("assets/fonts")))


def font_files() -> list[str]:
    """The vendored OpenType fonts resvg renders with."""
    return [str(font_dir() / f"Inter-{w}.otf") for w in WEIGHTS]


@lru_cache(maxsize=1)
def font_css() -> str:
    """``@font-face`` rules with the WOFF2 subsets inlined as base64 (about 95 KB)."""
    rules = []
    for w in WEIGHTS:
        data = base64.b64encode((font_dir() / f"Inter-{w}.woff2").read_bytes()).decode("ascii")
        rules.append(
            f"@font-face{{font-family:Inter;font-style:normal;font-weight:{w};"
            f"font-display:block;src:url(data:font/woff2;base64,{data}) format('woff2')}}"
        )
    return "".join(rules)


def to_svg(scene: Scene, *, embed_fonts: bool = False, uid: str | None = None) -> str:
    """The figure as SVG text; ``embed_fonts`` for a file meant to be opened on its own."""
    template = environment().get_template("figure.svg.j2")
    return template.render(
        scene=scene,
        uid=uid or f"jm{next(_uids)}",
        font_family=FONT_FAMILY,
        font_css=Markup(font_css()) if embed_fonts else "",
    )


_STYLE = re.compile(r"<style>.*?</style>", re.S)


def to_png(svg: str, *, zoom: float = 1.0, background: str = "#FFFFFF") -> bytes:
    """Rasterise with resvg and the vendored fonts only (deterministic)."""
    import resvg_py

    svg = _STYLE.sub("", svg)  # resvg ignores @font-face; the fonts are passed directly
    png = resvg_py.svg_to_bytes(
        svg_string=svg,
        skip_system_fonts=True,
        font_files=font_files(),
        font_family="Inter",
        sans_serif_family="Inter",
        zoom=zoom,
        background=background,
    )
    return bytes(png)


def to_pdf(svg: str) -> bytes:
    """A vector PDF via ``vl-convert-python`` (optional: ``pip install vl-convert-python``)."""
    try:
        vl_convert: Any = importlib.import_module("vl_convert")
    except ImportError as exc:  # pragma: no cover - depends on the optional extra
        from journeymap.errors import ConfigError

        raise ConfigError(
            "PDF export needs vl-convert-python: pip install vl-convert-python "
            "(or print the HTML report to PDF from a browser)"
        ) from exc
    for path in font_files():
        vl_convert.register_font_directory(str(Path(path).parent))
        break
    data: Any = vl_convert.svg_to_pdf(_STYLE.sub("", svg))
    return bytes(data)
