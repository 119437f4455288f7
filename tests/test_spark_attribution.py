"""Attribution, experience and retention give DuckDB's results on PySpark local.

Same golden lake on both engines (DeltaEventStore + register_lake), same Ibis code.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from decimal import Decimal

import pyarrow as pa
import pytest

from conftest import SPARK_MARKS, make_events
from journeymap.analytics.attribution import attribution, attribution_paths
from journeymap.analytics.attribution_journeys import touch_names, transitions_expr
from journeymap.analytics.engine import connect_duckdb, register_lake
from journeymap.analytics.experience import experience, survey_counts_expr
from journeymap.analytics.journey import build_journey
from journeymap.analytics.retention import lapsed, repeat_purchase, retention, rfm
from journeymap.model.spec import parse_spec
from journeymap.storage.lake import DeltaEventStore

pytestmark = SPARK_MARKS

SPEC = parse_spec(
    """
model: six-phase
touchpoints:
  - {id: ad, phase: awareness, match: {event: ad_click}}
  - {id: product, phase: consideration, match: {event: product_view}}
  - {id: cart, phase: preference, match: {event: add_to_cart}}
  - {id: checkout, phase: purchase}
  - {id: order, phase: purchase, match: {event: order_completed}}
  - {id: survey, phase: after_sale, match: {event: survey_response}}
  - {id: newsletter, phase: loyalty}
goal: {match: {event: order_completed}}
"""
)
EVENTS = ["ad_click", "product_view", "add_to_cart", "checkout", "newsletter", "noise"]
CHANNELS = ["search", "social", "email", "direct", None]


def golden_events(n: int = 2500, seed: int = 11) -> pa.Table:
    rng = random.Random(seed)
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    rows = []
    for i in range(n):
        customer = f"c{rng.randrange(120):03d}"
        # whole minutes with many ties, spread over 80 days (cohorts, lookback, lapsing)
        ts = t0 + dt.timedelta(minutes=rng.randrange(0, 80 * 1440, 7))
        roll = rng.random()
        row = {
            "event_id": f"e{rng.randrange(10**9):09d}-{i}",
            "customer_id": customer,
            "ts": ts,
            "channel": rng.choice(CHANNELS),
            "device": rng.choice(["mobile", "desktop"]),
        }
        if roll < 0.08:
            row |= {"event": "order_completed",
                    "revenue": Decimal(rng.randrange(100, 20000)) / 100}  # fmt: skip
        elif roll < 0.14:
            kind = rng.choice(["nps", "csat", "ces"])
            top = {"nps": 10, "csat": 5, "ces": 7}[kind]
            rated = rng.choice(["checkout", "order", "store", None])
            props = {"survey": kind} | ({"touchpoint": rated} if rated else {})
            row |= {"event": "survey_response", "score": rng.randrange(0, top + 2),
                    "properties": json.dumps(props)}  # fmt: skip
        else:
            row["event"] = rng.choice(EVENTS)
        rows.append(row)
    return make_events(rows)


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    store = DeltaEventStore(tmp_path_factory.mktemp("spark-attr") / "lake")
    store.append(golden_events())
    return store


@pytest.fixture(scope="module")
def journeys(spark_con, lake):
    duck = connect_duckdb()
    return (
        build_journey(register_lake(duck, lake), SPEC),
        build_journey(register_lake(spark_con, lake), SPEC),
    )


def _rows(table: pa.Table) -> list[dict[str, object]]:
    rows = table.to_pylist()
    return sorted(rows, key=lambda r: json.dumps(r, default=str, sort_keys=True))


@pytest.mark.parametrize(("level", "touch"), [("channel", "event"), ("touchpoint", "session")])
def test_paths_are_identical(journeys, level, touch):
    duck, spark = journeys
    expected = attribution_paths(duck, level=level, lookback_days=20, touch=touch)
    assert expected.num_rows > 30
    assert attribution_paths(spark, level=level, lookback_days=20, touch=touch) == expected


@pytest.mark.parametrize(("order", "collapse"), [(1, False), (1, True), (3, False), (2, True)])
def test_transition_counts_are_identical(journeys, order, collapse):
    duck, spark = journeys
    names = touch_names(duck)
    assert touch_names(spark) == names
    kw = {"order": order, "collapse_repeats": collapse, "lookback_days": 20}
    expected = transitions_expr(duck, names, **kw).to_pyarrow()
    got = transitions_expr(spark, names, **kw).to_pyarrow()
    assert _rows(got) == _rows(expected)


def test_attribution_results_are_identical(journeys):
    duck, spark = journeys
    kw = {"markov_order": 2, "lookback_days": 20}
    expected = attribution(duck, **kw)
    got = attribution(spark, **kw)
    assert expected.conversions > 50
    assert expected.unattributed_conversions > 0
    exact = [c for c in expected.credits if c.model != "time_decay"]
    assert [c for c in got.credits if c.model != "time_decay"] == exact
    assert got.removal_effects == expected.removal_effects
    # time decay: pow() per engine; the DECIMAL sums agree to far below a cent
    e_td, g_td = expected.credit("time_decay"), got.credit("time_decay")
    assert set(e_td) == set(g_td)
    for ch, row in e_td.items():
        assert g_td[ch].conversions == pytest.approx(row.conversions, rel=1e-12)
        assert g_td[ch].value == row.value


def test_experience_is_identical(journeys):
    duck, spark = journeys
    assert _rows(survey_counts_expr(spark).to_pyarrow()) == _rows(
        survey_counts_expr(duck).to_pyarrow()
    )
    expected = experience(duck, SPEC)
    assert experience(spark, SPEC) == expected
    assert {r.survey for r in expected.rows} == {"nps", "csat", "ces"}
    assert any(r.invalid for r in expected.rows)


@pytest.mark.parametrize(
    "kw",
    [
        {"period": "week", "breakdown": "channel"},
        {"period": "month", "cohort": "first_conversion", "activity": "conversion"},
        {"period": "day", "max_offset": 10, "segments": {"c001": "a", "c002": "b"}},
    ],
)
def test_retention_is_identical(journeys, kw):
    duck, spark = journeys
    expected = retention(duck, **kw)
    assert len(expected.cohorts) > 1
    assert retention(spark, **kw) == expected


def test_loyalty_is_identical(journeys):
    duck, spark = journeys
    assert repeat_purchase(spark, within_days=14) == repeat_purchase(duck, within_days=14)
    as_of = dt.datetime(2026, 3, 15, tzinfo=dt.UTC)
    e_rfm, g_rfm = rfm(duck, as_of=as_of), rfm(spark, as_of=as_of)
    assert g_rfm.segments == e_rfm.segments
    assert g_rfm.customers.to_pylist() == e_rfm.customers.to_pylist()
    assert lapsed(spark, k=1.5, as_of=as_of) == lapsed(duck, k=1.5, as_of=as_of)
