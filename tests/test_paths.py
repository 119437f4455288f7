"""Transition graph, top paths and step Sankey: by hand, against a plain-Python oracle, and
reconciled with the funnel."""

from __future__ import annotations

import datetime as dt
import statistics
from collections import Counter, defaultdict
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import make_events, register
from journeymap.analytics.funnels import funnel
from journeymap.analytics.journey import build_journey, compile_sql
from journeymap.analytics.paths import (
    CONVERSION,
    EXIT,
    OTHER,
    START,
    PathError,
    step_sankey,
    step_sankey_expr,
    top_paths,
    top_paths_expr,
    transitions,
    transitions_expr,
)
from journeymap.model.spec import parse_spec

SPEC = parse_spec(
    """
model: three-stage
touchpoints:
  - {id: ad, phase: before_purchase}
  - {id: view, phase: before_purchase}
  - {id: cart, phase: during_purchase}
  - {id: buy, phase: during_purchase}
  - {id: review, phase: after_purchase}
goal: {match: {event: buy}}
"""
)
PHASES = SPEC.phase_ids()
T0 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)


def ev(customer: str, event: str, minutes: float, **kw: Any) -> dict[str, Any]:
    return {"customer_id": customer, "event": event, "ts": T0 + dt.timedelta(minutes=minutes), **kw}


HAND = [
    # converts; the review after the purchase is not part of the path to conversion
    ev("a", "ad", 0, channel="social"), ev("a", "view", 1), ev("a", "view", 2),
    ev("a", "cart", 3), ev("a", "buy", 4, revenue=50), ev("a", "review", 10),
    ev("b", "ad", 0, channel="search"), ev("b", "view", 5),
    # no touchpoint, no phase, no channel
    ev("c", "noise", 0),
    # buys twice: the path runs to the last purchase; no channel at all
    ev("d", "view", 0), ev("d", "buy", 1, revenue=20), ev("d", "view", 2),
    ev("d", "buy", 3, revenue=30),
    # two sessions, two hours apart
    ev("e", "ad", 0, channel="email"), ev("e", "view", 1), ev("e", "view", 121),
    ev("e", "cart", 122),
]  # fmt: skip


@pytest.fixture
def journey(duck):
    return build_journey(register(duck, make_events(HAND)), SPEC)


def edges(g) -> dict[tuple[str, str], tuple[int, int, float | None]]:
    return {(e.source, e.target): (e.count, e.customers, e.median_seconds) for e in g.edges}


def test_event_transitions_by_hand(journey):
    g = transitions(journey, "event")
    assert g.units == 5
    assert edges(g) == {
        (START, "ad"): (3, 3, None),
        (START, "noise"): (1, 1, None),
        (START, "view"): (1, 1, None),
        ("ad", "view"): (3, 3, 60.0),  # 1, 5 and 1 minutes
        ("view", "view"): (2, 2, 3630.0),  # 1 and 120 minutes
        ("view", "cart"): (2, 2, 60.0),
        ("view", "buy"): (2, 1, 60.0),  # d, twice
        ("view", EXIT): (1, 1, None),
        ("cart", "buy"): (1, 1, 60.0),
        ("cart", EXIT): (1, 1, None),
        ("buy", "view"): (1, 1, 60.0),
        ("buy", CONVERSION): (2, 2, None),
        ("noise", EXIT): (1, 1, None),
    }
    prob = {(e.source, e.target): e.probability for e in g.edges}
    assert prob[("view", "buy")] == pytest.approx(2 / 7)
    assert prob[(START, "ad")] == pytest.approx(3 / 5)
    visits = {n.node: n.count for n in g.nodes}
    assert visits == {
        START: 5,
        "ad": 3,
        "view": 7,
        "cart": 2,
        "buy": 3,
        "noise": 1,
        CONVERSION: 2,
        EXIT: 3,
    }
    assert next(n.node for n in g.nodes) == START
    assert [n.node for n in g.nodes][-2:] == [CONVERSION, EXIT]


