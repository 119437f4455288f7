"""Funnels on hand-computed cases, and against a plain-Python oracle on random journeys."""

from __future__ import annotations

import datetime as dt
import statistics

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import make_events, register
from journeymap.analytics.funnels import funnel, funnel_expr, touchpoint_reach
from journeymap.analytics.journey import build_journey, compile_sql
from journeymap.model.spec import parse_spec

SPEC = parse_spec(
    """
model: three-stage
touchpoints:
  - {id: ad, phase: before_purchase}
  - {id: cart, phase: during_purchase}
  - {id: order, phase: during_purchase, match: {event: order_completed}}
  - {id: review, phase: after_purchase}
goal: {match: {event: order_completed}}
"""
)
PHASES = SPEC.phase_ids()
T0 = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)


def ev(customer: str, event: str, **delta: float) -> dict[str, object]:
    return {"customer_id": customer, "event": event, "ts": T0 + dt.timedelta(**delta)}


HAND = [
    ev("a", "ad"),
    ev("a", "cart", minutes=10),
    ev("a", "order_completed", hours=1),
    ev("a", "review", days=3),
    ev("b", "ad"),
    ev("b", "review", days=1),  # skips the purchase phase
    ev("c", "cart"),
    ev("c", "order_completed", minutes=5),  # never saw an ad
    ev("d", "review"),
    ev("d", "ad", hours=1),  # review before the ad
    ev("e", "ad"),
    ev("e", "cart", days=10),  # slow
]


@pytest.fixture
def journey(duck):
    return build_journey(register(duck, make_events(HAND)), SPEC)


def test_phase_funnel_with_skips_by_hand(journey):
    r = funnel(journey, PHASES, level="phase", skips=True)
    assert r.entered == 5
    assert [s.customers for s in r.steps] == [4, 3, 2]
    assert [s.from_previous for s in r.steps] == [4, 2, 1]
    assert [s.skipped_previous for s in r.steps] == [0, 1, 1]
    assert [s.dropped for s in r.steps] == [0, 2, 2]
    assert r.steps[1].conversion_from_previous == pytest.approx(0.5)
    assert r.steps[2].conversion_from_previous == pytest.approx(1 / 3)
    assert r.steps[0].conversion_from_start == pytest.approx(0.8)
    # a: 10 min, e: 10 days -> median of the two
    assert r.steps[1].median_seconds_from_previous == pytest.approx((600 + 864_000) / 2)
    # a: review 3 days after the start, 10 min after which the purchase phase began
    assert r.steps[2].median_seconds_from_previous == pytest.approx(259_200 - 600)


def test_strict_funnel_with_window_by_hand(journey):
    r = funnel(journey, PHASES, level="phase", skips=False, window_seconds=7 * 86400)
    assert r.entered == 4
    assert [s.customers for s in r.steps] == [4, 1, 1]
    assert [s.skipped_previous for s in r.steps] == [0, 0, 0]


def test_touchpoint_funnel_strict_without_window(journey):
    r = funnel(journey, ["ad", "cart", "order"], level="touchpoint", skips=False)
    assert [s.customers for s in r.steps] == [4, 2, 1]
    assert r.steps[2].median_seconds_from_start == pytest.approx(3600)


def test_result_exports(journey, tmp_path):
    r = funnel(journey, PHASES, labels=["Before", "During", "After"])
    df = r.to_pandas()
    assert list(df["label"]) == ["Before", "During", "After"]
    assert list(df["customers"]) == [4, 3, 2]
    r.write(tmp_path / "f.csv")
    r.write(tmp_path / "f.json")
    assert (tmp_path / "f.csv").read_text().splitlines()[0].startswith("index,step,label,customers")
    import json

    assert json.loads((tmp_path / "f.json").read_text())["entered"] == 5
    with pytest.raises(ValueError, match=r"\.csv or \.json"):
        r.write(tmp_path / "f.xlsx")


