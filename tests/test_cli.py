"""The command line, end to end on small projects (click's runner, real files)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from conftest import make_events
from journeymap import Journeymap
from journeymap.cli import human_duration, main, parse_duration

SPEC = """\
version: 1
model: three-stage
language: de
touchpoints:
  - {id: ad, phase: before_purchase, label: {en: Ad, de: Anzeige}}
  - {id: cart, phase: during_purchase}
  - {id: order, phase: during_purchase, match: {event: order_completed}}
  - {id: review, phase: after_purchase}
goal: {match: {event: order_completed}}
"""


@pytest.fixture
def project(tmp_path):
    (tmp_path / "journey.yaml").write_text(SPEC, encoding="utf-8")
    rows = []
    for i, c in enumerate(["a", "b", "c", "d"]):
        rows.append({"customer_id": c, "ts": f"2026-01-0{i + 1}T10:00:00+00:00", "event": "ad"})
        if c in "abc":
            rows.append(
                {"customer_id": c, "ts": f"2026-01-0{i + 1}T10:05:00+00:00", "event": "cart"}
            )
        if c in "ab":
            rows.append(
                {
                    "customer_id": c,
                    "ts": f"2026-01-0{i + 1}T11:00:00+00:00",
                    "event": "order_completed",
                    "revenue": 10,
                }
            )
    rows = [dict(r, event_id=f"e{i}") for i, r in enumerate(rows)]
    with Journeymap(tmp_path) as jm:
        jm.append(make_events(rows))
    return tmp_path


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    """Tables as on a wide terminal, so cells are not wrapped."""
    from journeymap import cli

    monkeypatch.setattr(cli.console, "width", 200)


def test_funnel_table_uses_the_spec_language(project):
    r = run("-p", str(project), "analyze", "funnel")
    assert r.exit_code == 0, r.output
    assert "Vor dem Kauf" in r.output
    assert "Während des Kaufs" in r.output
    assert "75.0 %" in r.output  # 3 of 4 reached the purchase stage


def test_funnel_json_and_files(project, tmp_path):
    out_csv, out_json = tmp_path / "o" / "f.csv", tmp_path / "o" / "f.json"
    r = run(
        "-p",
        str(project),
        "analyze",
        "funnel",
        "--by",
        "touchpoint",
        "--steps",
        "ad,cart,order",
        "--strict",
        "--window",
        "2h",
        "--format",
        "json",
        "--out",
        str(out_csv),
        "--out",
        str(out_json),
    )
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert [s["customers"] for s in data["steps"]] == [4, 3, 2]
    assert data["window_seconds"] == 7200
    assert out_csv.read_text().count("\n") == 4
    assert json.loads(out_json.read_text())["steps"][2]["median_seconds_from_previous"] == 3300


def test_unknown_step_is_a_clear_error(project):
    r = CliRunner().invoke(
        main, ["-p", str(project), "analyze", "funnel", "--by", "touchpoint", "--steps", "ad,kart"]
    )
    assert r.exit_code == 2
    assert "unknown touchpoint(s) 'kart'; allowed: ad, cart, order, review" in r.output


def test_reach_csv(project):
    r = run("-p", str(project), "analyze", "reach", "--format", "csv")
    assert r.exit_code == 0
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("touchpoint,label,phase,channel,customers")
    assert lines[1].startswith("ad,Anzeige,before_purchase,,4,4,1.0,2,0.5")


def test_journey_table_is_cached_until_the_lake_or_spec_changes(project):
    with Journeymap(project) as jm:
        jm.journey()
        assert jm.last_journey_built
    with Journeymap(project) as jm:
        jm.journey()
        assert not jm.last_journey_built  # reused across processes/objects
        jm.append(
            make_events(
                [
                    {
                        "event_id": "new",
                        "customer_id": "z",
                        "ts": "2026-02-01T10:00:00+00:00",
                        "event": "ad",
                    }
                ]
            )
        )
        assert jm.journey().count().to_pyarrow().as_py() == 10
        assert jm.last_journey_built
    (project / "journey.yaml").write_text(
        SPEC.replace("phase: after_purchase", "phase: during_purchase")
    )
    with Journeymap(project) as jm:
        jm.journey()
        assert jm.last_journey_built
    assert len(list((project / ".journeymap" / "journey").glob("*.parquet"))) == 1


def test_spec_validate_reports_line_and_exit_code(tmp_path):
    bad = tmp_path / "journey.yaml"
    bad.write_text(SPEC.replace("phase: after_purchase", "phase: after"), encoding="utf-8")
    r = CliRunner().invoke(main, ["-p", str(tmp_path), "spec", "validate"])
    assert r.exit_code == 2
    assert "journey.yaml:8: touchpoints[3].phase: unknown phase 'after'" in r.output


def test_init_then_validate(tmp_path):
    target = tmp_path / "shop"
    r = run(
        "init", str(target), "--model", "five-step", "--lang", "de", "--timezone", "Europe/Berlin"
    )
    assert r.exit_code == 0, r.output
    r = run("-p", str(target), "spec", "validate")
    assert "valid — 5 phases" in r.output
    r = run("-p", str(target), "settings")
    assert "Europe/Berlin" in r.output


def test_analyses_without_a_lake_say_what_to_do(tmp_path):
    (tmp_path / "journey.yaml").write_text(SPEC, encoding="utf-8")
    r = CliRunner().invoke(main, ["-p", str(tmp_path), "analyze", "funnel"])
    assert r.exit_code == 1
    assert "no event lake" in r.output
    assert "journeymap demo" in r.output


def test_durations():
    assert [parse_duration(x) for x in ("45s", "30m", "2h", "7d", "1w", "90")] == [
        45,
        1800,
        7200,
        604800,
        604800,
        90,
    ]
    assert [human_duration(x) for x in (None, 30, 600, 7200, 3 * 86400)] == [
        "–",
        "30 s",
        "10.0 min",
        "2.0 h",
        "3.0 d",
    ]


def test_map_writes_an_offline_report_and_a_png(project, tmp_path):
    html, png = tmp_path / "r" / "report.html", tmp_path / "r" / "map.png"
    r = run("-p", str(project), "map", "--out", str(html), "--png", str(png), "--lang", "de")
    assert r.exit_code == 0, r.output
    text = html.read_text(encoding="utf-8")
    for label in ("Vor dem Kauf", "Während des Kaufs", "Nach dem Kauf"):
        assert label in text
    import re

    assert not re.search(r"""(src|href)=["']https?://""", text)  # works offline
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_map_writes_a_vector_pdf_with_the_map_text(project, tmp_path):
    pytest.importorskip("vl_convert")
    pdf = tmp_path / "map.pdf"
    r = run("-p", str(project), "map", "--out", str(tmp_path / "r.html"), "--pdf", str(pdf))
    assert r.exit_code == 0, r.output
    data = pdf.read_bytes()
    assert data[:5] == b"%PDF-"
    assert b"/FontFile" in data  # text stays text (embedded Inter), not a raster image
