"""Journey breaks: statistics by hand and against SciPy, trials on a hand-built journey, and
recovery of the simulator's injected breaks.

Matching rule of the ground-truth test (precision and recall): a reported break *corresponds*
to an injected one when

* the kind fits: a ``campaign_bounce`` break names the injected campaign; a step-exit or
  process break starts at the touchpoint of the injected event (``payment_start`` → the
  touchpoint ``payment``), and is not a campaign bounce;
* its window, if it has one, overlaps the injected window;
* its segment (where it concentrates, which includes where it was detected) shares at least
  one ``key = value`` with the injected segment (``device = mobile``, ``campaign =
  tiktok_flash``, ...).

Precision = reported breaks that correspond to an injected break / reported breaks.
Recall = injected breaks with at least one corresponding report / injected breaks.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats

from conftest import DEMO_SPEC, make_events, register
from journeymap.analytics.break_detection import BreakTest, merge_findings, run_break_tests
from journeymap.analytics.breaks import find_breaks
from journeymap.analytics.concentration import best_segment, constant_traits, cube_expr
from journeymap.analytics.engine import connect_duckdb
from journeymap.analytics.journey import build_journey, compile_sql
from journeymap.analytics.stats import (
    benjamini_hochberg,
    binomial_loglik,
    proportion_excess_test,
    window_scan,
)
from journeymap.analytics.trials import (
    Process,
    break_rates_expr,
    default_exit_touchpoints,
    default_processes,
    sessions_expr,
    trials_expr,
)
from journeymap.model.spec import load_spec, parse_spec
from journeymap.simulate import load_truth, simulate_shop

SPEC = parse_spec(
    """
model: six-phase
touchpoints:
  - {id: promo_ad, phase: awareness, channel: social_ads, match: {event: ad_click, campaign: promo}}
  - {id: ad, phase: awareness, channel: search_ads, match: {event: ad_click}}
  - {id: mention, phase: awareness, kind: indirect}
  - {id: product, phase: consideration, match: {event: product_view}}
  - {id: cart, phase: preference, match: {event: add_to_cart}}
  - {id: checkout, phase: purchase}
  - {id: payment, phase: purchase, match: {event: payment_start}}
  - {id: order, phase: purchase, match: {event: order_completed}}
  - {id: review, phase: after_sale}
