"""Funnel extensions: exclusions, strict order, session funnels, breakdowns, time to convert,
drop-offs; by hand and against a plain-Python oracle."""

from __future__ import annotations

import contextlib
import datetime as dt
import statistics
from typing import Any
from unittest import mock

import ibis
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import make_events, register
from journeymap.analytics import funnels
from journeymap.analytics.funnels import (
    EXIT,
    TTC_BOUNDS,
    FunnelError,
    funnel,
    funnel_dropoffs,
    funnel_dropoffs_expr,
    funnel_expr,
)
from journeymap.analytics.journey import build_journey, compile_sql
from journeymap.model.spec import parse_spec

SPEC = parse_spec(
    """
model: three-stage
touchpoints:
  - {id: view, phase: before_purchase}
  - {id: cart, phase: during_purchase}
  - {id: buy, phase: during_purchase}
goal: {match: {event: buy}}
"""
)
T0 = dt.datetime(2026, 1, 31, 23, 0, tzinfo=dt.UTC)
STEPS = ["view", "cart", "buy"]


def ev(customer: str, event: str, minutes: float, **kw: Any) -> dict[str, Any]:
    return {"customer_id": customer, "event": event, "ts": T0 + dt.timedelta(minutes=minutes), **kw}


HAND = [
    ev("a", "view", 0, device="mobile"), ev("a", "cart", 10), ev("a", "buy", 20),
    # an exclusion between view and cart
    ev("b", "view", 0, device="desktop"), ev("b", "remove", 5), ev("b", "cart", 10),
    ev("b", "buy", 15),
    # an exclusion between cart and buy
    ev("c", "view", 0, device="mobile"), ev("c", "cart", 5), ev("c", "remove", 6),
    ev("c", "buy", 8),
    # another event between view and cart (breaks strict order only)
    ev("d", "view", 0, device="desktop"), ev("d", "noise", 1), ev("d", "cart", 2),
    ev("d", "buy", 3),
    # two sessions (2 h apart); the device at the anchor counts, not later ones
    ev("e", "view", 0, device="mobile"), ev("e", "cart", 120, device="desktop"),
    ev("e", "buy", 125),
    # cart before view; the view is in February (UTC), an hour after the cart
    ev("f", "cart", 0, device="mobile"), ev("f", "view", 61), ev("f", "buy", 62),
    # a repeated view: strict order starts again at the second one
    ev("g", "view", 0, device="mobile"), ev("g", "view", 1, device="desktop"),
    ev("g", "cart", 2),
]  # fmt: skip


@pytest.fixture
def journey(duck):
    return build_journey(register(duck, make_events(HAND)), SPEC)


def counts(r) -> list[int]:
    return [s.customers for s in r.steps]


def test_loose_funnel_by_hand(journey):
    r = funnel(journey, STEPS, level="event", skips=False)
    assert (r.entered, counts(r)) == (7, [7, 6, 5])
    # view -> cart: 10, 10, 5, 2, 120, 2 minutes; cart -> buy: 10, 5, 3, 1, 5 minutes
    assert r.steps[1].median_seconds_from_previous == pytest.approx(7.5 * 60)
    assert r.steps[2].median_seconds_from_previous == pytest.approx(5 * 60)


def test_exclusion_steps_by_hand(journey):
    r = funnel(journey, STEPS, level="event", skips=False, exclude=["remove"])
    # b is excluded at cart (removed between view and cart), c at buy
    assert counts(r) == [7, 5, 3]
    assert [s.dropped for s in r.steps] == [0, 2, 2]
    assert r.exclude == ("remove",)
    # an exclusion after the last step changes nothing: e removes nothing, f skips
    r = funnel(journey, STEPS, level="event", skips=True, exclude=["remove"])
    assert counts(r) == [7, 5, 4]  # f: view then buy (skipping cart) still counts at buy


def test_strict_order_by_hand(journey):
    r = funnel(journey, STEPS, level="event", skips=False, order="strict")
    # a, e: view cart buy back to back; c: remove before buy; g: from its second view
    assert (r.entered, counts(r)) == (7, [7, 4, 2])
    assert r.order == "strict"
    # at the touchpoint level "noise" and "remove" are no touchpoint: they do not break it
    r = funnel(journey, STEPS, level="touchpoint", skips=False, order="strict")
    assert counts(r) == [7, 6, 5]


def test_strict_order_needs_skips_false(journey):
    with pytest.raises(FunnelError, match="cannot skip steps: pass skips=False"):
        funnel(journey, STEPS, level="event", order="strict")


