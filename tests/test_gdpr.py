"""GDPR export and erasure across the lake, the inbox, dead letters and profiles (SQLite and
PostgreSQL); erased data is physically gone from the lake's files and its log."""

from __future__ import annotations

import asyncio
import json
import uuid

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from journeymap.collect.collector import Collector
from journeymap.collect.loader import InboxLoader
from journeymap.collect.wire import segment_envelope
from journeymap.gdpr import delete_customer, export_customer
from journeymap.server.testing import BACKENDS, database_for_test
from journeymap.storage.db import OperationalDB, gdpr_log
from journeymap.storage.lake import DeltaEventStore
from journeymap.storage.profiles import ProfileStore

ME, ALIAS, ANON, OTHER, SHARED = "erase-me", "erase-me-old", "anon-erase", "keep-me", "shared-dev"


@pytest.fixture(params=BACKENDS)
def world(request, tmp_path):
    url, cleanup = database_for_test(request.param, tmp_path)
    db = OperationalDB(url)
    store = DeltaEventStore(tmp_path / "lake")
    collector = Collector(db)
    collector.registry.add("web")

    def send(*msgs):
        env = segment_envelope(
            {
                "batch": [
                    {"messageId": uuid.uuid4().hex, "timestamp": "2026-04-01T10:00:00Z", **m}
                    for m in msgs
                ]
            },
            None,
        )
        source = collector.registry.list()[0]
        asyncio.run(collector.accept(source, env))

    send(
        {"type": "page", "anonymousId": ANON, "name": "Home"},
        {
            "type": "identify",
            "userId": ALIAS,
            "anonymousId": ANON,
            "traits": {"email": "me@example.com", "consent": {"email": True}},
        },
        {"type": "identify", "userId": ME, "traits": {"name": "Me"}},
        {"type": "alias", "previousId": ALIAS, "userId": ME},
        {"type": "track", "userId": ME, "event": "Order Completed", "properties": {"revenue": 10}},
        {"type": "track", "userId": OTHER, "event": "Order Completed"},
        {"type": "identify", "userId": OTHER, "anonymousId": SHARED},
        {"type": "identify", "userId": ME, "anonymousId": SHARED},
        {"type": "page", "anonymousId": SHARED, "name": "Shared"},
    )
    InboxLoader(db, store).load_all()
    # one more event still in the inbox, and a dead letter that names the customer
    send(
        {"type": "track", "userId": ME, "event": "Pending"},
        {"type": "track", "userId": ME, "event": ""},
    )
    yield db, store
    db.close()
    cleanup()


def lake_rows(store):
    return store.read().to_pylist()


def test_export_has_events_profile_consent_pending_and_dead_letters(world):
    db, store = world
    doc = export_customer(db, store, ANON)  # any of the customer's ids works
    json.dumps(doc)  # JSON-ready
    assert set(doc["subject"]["user_ids"]) == {ME, ALIAS}
    assert doc["profile"]["customer_id"] == ME
    assert doc["profile"]["traits"] == {"email": "me@example.com", "name": "Me"}
    assert [c["channel"] for c in doc["consent"]] == ["email"]
    assert {h["name"] for h in doc["traits_history"]} == {"email", "name"}
    events = [e["event"] for e in doc["events"]]
    assert sorted(events) == sorted(
        ["page_view", "identify", "identify", "alias", "Order Completed", "identify"]
    )
    assert all(e["customer_id"] in (ME, ALIAS) for e in doc["events"])
    assert [m["event"] for m in doc["pending_messages"]] == ["Pending"]
    assert [d["reason"] for d in doc["dead_letters"]] == ["event.missing"]


def _lake_text(store) -> str:
    """Everything the lake folder holds, data files and log, as text."""
    parts = []
    for path in sorted(store.path.rglob("*")):
        if path.suffix == ".parquet":
            parts.append(json.dumps(pq.read_table(path).to_pylist(), default=str))
        elif path.is_file():
            parts.append(path.read_text(errors="replace"))
    return "\n".join(parts)


