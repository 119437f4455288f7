"""Cohort retention, repeat purchases, RFM and lapsed customers, computed by hand."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pytest

from conftest import make_events, register
from journeymap.analytics.journey import build_journey, compile_sql
from journeymap.analytics.retention import (
    SEGMENT_ORDER,
    RetentionError,
    cadence_expr,
    lapsed,
    period_start,
    repeat_purchase,
    repeat_purchase_expr,
    retention,
    retention_expr,
    rf_segment,
    rfm,
    rfm_expr,
)
from journeymap.model.spec import parse_spec

SPEC = parse_spec(
    """
model: three-stage
touchpoints:
  - {id: visit, phase: before_purchase}
  - {id: buy, phase: during_purchase}
goal: {match: {event: buy}}
"""
)
MON = dt.datetime(2026, 1, 5, 10, tzinfo=dt.UTC)  # a Monday; 2026-01-01 was a Thursday


def ev(customer, event, days, channel=None, revenue=None):
    return {"customer_id": customer, "event": event, "ts": MON + dt.timedelta(days=days),
            "channel": channel, "revenue": revenue}  # fmt: skip


def journey_of(duck, rows, name="events"):
    return build_journey(register(duck, make_events(rows), name), SPEC)


# week 0: a (ads), b (email) start; c (ads) starts in week 1. Latest event: week 3.
COHORT_ROWS = [
    ev("a", "visit", 0, "ads"), ev("a", "visit", 8), ev("a", "buy", 22, revenue="5"),
    ev("b", "visit", 6, "email"), ev("b", "buy", 15, revenue="7"),
    ev("c", "visit", 7, "ads"), ev("c", "buy", 9, revenue="1"),
    ev("c", "visit", 13.5),  # Sunday of week 1
]  # fmt: skip


@pytest.fixture
def cohort_journey(duck):
    return journey_of(duck, COHORT_ROWS)


def test_weekly_retention_by_hand(cohort_journey):
    r = retention(cohort_journey, period="week", max_offset=3)
    assert [(c.start, c.size) for c in r.cohorts] == [
        (dt.date(2026, 1, 5), 2),
        (dt.date(2026, 1, 12), 1),
    ]
    w0, w1 = r.cohorts
    assert w0.retained == [2, 1, 1, 1]  # a in weeks 1 and 3, b in week 2
    assert w0.rates == [1.0, 0.5, 0.5, 0.5]
    assert w1.retained == [1, 0, 0, None]  # week 4 is not observed yet
    # the average curve: offset 3 only from the week-0 cohort
    assert r.average["(all)"] == [1.0, pytest.approx(1 / 3), pytest.approx(1 / 3), 0.5]
    assert r.to_records()[0] == {"breakdown": None, "cohort": "2026-01-05", "size": 2,
                                 "offset": 0, "customers": 2, "rate": 1.0}  # fmt: skip


def test_retention_breakdown_and_segments(cohort_journey):
    r = retention(cohort_journey, period="week", breakdown="channel")
    by = {(c.breakdown, c.start.isoformat()): c.retained for c in r.cohorts}
    assert by == {("ads", "2026-01-05"): [1, 1, 0, 1], ("ads", "2026-01-12"): [1, 0, 0],
                  ("email", "2026-01-05"): [1, 0, 1, 0]}  # fmt: skip
    seg = retention(cohort_journey, segments={"a": "vip", "b": "vip", "c": "new"})
    assert seg.breakdown == "segment"
    assert {(c.breakdown, c.size) for c in seg.cohorts} == {("vip", 2), ("new", 1)}
    table = pa.table({"customer_id": ["a"], "segment": ["vip"]})
    seg2 = retention(cohort_journey, segments=table)
    assert {(c.breakdown, c.start.day, c.size) for c in seg2.cohorts} == {
        ("vip", 5, 1), (None, 5, 1), (None, 12, 1)}  # fmt: skip
    assert set(seg2.average) == {"vip", "(all)"}


def test_conversion_cohorts_and_daily_monthly_periods(cohort_journey):
    r = retention(cohort_journey, period="week", cohort="first_conversion", activity="conversion")
    # first purchases: c in week 1, b in week 2, a in week 3 (the last observed week)
    starts = {c.start.isoformat(): c.retained for c in r.cohorts}
    assert starts == {"2026-01-12": [1, 0, 0], "2026-01-19": [1, 0], "2026-01-26": [1]}
    d = retention(cohort_journey, period="day", max_offset=1)
    assert (d.cohorts[0].start, d.cohorts[0].retained) == (dt.date(2026, 1, 5), [1, 0])
    m = retention(cohort_journey, period="month")
    assert [(c.start, c.size, c.retained) for c in m.cohorts] == [(dt.date(2026, 1, 1), 3, [3])]


def test_period_start():
    assert period_start(0, "day") == dt.date(1970, 1, 1)
    assert period_start(0, "week") == dt.date(1969, 12, 29)  # a Monday
    assert period_start(2026 * 12 + 1, "month") == dt.date(2026, 2, 1)


def test_repeat_purchase_by_hand(duck):
    rows = [ev("p", "buy", d, revenue="1") for d in (0, 10, 40)]
    rows += [ev("q", "buy", 0, revenue="1"), ev("q", "visit", 3)]
    rows += [ev("r", "buy", d, revenue="1") for d in (0, 45)]
    rows += [ev("s", "visit", 1)]
    r = repeat_purchase(journey_of(duck, rows), within_days=30)
    assert (r.buyers, r.repeat_buyers) == (3, 2)
    assert r.repeat_rate == pytest.approx(2 / 3)
    assert (r.repeat_buyers_within, r.repeat_rate_within) == (1, pytest.approx(1 / 3))
    assert r.median_days_to_second == pytest.approx(27.5)
    plain = repeat_purchase(journey_of(duck, rows, "e2"))
    assert (plain.repeat_buyers_within, plain.repeat_rate_within) == (None, None)


def test_rfm_by_hand(duck):
    rows = []
    for i in range(1, 6):  # v1: 1 purchase 50 days ago, 2.00 ... v5: 5 purchases, 10 days ago
        last = 10 + 10 * (i - 1)
        for k in range(i):
            rows.append(ev(f"v{i}", "buy", last - k, revenue=f"{2 * i:.2f}"))
    as_of = MON + dt.timedelta(days=60)
    r = rfm(journey_of(duck, rows), as_of=as_of)
    got = {row["customer_id"]: row for row in r.customers.to_pylist()}
    assert [(got[f"v{i}"]["r"], got[f"v{i}"]["f"], got[f"v{i}"]["m"]) for i in range(1, 6)] == [
        (i, i, i) for i in range(1, 6)
    ]
    assert [got[f"v{i}"]["segment"] for i in range(1, 6)] == [
        "hibernating", "hibernating", "need_attention", "loyal", "champion"]  # fmt: skip
    assert got["v1"]["recency_days"] == pytest.approx(50.0)
    assert got["v5"]["monetary"] == Decimal("50.00")
    segs = {s.segment: s for s in r.segments}
    assert (segs["hibernating"].customers, segs["hibernating"].share) == (2, 0.4)
    assert [s.segment for s in r.segments] == ["champion", "loyal", "need_attention",
                                               "hibernating"]  # fmt: skip


def test_rfm_ties_are_broken_by_customer_id(duck):
    rows = [ev(f"t{i}", "buy", 0, revenue="1") for i in range(10)]
    r = rfm(journey_of(duck, rows))
    f = {row["customer_id"]: row["f"] for row in r.customers.to_pylist()}
    assert [f[f"t{i}"] for i in range(10)] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_rf_segment_grid_covers_every_cell():
    names = {rf_segment(r, f) for r in range(1, 6) for f in range(1, 6)}
    assert names == set(SEGMENT_ORDER)
    assert (rf_segment(5, 1), rf_segment(1, 5)) == ("new_customer", "cant_lose")


def test_lapsed_by_hand(duck):
    rows = [ev("l1", "buy", d, revenue="1") for d in (0, 10, 20)]  # gap 10, last day 20
    rows += [ev("l2", "buy", d, revenue="1") for d in (0, 20, 40)]  # gap 20, last day 40
    rows += [ev("l3", "buy", 0, revenue="1")]  # one purchase: no cadence
    rows += [ev("l4", "buy", d, revenue="1") for d in (0, 2, 30)]  # gaps 2, 28: median 15
    r = lapsed(journey_of(duck, rows), as_of=MON + dt.timedelta(days=50))
    assert (r.eligible, r.lapsed) == (3, 1)
    (c,) = r.customers
    assert (c.customer_id, c.purchases, c.median_gap_days, c.days_since_last) == ("l1", 3, 10.0,
                                                                                 30.0)  # fmt: skip
    assert c.ratio == pytest.approx(3.0)
    r3 = lapsed(journey_of(duck, rows, "e2"), k=1.0, as_of=MON + dt.timedelta(days=50))
    # k = 1: l4 (median gap 15, 20 days since) lapses too; the longest overdue first
    got = [(x.customer_id, x.ratio) for x in r3.customers]
    assert got == [("l1", 3.0), ("l4", pytest.approx(20 / 15))]


def test_errors(cohort_journey):
    with pytest.raises(RetentionError, match="unknown period 'year'; allowed: day, week, month"):
        retention(cohort_journey, period="year")  # type: ignore[arg-type]
    with pytest.raises(RetentionError, match="unknown breakdown column 'devic'"):
        retention(cohort_journey, breakdown="devic")
    with pytest.raises(RetentionError, match="either a breakdown column or a segments"):
        retention(cohort_journey, breakdown="channel", segments={"a": "x"})
    with pytest.raises(RetentionError, match="timezone-aware"):
        lapsed(cohort_journey, as_of=dt.datetime(2026, 1, 1))
    with pytest.raises(RetentionError, match="min_purchases must be >= 2"):
        lapsed(cohort_journey, min_purchases=1)


def test_expressions_compile_for_both_engines(cohort_journey):
    import ibis

    ibis.pyspark  # registers the PySpark compiler's options  # noqa: B018
    for e in (
        retention_expr(cohort_journey, period="month", breakdown="channel"),
        retention_expr(cohort_journey, cohort="first_conversion", activity="conversion"),
        repeat_purchase_expr(cohort_journey, within_days=30),
        rfm_expr(cohort_journey, as_of_us=0),
        cadence_expr(cohort_journey, as_of_us=0),
    ):
        assert set(compile_sql(e)) == {"duckdb", "pyspark"}