goal: {match: {event: order_completed}}
"""
)
T0 = dt.datetime(2026, 3, 2, 12, tzinfo=dt.UTC)


def ev(customer, event, minutes, device=None, campaign=None, revenue=None, props=None):
    return {
        "customer_id": customer,
        "event": event,
        "ts": T0 + dt.timedelta(minutes=minutes),
        "device": device,
        "campaign": campaign,
        "revenue": revenue,
        "properties": props,
    }


HAND = [
    # c1 (mobile): promo ad, product, cart, leaves at the cart; no bounce (2 further events)
    ev("c1", "ad_click", 0, "mobile", "promo"),
    ev("c1", "product_view", 1, "mobile"),
    ev("c1", "add_to_cart", 2, "mobile"),
    # c2 (desktop): brand ad and gone: a bounce (0 further events), exit at `ad`
    ev("c2", "ad_click", 0, "desktop", "brand"),
    # c3 (mobile): promo ad and one product view: a bounce (1 further event), exit at `product`
    ev("c3", "ad_click", 0, "mobile", "promo"),
    ev("c3", "product_view", 1, "mobile"),
    # c4 (desktop): buys in one session
    ev("c4", "product_view", 0, "desktop"),
    ev("c4", "add_to_cart", 1, "desktop"),
    ev("c4", "checkout", 2, "desktop"),
    ev("c4", "payment_start", 3, "desktop", props='{"method":"card"}'),
    ev("c4", "order_completed", 4, "desktop", revenue="50.00"),
    # c5 (mobile): pays, the order comes 50 minutes later in a new session (within the hour)
    ev("c5", "product_view", 0, "mobile"),
    ev("c5", "checkout", 1, "mobile"),
    ev("c5", "payment_start", 2, "mobile", props='{"method":"wallet"}'),
    ev("c5", "order_completed", 52, "mobile", revenue="20.00"),
    # c6 (mobile): two payments; the order comes 2 hours after the second: both unfinished
    ev("c6", "payment_start", 0, "mobile", props='{"method":"wallet"}'),
    ev("c6", "payment_start", 300, "mobile", props='{"method":"wallet"}'),
    ev("c6", "order_completed", 420, "mobile", revenue="30.00"),
]


@pytest.fixture
def journey(duck):
    return build_journey(register(duck, make_events(HAND)), SPEC)


# -- statistics ------------------------------------------------------------------------------
def test_benjamini_hochberg_by_hand_and_against_scipy():
    p = [0.01, 0.04, 0.03, 0.2]
    # sorted 0.01, 0.03, 0.04, 0.2 -> 0.04, 0.06, 0.0533, 0.2 -> running min from the end
    expected = [0.04, 0.16 / 3, 0.16 / 3, 0.2]
    np.testing.assert_allclose(benjamini_hochberg(p), expected)
    rng = np.random.default_rng(1)
    many = rng.uniform(size=50) ** 3
    np.testing.assert_allclose(benjamini_hochberg(many), stats.false_discovery_control(many))
    q = benjamini_hochberg([0.5, float("nan"), 0.01])
    assert np.isnan(q[1])
    np.testing.assert_allclose(q[[0, 2]], [0.5, 0.02])


def test_proportion_test_matches_chi_square():
    z, p = proportion_excess_test(30, 100, 10, 100)
    pooled = 40 / 200
    assert float(z) == pytest.approx(0.2 / np.sqrt(pooled * (1 - pooled) * 0.02))
    chi2, p_two, _, _ = stats.chi2_contingency([[30, 70], [10, 90]], correction=False)
    assert float(z) ** 2 == pytest.approx(chi2)
    assert float(p) == pytest.approx(p_two / 2)
    # lower rate: one-sided p above 0.5; empty groups: p = 1
    assert float(proportion_excess_test(10, 100, 30, 100)[1]) > 0.5
    assert float(proportion_excess_test(0, 0, 3, 10)[1]) == 1.0


def test_window_scan_finds_the_window_by_hand():
    n = np.full(30, 100)
    x = np.full(30, 10)
    x[10:15] = 50
    w = window_scan(x, n)
    assert w is not None
    assert (w.start, w.end) == (10, 15)
    assert (w.n_in, w.x_in, w.n_out, w.x_out) == (500, 250, 2500, 250)
    assert w.rate_in == 0.5
    assert w.rate_out == 0.1
    # the statistic by hand: 2 * (ll_in + ll_out - ll_all)
    ll = lambda x, n: x * np.log(x / n) + (n - x) * np.log(1 - x / n)  # noqa: E731
    lr = 2 * (ll(250, 500) + ll(250, 2500) - ll(500, 3000))
    assert w.dispersion == 1.0  # every day sits exactly on its fitted rate
    assert w.statistic == pytest.approx(lr)
    windows = 30 * 31 // 2 - 1
    assert w.windows_scanned == windows
    assert w.p_value == pytest.approx(min(1.0, windows * stats.chi2.sf(lr, 1)))
    np.testing.assert_allclose(binomial_loglik([250], [500]), [ll(250, 500)])


def test_window_scan_runs_to_the_end_and_ignores_drops():
    n = np.full(20, 50)
    x = np.full(20, 5)
    x[12:] = 20
    w = window_scan(x, n)
    assert w is not None
    assert (w.start, w.end) == (12, 20)
    x = np.full(20, 20)
    x[5:8] = 0  # a drop is not a break
    w = window_scan(x, n)
    assert w is None or w.rate_in <= 0.4 + 1e-9
    assert window_scan(np.zeros(20), np.zeros(20)) is None


def test_overdispersion_weakens_noisy_series():
    rng = np.random.default_rng(3)
    n = np.full(60, 200)
    noisy = rng.binomial(200, rng.uniform(0.05, 0.35, size=60))
    w = window_scan(noisy, n)
    assert w is not None
    assert w.dispersion > 3


# -- trials on a hand-built journey -------------------------------------------------------------
def test_defaults_from_the_spec():
    assert default_processes(SPEC) == [Process("payment", None, 60)]
    # direct touchpoints up to the goal's phase, without the goal, process starts, indirect
    assert default_exit_touchpoints(SPEC, default_processes(SPEC)) == [
        "promo_ad",
        "ad",
        "product",
        "cart",
        "checkout",
    ]


def _rates(journey, **kw):
    tps = ["promo_ad", "ad", "product", "cart", "checkout"]
    tr = trials_expr(journey, touchpoints=tps, processes=default_processes(SPEC), **kw)
    df = break_rates_expr(tr).to_pyarrow().to_pandas()
    return df.groupby(["kind", "subject"])[["n", "exits", "conversions"]].sum()


def test_trial_rates_by_hand(journey):
    r = _rates(journey)
    exits = {k: (int(v["n"]), int(v["exits"])) for k, v in r.iterrows()}
    assert exits[("step_exit", "product")] == (4, 1)  # c1, c3 (exit), c4, c5
    assert exits[("step_exit", "cart")] == (2, 1)  # c1 (exit), c4
    assert exits[("step_exit", "ad")] == (1, 1)  # c2
    assert exits[("step_exit", "promo_ad")] == (2, 0)
    assert exits[("step_exit", "checkout")] == (2, 0)  # c5's session ends at payment
    assert exits[("campaign_bounce", "promo")] == (2, 1)  # c3 bounced, c1 did not
    assert exits[("campaign_bounce", "brand")] == (1, 1)
    # c4 and c5 finished within the hour; c6's two payments did not
    assert exits[("process_abandon", "payment->goal")] == (4, 2)
    assert int(r.loc[("step_exit", "checkout"), "conversions"]) == 1  # only c4 in-session
    assert int(r.loc[("process_abandon", "payment->goal"), "conversions"]) == 2


def test_process_limit_and_end_touchpoint(journey):
    tr = trials_expr(
        journey,
        processes=[Process("payment", None, 30), Process("checkout", "payment", 5)],
        campaigns=False,
    )
    df = break_rates_expr(tr, segment_by=()).to_pyarrow().to_pandas()
    got = df.groupby("subject")[["n", "exits"]].sum()
    assert got.loc["payment->goal"].tolist() == [4, 3]  # c5's order 50 minutes later: too late
    assert got.loc["checkout->payment"].tolist() == [2, 0]


def test_rates_by_device_and_day(journey):
    tr = trials_expr(journey, touchpoints=["product"], campaigns=False)
    df = break_rates_expr(tr, ["device", "channel"]).to_pyarrow().to_pandas()
    mobile = df[df.device == "mobile"]
    assert int(mobile.n.sum()) == 3
    assert int(mobile.exits.sum()) == 1
    assert set(df.day) == {(T0 - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)).days}
    assert str(df.revenue.dtype) == "object"  # DECIMAL stays exact


def test_sessions_and_persona_segment(journey, duck):
    s = sessions_expr(journey).to_pyarrow().to_pandas().set_index(["customer_id", "session_index"])
    assert s.loc[("c1", 1), "last_touchpoint"] == "cart"
    assert s.loc[("c1", 1), "entry_campaign"] == "promo"
    assert s.loc[("c2", 1), "campaign"] == "brand"
    assert s.loc[("c6", 2), "device"] == "mobile"
    personas = register(duck, pa.table({"customer_id": ["c1", "c3"], "persona": ["fans"] * 2}), "p")
    tr = trials_expr(journey, touchpoints=["product"], campaigns=False, personas=personas)
    df = break_rates_expr(tr, ["persona"]).to_pyarrow().to_pandas().groupby("persona").n.sum()
    assert df.to_dict() == {"(none)": 2, "fans": 2}


def test_expressions_compile_for_both_engines(journey):
    tr = trials_expr(
        journey,
        touchpoints=["product", "cart"],
        processes=[Process("payment")],
        with_properties=True,
    )
    for expr in (
        tr,
        break_rates_expr(tr, ["device", "campaign"]),
        cube_expr(tr, tr.day > 0, ["method"]),
    ):
        sql = compile_sql(expr)
        assert set(sql) == {"duckdb", "pyspark"}
        assert all(len(s) > 100 for s in sql.values())


# -- the tests on hand-made aggregates --------------------------------------------------------
def _frame(rows):
    df = pd.DataFrame(rows, columns=["kind", "subject", "day", "device", "n", "exits"])
    df["conversions"] = df["n"] - df["exits"]
    df["revenue_cents"] = df["conversions"] * 5000
    return df


def test_segment_and_campaign_tests_by_hand():
    rows = [("step_exit", "size", d, "mobile", 10, 3) for d in range(10)]
    rows += [("step_exit", "size", d, "desktop", 10, 1) for d in range(10)]
    rows += [("campaign_bounce", "tiktok", d, "mobile", 20, 17) for d in range(3)]
    rows += [("campaign_bounce", "brand", d, "desktop", 100, 30) for d in range(3)]
    tests = run_break_tests(_frame(rows), min_excess_exits=5)
    seg = {(t.subject, tuple(t.segment.items()), t.detection): t for t in tests}
    mobile = seg[("size", (("device", "mobile"),), "segment")]
    assert (mobile.trials, mobile.exits, mobile.baseline_trials) == (100, 30, 100)
    assert mobile.rate == 0.3
    assert mobile.expected_rate == 0.1
    _, p_two, _, _ = stats.chi2_contingency([[30, 70], [10, 90]], correction=False)
    assert mobile.p_value == pytest.approx(p_two / 2)
    tiktok = seg[("tiktok", (("campaign", "tiktok"),), "campaign")]
    assert (tiktok.trials, tiktok.exits, tiktok.expected_rate) == (60, 51, 0.3)
    _, p_two, _, _ = stats.chi2_contingency([[51, 9], [90, 210]], correction=False)
    assert tiktok.p_value == pytest.approx(p_two / 2)
    # q-values are BH over every test run, and both breaks pass
    np.testing.assert_allclose(
        [t.q_value for t in tests], benjamini_hochberg([t.p_value for t in tests])
    )
    assert mobile.significant
    assert tiktok.significant
    assert not seg[("size", (("device", "desktop"),), "segment")].significant
    # lost conversions use the baseline's conversion rate and order value
    assert tiktok.baseline_conversions == 210
    assert tiktok.baseline_revenue_cents == 210 * 5000


def test_effect_size_thresholds_keep_small_effects_out():
    rows = [("step_exit", "page", d, "mobile", 1000, 450) for d in range(10)]
    rows += [("step_exit", "page", d, "desktop", 1000, 400) for d in range(10)]
    tests = run_break_tests(_frame(rows))
    mobile = next(t for t in tests if t.segment == {"device": "mobile"} and t.start_day is None)
    assert mobile.q_value < 1e-6  # highly significant ...
    assert mobile.lift == pytest.approx(1.125)
    assert not mobile.significant  # ... but only 1.1x: not a break
    loose = run_break_tests(_frame(rows), min_lift=1.1, min_excess=0.01)
    assert any(t.significant for t in loose)


def test_change_point_and_merging():
    rows = [("step_exit", "size", d, "mobile", 20, 16 if 5 <= d < 9 else 2) for d in range(30)]
    rows += [("step_exit", "size", d, "desktop", 20, 2) for d in range(30)]
    tests = run_break_tests(_frame(rows))
    cps = [t for t in tests if t.detection == "change_point" and t.significant]
    assert {(t.start_day, t.end_day) for t in cps} == {(5, 9)}
    merged = merge_findings(tests)
    assert len(merged) == 1
    head, related = merged[0]
    assert head.segment == {"device": "mobile"}
    assert (head.start_day, head.end_day) == (5, 9)
    assert (head.trials, head.exits) == (80, 64)
    assert {(t.detection, tuple(t.segment.items())) for t in related} >= {
        ("change_point", ()),
        ("segment", (("device", "mobile"),)),
    }


def test_long_histories_are_scanned_in_bins():
    days = 1500  # more than MAX_SCAN_BINS: bins of 3 days
    rows = [("step_exit", "pay", d, "mobile", 10, 8 if 702 <= d < 762 else 1) for d in range(days)]
    tests = run_break_tests(_frame(rows))
    cp = next(t for t in tests if t.detection == "change_point" and t.segment == {})
    assert (cp.start_day, cp.end_day) == (702, 762)  # bin edges 702 = 234 * 3, 762 = 254 * 3
    assert cp.trials == 600
    assert cp.exits == 480
    assert cp.significant


def test_merge_keeps_separate_segments_and_windows():
    def t(seg, start, end, stat):
        return BreakTest(
            "step_exit",
            "x",
            "change_point",
            seg,
            start,
            end,
            10,
            5,
            0.5,
            0.1,
            10,
            5,
            9,
            0,
            stat,
            1e-9,
            1e-9,
            True,
        )

    merged = merge_findings(
        [
            t({"device": "mobile"}, 0, 5, 50),
            t({"device": "desktop"}, 0, 5, 40),
            t({"device": "mobile"}, 10, 15, 30),
            t({}, 2, 4, 20),
        ]
    )
    assert [(h.segment, h.start_day) for h, _ in merged] == [
        ({"device": "mobile"}, 0),
        ({"device": "desktop"}, 0),
        ({"device": "mobile"}, 10),
    ]
    assert len(merged[0][1]) == 1  # the all-devices window 2..4 overlaps the strongest


def test_concentration_rule_by_hand():
    cube = pd.DataFrame(
        [
            # payment in the window: wallet on mobile breaks, card does not
            (True, "mobile", "wallet", 100, 50),
            (True, "mobile", "card", 100, 5),
            (True, "desktop", "card", 200, 10),
            (False, "mobile", "wallet", 500, 25),
            (False, "desktop", "card", 500, 25),
        ],
        columns=["in_cell", "device", "property:method", "n", "exits"],
    )
    cell = cube[cube.in_cell]
    seg, n, x, share = best_segment(cell, ["device", "property:method"], 0.05)
    # excess: 65 - 400 * 0.05 = 45; wallet holds 50 - 5 = 45 (100 %), mobile 55 - 10 = 45
    assert seg == {"property:method": "wallet"}  # the highest rate of those holding 80 %
    assert (n, x, share) == (100, 50, pytest.approx(1.0))
    assert best_segment(cell, ["device"], 0.5) == ({}, 400, 65, 1.0)  # nothing above expected
    constant = pd.DataFrame(
        [(True, "size_unavailable", 100, 60), (False, "(none)", 900, 70)],
        columns=["in_cell", "property:error", "n", "exits"],
    )
    assert constant_traits(constant, ["property:error"]) == {"property:error": "size_unavailable"}


def test_find_breaks_errors_name_the_allowed_values(journey):
    with pytest.raises(ValueError, match=r"unknown touchpoint.*nope.*the spec has"):
        find_breaks(journey, SPEC, touchpoints=["nope"])
    with pytest.raises(ValueError, match=r"cannot segment breaks by 'persona'.*persona needs"):
        find_breaks(journey, SPEC, segment_by=["persona"])
    with pytest.raises(ValueError, match="process nope->goal: unknown touchpoint 'nope'"):
        find_breaks(journey, SPEC, processes=[Process("nope")])
    with pytest.raises(ValueError, match="unknown arrival phase 'entry'; the spec has awareness"):
        find_breaks(journey, SPEC, arrival_phase="entry")


def test_find_breaks_on_a_tiny_journey_reports_nothing(journey):
    assert find_breaks(journey, SPEC).tests == []  # fewer than min_trials everywhere
    r = find_breaks(journey, SPEC, min_trials=1)
    assert r.breaks == []  # far below min_excess_exits
    assert len(r.tests) > 0
    assert r.to_dict()["breaks"] == []


# -- ground truth --------------------------------------------------------------------------------
CUSTOMERS = 10_000
SEED = 7


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    out = tmp_path_factory.mktemp("breaks-shop")
    sim = simulate_shop(out, customers=CUSTOMERS, seed=SEED)
    con = connect_duckdb()
    spec = load_spec(DEMO_SPEC)
    events = con.read_parquet(str(sim.events_path / "*.parquet"), table_name="events")
    path = out / "journey.parquet"
    con.to_parquet(build_journey(events, spec), path)
    journey = con.read_parquet(path, table_name="journey")
    result = find_breaks(journey, spec)
    return result, load_truth(sim.truth_path), spec, journey, con


def _corresponds(b, t, spec):
    if t.kind == "campaign_bounce":
        if b.kind != "campaign_bounce" or b.subject != t.campaign:
            return False
    else:
        touchpoint = next(tp.id for tp in spec.touchpoints if t.event in tp.rule().event)
        if b.kind == "campaign_bounce" or b.subject.split("->")[0] != touchpoint:
            return False
    if b.window_start is not None and not (
        b.window_start < t.window_end and t.window_start < b.window_end
    ):
        return False
    return any(t.segment.get(k) == v for k, v in b.concentration.items())


def test_injected_breaks_are_recovered(shop):
    result, truth, spec, _, _ = shop
    reported = result.breaks
    matched = [b for b in reported if any(_corresponds(b, t, spec) for t in truth.breaks)]
    found = [t.id for t in truth.breaks if any(_corresponds(b, t, spec) for b in reported)]
    precision = len(matched) / len(reported)
    assert precision >= 0.8, [b.id for b in reported]
    assert sorted(found) == sorted(t.id for t in truth.breaks)


def test_break_details_match_the_truth(shop):
    result, truth, *_ = shop
    by_kind = {b.kind: b for b in result.breaks}
    size = by_kind["step_exit"]
    t = truth.break_by_id("mobile_size_select")
    assert size.subject == "checkout_size_select"
    assert size.touchpoint == "checkout_size_select"
    assert size.campaign is None
    assert size.concentration == {"device": "mobile", "error": "size_unavailable"}
    assert size.traits == {"error": "size_unavailable"}  # every broken step carries it
    assert size.window_start == t.window_start
    assert size.window_end == t.window_end
    assert size.rate == pytest.approx(t.observed_injected_rate, abs=0.03)
    assert size.expected_rate == pytest.approx(t.observed_baseline_rate, abs=0.02)
    assert size.affected_customers == pytest.approx(t.affected_customers, rel=0.1)
    assert size.lost_conversions == pytest.approx(t.lost_orders_estimate, rel=0.3)
    assert float(size.lost_revenue) == pytest.approx(float(t.lost_revenue_estimate), rel=0.3)
    assert size.q_value < 1e-10
    assert len(size.customer_ids) == size.affected_customers
    assert result.customers(size.id) == size.customer_ids

    pay = by_kind["process_abandon"]
    t = truth.break_by_id("mobile_payment_interrupted")
    assert pay.subject == "payment->goal"
    assert pay.touchpoint == "payment"
    assert pay.concentration == {"device": "mobile", "payment_method": "mobile_wallet"}
    assert pay.window_start is not None
    assert pay.window_end is not None
    overlap = min(pay.window_end, t.window_end) - max(pay.window_start, t.window_start)
    assert overlap >= 0.7 * (t.window_end - t.window_start)
    assert pay.window_end - pay.window_start <= 1.3 * (t.window_end - t.window_start)
    assert pay.concentration_rate == pytest.approx(t.observed_injected_rate, abs=0.06)
    assert pay.affected_customers == pytest.approx(t.affected_customers, rel=0.15)
    assert pay.lost_conversions == pytest.approx(t.lost_orders_estimate, rel=0.3)

    bounce = by_kind["campaign_bounce"]
    t = truth.break_by_id("tiktok_flash_bounce")
    assert bounce.subject == "tiktok_flash"
    assert bounce.campaign == "tiktok_flash"
    assert bounce.touchpoint is None
    assert bounce.rate == pytest.approx(t.observed_injected_rate, abs=0.02)
    assert bounce.expected_rate == pytest.approx(t.observed_baseline_rate, abs=0.02)
    assert bounce.affected_customers == pytest.approx(t.affected_customers, rel=0.1)
    assert "tiktok_flash" in bounce.description
    assert bounce.traits.get("platform") == "tiktok"
    assert bounce.lost_revenue > Decimal(0)


def test_result_serialises_and_writes(shop, tmp_path):
    result, *_ = shop
    d = result.to_dict()
    assert d["tests"] == len(result.tests)
    assert all("customer_ids" not in r for r in d["breaks"])
    out = result.write(tmp_path / "breaks.csv")
    assert len(pd.read_csv(out)) == len(result.breaks)
    assert result.write(tmp_path / "breaks.json").read_text().startswith("{")
    with pytest.raises(KeyError, match="breaks found"):
        result.customers("nope")


def test_persona_segments_reach_the_concentration_search(shop, tmp_path):
    result, _, spec, journey, con = shop
    ids = sorted({c for b in result.breaks for c in b.customer_ids})
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"customer_id": ids, "persona": ["hit"] * len(ids)}), path)
    personas = con.read_parquet(path, table_name="personas_test")
    again = find_breaks(journey, spec, personas=personas)
    assert [b.id for b in again.breaks] == [b.id for b in result.breaks]
    assert all(b.concentration.get("persona", "hit") == "hit" for b in again.breaks)


def test_rate_series_peaks_inside_the_injected_window(shop):
    """The weekly rate behind each break's sparkline is high in its window, low outside."""
    result, truth, *_ = shop
    size = next(b for b in result.breaks if b.kind == "step_exit")
    t = truth.break_by_id("mobile_size_select")
    start, end = t.window_start.date(), t.window_end.date()
    inside = [r for d, r in size.series if start <= d <= end - dt.timedelta(days=6)]
    outside = [r for d, r in size.series if d + dt.timedelta(days=6) < start or d > end]
    assert inside
    assert outside
    assert min(inside) > 3 * max(outside)
    assert [d for d, _ in size.series] == sorted(d for d, _ in size.series)
