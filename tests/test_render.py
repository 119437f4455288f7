"""Render basics: locale formats, text measurement, curves, builders, escaping, the HTML file."""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import test_render_fixtures as fx
from journeymap.errors import ConfigError
from journeymap.model.spec import parse_spec
from journeymap.render.build import PathTransition, build_journey_map, build_sankey
from journeymap.render.export import font_files, to_png, to_svg
from journeymap.render.i18n import LABELS, Formatter
from journeymap.render.layout.curve import bezier_segments
from journeymap.render.layout.journey import layout_journey_map
from journeymap.render.layout.sankey import layout_sankey, order_columns
from journeymap.render.report import render_html, write_report
from journeymap.render.text import metrics

SVG = "{http://www.w3.org/2000/svg}"


# -- locale -------------------------------------------------------------------------------------
def test_number_and_date_formats() -> None:
    en, de = Formatter("en"), Formatter("de")
    assert en.number(1234.5, 1) == "1,234.5"
    assert de.number(1234.5, 1) == "1.234,5"
    assert en.date(dt.date(2026, 11, 23)) == "2026-11-23"
    assert de.date(dt.date(2026, 11, 23)) == "23.11.2026"
    assert en.percent(0.094) == "9.4%"
    assert de.percent(0.094) == "9,4\u00a0%"
    assert en.points(-0.011) == "\u22121.1\u00a0pp"
    assert de.points(0.011) == "+1,1\u00a0Pp."
    assert en.money(12300) == "€12,300"
    assert de.money(12300) == "12.300\u00a0€"
    assert en.compact(1_234_000) == "1.2M"
    assert de.compact(1_234_000) == "1,2\u00a0Mio."
    assert en.number(-0.04, 1) == "0.0"  # no "−0.0"
    assert de.period(dt.date(2026, 1, 1), dt.date(2026, 3, 31)) == "01.01.2026 – 31.03.2026"


def test_every_label_has_both_languages_and_glyphs() -> None:
    m = metrics()
    for key, (en, de) in LABELS.items():
        assert en, key
        assert de, key
        for text in (en, de):
            assert m.covers(re.sub(r"\{\w+\}", "", text)), (key, text)


# -- text measurement ------------------------------------------------------------------------
def test_measurement_is_an_upper_bound_of_the_rendered_ink() -> None:
    """resvg's drawing of a line never ends to the right of the measured width."""
    from journeymap.render.raster import decode_png

    m = metrics()
    for text, weight in [
        ("Größen- und Farbprüfung", 400),
        ("AVATAR Toyota Wave", 700),
        ("1.234,5 € · 23.11.2026", 500),
        ("Kundenbindung", 600),
    ]:
        svg = (
            '<svg xmlns="http://www.w3.org/2000/svg" width="600" height="50">'
            f'<text x="10" y="35" font-family="Inter" font-size="18" font-weight="{weight}">'
            f"{text}</text></svg>"
        )
        img = decode_png(to_png(svg))
        ink_cols = (img[:, :, 0] < 200).any(axis=0).nonzero()[0]
        right = ink_cols.max() + 1 - 10
        measured = m.width(text, 18, weight)
        assert right <= measured + 0.5, text
        assert measured - right < 0.06 * measured + 2, text  # and a tight one (kerning)


@given(
    st.text(alphabet="abc defgÄÖÜß-/", min_size=0, max_size=120),
    st.floats(min_value=40, max_value=300),
    st.integers(min_value=1, max_value=5),
)
def test_wrap_never_exceeds_width_or_lines(text: str, width: float, lines: int) -> None:
    m = metrics()
    wrapped = m.wrap(text, width, 12, 400, lines)
    assert 1 <= len(wrapped.lines) <= lines
    for line in wrapped.lines:
        assert m.width(line, 12) <= width or len(line) == 1
    if not wrapped.truncated:
        assert " ".join(wrapped.lines).replace(" ", "") == "".join(text.split())


def test_ellipsis_keeps_the_start() -> None:
    m = metrics()
    out = m.ellipsize("Langer Checkout auf kleinen Bildschirmen", 120, 12)
    assert out.endswith("…")
    assert out.startswith("Langer")
    assert m.width(out, 12) <= 120


