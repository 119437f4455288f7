"""Paths and the extended funnels: the same Ibis code on PySpark local gives exactly DuckDB's
results (one session-scoped SparkSession; marked ``spark``)."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

import ibis
import pyarrow as pa
import pytest

from conftest import SPARK_MARKS, make_events
from journeymap.analytics.engine import connect_duckdb, register_lake
from journeymap.analytics.funnels import funnel, funnel_dropoffs
from journeymap.analytics.journey import build_journey
from journeymap.analytics.paths import step_sankey, top_paths, transitions
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
  - {id: review, phase: after_sale}
  - {id: newsletter, phase: loyalty}
goal: {match: {event: order_completed}}
"""
)
EVENTS = [
    "ad_click",
    "product_view",
    "product_view",
    "add_to_cart",
    "checkout",
    "order_completed",
    "review",
    "newsletter",
    "noise",
    "remove_from_cart",
]
FUNNEL = ["product_view", "add_to_cart", "checkout", "order_completed"]


def golden_events(n: int = 2500, seed: int = 11) -> pa.Table:
    rng = random.Random(seed)
    t0 = dt.datetime(2026, 1, 20, tzinfo=dt.UTC)
    rows = []
    clock = {f"c{i:03d}": t0 + dt.timedelta(hours=rng.randrange(0, 24 * 20)) for i in range(120)}
    for i in range(n):
        customer = rng.choice(sorted(clock))
        # mostly minutes apart (sessions), sometimes days; some exact ties
        gap = rng.choice([0, 30, 60, 120, 600, 3 * 3600, 2 * 86400])
        clock[customer] += dt.timedelta(seconds=gap)
        event = rng.choice(EVENTS)
        rows.append(
            {
                "event_id": f"e{rng.randrange(10**9):09d}-{i}",
                "customer_id": customer,
                "ts": clock[customer],
                "event": event,
                "channel": rng.choice([None, None, "email", "social", "search"]),
                "campaign": rng.choice([None, "spring", "brand"]),
                "device": rng.choice(["mobile", "desktop", None]),
                "revenue": Decimal(rng.randrange(100, 20000)) / 100
                if event == "order_completed"
                else None,
            }
        )
    return make_events(rows)


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    store = DeltaEventStore(tmp_path_factory.mktemp("spark_paths") / "lake")
    store.append(golden_events())
    return store


@pytest.fixture(scope="module")
def journeys(spark_con, lake):
    duck = connect_duckdb()
    return (
        build_journey(register_lake(duck, lake), SPEC),
        build_journey(register_lake(spark_con, lake), SPEC),
    )


def both(journeys: tuple[Any, Any], fn: Any, *args: Any, **kw: Any) -> tuple[Any, Any]:
    duck_j, spark_j = journeys
    return fn(duck_j, *args, **kw), fn(spark_j, *args, **kw)


@pytest.mark.parametrize(
    ("level", "kw"),
    [
        ("event", {}),
        ("touchpoint", {"collapse_repeats": True}),
        ("phase", {"collapse_repeats": True, "until": "end"}),
        ("channel", {"per": "session"}),
    ],
)
def test_transitions_are_identical(journeys, level, kw):
    expected, got = both(journeys, transitions, level, **kw)
    assert got == expected
    assert len(expected.edges) > 10
    assert expected.units >= 100


@pytest.mark.parametrize(
    ("level", "kw"),
    [
        ("channel", {"to": "conversion"}),
        ("touchpoint", {"to": "exit", "max_length": 3, "per": "session"}),
    ],
)
def test_top_paths_are_identical(journeys, level, kw):
    expected, got = both(journeys, top_paths, level, limit=15, **kw)
    assert got == expected
    assert expected.units > 0
    assert expected.paths


@pytest.mark.parametrize(
    ("level", "kw"),
    [
        ("phase", {"steps": 6, "until": "end"}),
        ("event", {"steps": 10, "top_n": 4, "collapse_repeats": False}),
        ("touchpoint", {"steps": 5, "anchor": "cart", "per": "session"}),
    ],
)
def test_step_sankey_is_identical(journeys, level, kw):
    expected, got = both(journeys, step_sankey, level, **kw)
    assert got == expected
    assert len(expected.flows) > 5


@pytest.mark.parametrize(
    "kw",
    [
        {"skips": False, "exclude": ["remove_from_cart"], "window_seconds": 3 * 86400},
        {"skips": False, "order": "strict", "breakdown": "device"},
        {"skips": True, "per": "session", "breakdown": "cohort"},
        {"skips": False, "breakdown": "campaign", "window_seconds": 86400},
    ],
)
def test_funnels_are_identical(journeys, kw):
    expected, got = both(journeys, funnel, FUNNEL, level="event", **kw)
    assert got == expected
    assert expected.steps[2].customers > 0
    assert expected.time_to_convert is not None
    assert expected.time_to_convert.customers > 0


def test_persona_breakdown_is_identical(journeys):
    personas = ibis.memtable(
        pa.table(
            {
                "customer_id": [f"c{i:03d}" for i in range(0, 120, 2)],
                "persona": ["bargain" if i % 3 else "loyal" for i in range(0, 120, 2)],
            }
        )
    )
    expected, got = both(
        journeys, funnel, FUNNEL, level="event", skips=False, breakdown="persona", personas=personas
    )
    assert got == expected
    assert {s.value for s in expected.segments} == {"bargain", "loyal", None}


@pytest.mark.parametrize(
    "kw", [{"skips": False}, {"skips": False, "order": "strict", "per": "session"}]
)
def test_dropoffs_are_identical(journeys, kw):
    expected, got = both(journeys, funnel_dropoffs, FUNNEL, 3, level="event", **kw)
    assert got.to_dict() == expected.to_dict()
    assert expected.dropped > 0
