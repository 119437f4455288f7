"""The journey table on hand-built events: ordering, ties, sessions, time zones, matching."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from conftest import make_events, register
from journeymap.analytics.journey import JourneyCache, build_journey, compile_sql
from journeymap.model.spec import parse_spec

SPEC = parse_spec(
    """
model: three-stage
touchpoints:
  - {id: promo_ad, phase: before_purchase, channel: social, match: {event: ad_click, campaign: promo}}
  - {id: ad, phase: before_purchase, channel: social, match: {event: ad_click}}
  - {id: mobile_size, phase: during_purchase, match: {event: size_select, where: {device: mobile}}}
  - {id: size, phase: during_purchase, match: {event: size_select}}
  - {id: card_payment, phase: during_purchase, match: {event: payment, where: {method: card}}}
  - {id: order, phase: during_purchase, match: {event: order_completed}}
  - {id: review, phase: after_purchase}
goal: {match: {event: order_completed}}
"""
)


def journey_rows(con, rows, **kw):
    t = register(con, make_events(rows))
    out = build_journey(t, SPEC, **kw).to_pyarrow().to_pylist()
    return sorted(out, key=lambda r: (r["customer_id"], r["step_index"]))


def test_steps_follow_time_then_event_id_for_ties(duck):
    rows = [
        {"event_id": "b", "customer_id": "c", "ts": "2026-01-01T10:00:00+00:00", "event": "x"},
        {"event_id": "a", "customer_id": "c", "ts": "2026-01-01T10:00:00+00:00", "event": "y"},
        {"event_id": "0", "customer_id": "c", "ts": "2026-01-01T10:00:01+00:00", "event": "z"},
        {"event_id": "z", "customer_id": "c", "ts": "2026-01-01T09:59:59+00:00", "event": "w"},
    ]
    out = journey_rows(duck, rows)
    assert [(r["event_id"], r["step_index"]) for r in out] == [
        ("z", 1),
        ("a", 2),
        ("b", 3),
        ("0", 4),
    ]


def test_journey_does_not_depend_on_input_row_order(duck):
    rows = [
        {
            "event_id": f"e{i}",
            "customer_id": f"c{i % 3}",
            "ts": f"2026-01-01T10:{(i * 7) % 50:02d}:00+00:00",
            "event": "ad_click",
        }
        for i in range(30)
    ]
    expected = journey_rows(duck, rows)
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    duck.con.unregister("events")
    assert journey_rows(duck, shuffled) == expected


def test_session_continues_across_midnight_and_breaks_after_the_gap(duck):
    rows = [
        {"customer_id": "c", "ts": "2026-01-01T23:50:00+00:00", "event": "ad_click"},
        {"customer_id": "c", "ts": "2026-01-02T00:10:00+00:00", "event": "size_select"},
        {
            "customer_id": "c",
            "ts": "2026-01-02T00:40:00+00:00",
            "event": "payment",
        },  # exactly 30 min
        {"customer_id": "c", "ts": "2026-01-02T01:10:01+00:00", "event": "order_completed"},
    ]
    out = journey_rows(duck, rows)
    assert [r["session_index"] for r in out] == [1, 1, 1, 2]
    assert [r["is_session_start"] for r in out] == [True, False, False, True]


def test_sessions_use_the_instant_not_the_local_clock(duck):
    # 10:00 in Berlin summer time is 08:00 UTC: it comes first, and it is 60 min before 09:00 UTC
    rows = [
        {"event_id": "late", "customer_id": "c", "ts": "2026-06-01T09:00:00+00:00", "event": "y"},
        {"event_id": "early", "customer_id": "c", "ts": "2026-06-01T10:00:00+02:00", "event": "x"},
        {"event_id": "ny", "customer_id": "c", "ts": "2026-06-01T05:20:00-04:00", "event": "z"},
    ]
    out = journey_rows(duck, rows)
    assert [r["event_id"] for r in out] == ["early", "late", "ny"]
    assert [r["session_index"] for r in out] == [1, 2, 2]  # 05:20-04:00 = 09:20 UTC
    duck.con.unregister("events")
    wide = journey_rows(duck, rows, session_gap_minutes=90)
    assert [r["session_index"] for r in wide] == [1, 1, 1]


def test_touchpoints_first_matching_rule_wins_and_phases_follow(duck):
    rows = [
        {
            "customer_id": "c",
            "ts": "2026-01-01T10:00:00+00:00",
            "event": "ad_click",
            "campaign": "promo",
        },
        {
            "customer_id": "c",
            "ts": "2026-01-01T10:01:00+00:00",
            "event": "ad_click",
            "campaign": "other",
        },
        {
            "customer_id": "c",
            "ts": "2026-01-01T10:02:00+00:00",
            "event": "size_select",
            "device": "mobile",
        },
        {
            "customer_id": "c",
            "ts": "2026-01-01T10:03:00+00:00",
            "event": "size_select",
            "device": "desktop",
        },
        {
            "customer_id": "c",
            "ts": "2026-01-01T10:04:00+00:00",
            "event": "payment",
            "properties": '{"method": "card", "amount": 3}',
        },
        {
            "customer_id": "c",
            "ts": "2026-01-01T10:05:00+00:00",
            "event": "payment",
            "properties": '{"method":"paypal"}',
        },
        {
            "customer_id": "c",
            "ts": "2026-01-01T10:06:00+00:00",
            "event": "order_completed",
            "revenue": 20,
        },
        {"customer_id": "c", "ts": "2026-01-01T10:07:00+00:00", "event": "unknown_thing"},
    ]
    out = journey_rows(duck, rows)
    assert [r["touchpoint"] for r in out] == [
        "promo_ad",
        "ad",
        "mobile_size",
        "size",
        "card_payment",
        None,
        "order",
        None,
    ]
    assert [r["phase_index"] for r in out] == [1, 1, 2, 2, 2, None, 2, None]
    assert [r["is_conversion"] for r in out] == [False] * 6 + [True, False]


def test_anonymous_events_join_their_customer_but_ambiguous_ids_stay_apart(duck):
    rows = [
        {
            "event_id": "1",
            "anonymous_id": "cookie-a",
            "ts": "2026-01-01T10:00:00+00:00",
            "event": "ad_click",
        },
        {
            "event_id": "2",
            "anonymous_id": "cookie-a",
            "customer_id": "alice",
            "ts": "2026-01-01T10:05:00+00:00",
            "event": "order_completed",
        },
        # cookie-s was used by two customers: its anonymous events are not merged
        {
            "event_id": "3",
            "anonymous_id": "cookie-s",
            "ts": "2026-01-01T10:00:00+00:00",
            "event": "ad_click",
        },
        {
            "event_id": "4",
            "anonymous_id": "cookie-s",
            "customer_id": "bob",
            "ts": "2026-01-01T11:00:00+00:00",
            "event": "review",
        },
        {
            "event_id": "5",
            "anonymous_id": "cookie-s",
            "customer_id": "carol",
            "ts": "2026-01-01T12:00:00+00:00",
            "event": "review",
        },
    ]
    out = {r["event_id"]: (r["customer_id"], r["step_index"]) for r in journey_rows(duck, rows)}
    assert out["1"] == ("alice", 1)
    assert out["2"] == ("alice", 2)
    assert out["3"] == ("cookie-s", 1)
    assert out["4"] == ("bob", 1)


def test_journey_sql_compiles_for_duckdb_and_spark_within_budget(duck):
    t = register(
        duck, make_events([{"customer_id": "c", "ts": "2026-01-01T10:00:00+00:00", "event": "x"}])
    )
    sql = compile_sql(build_journey(t, SPEC))
    assert set(sql) == {"duckdb", "pyspark"}
    for dialect, text in sql.items():
        assert len(text.splitlines()) < 600, dialect


def test_cache_key_changes_with_lake_version_spec_and_gap(tmp_path):
    other = parse_spec("model: three-stage\ntouchpoints: []\ngoal: {match: {event: buy}}\n")
    lake = tmp_path / "lake"
    keys = {
        JourneyCache.key(lake, 1, SPEC, 30),
        JourneyCache.key(lake, 2, SPEC, 30),
        JourneyCache.key(lake, 1, other, 30),
        JourneyCache.key(lake, 1, SPEC, 45),
    }
    assert len(keys) == 4
    assert JourneyCache.key(lake, 1, SPEC, 30) == JourneyCache.key(lake, 1, SPEC, 30)


@pytest.mark.parametrize("bad_gap", [0, -5])
def test_session_gap_must_be_positive(tmp_path, bad_gap):
    from journeymap.config import Settings
    from journeymap.errors import ConfigError

    with pytest.raises(ConfigError, match="session_gap_minutes"):
        Settings.load(tmp_path, overrides={"session_gap_minutes": bad_gap})


def test_empty_touchpoint_list_still_builds(duck):
    spec = parse_spec("model: three-stage\ngoal: {match: {event: buy}}\n")
    t = register(
        duck, make_events([{"customer_id": "c", "ts": "2026-01-01T10:00:00+00:00", "event": "buy"}])
    )
    out = build_journey(t, spec).to_pyarrow()
    assert isinstance(out, pa.Table)
    assert out.column("touchpoint").to_pylist() == [None]
    assert out.column("is_conversion").to_pylist() == [True]