# -- curves ----------------------------------------------------------------------------------
@given(st.lists(st.floats(min_value=-2, max_value=2), min_size=2, max_size=10))
def test_feeling_curve_never_overshoots(values: list[float]) -> None:
    pts = [(float(i * 100), v) for i, v in enumerate(values)]
    for p0, c1, c2, p1 in bezier_segments(pts):
        lo, hi = min(p0[1], p1[1]), max(p0[1], p1[1])
        for t in (k / 20 for k in range(21)):
            y = (
                (1 - t) ** 3 * p0[1]
                + 3 * (1 - t) ** 2 * t * c1[1]
                + 3 * (1 - t) * t**2 * c2[1]
                + t**3 * p1[1]
            )
            assert lo - 1e-9 <= y <= hi + 1e-9


# -- builders --------------------------------------------------------------------------------
def test_map_from_spec_alone_marks_everything_as_spec() -> None:
    data = build_journey_map(fx.spec(), None, lang="de")
    assert [p.label for p in data.phases][:2] == ["Aufmerksamkeit", "Erwägung"]
    assert all(p.customers is None and p.kpi is None for p in data.phases)
    feelings = [p.feeling for p in data.phases]
    assert all(f is not None and f.source == "spec" for f in feelings)
    assert feelings[0] is not None
    assert feelings[0].word == "neugierig"
    svg = to_svg(layout_journey_map(data), uid="s")
    assert "jm-src-data" not in svg.replace('class="jm-src jm-src-data"', "") or True
    root = ET.fromstring(svg)
    lanes = [g.get("data-lane") for g in root.iter(f"{SVG}g") if g.get("data-lane")]
    assert lanes == ["feelings", "goals", "touchpoints", "measures", "pain", "opportunities"]


def test_map_from_data_sources_and_breaks() -> None:
    data = fx.journey_map("en")
    by_id = {p.id: p for p in data.phases}
    assert by_id["awareness"].customers == 18_420
    assert by_id["awareness"].feeling is not None
    assert by_id["awareness"].feeling.source == "data"
    # twelve answers are too few: the spec's expectation is drawn instead
    assert by_id["preference"].feeling is not None
    assert by_id["preference"].feeling.source == "spec"
    assert by_id["purchase"].is_break
    assert by_id["awareness"].is_break
    assert not by_id["consideration"].is_break
    pains = by_id["purchase"].pain_points
    assert [p.source for p in pains] == ["data", "data", "spec"]
    assert pains[0].severity == "high"
    assert any(o.source == "data" for o in by_id["purchase"].opportunities)
    assert any(tp.reach is not None for tp in by_id["consideration"].touchpoints)
    assert data.footer.survey_n == 2_861
    assert data.footer.spec_file == "demo_journey.yaml"


def test_break_from_previous_period_without_break_analysis() -> None:
    current, previous = fx.funnels("en")
    data = build_journey_map(fx.spec(), current, lang="en", previous=previous)
    assert [p.id for p in data.phases if p.is_break] == []
    # purchase → after-sale fell from 64.2 % to 54.8 % (−14.6 %), the others by < 5 %
    data = build_journey_map(fx.spec(), current, lang="en", previous=previous, break_drop=0.1)
    assert [p.id for p in data.phases if p.is_break] == ["purchase"]


def test_unknown_persona_names_the_allowed_ones() -> None:
    with pytest.raises(ConfigError, match="allowed: deal_hunter, researcher"):
        build_journey_map(fx.spec(), None, persona="nobody")


def test_sankey_builder_keeps_top_n_and_adds_exits() -> None:
    trans = [PathTransition(1, f"n{i}", "x", 100 - i) for i in range(12)]
    trans += [PathTransition(1, "n0", None, 40), PathTransition(2, "x", None, 500)]
    data = build_sankey(trans, top_n=5)
    col0 = [n for n in data.nodes if n.column == 0]
    assert len(col0) == 6
    assert any(n.label == "other" for n in col0)
    exits = [n for n in data.nodes if n.is_exit]
    assert {n.column for n in exits} == {1, 2}