def test_session_funnel_by_hand(journey):
    r = funnel(journey, STEPS, level="event", skips=False, per="session")
    # e's view is alone in its first session; f's cart is in an earlier session than its view
    assert (r.entered, counts(r)) == (7, [7, 5, 4])
    assert r.per == "session"
    r = funnel(journey, STEPS, level="event", skips=True, per="session")
    # with skips every session with a step enters: e2 (cart, buy) and f1 (cart) too
    assert (r.entered, counts(r)) == (9, [7, 7, 6])


def test_time_to_convert_by_hand(journey):
    ttc = funnel(journey, STEPS, level="event", skips=False).time_to_convert
    assert ttc is not None
    # a 20 min, b 15, c 8, d 3, e 125: from the first step to the last
    assert ttc.customers == 5
    assert ttc.p50_seconds == pytest.approx(900)
    assert ttc.p25_seconds == pytest.approx(480)
    assert ttc.p75_seconds == pytest.approx(1200)
    assert ttc.p90_seconds == pytest.approx(1200 + 0.6 * (7500 - 1200))
    by_label = {b.label: b.customers for b in ttc.buckets}
    assert by_label == {
        "≤1m": 0,
        "1–5m": 1,
        "5–15m": 2,
        "15m–1h": 1,
        "1–6h": 1,
        "6–24h": 0,
        "1–3d": 0,
        "3–7d": 0,
        "7–14d": 0,
        "14–30d": 0,
        ">30d": 0,
    }
    assert [b.upper_seconds for b in ttc.buckets] == [*TTC_BOUNDS, None]
    assert sum(b.customers for b in ttc.buckets) == ttc.customers


def test_breakdown_by_device(journey):
    r = funnel(journey, STEPS, level="event", skips=False, breakdown="device")
    assert counts(r) == [7, 6, 5]  # the overall funnel comes with the segments
    seg = {s.value: counts(s) for s in r.segments}
    # the device of the anchor (first view): e counts as mobile, g as mobile, f has none
    assert seg == {"mobile": [4, 4, 3], "desktop": [2, 2, 2], None: [1, 0, 0]}
    assert [s.value for s in r.segments] == ["mobile", "desktop", None]  # by size
    assert sum(s.entered for s in r.segments) == r.entered
    rows = r.to_records()
    assert rows[0]["segment"] == "(all)"
    assert {row["segment"] for row in rows} == {"(all)", "mobile", "desktop", "(none)"}
    seg_ttc = {s.value: s.time_to_convert.customers for s in r.segments}
    assert seg_ttc == {"mobile": 3, "desktop": 2, None: 0}


def test_breakdown_by_cohort_and_persona(journey):
    r = funnel(journey, STEPS, level="event", skips=False, breakdown="cohort")
    assert {s.value: s.entered for s in r.segments} == {"2026-01": 6, "2026-02": 1}
    personas = ibis.memtable(
        pa.table(
            {
                "customer_id": list("abcdeg"),
                "persona": ["bargain", "bargain", "loyal", "loyal", "loyal", "bargain"],
            }
        )
    )
    r = funnel(journey, STEPS, level="event", skips=False, breakdown="persona", personas=personas)
    seg = {s.value: counts(s) for s in r.segments}
    assert seg == {"loyal": [3, 3, 3], "bargain": [3, 3, 2], None: [1, 0, 0]}


def test_breakdown_errors(journey):
    with pytest.raises(FunnelError, match="needs personas="):
        funnel(journey, STEPS, level="event", breakdown="persona")
    with pytest.raises(FunnelError, match="unknown breakdown 'colour'; allowed: cohort, persona"):
        funnel(journey, STEPS, level="event", breakdown="colour")
    bad = ibis.memtable(pa.table({"customer_id": ["a"], "segment": ["x"]}))
    with pytest.raises(FunnelError, match="lacks column"):
        funnel(journey, STEPS, level="event", breakdown="persona", personas=bad)
    with pytest.raises(FunnelError, match="both a step and an exclusion"):
        funnel(journey, STEPS, level="event", exclude=["cart"])
    with pytest.raises(FunnelError, match="unknown funnel unit"):
        funnel(journey, STEPS, level="event", per="visit")  # type: ignore[arg-type]
    with pytest.raises(FunnelError, match="at least one step"):
        funnel(journey, [], level="event")