def test_touchpoint_reach_by_hand(journey):
    tps = [(t.id, t.id, t.phase, None) for t in SPEC.touchpoints]
    r = touchpoint_reach(journey, tps)
    by = {t.touchpoint: t for t in r.touchpoints}
    assert r.customers == 5
    assert (by["ad"].customers, by["ad"].converted_customers) == (4, 1)
    assert (by["cart"].customers, by["cart"].converted_customers) == (3, 2)
    assert by["review"].customers == 3
    assert by["ad"].share_of_customers == pytest.approx(0.8)


def test_funnel_sql_grows_linearly_with_steps(journey):
    lines = {
        n: len(compile_sql(funnel_expr(journey, (PHASES * 4)[:n]))["duckdb"].splitlines())
        for n in (4, 8, 12)
    }
    # each step adds a little (its columns are carried on); doubling per step would explode
    assert lines[12] - lines[8] < 2 * (lines[8] - lines[4])
    assert lines[12] < 2500


# -- against an oracle -------------------------------------------------------------------------
def oracle(events, steps, skips, window_s):
    """Plain-Python greedy funnel: per customer, in (ts, event_id) order."""
    by_customer: dict[str, list] = {}
    for e in events:
        by_customer.setdefault(e["customer_id"], []).append(e)
    reached_counts = [0] * len(steps)
    both = [0] * len(steps)
    deltas: list[list[float]] = [[] for _ in steps]
    entered = 0
    for evs in by_customer.values():
        evs.sort(key=lambda e: (e["ts"], e["event_id"]))
        seq = [(i, e) for i, e in enumerate(evs) if e["event"] in steps]
        if not seq or (not skips and not any(e["event"] == steps[0] for _, e in seq)):
            continue
        entered += 1
        pos, anchor, hit = -1, None, []
        for k, name in enumerate(steps):
            if not skips and k > 0 and hit[k - 1] is None:
                hit.append(None)
                continue
            found = None
            for i, e in seq:
                if (
                    i > pos
                    and e["event"] == name
                    and (
                        anchor is None
                        or window_s is None
                        or (e["ts"] - anchor).total_seconds() <= window_s
                    )
                ):
                    found = (i, e["ts"])
                    break
            hit.append(found)
            if found:
                pos = found[0]
                anchor = anchor or found[1]
        for k, h in enumerate(hit):
            if h:
                reached_counts[k] += 1
                if k > 0 and hit[k - 1]:
                    both[k] += 1
                    deltas[k].append((h[1] - hit[k - 1][1]).total_seconds())
    medians = [statistics.median(d) if d else None for d in deltas]
    return entered, reached_counts, both, medians


EVENTS = st.lists(
    st.tuples(
        st.sampled_from("uvwxyz"),
        st.sampled_from(["ad", "cart", "order_completed", "review", "noise"]),
        st.integers(0, 40),
    ),
    min_size=1,
    max_size=60,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=EVENTS, skips=st.booleans(), window=st.sampled_from([None, 5 * 3600, 20 * 3600]))
def test_funnel_matches_oracle(duck, raw, skips, window):
    rows = [
        {"event_id": f"e{i:03d}", "customer_id": c, "event": name, "ts": T0 + dt.timedelta(hours=h)}
        for i, (c, name, h) in enumerate(raw)
    ]
    steps = ["ad", "cart", "order_completed", "review"]
    duck.con.unregister("events")  # from the previous example, if any
    t = register(duck, make_events(rows))
    r = funnel(build_journey(t, SPEC), steps, level="event", skips=skips, window_seconds=window)
    entered, reached, both, medians = oracle(rows, steps, skips, window)
    assert r.entered == entered
    assert [s.customers for s in r.steps] == reached
    assert [s.from_previous for s in r.steps][1:] == both[1:]
    got = [s.median_seconds_from_previous for s in r.steps][1:]
    assert got == pytest.approx(medians[1:])
