"""The same Ibis code on PySpark local gives exactly DuckDB's journey table and funnel.

One SparkSession per test session (JVM start is ~10 s); marked ``spark`` so it can be
deselected locally with ``-m "not spark"``.
"""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

import pyarrow as pa
import pytest

from conftest import SPARK_MARKS, make_events
from journeymap.analytics.engine import connect_duckdb, register_lake
from journeymap.analytics.funnels import funnel
from journeymap.analytics.journey import build_journey
from journeymap.model.spec import parse_spec
from journeymap.storage.lake import DeltaEventStore

pytestmark = SPARK_MARKS

SPEC = parse_spec(
    """
model: six-phase
touchpoints:
  - {id: promo_ad, phase: awareness, match: {event: ad_click, campaign: promo}}
  - {id: ad, phase: awareness, match: {event: ad_click}}
  - {id: product, phase: consideration, match: {event: product_view}}
  - {id: cart, phase: preference, match: {event: add_to_cart}}
  - {id: mobile_checkout, phase: purchase, match: {event: checkout, where: {device: mobile}}}
  - {id: checkout, phase: purchase}
  - {id: card_pay, phase: purchase, match: {event: pay, where: {method: card}}}
  - {id: order, phase: purchase, match: {event: order_completed}}
  - {id: review, phase: after_sale}
  - {id: newsletter, phase: loyalty}
goal: {match: {event: order_completed}}
"""
)
EVENTS = [
    "ad_click",
    "product_view",
    "add_to_cart",
    "checkout",
    "pay",
    "order_completed",
    "review",
    "newsletter",
    "noise",
]


def golden_events(n: int = 3000, seed: int = 3) -> pa.Table:
    rng = random.Random(seed)
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    rows = []
    for i in range(n):
        customer = f"c{rng.randrange(150):03d}"
        # whole seconds with many ties, some anonymous-only events, some across midnight
        ts = t0 + dt.timedelta(seconds=rng.randrange(0, 20 * 86400, 30))
        rows.append(
            {
                "event_id": f"e{rng.randrange(10**9):09d}-{i}",
                "customer_id": None if rng.random() < 0.05 else customer,
                "anonymous_id": f"a-{customer}" if rng.random() < 0.5 else None,
                "ts": ts,
                "event": rng.choice(EVENTS),
                "campaign": rng.choice([None, "promo", "other"]),
                "device": rng.choice(["mobile", "desktop", None]),
                "properties": rng.choice([None, '{"method":"card"}', '{"method": "paypal"}']),
                "revenue": Decimal(rng.randrange(100, 20000)) / 100 if rng.random() < 0.2 else None,
            }
        )
    rows = [r for r in rows if r["customer_id"] or r["anonymous_id"]]
    return make_events(rows)


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    store = DeltaEventStore(tmp_path_factory.mktemp("spark") / "lake")
    store.append(golden_events())
    return store


def _normalise(table: pa.Table) -> list[dict[str, object]]:
    rows = table.drop_columns(["ts"]).to_pylist()  # ts_us carries the instant exactly
    return sorted(rows, key=lambda r: str(r["event_id"]))


def test_journey_table_is_identical_on_spark_and_duckdb(spark_con, lake):
    duck = connect_duckdb()
    expected = build_journey(register_lake(duck, lake), SPEC).to_pyarrow()
    got = build_journey(register_lake(spark_con, lake), SPEC).to_pyarrow()
    assert got.num_rows == expected.num_rows > 2500
    assert _normalise(got) == _normalise(expected)
    # the data exercise what matters: ties, several sessions, stitched anonymous events
    exp = _normalise(expected)
    assert max(int(r["session_index"]) for r in exp) > 3
    assert any(r["touchpoint"] == "mobile_checkout" for r in exp)
    assert any(r["touchpoint"] == "card_pay" for r in exp)


@pytest.mark.parametrize("skips", [True, False])
def test_phase_funnel_is_identical_on_spark_and_duckdb(spark_con, lake, skips):
    duck = connect_duckdb()
    steps = SPEC.phase_ids()
    expected = funnel(
        build_journey(register_lake(duck, lake), SPEC), steps, skips=skips, window_seconds=5 * 86400
    )
    got = funnel(
        build_journey(register_lake(spark_con, lake), SPEC),
        steps,
        skips=skips,
        window_seconds=5 * 86400,
    )
    assert got == expected
    assert expected.steps[2].customers > 0  # the data go deep enough to compare
