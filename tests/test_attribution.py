"""Attribution: hand-computed cases, the exact Markov solution, Shapley, path files."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import random
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pyarrow as pa
import pytest

from conftest import make_events, register
from journeymap.analytics import attribution_models as am
from journeymap.analytics.attribution import (
    MODELS,
    PATH_MODELS,
    AttributionError,
    attribution,
    attribution_from_paths,
    attribution_paths,
    read_paths,
    write_paths,
)
from journeymap.analytics.attribution_journeys import (
    paths_expr,
    time_decay_expr,
    touch_names,
    transitions_expr,
)
from journeymap.analytics.journey import build_journey, compile_sql
from journeymap.errors import InputDataError
from journeymap.model.spec import parse_spec

SPEC = parse_spec(
    """
model: three-stage
touchpoints:
  - {id: ad, phase: before_purchase, match: {event: ad_click}}
  - {id: site, phase: before_purchase, match: {event: visit}}
  - {id: order, phase: during_purchase, match: {event: buy}}
goal: {match: {event: buy}}
"""
)
T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def ev(customer, event, channel=None, days=0.0, revenue=None):
    return {
        "customer_id": customer,
        "event": event,
        "channel": channel,
        "ts": T0 + dt.timedelta(days=days),
        "revenue": revenue,
    }


# u: a > b -> buy 10, then c (null journey)
# w: a > c > a -> buy 30 (the buy event itself has a channel: not a touch)
# x: b > b (never converts)
# y: buys without any touch (unattributed)
HAND = [
    ev("u", "visit", "a", 0), ev("u", "visit", "b", 1), ev("u", "buy", None, 2, "10.00"),
    ev("u", "visit", "c", 3),
    ev("w", "visit", "a", 0), ev("w", "visit", "c", 1), ev("w", "visit", "a", 2),
    ev("w", "buy", "web", 3, "30"),
    ev("x", "visit", "b", 0), ev("x", "visit", "b", 1),
    ev("y", "buy", None, 0, "5"),
]  # fmt: skip


def journey_of(duck, rows, name="events"):
    return build_journey(register(duck, make_events(rows), name), SPEC)


@pytest.fixture
def hand(duck):
    return journey_of(duck, HAND)


def test_paths_by_hand(hand):
    paths = attribution_paths(hand).to_pylist()
    assert paths == [
        {"path": "a > b", "total_conversions": 1, "total_conversion_value": Decimal("10.00"),
         "total_null": 0},
        {"path": "a > c > a", "total_conversions": 1, "total_conversion_value": Decimal("30.00"),
         "total_null": 0},
        {"path": "b > b", "total_conversions": 0, "total_conversion_value": Decimal("0.00"),
         "total_null": 1},
        {"path": "c", "total_conversions": 0, "total_conversion_value": Decimal("0.00"),
         "total_null": 1},
    ]  # fmt: skip


def credits(result, model):
    return {c: (r.conversions, r.value) for c, r in result.credit(model).items()}


def test_heuristics_by_hand(hand):
    r = attribution(hand, models=["first", "last", "linear", "position_based"])
    assert (r.conversions, r.value, r.null_journeys) == (2, Decimal("40.00"), 2)
    assert (r.unattributed_conversions, r.unattributed_value) == (1, Decimal("5.00"))
    d = Decimal
    assert credits(r, "first") == {
        "a": (2.0, d("40.00")),
        "b": (0.0, d("0.00")),
        "c": (0.0, d("0.00")),
    }
    assert credits(r, "last") == {
        "a": (1.0, d("30.00")),
        "b": (1.0, d("10.00")),
        "c": (0.0, d("0.00")),
    }
    # linear: a>b gives 1/2 each; a>c>a gives a 2/3, c 1/3
    assert credits(r, "linear") == {
        "a": (float(Fraction(1, 2) + Fraction(2, 3)), d("25.00")),
        "b": (0.5, d("5.00")),
        "c": (float(Fraction(1, 3)), d("10.00")),
    }
    # position-based 40/20/40: two touches split 50/50; a>c>a: a 0.4 + 0.4, c 0.2
    assert credits(r, "position_based") == {
        "a": (float(Fraction(1, 2) + Fraction(4, 5)), d("29.00")),
        "b": (0.5, d("5.00")),
        "c": (float(Fraction(1, 5)), d("6.00")),
    }
    # rows: per model by credited conversions, ties by name
    assert [c.channel for c in r.credits if c.model == "last"] == ["a", "b", "c"]
    assert sum(c.share for c in r.credits if c.model == "linear") == pytest.approx(1.0)


def test_markov_removal_effects_by_hand(hand):
    # order-1 chain: start->a 2, start->b 1, start->c 1; a->b, a->c, a->conv; b->conv, b->b,
    # b->null; c->a, c->null. Solving by hand: P = 1/2; without a: 1/8; b: 1/4; c: 3/8
    r = attribution(hand, models=["markov"])
    assert r.conversion_probability == pytest.approx(0.5, abs=1e-12)
    assert r.removal_effect() == pytest.approx({"a": 0.75, "b": 0.5, "c": 0.25}, abs=1e-12)
    got = credits(r, "markov")
    # conversions and value by removal-effect share: 1/2, 1/3, 1/6 of 2 and of 40.00
    assert got["a"][0] == pytest.approx(1.0, abs=1e-12)
    assert got["b"][0] == pytest.approx(2 / 3, abs=1e-12)
    assert got["c"][0] == pytest.approx(1 / 3, abs=1e-12)
    assert [got[c][1] for c in "abc"] == [Decimal("20.00"), Decimal("13.33"), Decimal("6.67")]
    assert (r.conversions, r.value, r.null_journeys) == (2, Decimal("40.00"), 2)


def test_markov_per_journey_allocation_by_hand(hand):
    r = attribution(hand, models=["markov"], markov_allocation="per_journey")
    got = credits(r, "markov")
    # a>b: RE .75 : .5 -> a .6, b .4; a>c>a: a 2 x .75, c .25 -> a 6/7, c 1/7
    assert got["a"][0] == pytest.approx(0.6 + 6 / 7, abs=1e-12)
    assert got["b"][0] == pytest.approx(0.4, abs=1e-12)
    assert got["c"][0] == pytest.approx(1 / 7, abs=1e-12)
    assert got["a"][1] == Decimal("31.71")  # 6.00 + 30 * 6/7 = 31.714...


def test_shapley_by_hand(hand):
    r = attribution(hand, models=["shapley"])
    # channel sets {a,b}: 1 conversion (10.00), {a,c}: 1 (30.00); v(S) = conversions of
    # journeys whose set is inside S: a is in both -> 1/2 + 1/2; b 1/2; c 1/2
    assert credits(r, "shapley") == {
        "a": (1.0, Decimal("20.00")),
        "b": (0.5, Decimal("5.00")),
        "c": (0.5, Decimal("15.00")),
    }
    assert (r.shapley_method, r.shapley_permutations) == ("exact", 0)


def test_time_decay_by_hand(duck):
    # ages 14, 7 and 0 days with a 7-day half-life: weights 1/4, 1/2, 1 -> 1/7, 2/7, 4/7
    rows = [ev("u", "visit", "a", 0), ev("u", "visit", "b", 7), ev("u", "visit", "c", 14),
            ev("u", "buy", None, 14, "70.00")]  # fmt: skip
    r = attribution(journey_of(duck, rows), models=["time_decay"], half_life_days=7)
    got = credits(r, "time_decay")
    assert [got[c][0] for c in "abc"] == pytest.approx([1 / 7, 2 / 7, 4 / 7], rel=1e-12)
    assert [got[c][1] for c in "abc"] == [Decimal("10.00"), Decimal("20.00"), Decimal("40.00")]
    assert (r.conversions, r.value) == (1, Decimal("70.00"))


def test_lookback_and_journey_boundaries(duck):
    rows = [
        ev("u", "visit", "old", 0), ev("u", "visit", "a", 25), ev("u", "buy", None, 31, "1"),
        # after the conversion: the next journey starts empty
        ev("u", "visit", "b", 32), ev("u", "buy", None, 33, "2"),
        ev("u", "buy", None, 33, "4"),  # a second conversion at once: no touch
        # null journey: lookback from its own last touch (day 100): day 60 is out
        ev("u", "visit", "z", 60), ev("u", "visit", "c", 80), ev("u", "visit", "d", 100),
    ]  # fmt: skip
    j = journey_of(duck, rows)
    paths = {p["path"]: p for p in attribution_paths(j, lookback_days=30).to_pylist()}
    assert set(paths) == {"a", "b", "c > d"}
    assert paths["c > d"]["total_null"] == 1
    r = attribution(j, models=["first"], lookback_days=30)
    assert (r.conversions, r.unattributed_conversions) == (2, 1)
    assert r.unattributed_value == Decimal("4.00")
    everything = {p["path"] for p in attribution_paths(j, lookback_days=None).to_pylist()}
    assert everything == {"old > a", "b", "z > c > d"}


def test_touchpoint_level(duck):
    rows = [ev("u", "ad_click", "social", 0), ev("u", "visit", "web", 1),
            ev("u", "noise", "web", 1.5), ev("u", "buy", "web", 2, "9.99")]  # fmt: skip
    j = journey_of(duck, rows)
    assert attribution_paths(j, level="touchpoint").column("path").to_pylist() == ["ad > site"]
    assert attribution_paths(j).column("path").to_pylist() == ["social > web > web"]


def test_session_touches(duck):
    hour = 1 / 24
    rows = [
        ev("u", "ad_click", "social", 0), ev("u", "visit", "web", hour / 6),
        ev("u", "visit", "web", hour / 3),
        ev("u", "visit", "email", 2 * hour), ev("u", "visit", "web", 2.1 * hour),
        ev("u", "visit", None, 5 * hour), ev("u", "visit", "web", 5.1 * hour),  # no entry channel
        ev("u", "buy", "web", 5.2 * hour, "3.00"),
    ]  # fmt: skip
    j = journey_of(duck, rows)
    assert attribution_paths(j, touch="session").column("path").to_pylist() == ["social > email"]
    assert attribution_paths(j).column("path").to_pylist() == [
        "social > web > web > email > web > web"
    ]
    r = attribution(j, touch="session", models=["last", "markov"])
    assert credits(r, "last") == {"email": (1.0, Decimal("3.00")), "social": (0.0, Decimal("0.00"))}
    assert r.settings["touch"] == "session"
    with pytest.raises(AttributionError, match="unknown touch 'visit'; allowed: event, session"):
        attribution(j, touch="visit")  # type: ignore[arg-type]


def test_collapse_repeats(duck):
    rows = [ev("u", "visit", c, i) for i, c in enumerate("aabba")] + [
        ev("u", "buy", None, 9, "1"),
        ev("v", "visit", "b", 0), ev("v", "visit", "b", 1),
    ]  # fmt: skip
    j = journey_of(duck, rows)
    assert attribution_paths(j, collapse_repeats=True).column("path").to_pylist() == [
        "a > b > a",
        "b",
    ]
    for order in (1, 2, 3):
        from_events = attribution(j, models=["markov"], markov_order=order, collapse_repeats=True)
        csv_rows = pa.table({"path": ["a > b > a", "b"], "total_conversions": [1, 0],
                             "total_null": [0, 1]})  # fmt: skip
        from_paths = attribution_from_paths(csv_rows, models=["markov"], markov_order=order)
        assert from_events.removal_effect() == from_paths.removal_effect()


# -- the same models on events and on their path file ------------------------------------------
def random_events(seed: int, customers: int = 40, channels: str = "abcde") -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for c in range(customers):
        t = 0.0
        for _ in range(rng.randrange(1, 12)):
            t += rng.choice([0.0, 0.5, 1, 3, 10])
            if rng.random() < 0.2:
                rows.append(ev(f"c{c}", "buy", rng.choice([None, "web"]), t,
                               f"{rng.randrange(1, 10000) / 100:.2f}"))  # fmt: skip
            else:
                rows.append(ev(f"c{c}", "visit", rng.choice(channels), t))
    for i, r in enumerate(rows):
        r["event_id"] = f"e{rng.randrange(10**6):06d}-{i}"
    return rows


def oracle_paths(rows, lookback_days, collapse):
    """Plain-Python journeys: split at conversions, lookback, optional collapse."""
    by_customer: dict[str, list] = {}
    for r in rows:
        by_customer.setdefault(r["customer_id"], []).append(r)
    out: dict[str, list] = {}
    lookback = dt.timedelta(days=lookback_days)
    for evs in by_customer.values():
        evs.sort(key=lambda r: (r["ts"], r["event_id"]))
        touches: list = []
        for r in evs:
            if r["event"] == "buy":
                journeys = [(touches, r["ts"], True, Decimal(r["revenue"]))]
                touches = []
            elif r["channel"] is not None:
                touches.append(r)
                continue
            else:
                continue
            for ts_list, end, converted, value in journeys:
                kept = [t["channel"] for t in ts_list if t["ts"] >= end - lookback]
                _add_oracle_path(out, kept, converted, value, collapse)
        if touches:
            end = touches[-1]["ts"]
            kept = [t["channel"] for t in touches if t["ts"] >= end - lookback]
            _add_oracle_path(out, kept, False, Decimal(0), collapse)
    return out


def _add_oracle_path(out, kept, converted, value, collapse):
    if collapse:
        kept = [c for i, c in enumerate(kept) if i == 0 or kept[i - 1] != c]
    if not kept:
        return
    acc = out.setdefault(" > ".join(kept), [0, Decimal("0.00"), 0])
    acc[0] += int(converted)
    acc[1] += value if converted else 0
    acc[2] += int(not converted)


@pytest.mark.parametrize(("seed", "collapse"), [(3, False), (4, True), (5, False)])
def test_paths_match_a_plain_python_oracle(duck, seed, collapse):
    rows = random_events(seed)
    got = attribution_paths(journey_of(duck, rows), lookback_days=4, collapse_repeats=collapse)
    expected = oracle_paths(rows, 4, collapse)
    assert {
        r["path"]: [r["total_conversions"], r["total_conversion_value"], r["total_null"]]
        for r in got.to_pylist()
    } == expected
    assert len(expected) > 20


@pytest.mark.parametrize("seed", [1, 2])
def test_events_and_their_path_file_agree(duck, tmp_path, seed):
    j = journey_of(duck, random_events(seed))
    kw = {"lookback_days": 20}
    file = write_paths(attribution_paths(j, **kw), tmp_path / "paths.csv")
    for order in (1, 2, 3, 4):
        a = attribution(j, models=PATH_MODELS, markov_order=order, **kw)
        b = attribution_from_paths(file, models=PATH_MODELS, markov_order=order)
        assert a.credits == b.credits
        assert a.removal_effects == b.removal_effects
        assert (a.conversions, a.value, a.null_journeys) == (b.conversions, b.value,
                                                             b.null_journeys)  # fmt: skip
        assert a.conversion_probability == pytest.approx(a.conversions / (a.conversions
                                                         + a.null_journeys), abs=1e-12)  # fmt: skip


def test_shuffled_events_give_identical_results(duck):
    rows = random_events(7, customers=60)
    first = attribution(journey_of(duck, rows), markov_order=2)
    random.Random(3).shuffle(rows)
    second = attribution(journey_of(duck, rows, "events2"), markov_order=2)
    assert first == second  # every float bit-identical


def test_shuffled_path_rows_give_identical_results():
    rng = random.Random(5)
    paths = {" > ".join(rng.choice("abcdefg") for _ in range(rng.randrange(1, 7)))
             for _ in range(300)}  # fmt: skip
    rows = [(p, rng.randrange(0, 5), rng.randrange(0, 5)) for p in sorted(paths)]

    def table(rs):
        return pa.table({"path": [r[0] for r in rs], "total_conversions": [r[1] for r in rs],
                         "total_conversion_value": [f"{r[1] * 1.5:.3f}" for r in rs],
                         "total_null": [r[2] for r in rs]})  # fmt: skip

    base = attribution_from_paths(table(rows), markov_order=3)
    for seed in range(3):
        random.Random(seed).shuffle(rows)
        assert attribution_from_paths(table(rows), markov_order=3) == base


# -- the Markov solver against independent computations ------------------------------------------
def fraction_solve(a: list[list[Fraction]], b: list[Fraction]) -> list[Fraction]:
    """Gauss-Jordan elimination in exact rational arithmetic."""
    n = len(b)
    m = [[*row, b[i]] for i, row in enumerate(a)]
    for col in range(n):
        piv = next(r for r in range(col, n) if m[r][col] != 0)
        m[col], m[piv] = m[piv], m[col]
        inv = 1 / m[col][col]
        m[col] = [v * inv for v in m[col]]
        for r in range(n):
            if r != col and m[r][col] != 0:
                f = m[r][col]
                m[r] = [v - f * w for v, w in zip(m[r], m[col], strict=True)]
    return [m[i][n] for i in range(n)]


def exact_conversion_probability(paths, order, removed=None) -> Fraction:
    """P(conversion) of the k-order chain, built directly from path tuples, in fractions."""
    counts: dict[tuple, dict] = {}
    start = ("<start>",)
    for path, conv, null in paths:
        if conv + null == 0:
            continue
        state = start
        for i in range(len(path)):
            nxt = tuple(path[max(0, i + 1 - order) : i + 1])
            counts.setdefault(state, {}).setdefault(nxt, 0)
            counts[state][nxt] += conv + null
            state = nxt
        counts.setdefault(state, {}).setdefault("conv", 0)
        counts[state]["conv"] += conv
        counts[state].setdefault("null", 0)
        counts[state]["null"] += null
    states = sorted(counts, key=str)
    if removed is not None:
        states = [s for s in states if s == start or removed not in s]
    index = {s: i for i, s in enumerate(states)}
    n = len(states)
    a = [[Fraction(int(i == j)) for j in range(n)] for i in range(n)]
    b = [Fraction(0)] * n
    for s in states:
        out = counts[s]
        total = sum(out.values())
        for nxt, c in out.items():
            if nxt == "conv":
                b[index[s]] += Fraction(c, total)
            elif nxt != "null" and nxt in index:
                a[index[s]][index[nxt]] -= Fraction(c, total)
    return fraction_solve(a, b)[index[start]]


def random_path_set(seed, n_paths=25, channels="abcd", max_len=5):
    rng = random.Random(seed)
    out = []
    for _ in range(n_paths):
        path = tuple(rng.choice(channels) for _ in range(rng.randrange(1, max_len + 1)))
        out.append((path, rng.randrange(0, 4), rng.randrange(0, 4)))
    out.append((("a",), 1, 1))  # at least one conversion
    return out


def path_table(paths):
    return pa.table({"path": [" > ".join(p) for p, _, _ in paths],
                     "total_conversions": [c for _, c, _ in paths],
                     "total_null": [n for _, _, n in paths]})  # fmt: skip


@pytest.mark.parametrize(("seed", "order"), [(1, 1), (2, 1), (3, 2), (4, 3), (5, 4)])
def test_markov_equals_exact_rational_solution(seed, order):
    paths = random_path_set(seed)
    r = attribution_from_paths(path_table(paths), models=["markov"], markov_order=order)
    p = exact_conversion_probability(paths, order)
    assert r.conversion_probability == pytest.approx(float(p), abs=1e-12)
    # the empirical chain reproduces the observed conversion rate
    conv = sum(c for _, c, _ in paths)
    assert p == Fraction(conv, conv + sum(n for _, _, n in paths))
    for row in r.removal_effects:
        without = exact_conversion_probability(paths, order, removed=row.channel)
        assert row.conversion_probability_without == pytest.approx(float(without), abs=1e-9)
        assert row.removal_effect == pytest.approx(float(1 - without / p), abs=1e-9)


def test_markov_equals_fundamental_matrix_on_a_tiny_chain():
    # transient start, a, b; absorbing conv, null. B = (I - Q)^-1 R gives absorption probs
    paths = [(("a", "b"), 3, 1), (("b",), 1, 2), (("a",), 0, 2), (("b", "a"), 2, 0)]
    ps = read_paths(path_table(paths))
    sol = am.solve_markov(am.transitions_from_paths(ps, 1))
    counts = {"s": {"a": 6, "b": 5}, "a": {"b": 4, "conv": 2, "null": 2},
              "b": {"a": 2, "conv": 4, "null": 3}}  # fmt: skip
    order = ["s", "a", "b"]
    q = np.array([[counts[i].get(j, 0) / sum(counts[i].values()) for j in order] for i in order])
    r = np.array([[counts[i].get("conv", 0) / sum(counts[i].values())] for i in order])
    b = np.linalg.inv(np.eye(3) - q) @ r
    assert sol.conversion_probability == pytest.approx(b[0, 0], abs=1e-12)
    assert b[0, 0] == pytest.approx(6 / 11, abs=1e-12)  # the observed conversion rate
    # without b: only start -> a -> conv remains, 6/11 * 2/8
    assert sol.without[ps.channels.index("b")] == pytest.approx(6 / 11 * 2 / 8, abs=1e-12)


def test_markov_sparse_and_dense_solvers_agree(monkeypatch):
    paths = random_path_set(9, n_paths=300, channels="abcdefgh", max_len=6)
    ps = read_paths(path_table(paths))
    trans = am.transitions_from_paths(ps, 3)
    dense = am.solve_markov(trans)
    monkeypatch.setattr(am, "_DENSE_MAX_STATES", 0)
    sparse = am.solve_markov(trans)
    assert dense.n_states > 100
    np.testing.assert_allclose(sparse.removal_effects, dense.removal_effects, atol=1e-12)


# -- Shapley ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shapley_enumeration_equals_the_closed_form_exactly(seed):
    paths = random_path_set(seed, n_paths=60, channels="abcdefghij", max_len=6)
    ps = read_paths(path_table(paths))
    enumerated = am.shapley(ps, max_exact=12)
    closed = am.shapley(ps, max_exact=0)  # above max_exact the dividend formula is used
    assert enumerated.exact_conversions == closed.exact_conversions
    assert sum(enumerated.exact_conversions.values()) == sum(c for _, c, _ in paths)


def brute_force_rate_shapley(paths, channels):
    def v(coalition):
        conv = sum(c for p, c, _ in paths if set(p) <= coalition)
        total = conv + sum(n for p, _, n in paths if set(p) <= coalition)
        return Fraction(conv, total) if total else Fraction(0)

    phi = dict.fromkeys(channels, Fraction(0))
    perms = list(itertools.permutations(channels))
    for perm in perms:
        seen: set[str] = set()
        for ch in perm:
            before = v(seen)
            seen.add(ch)
            phi[ch] += v(seen) - before
    return {c: x / len(perms) for c, x in phi.items()}


def test_shapley_conversion_rate_exact_equals_brute_force():
    paths = random_path_set(11, n_paths=30, channels="abcd", max_len=4)
    ps = read_paths(path_table(paths))
    sol = am.shapley(ps, value="conversion_rate")
    phi = brute_force_rate_shapley(paths, ps.channels)
    total = sum(phi.values())
    conv = sum(c for _, c, _ in paths)
    expected = [float(phi[c] / total * conv) for c in ps.channels]
    assert sol.method == "exact"
    np.testing.assert_allclose(sol.conversions, expected, rtol=1e-12)


def test_shapley_sampling_is_seeded_and_close_to_exact():
    paths = random_path_set(12, n_paths=200, channels="abcdefghijklmn", max_len=4)
    ps = read_paths(path_table(paths))
    assert len(ps.channels) == 14
    a = am.shapley(ps, value="conversion_rate", permutations=3000, seed=1)
    b = am.shapley(ps, value="conversion_rate", permutations=3000, seed=1)
    c = am.shapley(ps, value="conversion_rate", permutations=3000, seed=2)
    exact = am.shapley(ps, value="conversion_rate", max_exact=14)
    assert (a.method, exact.method) == ("sampled", "exact")
    np.testing.assert_array_equal(a.conversions, b.conversions)
    assert not np.array_equal(a.conversions, c.conversions)
    total = sum(c for _, c, _ in paths)
    assert np.abs(a.conversions - exact.conversions).max() < 0.02 * total
    assert a.conversions.sum() == pytest.approx(total)


# -- the path format -------------------------------------------------------------------------
CA_SAMPLE = """path;total_conversions;total_conversion_value;total_null
eta > iota > alpha > eta;1;0.244;3
iota > iota > iota > iota;2;3.195;6
alpha > iota > alpha > alpha > alpha > iota > alpha > alpha > alpha > alpha > alpha;2;6.754;6
beta > eta;1;2.402;3
iota > eta > theta > lambda > lambda > theta > lambda;0;0;2
"""


def test_channelattribution_format_by_hand(tmp_path):
    f = tmp_path / "Data.csv"
    f.write_text(CA_SAMPLE)
    r = attribution_from_paths(f, models=["first", "last", "linear"])
    assert r.value == Decimal("12.595")  # three decimals in, three decimals out
    assert (r.conversions, r.null_journeys, r.distinct_paths) == (6, 20, 5)
    first = credits(r, "first")
    assert first["eta"] == (1.0, Decimal("0.244"))
    assert first["iota"] == (2.0, Decimal("3.195"))
    assert first["alpha"] == (2.0, Decimal("6.754"))
    assert first["beta"] == (1.0, Decimal("2.402"))
    lin = credits(r, "linear")
    # eta: 2/4 of path 1 + 1/2 of path 4; alpha: 1/4 + 2 * 9/11
    assert lin["eta"][0] == float(Fraction(1, 2) + Fraction(1, 2))
    assert lin["alpha"][0] == float(Fraction(1, 4) + 2 * Fraction(9, 11))
    assert lin["alpha"][1] == Decimal("5.587")  # 0.244/4 + 6.754 * 9/11 = 5.5870...


def test_paths_from_pandas_and_empty_paths():
    import pandas as pd

    df = pd.DataFrame(
        {
            "path": ["a > b", "", "b"],
            "total_conversions": [2, 3, 1],
            "total_conversion_value": [2.5, 4.0, 1.0],
            "total_null": [1, 0, 0],
        }
    )
    r = attribution_from_paths(df, models=["last"])
    assert (r.conversions, r.unattributed_conversions) == (3, 3)
    assert r.unattributed_value == Decimal("4.00")
    assert credits(r, "last")["b"] == (3.0, Decimal("3.50"))


def test_path_file_and_arrow_table_read_the_same(tmp_path):
    # the file reader parses text in Python, tables go through Arrow: same PathSet
    rows = [
        (" b >  a > > c ", "2", "1.50", "1"),
        ("", "1", "0.999", "0"),
        ("c>a", "0", "", "4"),
        ("a > a > b", "3", "12", ""),
    ]
    f = tmp_path / "paths.csv"
    f.write_text("path;total_conversions;total_conversion_value;total_null\n"
                 + "".join(";".join(r) + "\n" for r in rows))  # fmt: skip
    cols = zip(*rows, strict=True)
    names = ["path", "total_conversions", "total_conversion_value", "total_null"]
    table = pa.table(dict(zip(names, (list(c) for c in cols), strict=True)))
    a, b = read_paths(f), read_paths(table)
    assert a.channels == b.channels == ("a", "b", "c")  # "c>a" splits too
    for name in ("offsets", "codes", "conversions", "value", "nulls"):
        assert getattr(a, name).tolist() == getattr(b, name).tolist(), name
    assert a.value_scale == b.value_scale == 3
    assert a.value.tolist() == [1500, 999, 0, 12000]


def test_path_input_errors(tmp_path):
    with pytest.raises(AttributionError, match="time_decay needs the time of each touch"):
        attribution_from_paths(pa.table({"path": ["a"], "total_conversions": [1]}),
                               models=["time_decay"])  # fmt: skip
    with pytest.raises(AttributionError, match=r"lacks total_conversions.*path;total_conv"):
        attribution_from_paths(pa.table({"path": ["a"]}))
    with pytest.raises(AttributionError, match=r"row 2: '1\.5' must be a whole number"):
        attribution_from_paths(pa.table({"path": ["a", "b"], "total_conversions": ["1", "1.5"]}))
    bad = tmp_path / "bad.csv"
    bad.write_text("path,total_conversions\na > b,1\n")
    with pytest.raises(AttributionError, match="lacks path, total_conversions; it has path,tot"):
        attribution_from_paths(bad)
    bad.write_text("path;total_conversions\na > b;1;7\n")
    with pytest.raises(InputDataError, match="line 2 has a different number of fields"):
        attribution_from_paths(bad)
    with pytest.raises(InputDataError, match="no such path file"):
        attribution_from_paths(tmp_path / "missing.csv")


def test_argument_errors(hand):
    with pytest.raises(AttributionError, match=r"unknown model.*'lastt'.*allowed: first"):
        attribution(hand, models=["lastt"])
    with pytest.raises(AttributionError, match="markov_order must be 1, 2, 3 or 4, got 5"):
        attribution(hand, models=["markov"], markov_order=5)
    with pytest.raises(AttributionError, match="unknown level 'campaign'"):
        attribution(hand, level="campaign")  # type: ignore[arg-type]
    with pytest.raises(AttributionError, match="half_life_days must be > 0"):
        attribution(hand, models=["time_decay"], half_life_days=0)
    assert issubclass(AttributionError, ValueError)


def test_result_exports(hand, tmp_path):
    r = attribution(hand, models=["first", "markov"])
    df = r.to_pandas()
    assert list(df.columns) == ["model", "channel", "conversions", "value", "share"]
    assert len(df) == 6
    r.write(tmp_path / "a.csv")
    r.write(tmp_path / "a.json")
    data = json.loads((tmp_path / "a.json").read_text())
    assert data["removal_effects"][0]["channel"] == "a"
    assert (data["conversions"], data["markov_order"]) == (2, 1)


def test_no_conversions_at_all(duck):
    j = journey_of(duck, [ev("u", "visit", "a", 0), ev("u", "visit", "b", 1)])
    r = attribution(j)
    assert (r.conversions, r.null_journeys) == (0, 1)
    assert all(c.conversions == 0 for c in r.credits)
    assert r.removal_effect() == {"a": 0.0, "b": 0.0}


def test_every_expression_compiles_for_duckdb_and_spark(hand):
    import ibis

    ibis.pyspark  # registers the PySpark compiler's options (engine.md P11)  # noqa: B018
    names = touch_names(hand)
    exprs = [paths_expr(hand, names), time_decay_expr(hand, names)]
    exprs += [transitions_expr(hand, names, order=k, collapse_repeats=c)
              for k in (1, 2, 4) for c in (False, True)]  # fmt: skip
    exprs.append(transitions_expr(hand, names, lookback_days=None))
    for e in exprs:
        sql = compile_sql(e)
        assert set(sql) == {"duckdb", "pyspark"}


def test_models_constant_lists_every_model():
    assert set(MODELS) - set(PATH_MODELS) == {"time_decay"}
    assert math.isclose(sum([0.4, 0.2, 0.4]), 1.0)


TRANSACTIONAL_SPEC = """\
version: 1
model: three-stage
touchpoints:
  - {id: ad, phase: before_purchase, channel: social_ads, match: {event: ad_click}}
  - {id: mail, phase: before_purchase, channel: email, match: {event: newsletter_click}}
  - {id: order, phase: during_purchase, match: {event: order_completed}}
  - {id: shipping, phase: after_purchase, channel: email, transactional: true,
     match: {event: order_shipped}}