def test_delete_erases_everywhere_and_logs_no_personal_data(world, tmp_path):
    db, store = world
    assert ME in _lake_text(store)
    assert ALIAS in _lake_text(store)
    cache = tmp_path / "cache"
    (cache / "journey").mkdir(parents=True)
    (cache / "journey" / "journey-x.parquet").write_bytes(b"derived")
    receipt = delete_customer(db, store, ME, cache_dirs=(cache,))
    assert receipt.found
    counts = receipt.counts
    assert counts["lake_events"] == 6
    assert counts["lake_files_removed"] >= 1
    assert (counts["inbox_pending"], counts["dead_letters"], counts["profiles"]) == (1, 1, 2)
    assert counts["cached_tables_removed"] == 1

    rows = lake_rows(store)
    assert {r["customer_id"] for r in rows} == {OTHER, None}
    assert [r["anonymous_id"] for r in rows if r["customer_id"] is None] == [SHARED]
    text = _lake_text(store)
    for erased in (ME, ALIAS, ANON, "me@example.com"):
        assert erased not in text, f"{erased} is still in the lake's files"
    profiles = ProfileStore(db)
    for any_id in (ME, ALIAS, ANON):
        assert profiles.find(any_id) is None
    assert profiles.find(OTHER).customer_id == OTHER  # the other customer is untouched
    assert export_customer(db, store, ME)["events"] == []

    with db.connect() as conn:
        logged = conn.execute(
            sa.select(gdpr_log).where(gdpr_log.c.request_id == receipt.request_id)
        ).one()
    assert logged.action == "delete"
    assert json.loads(logged.outcome) == counts
    for erased in (ME, ALIAS, ANON):
        assert erased not in logged.outcome

    again = delete_customer(db, store, ME)
    assert not again.found
    assert again.counts.get("lake_events", 0) == 0


def test_delete_erases_campaign_state_and_decide_exposures(world):
    """Entries, outbox rows and decisions of the customer go; another customer's stay."""
    import datetime as dt

    from journeymap.channels import ChannelRegistry
    from journeymap.channels.dummy import DummyChannel
    from journeymap.model.campaigns import parse_campaign
    from journeymap.orchestration import FakeClock, PolicySettings
    from journeymap.orchestration.engine import CampaignEngine
    from journeymap.storage.db import campaign_entries, campaign_outbox, decide_exposures

    db, store = world
    clock = FakeClock(dt.datetime(2026, 4, 2, 10, tzinfo=dt.UTC))
    channels = ChannelRegistry()
    hook = DummyChannel()
    hook.name = "webhook"
    channels.add(hook)
    promo = parse_campaign(
        "id: promo\ntrigger: {event: Visit}\n"
        "steps:\n  - {id: s, type: send, channel: webhook, transactional: true, "
        "message: {webhook: {x: 1}}}\n"
    )
    engine = CampaignEngine(
        db,
        [promo],
        channels,
        settings=PolicySettings(quiet_start=None, quiet_end=None),
        clock=clock,
    )
    for cid in (ME, OTHER):
        engine.handle({"customer_id": cid, "event": "Visit"})
    now = clock.now()
    with db.engine.begin() as conn:
        for i, cid in enumerate((ME, OTHER)):
            conn.execute(
                decide_exposures.insert().values(
                    decision_id=f"d{i}",
                    customer_id=cid,
                    anonymous_id=None,
                    source="web",
                    slot="home_hero",
                    offer="deal",
                    persona="all",
                    group_name="treatment",
                    reason="shown",
                    shown=True,
                    decided_at=now,
                )
            )

    def owners():
        with db.connect() as conn:
            return {
                t.name: sorted(conn.execute(sa.select(t.c.customer_id)).scalars())
                for t in (campaign_entries, campaign_outbox, decide_exposures)
            }

    assert owners() == {
        n: [ME, OTHER] for n in ("campaign_entries", "campaign_outbox", "decide_exposures")
    }
    receipt = delete_customer(db, store, ME)
    assert owners() == {
        n: [OTHER] for n in ("campaign_entries", "campaign_outbox", "decide_exposures")
    }
    assert receipt.counts["campaign_entries"] == receipt.counts["decide_exposures"] == 1