def test_dropoffs_by_hand(journey):
    d = funnel_dropoffs(journey, STEPS, 3, level="event", skips=False)
    # g reached cart but never bought, and did nothing after
    assert d.dropped == 1
    assert d.to_records() == [
        {
            "customer_id": "g",
            "previous_ts_us": _us(2),
            "next_event": EXIT,
            "next_touchpoint": EXIT,
            "seconds_to_next": None,
        }
    ]
    assert (d.step, d.previous_step) == ("buy", "cart")
    d = funnel_dropoffs(journey, STEPS, 2, level="event", skips=False, exclude=["remove"])
    rows = {r["customer_id"]: r for r in d.to_records()}
    assert set(rows) == {"b", "f"}
    assert (rows["b"]["next_event"], rows["b"]["next_touchpoint"]) == ("remove", "(none)")
    assert rows["b"]["seconds_to_next"] == pytest.approx(300)
    assert (rows["f"]["next_event"], rows["f"]["next_touchpoint"]) == ("buy", "buy")
    assert [(n.value, n.customers, n.share) for n in d.next_events] == [
        ("buy", 1, 0.5),
        ("remove", 1, 0.5),
    ]
    # the same units as the funnel's dropped count
    r = funnel(journey, STEPS, level="event", skips=False, exclude=["remove"])
    assert d.dropped == r.steps[1].dropped


def test_session_dropoffs_exit_at_session_end(journey):
    d = funnel_dropoffs(journey, STEPS, 2, level="event", skips=False, per="session")
    # e's first session ends after its view: the cart two hours later is another session
    assert [(r["customer_id"], r["session_index"], r["next_event"]) for r in d.to_records()] == [
        ("e", 1, EXIT),
        ("f", 2, "buy"),
    ]
    assert d.to_dict()["next_events"][0] == {"value": EXIT, "customers": 1, "share": 0.5}
    with pytest.raises(FunnelError, match=r"at_step must name a step after the first: 2\.\.3"):
        funnel_dropoffs(journey, STEPS, 1, level="event")


def test_result_exports(journey, tmp_path):
    r = funnel(journey, STEPS, level="event", skips=False, breakdown="device")
    r.write(tmp_path / "f.csv")
    assert (tmp_path / "f.csv").read_text().splitlines()[0].startswith("segment,index,step")
    import json

    r.write(tmp_path / "f.json")
    data = json.loads((tmp_path / "f.json").read_text())
    assert data["breakdown"] == "device"
    assert data["time_to_convert"]["customers"] == 5
    d = funnel_dropoffs(journey, STEPS, 2, level="event", skips=False)
    assert list(d.to_pandas()["customer_id"]) == ["f"]
    d.write(tmp_path / "d.json")
    assert json.loads((tmp_path / "d.json").read_text())["customers"][0]["customer_id"] == "f"


def _us(minutes: float) -> int:
    return int((T0 + dt.timedelta(minutes=minutes)).timestamp() * 1_000_000)


# -- SQL: portable and flat in the number of steps -------------------------------------------
@pytest.mark.parametrize(
    "kw",
    [
        {"skips": True},
        {"skips": False, "window_seconds": 3600, "exclude": ["remove"]},
        {"skips": False, "order": "strict", "window_seconds": 3600},
        {"skips": True, "per": "session", "breakdown": "cohort"},
    ],
)
def test_sql_compiles_and_grows_linearly(journey, kw):
    pytest.importorskip("pyspark")
    import ibis.backends.pyspark  # noqa: F401  (registers the dialect's options, P11)

    steps = (STEPS * 4)[:12]
    lines = {}
    for n in (4, 8, 12):
        sql = compile_sql(funnel_expr(journey, steps[:n], level="event", **kw))
        assert set(sql) == {"duckdb", "pyspark"}
        lines[n] = len(sql["duckdb"].splitlines())
    assert lines[12] - lines[8] <= 1.2 * (lines[8] - lines[4])  # linear, not exponential
    assert lines[12] < 3 * lines[4]
    sql = compile_sql(
        funnel_dropoffs_expr(
            journey, steps, 5, level="event", **{k: v for k, v in kw.items() if k != "breakdown"}
        )
    )
    assert "pyspark" in sql


# -- against an oracle -------------------------------------------------------------------------
GAP_US = 30 * 60 * 1_000_000


