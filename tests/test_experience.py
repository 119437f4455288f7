"""Experience (NPS, CSAT, CES) per touchpoint and phase, computed by hand."""

from __future__ import annotations

import datetime as dt
import json
import math

import pytest

from conftest import make_events, register
from journeymap.analytics.experience import (
    experience,
    nps_interval,
    survey_counts_expr,
    wilson_interval,
)
from journeymap.analytics.journey import build_journey, compile_sql
from journeymap.model.spec import parse_spec

SPEC = parse_spec(
    """
model: three-stage
touchpoints:
  - {id: checkout, phase: during_purchase, label: Checkout}
  - {id: delivery, phase: after_purchase}
  - {id: survey, phase: after_purchase, match: {event: survey_response}}
goal: {match: {event: order_completed}}
"""
)
T0 = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
Z95 = 1.959963984540054
T_975_2 = 4.302652729749464  # Student t, 2 degrees of freedom


def answer(i, kind, score, rated=None):
    props = {"survey": kind} | ({"touchpoint": rated} if rated else {})
    return {
        "customer_id": f"c{i % 7}",
        "event": "survey_response",
        "ts": T0 + dt.timedelta(hours=i),
        "score": score,
        "properties": json.dumps(props),
    }


NPS_SCORES = [10, 9, 8, 7, 6, 0, 10, 9, 3, 10]  # 5 promoters, 2 passives, 3 detractors
ROWS = (
    [answer(i, "nps", s, "checkout") for i, s in enumerate(NPS_SCORES)]
    + [answer(20 + i, "csat", s, "delivery") for i, s in enumerate([5, 4, 3, 5, 1])]
    + [answer(30 + i, "CES", s, "checkout") for i, s in enumerate([7, 6, 5])]
    + [answer(40, "csat", 5), answer(41, "csat", 9, "delivery")]  # own touchpoint; invalid
    + [answer(42, "nps", 2, "store")]  # a touchpoint the spec does not know
    + [answer(43, "poll", 5, "checkout"), {"customer_id": "c1", "event": "checkout",
                                          "ts": T0, "score": 4}]  # not survey answers
)  # fmt: skip


@pytest.fixture
def result(duck):
    j = build_journey(register(duck, make_events(ROWS)), SPEC)
    return experience(j, SPEC)


def test_nps_by_hand(result):
    r = result.get("touchpoint", "checkout", "nps")
    assert (r.n, r.positive, r.neutral, r.negative) == (10, 5, 2, 3)
    assert r.value == pytest.approx(20.0)
    assert (r.phase, r.label, r.small_sample) == ("during_purchase", "Checkout", True)
    # adjusted Wald: n' = 13, p' = 5.75/13, d' = 3.75/13
    p, d = 5.75 / 13, 3.75 / 13
    half = Z95 * math.sqrt((p + d - (p - d) ** 2) / 13)
    assert r.ci_low == pytest.approx(100 * (p - d - half), abs=1e-9)
    assert r.ci_high == pytest.approx(100 * (p - d + half), abs=1e-9)
    assert r.ci_low == pytest.approx(-30.33, abs=0.01)
    assert r.feeling == pytest.approx(0.4)


def test_csat_by_hand(result):
    r = result.get("touchpoint", "delivery", "csat")
    assert (r.n, r.invalid, r.positive, r.negative) == (5, 1, 3, 2)
    assert r.value == pytest.approx(60.0)
    # Wilson: centre (p + z^2/2n) / (1 + z^2/n), half z/(1 + z^2/n) sqrt(p q / n + z^2/4n^2)
    p, n, z = 0.6, 5, Z95
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert (r.ci_low, r.ci_high) == pytest.approx((100 * (centre - half), 100 * (centre + half)))
    assert r.feeling == pytest.approx(0.4)
    # the answer without a touchpoint property rates the survey touchpoint itself
    own = result.get("touchpoint", "survey", "csat")
    assert (own.n, own.value, own.phase) == (1, 100.0, "after_purchase")


def test_ces_by_hand(result):
    r = result.get("touchpoint", "checkout", "ces")  # "CES" is read case-insensitively
    assert (r.n, r.mean, r.sd) == (3, 6.0, 1.0)
    half = T_975_2 * 1.0 / math.sqrt(3)
    assert (r.ci_low, r.ci_high) == pytest.approx((6 - half, 6 + half), abs=1e-9)
    assert r.feeling == pytest.approx(4 / 3)


def test_phase_and_overall_rows(result):
    after = result.get("phase", "after_purchase", "csat")
    assert (after.n, after.positive) == (6, 4)  # delivery 5 + survey 1
    assert result.get("phase", "during_purchase", "nps").n == 10
    overall = result.get("overall", "all", "nps")
    assert (overall.n, overall.negative) == (11, 4)  # includes the unknown touchpoint
    store = result.get("touchpoint", "store", "nps")
    assert (store.phase, store.n) == (None, 1)
    assert result.get("phase", "store", "nps") is None
    # no row for the "poll" survey or plain scores
    assert {r.survey for r in result.rows} == {"nps", "csat", "ces"}
    # order: overall, phases in spec order, touchpoints in spec order (unknown last)
    assert [(r.level, r.key) for r in result.rows][:3] == [("overall", "all")] * 3
    keys = [r.key for r in result.select("touchpoint")]
    assert keys.index("checkout") < keys.index("delivery") < keys.index("store")


def test_feelings_per_phase(result):
    feelings = result.feelings()
    during = feelings["during_purchase"]
    # n-weighted: NPS 20 (n 10) -> 0.4, CES mean 6 (n 3) -> 4/3
    assert during["n"] == 13
    assert during["feeling"] == pytest.approx((0.4 * 10 + 4 / 3 * 3) / 13)


def test_interval_helpers_edge_cases():
    lo, hi = nps_interval(10, 0, 10, Z95)
    assert hi == 100.0
    assert lo < 100
    lo, hi = wilson_interval(0, 4, Z95)
    assert lo == 0.0
    assert 0 < hi < 100


def test_exports_and_sql(result, duck, tmp_path):
    df = result.to_pandas()
    assert {"level", "key", "survey", "n", "value", "ci_low", "ci_high"} <= set(df.columns)
    result.write(tmp_path / "x.json")
    assert "feelings" in json.loads((tmp_path / "x.json").read_text())
    j = build_journey(register(duck, make_events(ROWS), "ev2"), SPEC)
    assert set(compile_sql(survey_counts_expr(j))) == {"duckdb", "pyspark"}
    with pytest.raises(ValueError, match="confidence must be between 0 and 1"):
        experience(j, SPEC, confidence=95)