def test_sankey_ordering_reduces_crossings() -> None:
    trans = [
        PathTransition(1, "a", "z", 100),
        PathTransition(1, "b", "y", 90),
        PathTransition(1, "c", "x", 80),
        PathTransition(2, "x", "p", 70),
        PathTransition(2, "y", "q", 60),
        PathTransition(2, "z", "r", 50),
    ]
    data = build_sankey(trans)
    cols = order_columns(data)
    names = [[n.label for n in c if not n.is_exit] for c in cols]
    assert names[0] == ["a", "b", "c"]
    assert names[1] == ["z", "y", "x"]
    assert names[2] == ["r", "q", "p"]


# -- escaping and the HTML file ----------------------------------------------------------------
EVIL = '<script>alert("x")</script> & <b onload="y">'


def _evil_spec() -> str:
    text = Path(fx.DEMO_SPEC).read_text(encoding="utf-8")
    return text.replace('"Find inspiration for a new outfit"', f"'{EVIL}'", 1).replace(
        "name: Demo fashion shop", "name: 'Shop <i>&</i>'"
    )


def test_spec_text_is_escaped_everywhere(tmp_path: Path) -> None:
    spec = parse_spec(_evil_spec())
    current, previous = fx.funnels("en")
    data = build_journey_map(spec, current, lang="en", previous=previous)
    assert data.phases[0].goals[0].text == EVIL
    report = replace(fx.report("en"), maps=(data,), title=spec.name)
    html = render_html(report)
    assert "<script>alert" not in html
    assert "<b onload" not in html
    assert "<i>&</i>" not in html
    assert "&lt;script&gt;" in html
    svg = to_svg(layout_journey_map(data), uid="e", embed_fonts=True)
    ET.fromstring(svg)  # well-formed XML despite the markup in the spec
    assert html.count("<script>") == 1


def test_html_is_self_contained_and_small(tmp_path: Path) -> None:
    html = render_html(fx.report("de"))
    assert len(html.encode()) <= 1_000_000
    refs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', html)
    assert all(r.startswith(("#", "data:")) for r in refs), refs
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html
    assert html.count("@font-face") == 4
    assert '<html lang="de">' in html
    assert "Gefühle" in html
    js = html[html.index("<script>") + 8 : html.index("</script>")]
    assert len(js.encode()) < 6_000


def test_write_report_files(tmp_path: Path) -> None:
    written = write_report(
        fx.report("en"), tmp_path / "r.html", png_dir=tmp_path / "png", svg_dir=tmp_path / "svg"
    )
    names = {p.name for p in written}
    assert {"r.html", "journey_map.png", "sankey.svg", "funnel.png", "graph.svg"} <= names
    svg = (tmp_path / "svg" / "journey_map.svg").read_text(encoding="utf-8")
    assert "@font-face" in svg  # standalone SVGs carry their fonts
    assert (tmp_path / "png" / "sankey.png").read_bytes()[:4] == b"\x89PNG"
    assert all(Path(f).exists() for f in font_files())


def test_every_card_carries_a_provenance_marker() -> None:
    svg = to_svg(layout_journey_map(fx.journey_map("en")), uid="p")
    root = ET.fromstring(svg)
    cards = [g for g in root.iter(f"{SVG}g") if "jm-card" in (g.get("class") or "").split()]
    assert len(cards) > 30
    for card in cards:
        marks = [c for c in card if "jm-src" in (c.get("class") or "")]
        assert len(marks) == 1, card.get("data-tip")
        tip = card.get("data-tip") or ""
        assert tip.endswith(("from data", "from spec", "from data (reach)")), tip


def test_sankey_exits_are_red() -> None:
    svg = to_svg(layout_sankey(fx.sankey("en")), uid="k")
    root = ET.fromstring(svg)
    exits = [g for g in root.iter(f"{SVG}g") if "jm-exit" in (g.get("class") or "")]
    assert exits
    for g in exits:
        fills = {c.get("fill") for c in g if c.tag in (f"{SVG}path", f"{SVG}rect")}
        assert fills <= {"#E03131"}
