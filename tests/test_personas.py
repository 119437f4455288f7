"""Personas: features by hand, local hours across DST, clustering and narrative matching on
small cases, and recovery of the simulator's latent personas (adjusted Rand index)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import adjusted_rand_score

from conftest import DEMO_SPEC, make_events, register
from journeymap.analytics.clustering import cluster, feature_matrix, scale
from journeymap.analytics.engine import connect_duckdb
from journeymap.analytics.features import (
    HOUR_US,
    customer_features_expr,
    feature_vocabulary,
    local_hour_expr,
    utc_offsets,
)
from journeymap.analytics.journey import build_journey, compile_sql
from journeymap.analytics.personas import (
    ASSIGNMENT_SCHEMA,
    customer_features,
    find_personas,
    match_narratives,
)
from journeymap.model.spec import PersonaNarrative, load_spec, parse_spec
from journeymap.simulate import load_truth, simulate_shop

SPEC = parse_spec(
    """
model: six-phase
touchpoints:
  - {id: ad, phase: awareness, channel: social_ads, match: {event: ad_click}}
  - {id: search, phase: awareness, channel: search, match: {event: search_visit}}
  - {id: product, phase: consideration, match: {event: product_view}}
  - {id: order, phase: purchase, match: {event: order_completed}}
  - {id: mail, phase: loyalty, channel: newsletter, match: {event: newsletter_open}}
goal: {match: {event: order_completed}}
personas:
  - {id: social, name: Sam, channels: [social_ads]}
  - {id: seeker, name: {en: Sue, de: Susi}, channels: [search]}