@pytest.mark.parametrize("level", ["event", "phase"])
def test_transitions_without_times_keep_counts_and_customers(journey, level):
    full = edges(transitions(journey, level))
    bare = edges(transitions(journey, level, times=False))
    assert {k: v[:2] for k, v in bare.items()} == {k: v[:2] for k, v in full.items()}
    assert all(v[2] is None for v in bare.values())
    assert any(v[2] is not None for v in full.values())


def test_collapsed_transitions_time_from_the_end_of_a_run(journey):
    g = edges(transitions(journey, "event", collapse_repeats=True))
    assert ("view", "view") not in g
    # a: view 1, view 2, cart 3; e: view 1, view 121, cart 122 -> one minute each
    assert g[("view", "cart")] == (2, 2, 60.0)
    assert g[("ad", "view")] == (3, 3, 60.0)


def test_phase_and_channel_transitions_skip_null_values(journey):
    g = edges(transitions(journey, "phase", collapse_repeats=True))
    assert g == {
        (START, "before_purchase"): (4, 4, None),
        (START, EXIT): (1, 1, None),  # c has no phase at all
        ("before_purchase", "during_purchase"): (4, 3, 60.0),
        ("before_purchase", EXIT): (1, 1, None),
        ("during_purchase", "before_purchase"): (1, 1, 60.0),
        ("during_purchase", CONVERSION): (2, 2, None),
        ("during_purchase", EXIT): (1, 1, None),
    }
    g = edges(transitions(journey, "channel"))
    assert g == {
        (START, "social"): (1, 1, None),
        (START, "search"): (1, 1, None),
        (START, "email"): (1, 1, None),
        (START, EXIT): (1, 1, None),
        (START, CONVERSION): (1, 1, None),  # d bought without any channel touch
        ("social", CONVERSION): (1, 1, None),
        ("search", EXIT): (1, 1, None),
        ("email", EXIT): (1, 1, None),
    }


def test_until_end_and_per_session(journey):
    g = edges(transitions(journey, "event", until="end"))
    assert CONVERSION not in {t for _, t in g}
    assert g[("buy", "review")] == (1, 1, 360.0)
    assert g[("review", EXIT)] == (1, 1, None)
    assert g[("buy", EXIT)] == (1, 1, None)
    s = transitions(journey, "event", per="session")
    assert s.units == 6  # e has two sessions
    g = edges(s)
    assert g[(START, "view")] == (2, 2, None)  # d, and e's second session
    assert g[("view", EXIT)] == (2, 2, None)  # b, and e's first session
    assert g[("view", "view")] == (1, 1, 60.0)


def test_transition_matrix(journey):
    g = transitions(journey, "phase", collapse_repeats=True)
    m = g.matrix("count")
    assert m.loc[START, "before_purchase"] == 4
    assert m.loc["during_purchase", CONVERSION] == 2
    assert START not in m.columns
    assert EXIT not in m.index
    p = g.matrix("probability")
    assert p.sum(axis=1).round(12).eq(1.0).all()


def test_flow_is_conserved(journey):
    for level in ("event", "touchpoint", "phase", "channel"):
        for collapse in (False, True):
            g = transitions(journey, level, collapse_repeats=collapse)
            out: Counter[str] = Counter()
            inc: Counter[str] = Counter()
            for e in g.edges:
                out[e.source] += e.count
                inc[e.target] += e.count
            assert out[START] == g.units == 5
            for node in set(out) - {START}:
                assert inc[node] == out[node]
            assert inc[EXIT] + inc[CONVERSION] == g.units