def oracle(rows, steps, *, skips, window_s, exclude, order, per):
    """Plain-Python funnel: per unit, in (ts, event_id) order. Returns unit -> [ts or None]."""
    by_customer: dict[str, list] = {}
    for e in rows:
        by_customer.setdefault(e["customer_id"], []).append(e)
    units: dict[tuple, list] = {}
    for c, evs in by_customer.items():
        evs.sort(key=lambda e: (e["ts"], e["event_id"]))
        session, prev = 0, None
        for e in evs:
            if prev is None or (e["ts"] - prev).total_seconds() * 1e6 > GAP_US:
                session += 1
            prev = e["ts"]
            key = (c,) if per == "customer" else (c, session)
            units.setdefault(key, []).append(e)
    out = {}
    for key, evs in units.items():
        names = [e["event"] for e in evs]
        if order == "strict":
            if steps[0] not in names:
                continue
            best: list = []
            for i, name in enumerate(names):
                if name != steps[0]:
                    continue
                got = [evs[i]["ts"]]
                for j in range(1, len(steps)):
                    if (
                        i + j < len(evs)
                        and names[i + j] == steps[j]
                        and (
                            window_s is None
                            or (evs[i + j]["ts"] - evs[i]["ts"]).total_seconds() <= window_s
                        )
                    ):
                        got.append(evs[i + j]["ts"])
                    else:
                        break
                if len(got) > len(best):
                    best = got
            out[key] = best + [None] * (len(steps) - len(best))
            continue
        if not any(n in steps for n in names) or (not skips and steps[0] not in names):
            continue
        pos, anchor, hit, dead = -1, None, [], False
        for k, name in enumerate(steps):
            if dead or (not skips and k > 0 and hit[k - 1] is None):
                hit.append(None)
                continue
            found = next(
                ((i, e) for i, e in enumerate(evs) if i > pos and e["event"] == name), None
            )
            if (
                found
                and anchor is not None
                and window_s is not None
                and (found[1]["ts"] - anchor).total_seconds() > window_s
            ):
                found = None
            if (
                found
                and pos >= 0
                and any(pos < i < found[0] and evs[i]["event"] in exclude for i in range(len(evs)))
            ):
                dead = True
                hit.append(None)
                continue
            hit.append(found[1]["ts"] if found else None)
            if found:
                pos = found[0]
                anchor = anchor or found[1]["ts"]
        out[key] = hit
    return out


EVENTS = st.lists(
    st.tuples(
        st.sampled_from("uvwxy"),
        st.sampled_from(["view", "cart", "buy", "remove", "noise"]),
        st.integers(0, 30),
        st.sampled_from([0, 10, 45]),
    ),
    min_size=1,
    max_size=50,
)


def _structs(s: object) -> funnels._Events:
    return funnels._Events()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    raw=EVENTS,
    skips=st.booleans(),
    window=st.sampled_from([None, 5 * 3600]),
    exclude=st.sampled_from([(), ("remove",)]),
    order=st.sampled_from(["loose", "strict"]),
    per=st.sampled_from(["customer", "session"]),
    packed=st.booleans(),
)
def test_funnel_matches_oracle(duck, raw, skips, window, exclude, order, per, packed):
    if order == "strict":
        skips = False
    rows = [
        {
            "event_id": f"e{i:03d}",
            "customer_id": c,
            "event": name,
            "ts": T0 + dt.timedelta(hours=h, minutes=m),
        }
        for i, (c, name, h, m) in enumerate(raw)
    ]
    steps = ["view", "cart", "view", "buy"]  # a repeated step too
    duck.con.unregister("events")  # from the previous example, if any
    j = build_journey(register(duck, make_events(rows)), SPEC)
    kw = {
        "level": "event",
        "skips": skips,
        "window_seconds": window,
        "exclude": list(exclude),
        "order": order,
        "per": per,
    }
    # the loose funnel holds events packed in one integer where the data's range allows it,
    # else as structs (as for data whose time range does not fit): both must match the oracle
    structs = mock.patch.object(funnels._Events, "of", staticmethod(_structs))
    with contextlib.nullcontext() if packed else structs:
        r = funnel(j, steps, **kw)
    want = oracle(rows, steps, skips=skips, window_s=window, exclude=exclude, order=order, per=per)
    assert r.entered == len(want)
    assert counts(r) == [sum(1 for h in want.values() if h[k]) for k in range(len(steps))]
    for k in range(1, len(steps)):
        deltas = [(h[k] - h[k - 1]).total_seconds() for h in want.values() if h[k] and h[k - 1]]
        assert r.steps[k].from_previous == len(deltas)
        assert r.steps[k].median_seconds_from_previous == pytest.approx(
            statistics.median(deltas) if deltas else None
        )
    ttc = [(h[-1] - next(t for t in h if t)).total_seconds() for h in want.values() if h[-1]]
    assert r.time_to_convert is not None
    assert r.time_to_convert.customers == len(ttc)
    assert r.time_to_convert.p50_seconds == pytest.approx(statistics.median(ttc) if ttc else None)
    # drop-offs at the last step are the units that reached the one before but not it
    d = funnel_dropoffs(j, steps, len(steps), **kw)
    keys = ["customer_id"] if per == "customer" else ["customer_id", "session_index"]
    got = {tuple(row[k] for k in keys) for row in d.to_records()}
    assert got == {u for u, h in want.items() if h[-2] and not h[-1]}