"""
)
UTC = dt.UTC


def ev(customer, event, ts, **kw):
    return {"customer_id": customer, "event": event, "ts": ts, **kw}


# 2026-03-29: Europe/Berlin switches from +1 h to +2 h at 01:00 UTC
HAND = [
    # a: two sessions, one order with a discount code, mobile then desktop
    ev(
        "a",
        "ad_click",
        dt.datetime(2026, 3, 1, 19, 30, tzinfo=UTC),
        channel="social_ads",
        device="mobile",
    ),
    ev(
        "a",
        "product_view",
        dt.datetime(2026, 3, 1, 19, 35, tzinfo=UTC),
        channel="web",
        device="mobile",
        category="shoes",
    ),
    ev(
        "a",
        "order_completed",
        dt.datetime(2026, 3, 1, 19, 40, tzinfo=UTC),
        channel="web",
        device="mobile",
        revenue="80.00",
        properties='{"discount_code":"DEAL10","items":1}',
    ),
    ev(
        "a",
        "search_visit",
        dt.datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
        channel="search",
        device="desktop",
    ),
    ev(
        "a",
        "product_view",
        dt.datetime(2026, 3, 29, 1, 31, tzinfo=UTC),
        channel="web",
        device="desktop",
        category="jackets",
    ),
    ev(
        "a",
        "order_completed",
        dt.datetime(2026, 3, 29, 1, 40, tzinfo=UTC),
        channel="web",
        device="desktop",
        revenue="19.99",
        properties='{"items":2}',
    ),
    # b: a newsletter open without device, then a search visit at 00:30 UTC (01:30 in winter)
    ev("b", "newsletter_open", dt.datetime(2026, 3, 2, 9, 0, tzinfo=UTC), channel="newsletter"),
    ev(
        "b",
        "search_visit",
        dt.datetime(2026, 3, 3, 0, 30, tzinfo=UTC),
        channel="search",
        device="tablet",
    ),
    # ... and another one at 12:00 UTC (13 h local)
    ev(
        "b",
        "search_visit",
        dt.datetime(2026, 3, 4, 12, tzinfo=UTC),
        channel="search",
        device="tablet",
    ),
]


@pytest.fixture
def journey(duck):
    return build_journey(register(duck, make_events(HAND)), SPEC)


# -- local hours -------------------------------------------------------------------------------
def _us(t: dt.datetime) -> int:
    return int(t.timestamp()) * 1_000_000


def test_utc_offsets_find_the_dst_switch():
    start = _us(dt.datetime(2026, 3, 1, tzinfo=UTC))
    end = _us(dt.datetime(2026, 11, 1, tzinfo=UTC))
    pieces = utc_offsets("Europe/Berlin", start, end)
    assert pieces == [
        (start, HOUR_US),
        (_us(dt.datetime(2026, 3, 29, 1, tzinfo=UTC)), 2 * HOUR_US),
        (_us(dt.datetime(2026, 10, 25, 1, tzinfo=UTC)), HOUR_US),
    ]
    assert utc_offsets("UTC", start, end) == [(start, 0)]


def test_local_hour_matches_zoneinfo(duck):
    rng = np.random.default_rng(5)
    start, end = _us(dt.datetime(2025, 12, 1, tzinfo=UTC)), _us(dt.datetime(2027, 2, 1, tzinfo=UTC))
    ts = np.sort(rng.integers(start, end, size=2000))
    # include the instants around both switches
    for t in (
        "2026-03-29T00:59:59",
        "2026-03-29T01:00:00",
        "2026-10-25T00:59:59",
        "2026-10-25T01:00:00",
    ):
        ts = np.append(ts, _us(dt.datetime.fromisoformat(t).replace(tzinfo=UTC)))
    t = register(duck, pa.table({"ts_us": pa.array(ts, pa.int64())}), "hours")
    expr = t.select(h=local_hour_expr(t.ts_us, utc_offsets("Europe/Berlin", start, end)))
    got = expr.to_pyarrow().column("h").to_pylist()
    zone = ZoneInfo("Europe/Berlin")
    expected = [dt.datetime.fromtimestamp(int(x) / 1e6, tz=UTC).astimezone(zone).hour for x in ts]
    assert got == expected
    assert got[-4:] == [1, 3, 2, 2]


# -- features by hand --------------------------------------------------------------------------
def test_customer_features_by_hand(journey):
    df, vocab = customer_features(journey, SPEC, timezone="Europe/Berlin")
    assert vocab.channels[:2] == ("search", "newsletter") or "search" in vocab.channels
    assert set(vocab.devices) == {"mobile", "desktop", "tablet"}
    a = df.set_index("customer_id").loc["a"]
    assert a.n_events == 6
    assert a.n_sessions == 2
    assert a.n_conversions == 2
    assert a.revenue == Decimal("99.99")
    assert a.revenue_cents == 9999
    assert a.discount_orders == 1
    assert a.max_phase == 4  # purchase
    ch = dict(zip(vocab.channels, (a[f"ch_{i}"] for i in range(len(vocab.channels))), strict=True))
    assert ch["social_ads"] == 1
    assert ch["search"] == 1
    hours = [a[f"hour_{h}"] for h in range(24)]
    # 19:30-19:40 UTC in winter = 20 h local (3 events); 01:30 UTC after the switch = 03 h
    assert hours[20] == 3
    assert hours[3] == 3
    assert sum(hours) == 6
    assert a.phase_first_1 == 1
    assert a.phase_first_2 == 2
    b = df.set_index("customer_id").loc["b"]
    # the newsletter open has no device: not an "active hour"; 00:30 UTC = 01 h local
    assert [h for h in range(24) if b[f"hour_{h}"]] == [1, 13]
    assert b.revenue == Decimal("0.00")


def test_feature_matrix_shares_and_fallbacks(journey):
    df, vocab = customer_features(journey, SPEC, timezone="Europe/Berlin")
    fm = feature_matrix(df, vocab, vocab.last_us)
    assert list(fm.customer_ids) == ["a", "b"]
    col = {n: fm.values[:, i] for i, n in enumerate(fm.names)}
    assert col["device:mobile"][0] == pytest.approx(0.5)
    assert col["discount_share"].tolist() == [0.5, 0.0]
    # b has no category events: it gets the population's shares (1 shoes, 1 jackets)
    assert col["category:shoes"][1] == pytest.approx(0.5)
    assert col["recency_days"][0] == 0.0
    assert col["sessions"][0] == pytest.approx(np.log1p(2))
    assert set(fm.groups) >= {"channels", "hours", "monetary", "touchpoints"}


def test_scaling_by_hand():
    x = np.array([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0], [10.0, 5.0]])
    std = scale(x, "standard")
    np.testing.assert_allclose(std[:, 0], (x[:, 0] - 4) / np.std(x[:, 0]))
    assert (std[:, 1] == 0).all()  # constant column
    rob = scale(x, "robust")
    q75, q25 = np.percentile(x[:, 0], [75, 25])
    np.testing.assert_allclose(rob[:, 0], (x[:, 0] - 2.5) / (q75 - q25))


def test_feature_query_compiles_for_both_engines(journey):
    vocab = feature_vocabulary(journey, SPEC.phase_ids())
    sql = compile_sql(customer_features_expr(journey, vocab, timezone="Europe/Berlin"))
    assert "CASE" in sql["pyspark"].upper()
    assert "timezone" not in sql["duckdb"].lower()  # integer offsets, no engine tz functions


# -- clustering and narratives ----------------------------------------------------------------
def _blobs(seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[0, 0, 0], [6, 0, 0], [0, 6, 0]], dtype=float)
    sizes = [300, 200, 100]
    x = np.vstack([rng.normal(c, 1.0, size=(s, 3)) for c, s in zip(centers, sizes, strict=True)])
    y = np.repeat([0, 1, 2], sizes)
    return x, y


@pytest.mark.parametrize("method", ["kmeans", "gmm"])
def test_cluster_chooses_k_and_is_deterministic(method):
    x, y = _blobs()
    a = cluster(x, method=method, k=range(2, 7), seed=3)
    b = cluster(x, method=method, k=range(2, 7), seed=3)
    assert a.k == 3
    assert (a.labels == b.labels).all()
    assert adjusted_rand_score(y, a.labels) > 0.95
    sizes = np.bincount(a.labels)
    assert list(sizes) == sorted(sizes, reverse=True)  # persona 0 is the largest
    assert set(a.scores) == set(range(2, 7))


def test_cluster_with_a_sample_assigns_everyone():
    x, y = _blobs(1)
    r = cluster(x, k=3, seed=0, fit_sample=90)
    assert len(r.labels) == len(x)
    assert adjusted_rand_score(y, r.labels) > 0.9
    with pytest.raises(ValueError, match="cannot cluster 0 customers"):
        cluster(np.zeros((0, 2)), k=3)


def test_narratives_attach_by_channel_lift():
    channels = ["social_ads", "search", "newsletter"]
    shares = np.array([[0.1, 0.7, 0.2], [0.8, 0.1, 0.1], [0.3, 0.3, 0.4]])
    overall = shares.mean(axis=0)
    nar = [
        PersonaNarrative(id="social", name={"*": "Sam"}, channels=["social_ads"]),
        PersonaNarrative(id="seeker", name={"*": "Sue"}, channels=["search", "unknown"]),
        PersonaNarrative(id="ghost", name={"*": "Gus"}, channels=["nowhere"]),
    ]
    got = match_narratives(shares, overall, channels, nar)
    assert {c: n.id for c, (n, _) in got.items()} == {0: "seeker", 1: "social"}
    lift = np.log((0.8 + 0.01) / (overall[0] + 0.01))
    assert got[1][1] == pytest.approx(lift)
    assert match_narratives(shares, overall, channels, []) == {}


def test_find_personas_on_a_tiny_journey(journey, tmp_path):
    path = tmp_path / "cache" / "personas-x.parquet"
    r = find_personas(journey, SPEC, timezone="Europe/Berlin", k=2, path=path, lang="de")
    assert r.k == 2
    assert r.path == path
    table = pq.read_table(path)
    assert table.schema == ASSIGNMENT_SCHEMA
    assert table.equals(r.assignments)
    assert sorted(table["customer_id"].to_pylist()) == ["a", "b"]
    assert {p.customers for p in r.personas} == {1}
    labels = {p.persona: p.label for p in r.personas}
    assert labels["social"] == "Sam"  # a entered through social_ads
    assert labels["seeker"] == "Susi"  # b through search; German label
    assert r.to_dict()["personas"][0]["top_channels"]
    with pytest.raises(ValueError, match=r"unknown feature group.*choose from"):
        find_personas(journey, SPEC, groups=["shoe_size"])
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Base'; give an IANA name"):
        find_personas(journey, SPEC, timezone="Mars/Base")
    with pytest.raises(ValueError, match="unknown clustering method 'dbscan'"):
        find_personas(journey, SPEC, method="dbscan")


# -- ground truth ------------------------------------------------------------------------------
CUSTOMERS = 5_000
SEED = 7


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    out = tmp_path_factory.mktemp("persona-shop")
    sim = simulate_shop(out, customers=CUSTOMERS, seed=SEED)
    con = connect_duckdb()
    spec = load_spec(DEMO_SPEC)
    events = con.read_parquet(str(sim.events_path / "*.parquet"), table_name="events")
    path = out / "journey.parquet"
    con.to_parquet(build_journey(events, spec), path)
    journey = con.read_parquet(path, table_name="journey")
    truth = load_truth(sim.truth_path)
    result = find_personas(
        journey, spec, timezone=truth.timezone, path=out / "personas-test.parquet"
    )
    return result, truth


def test_personas_match_the_latent_ones(shop):
    result, truth = shop
    found = result.persona_of()
    ids = sorted(found)
    assert len(ids) == CUSTOMERS
    ari = adjusted_rand_score([truth.customer_personas[i] for i in ids], [found[i] for i in ids])
    assert ari >= 0.6
    assert result.k == 4


def test_narratives_attach_to_the_right_clusters(shop):
    result, truth = shop
    a = result.assignments.to_pandas()
    a["truth"] = a.customer_id.map(truth.customer_personas)
    majority = a.groupby("persona").truth.agg(lambda s: s.value_counts().index[0])
    labels = dict(zip(a.persona, a.persona_label, strict=True))
    for p in result.personas:
        assert p.narrative_id is not None
        assert majority[p.persona] == p.narrative_id
        assert labels[p.persona] == p.label
        assert p.narrative  # the narrative's description travels with the persona


def test_persona_descriptions_are_sensible(shop):
    result, truth = shop
    by_id = {p.persona: p for p in result.personas}
    assert sum(p.customers for p in result.personas) == CUSTOMERS
    assert sum(p.share for p in result.personas) == pytest.approx(1.0)
    mobile = by_id["impulsive_mobile"]
    assert mobile.top_channels[0][0] == "social_ads"
    assert "social_ad" in mobile.typical_path
    assert mobile.peak_hours in ("21–24 h", "22–1 h", "23–2 h", "20–23 h")
    assert any("mobile" in d for d in mobile.distinctive)
    researcher = by_id["researcher"]
    assert researcher.top_channels[0][0] == "search"
    assert any(
        tp in ("product_reviews", "size_guide", "review_sites", "hotline")
        for tp, _ in researcher.top_touchpoints
    )
    loyal = by_id["loyal_repeat"]
    assert loyal.aov is not None
    assert loyal.revenue == max(p.revenue for p in result.personas)
    assert loyal.peak_hours.startswith(("6", "7", "8"))
    deal = by_id["deal_hunter"]
    assert any("discount" in d or "sale" in d or "accessories" in d for d in deal.distinctive)
    for p in result.personas:
        assert p.description.startswith(p.label)
        assert p.phase_path
        assert sum(p.active_hours) == pytest.approx(1.0)
        assert p.conversion_rate == pytest.approx(
            truth.personas[p.persona].buyers / truth.personas[p.persona].customers, abs=0.08
        )


def test_assignments_join_back_for_breakdowns(shop):
    result, _ = shop
    assert result.path is not None
    con = connect_duckdb()
    t = con.read_parquet(result.path, table_name="personas")
    counts = t.group_by("persona").agg(n=t.count()).to_pyarrow().to_pandas()
    expected = {p.persona: p.customers for p in result.personas}
    assert dict(zip(counts.persona, counts.n, strict=True)) == expected
    assert result.to_pandas().shape[0] == result.k
    d = result.to_dict()
    assert d["k"] == 4
    assert "hours:sin" in d["features"]
    assert isinstance(pd.DataFrame(d["personas"]), pd.DataFrame)