# -- top paths -------------------------------------------------------------------------------
def test_top_paths_to_conversion_by_hand(journey):
    r = top_paths(journey, "event", to="conversion")
    assert (r.units, r.revenue) == (2, Decimal("100.00"))
    assert [(p.path, p.customers, p.share, p.revenue) for p in r.paths] == [
        ("ad > view > cart > buy", 1, 0.5, Decimal("50.00")),
        ("view > buy > view > buy", 1, 0.5, Decimal("50.00")),
    ]
    assert r.other.customers == 0
    r = top_paths(journey, "event", to="conversion", max_length=2, collapse_repeats=False)
    assert [(p.path, p.length, p.truncated) for p in r.paths] == [
        ("… > cart > buy", 5, True),
        ("… > view > buy", 4, True),
    ]
    assert r.paths[0].nodes == ["…", "cart", "buy"]


def test_top_paths_to_exit_with_other_row(journey):
    r = top_paths(journey, "event", to="exit", limit=2)
    assert r.units == 3
    assert [(p.path, p.customers) for p in r.paths] == [("ad > view", 1), ("ad > view > cart", 1)]
    assert (r.other.path, r.other.customers, r.other.share) == (OTHER, 1, pytest.approx(1 / 3))
    assert sum(p.customers for p in r.paths) + r.other.customers == r.units
    records = r.to_records()
    assert records[-1]["path"] == OTHER
    assert len(records) == 3


def test_top_paths_without_touches(journey):
    r = top_paths(journey, "channel", to="conversion")
    # d converted without a channel: an empty path, listed like any other
    assert [(p.path, p.nodes, p.customers) for p in r.paths] == [
        ("", [], 1),
        ("social", ["social"], 1),
    ]


# -- step Sankey -----------------------------------------------------------------------------
def test_phase_sankey_by_hand(journey):
    s = step_sankey(journey, "phase", steps=4, until="end")
    nodes = {(n.step, n.node): n.units for n in s.nodes}
    assert nodes == {
        (1, "before_purchase"): 4, (1, EXIT): 1,
        (2, "during_purchase"): 3, (2, EXIT): 1,
        (3, "after_purchase"): 1, (3, "before_purchase"): 1, (3, EXIT): 1,
        (4, "during_purchase"): 1, (4, EXIT): 1,
    }  # fmt: skip
    flows = {(f.step, f.source, f.target): f.units for f in s.flows}
    assert flows == {
        (1, "before_purchase", "during_purchase"): 3, (1, "before_purchase", EXIT): 1,
        (2, "during_purchase", "after_purchase"): 1, (2, "during_purchase", "before_purchase"): 1,
        (2, "during_purchase", EXIT): 1,
        (3, "after_purchase", EXIT): 1, (3, "before_purchase", "during_purchase"): 1,
    }  # fmt: skip
    assert [(c.units, c.ended, c.going) for c in s.columns] == [
        (5, 1, 4),
        (4, 1, 3),
        (3, 1, 2),
        (2, 1, 1),
    ]
    _check_reconciles(s)


def test_sankey_top_n_other_and_conversion_ends(journey):
    s = step_sankey(journey, "event", steps=3, top_n=1, collapse_repeats=False)
    nodes = {(n.step, n.node): n.units for n in s.nodes}
    # column 1: ad (3) kept, view and noise are "other"
    assert nodes[(1, "ad")] == 3
    assert nodes[(1, OTHER)] == 2
    # column 2: view (3) kept; buy (d) becomes other; c's noise ended
    assert nodes[(2, "view")] == 3
    assert nodes[(2, OTHER)] == 1
    assert nodes[(2, EXIT)] == 1
    flows = {(f.step, f.source, f.target): f.units for f in s.flows}
    assert flows[(1, OTHER, OTHER)] == 1  # d: view -> buy
    assert flows[(1, OTHER, EXIT)] == 1  # c: noise -> (exit)
    _check_reconciles(s)
    s = step_sankey(journey, "event", steps=6, top_n=8, collapse_repeats=False)
    # 5: with room for every path, each unit ends once; the conversions are the converters
    assert sum(n.units for n in s.nodes if n.node == CONVERSION) == 2
    assert sum(n.units for n in s.nodes if n.node in (EXIT, CONVERSION)) == s.units == 5
    _check_reconciles(s)
    assert s.step_matrix().loc["ad", 1] == pytest.approx(3 / 5)


