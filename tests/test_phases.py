"""Live phase entries: the spec's touchpoint rules on single events agree with the journey
table, and each move into another phase yields one ``Phase Entered`` event, once."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from conftest import DEMO_SPEC, make_events, register
from journeymap.analytics.journey import build_journey
from journeymap.model.spec import load_spec, parse_spec
from journeymap.orchestration.engine import PHASE_EVENT
from journeymap.orchestration.phases import PHASE_TRAIT, PhaseTracker, touchpoint_of
from journeymap.storage.db import OperationalDB
from journeymap.storage.profiles import ProfileStore

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)

SPEC = """\
version: 1
model: three-stage
touchpoints:
  - {id: mobile_cart, phase: during_purchase, match: {event: add_to_cart, where: {device: mobile}}}
  - {id: promo_visit, phase: before_purchase, match: {event: page_view, campaign: spring}}
  - {id: gift_view, phase: before_purchase, match: {event: product_view, where: {gift: true}}}
  - {id: cart, phase: during_purchase, match: {event: add_to_cart}}
  - {id: order, phase: during_purchase, match: {event: order_completed}}
  - {id: review, phase: after_purchase, match: {event: review_written, where: {stars: [4, 5]}}}
goal: {match: {event: order_completed}}
"""

ROWS = [
    {"event": "page_view", "campaign": "spring"},
    {"event": "page_view", "campaign": "autumn"},
    {"event": "product_view", "properties": json.dumps({"gift": True})},
    {"event": "product_view", "properties": json.dumps({"gift": False})},
    {"event": "add_to_cart", "device": "mobile"},
    {"event": "add_to_cart", "device": "desktop"},
    {"event": "order_completed"},
    {"event": "review_written", "properties": json.dumps({"stars": 5})},
    {"event": "review_written", "properties": json.dumps({"stars": 2})},
]


def test_single_event_rules_agree_with_the_journey_table(duck):
    spec = parse_spec(SPEC, "spec.yaml")
    rows = [dict(r, customer_id="c", ts=T0 + dt.timedelta(minutes=i)) for i, r in enumerate(ROWS)]
    journey = build_journey(register(duck, make_events(rows)), spec).to_pyarrow().to_pylist()
    by_id = {r["event_id"]: r["touchpoint"] for r in journey}
    for i, row in enumerate(rows):
        tp = touchpoint_of(spec, row)
        assert (tp.id if tp else None) == by_id[f"e{i:04d}"], row


def test_demo_spec_rules_agree_on_simulated_events(duck, tmp_path):
    from journeymap.simulate import simulate_shop

    spec = load_spec(DEMO_SPEC)
    sim = simulate_shop(tmp_path / "sim", customers=150, seed=3)
    import pyarrow.parquet as pq

    files = (
        sorted(sim.events_path.glob("*.parquet")) if sim.events_path.is_dir() else [sim.events_path]
    )
    events = pq.read_table(files[0])
    journey = build_journey(register(duck, events), spec).to_pyarrow().to_pylist()
    by_id = {r["event_id"]: r["touchpoint"] for r in journey}
    rows = events.to_pylist()
    assert len(rows) > 1000
    for row in rows:
        tp = touchpoint_of(spec, row)
        assert (tp.id if tp else None) == by_id[row["event_id"]], row


@pytest.fixture
def profiles(tmp_path):
    db = OperationalDB(f"sqlite:///{tmp_path / 'op.db'}")
    yield ProfileStore(db)
    db.close()


def test_each_move_into_another_phase_is_entered_once(profiles):
    spec = parse_spec(SPEC, "spec.yaml")
    tracker = PhaseTracker(spec, profiles)
    events = [
        {"customer_id": "a", "event": "page_view", "properties": {"campaign": "spring"}},
        {"customer_id": "a", "event": "page_view", "properties": {"campaign": "spring"}},
        {"customer_id": "a", "event": "add_to_cart", "properties": {}},
        {"customer_id": "a", "event": "newsletter_open", "properties": {}},  # no touchpoint
        {"customer_id": "a", "event": "order_completed", "properties": {}},  # same phase
        {"customer_id": "a", "event": "review_written", "properties": {"stars": 4}},
        {"customer_id": "b", "event": "add_to_cart", "properties": {"device": "mobile"}},
    ]
    events = [
        dict(e, ts=T0 + dt.timedelta(minutes=i), event_id=f"x{i}") for i, e in enumerate(events)
    ]
    entered = tracker.observe(events)
    assert [(e.customer_id, e.properties["phase"]) for e in entered] == [
        ("a", "before_purchase"),
        ("a", "during_purchase"),
        ("a", "after_purchase"),
        ("b", "during_purchase"),
    ]
    assert {e.event for e in entered} == {PHASE_EVENT}
    assert entered[1].properties["previous_phase"] == "before_purchase"
    assert profiles.find("a").traits[PHASE_TRAIT] == "after_purchase"
    # a restarted worker (fresh tracker, same profiles) replays the batch: nothing new
    assert PhaseTracker(spec, profiles).observe(events) == []