goal: {match: {event: order_completed}}
"""


def test_transactional_touchpoints_are_no_marketing_touches(tmp_path):
    """A shipping notice (channel email, transactional) opens a session before the next order,
    but it brought nobody: first/last touch go to the ad and the newsletter, not to it."""
    from journeymap import Journeymap

    (tmp_path / "journey.yaml").write_text(TRANSACTIONAL_SPEC, encoding="utf-8")
    rows = [
        # a: ad → order; shipping notice days later; then shipping opens the session of order 2
        ("a", "2026-01-01T10:00", "ad_click", "social_ads", None),
        ("a", "2026-01-01T10:05", "order_completed", None, 10),
        ("a", "2026-01-03T09:00", "order_shipped", "email", None),
        ("a", "2026-01-03T09:10", "order_completed", None, 20),
        # b: newsletter → order; the shipping notice opens a session that converts nothing
        ("b", "2026-01-02T10:00", "newsletter_click", "email", None),
        ("b", "2026-01-02T10:02", "order_completed", None, 30),
        ("b", "2026-01-04T08:00", "order_shipped", "email", None),
    ]
    events = make_events(
        [
            {"customer_id": c, "ts": f"{t}:00+00:00", "event": e, "channel": ch, "revenue": r}
            for c, t, e, ch, r in rows
        ]
    )
    with Journeymap(tmp_path) as jm:
        jm.append(events)
        res = jm.attribution(models=["first", "last"])
        credit = {(c.model, c.channel): c.conversions for c in res.credits}
        # order a1 ← social_ads, order b1 ← email (newsletter); order a2 has no marketing touch
        # in its journey (the session it came in was opened by the shipping notice)
        assert credit == {
            ("first", "social_ads"): 1.0,
            ("first", "email"): 1.0,
            ("last", "social_ads"): 1.0,
            ("last", "email"): 1.0,
        }
        assert res.unattributed_conversions == 1
        assert res.unattributed_value == Decimal("20")
        everything = jm.attribution(models=["first"], include_transactional=True)
        credit_all = {c.channel: c.conversions for c in everything.credits}
        assert credit_all == {"social_ads": 1.0, "email": 2.0}
        assert everything.unattributed_conversions == 0