def test_sankey_reconciles_with_the_funnel(journey):
    # 3: the non-end nodes of column 1 are the funnel's entered customers
    s = step_sankey(journey, "phase", steps=3, until="end")
    f = funnel(journey, PHASES, level="phase", skips=True)
    assert s.columns[0].going == f.entered == 4
    assert s.columns[0].units == 5  # plus c, who has no phase
    # 4: anchored, column 1 is the funnel's first step
    s = step_sankey(journey, "phase", steps=3, anchor="during_purchase", until="end")
    f = funnel(journey, ["during_purchase", "after_purchase"], level="phase", skips=False)
    assert [(n.step, n.node, n.units) for n in s.nodes if n.step == 1] == [
        (1, "during_purchase", f.entered)
    ]
    assert f.entered == 3
    _check_reconciles(s)


def _check_reconciles(s) -> None:
    by_step: dict[int, int] = defaultdict(int)
    going: dict[int, int] = defaultdict(int)
    node_units = {}
    for n in s.nodes:
        by_step[n.step] += n.units
        if n.node not in (EXIT, CONVERSION):
            going[n.step] += n.units
        node_units[(n.step, n.node)] = n.units
    out: dict[tuple[int, str], int] = defaultdict(int)
    into: dict[tuple[int, str], int] = defaultdict(int)
    for f in s.flows:
        out[(f.step, f.source)] += f.units
        into[(f.step + 1, f.target)] += f.units
    assert by_step[1] == s.units
    for k in range(1, s.steps):
        assert by_step[k + 1] == going[k]  # column k+1 = units going on from column k
        for (step, node), units in node_units.items():
            if step == k and node not in (EXIT, CONVERSION):
                assert out[(k, node)] == units  # every unit on a node flows on
            if step == k + 1:
                assert into[(k + 1, node)] == units
    for c in s.columns:
        assert (c.units, c.going) == (by_step[c.step], going[c.step])


def test_errors(journey):
    with pytest.raises(PathError, match="unknown path level 'page'; allowed: event, touchpoint"):
        transitions(journey, "page")  # type: ignore[arg-type]
    with pytest.raises(PathError, match="allowed: customer, session"):
        step_sankey(journey, "event", per="visit")  # type: ignore[arg-type]
    with pytest.raises(PathError, match="unknown to='purchase'"):
        top_paths(journey, "event", to="purchase")  # type: ignore[arg-type]
    with pytest.raises(PathError, match="steps must be >= 1"):
        step_sankey(journey, "event", steps=0)


def test_sql_compiles_for_duckdb_and_pyspark(journey):
    pytest.importorskip("pyspark")
    import ibis.backends.pyspark  # noqa: F401  (registers the dialect's options, P11)

    exprs = [
        transitions_expr(journey, "phase", collapse_repeats=True),
        transitions_expr(journey, "channel", per="session", until="end"),
        top_paths_expr(journey, "channel", to="exit"),
        step_sankey_expr(journey, "event", steps=10, anchor="view"),
        step_sankey_expr(journey, "touchpoint", steps=10, collapse_repeats=False),
    ]
    base = len(compile_sql(journey)["duckdb"].splitlines())
    for e in exprs:
        sql = compile_sql(e)
        assert set(sql) == {"duckdb", "pyspark"}
        # the journey table's SQL is in there once (a CTE), the analysis adds little
        assert len(sql["duckdb"].splitlines()) - base < 300


# -- against an oracle -------------------------------------------------------------------------
def oracle_paths(rows, *, level_of, until, collapse):
    """Per customer: (nodes with times, end node)."""
    by_customer: dict[str, list] = defaultdict(list)
    for e in rows:
        by_customer[e["customer_id"]].append(e)
    out = {}
    for c, evs in by_customer.items():
        evs.sort(key=lambda e: (e["ts"], e["event_id"]))
        conv = [i for i, e in enumerate(evs) if e["event"] == "buy"]
        end = EXIT
        if until == "conversion" and conv:
            evs = evs[: conv[-1] + 1]
            end = CONVERSION
        nodes = [(level_of(e), e["ts"]) for e in evs if level_of(e) is not None]
        if collapse:
            kept = []
            for i, (v, ts) in enumerate(nodes):
                if i == 0 or nodes[i - 1][0] != v:
                    kept.append((v, ts, nodes[i - 1][1] if i else None))
            nodes2 = kept
        else:
            nodes2 = [(v, ts, nodes[i - 1][1] if i else None) for i, (v, ts) in enumerate(nodes)]
        out[c] = (nodes2, end)
    return out


def oracle_edges(paths):
    counts: Counter = Counter()
    customers: dict = defaultdict(set)
    times: dict = defaultdict(list)
    for c, (nodes, end) in paths.items():
        prev = START
        for v, _ts, prev_ts in nodes:
            counts[(prev, v)] += 1
            customers[(prev, v)].add(c)
            if prev_ts is not None:
                times[(prev, v)].append((_ts - prev_ts).total_seconds())
            prev = v
        counts[(prev, end)] += 1
        customers[(prev, end)].add(c)
    return {
        k: (n, len(customers[k]), statistics.median(times[k]) if times[k] else None)
        for k, n in counts.items()
    }


TOUCH = {"ad": "ad", "view": "view", "cart": "cart", "buy": "buy", "review": "review"}
EVENTS = st.lists(
    st.tuples(
        st.sampled_from("uvwxyz"),
        st.sampled_from(["ad", "view", "cart", "buy", "review", "noise"]),
        st.integers(0, 20),
    ),
    min_size=1,
    max_size=60,
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    raw=EVENTS,
    level=st.sampled_from(["event", "touchpoint"]),
    until=st.sampled_from(["conversion", "end"]),
    collapse=st.booleans(),
    steps=st.integers(1, 6),
    top_n=st.integers(1, 4),
)
def test_transitions_and_sankey_match_oracle(duck, raw, level, until, collapse, steps, top_n):
    rows = [
        {
            "event_id": f"e{i:03d}",
            "customer_id": c,
            "event": name,
            "ts": T0 + dt.timedelta(minutes=m),
        }  # many ties: the event id decides
        for i, (c, name, m) in enumerate(raw)
    ]
    duck.con.unregister("events")
    j = build_journey(register(duck, make_events(rows)), SPEC)

    def level_of(e):
        return e["event"] if level == "event" else TOUCH.get(e["event"])

    paths = oracle_paths(rows, level_of=level_of, until=until, collapse=collapse)
    g = transitions(j, level, collapse_repeats=collapse, until=until)
    got = edges(g)
    want = oracle_edges(paths)
    assert set(got) == set(want)
    for k, (n, c, med) in want.items():
        assert got[k][:2] == (n, c)
        assert got[k][2] == pytest.approx(med)

    s = step_sankey(j, level, steps=steps, top_n=top_n, collapse_repeats=collapse, until=until)
    _check_reconciles(s)
    assert s.units == len(paths)
    # per column: the values (before top_n) and the ends, from the oracle
    for k in range(1, steps + 1):
        values = Counter(nodes[k - 1][0] for nodes, _ in paths.values() if len(nodes) >= k)
        ended = Counter(end for nodes, end in paths.values() if len(nodes) == k - 1)
        got_nodes = {n.node: n.units for n in s.nodes if n.step == k}
        top = sorted(values, key=lambda v: (-values[v], v))[:top_n]
        expect = {v: values[v] for v in top}
        rest = sum(values.values()) - sum(expect.values())
        if rest:
            expect[OTHER] = rest
        expect.update(ended)
        assert got_nodes == expect
