"""``journeymap worker``: the inbox feed (a durable cursor, identities resolved as the loader
resolves them, messages the loader emptied read back from the lake), feedback events that
reach the lake, SIGTERM, and the outbox's two-phase SMTP commit with its fencing (SQLite and
PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import threading
import time

import pytest
import sqlalchemy as sa

from journeymap.channels.base import OutboundMessage, TransientChannelError
from journeymap.channels.email import SmtpEmailChannel
from journeymap.channels.registry import ChannelRegistry
from journeymap.collect.loader import InboxLoader
from journeymap.config import Settings
from journeymap.model.campaigns import parse_campaign
from journeymap.orchestration.engine import CampaignEngine
from journeymap.orchestration.gate import send_id
from journeymap.orchestration.policies import PolicySettings
from journeymap.orchestration.service import FEED_CURSOR, InboxFeed
from journeymap.orchestration.worker import OutboxWorker
from journeymap.server.testing import free_port
from journeymap.storage.db import campaign_outbox, inbox
from journeymap.storage.lake import DeltaEventStore
from worker_project import (
    CAMPAIGN,
    CountingSink,
    SinkController,
    append_inbox,
    seed_customers,
    signup_messages,
    start_worker,
    worker_command,
    write_project,
)

NO_QUIET = PolicySettings(quiet_start=None, quiet_end=None)
GOAL_CAMPAIGN = CAMPAIGN.replace(
    "reentry: never\n", "reentry: never\ngoal: {event: Order Completed, window: 7d}\n"
)


@pytest.fixture
def sink():
    counting = CountingSink()
    controller = SinkController(counting, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield counting, controller.port
    controller.stop()


def message(kind: str, message_id: str, **fields) -> dict:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    msg = {"type": kind, "messageId": message_id, "timestamp": stamp, **fields}
    return {
        "source": "web",
        "message_id": message_id,
        "received_at_us": time.time_ns() // 1000,
        "payload": json.dumps(msg),
    }


def engine_for(db, body: str = CAMPAIGN) -> CampaignEngine:
    channels = ChannelRegistry()
    channels.add(SmtpEmailChannel(port=free_port()))  # never reached by the feed
    return CampaignEngine(db, [parse_campaign(body, "c.yaml")], channels, settings=NO_QUIET)


def cursor_of(db) -> int:
    return db.counter(FEED_CURSOR)


def test_the_feed_tails_the_inbox_with_a_durable_cursor(db):
    engine = engine_for(db)
    seed_customers(db, 2)  # c000000, c000001 with email, consent and a confirmed opt-in
    append_inbox(
        db,
        [
            message("track", "m1", userId="c000000", event="Signed Up"),
            message("track", "m2", userId="c000001", event="Page Viewed"),  # no campaign's
            message("identify", "m3", userId="c000001", anonymousId="anon-7"),
        ],
    )
    feed = InboxFeed(db, engine)
    first = feed.feed_all()
    assert (first.messages, first.events) == (3, 1)
    assert [e.customer_id for e in engine.entries()] == ["c000000"]
    with db.connect() as conn:
        top = conn.execute(sa.select(sa.func.max(inbox.c.seq))).scalar_one()
    assert cursor_of(db) == top

    # an anonymous event of a visitor the identify linked counts for the customer; a new
    # feed (a restarted worker) starts at the cursor: nothing is handled twice
    append_inbox(db, [message("track", "m4", anonymousId="anon-7", event="Signed Up")])
    second = InboxFeed(db, engine).feed_all()
    assert (second.messages, second.events) == (1, 1)
    assert sorted(e.customer_id for e in engine.entries()) == ["c000000", "c000001"]
    assert InboxFeed(db, engine).feed_all().messages == 0


def test_a_profile_change_in_the_same_batch_reaches_the_send(db):
    """The identify that gives the email address precedes the trigger in the inbox: the feed
    applies it as the loader would, so the message is not suppressed for want of one."""
    engine = engine_for(db)
    append_inbox(
        db,
        [
            message(
                "identify",
                "id-1",
                userId="new1",
                traits={"email": "new1@example.com", "first_name": "Noa"},
            ),
            message("consent", "co-1", userId="new1", consent={"email": {"*": "granted"}}),
            message("track", "su-1", userId="new1", event="Signed Up"),
        ],
    )
    engine.confirm_opt_in(engine.request_opt_in("new1", "email"))
    InboxFeed(db, engine).feed_all()
    (row,) = engine.outbox("new1")
    assert (row["status"], row["address"]) == ("pending", "new1@example.com")
    assert "Welcome Noa" in row["payload"]


def test_messages_the_loader_emptied_are_read_back_from_the_lake(db, tmp_path):
    engine = engine_for(db)
    seed_customers(db, 3)
    feed = InboxFeed(db, engine, lake=tmp_path / "lake")
    feed.cursor()  # the worker has started before these messages arrive
    append_inbox(db, signup_messages(["c000000", "c000001", "c000002"]))
    InboxLoader(db, DeltaEventStore(tmp_path / "lake")).load_all()  # payloads cleared
    with db.connect() as conn:
        assert (
            conn.execute(sa.select(inbox.c.payload).where(inbox.c.source == "web")).all()
            == [(None,)] * 3
        )
    assert feed.feed_all().events == 3
    assert sorted(e.customer_id for e in engine.entries()) == ["c000000", "c000001", "c000002"]


def test_feedback_events_reach_the_lake_once(url, db, tmp_path, sink):
    counting, port = sink
    project = write_project(tmp_path / "p", url, port)
    (project / "campaigns" / "welcome.yaml").write_text(GOAL_CAMPAIGN, encoding="utf-8")
    seed_customers(db, 1)  # c000000 may be mailed; c000009 has no profile (no address)
    append_inbox(db, signup_messages(["c000000", "c000009"]))
    once = worker_command(project, "--once")
    subprocess.run(once, check=True, timeout=120, capture_output=True)
    append_inbox(db, [message("track", "o1", userId="c000000", event="Order Completed")])
    subprocess.run(once, check=True, timeout=120, capture_output=True)
    subprocess.run(once, check=True, timeout=120, capture_output=True)  # nothing new

    settings = Settings.load(project)
    store = DeltaEventStore(settings.lake)
    InboxLoader(db, store).load_all()
    events = store.read(["event", "customer_id", "campaign", "properties"]).to_pylist()
    ours = sorted((e["event"], e["customer_id"]) for e in events if e["event"] != "Signed Up")
    assert ours == [
        ("Campaign Converted", "c000000"),
        ("Message Sent", "c000000"),
        ("Message Suppressed", "c000009"),
        ("Order Completed", "c000000"),
    ]
    sent = next(e for e in events if e["event"] == "Message Sent")
    assert sent["campaign"] == "welcome"
    assert json.loads(sent["properties"])["send_id"] == send_id("welcome", "c000000", "mail", "-")
    suppressed = next(e for e in events if e["event"] == "Message Suppressed")
    assert json.loads(suppressed["properties"])["reason"] == "no_address"
    assert sum(counting.counts.values()) == 1


class SlowSink(CountingSink):
    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(0.3)
        return await super().handle_DATA(server, session, envelope)


def test_sigterm_finishes_the_messages_in_flight_and_exits_0(url, db, tmp_path):
    slow = SlowSink()
    controller = SinkController(slow, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        project = write_project(tmp_path / "p", url, controller.port)
        ids = seed_customers(db, 60)
        append_inbox(db, signup_messages(ids))
        worker = start_worker(project)
        deadline = time.monotonic() + 90
        while slow.total() < 3 and time.monotonic() < deadline:
            assert worker.poll() is None, (project / "worker.log").read_text()
            time.sleep(0.02)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
        with db.connect() as conn:
            states = dict(
                conn.execute(
                    sa.select(campaign_outbox.c.status, sa.func.count()).group_by(
                        campaign_outbox.c.status
                    )
                ).all()
            )
        assert "sending" not in states  # in-flight messages finished, the rest released
        assert states.get("sent", 0) == slow.total() < 60
        assert set(states) <= {"sent", "pending", "retry"}
        for _ in range(10):  # a restarted worker sends the rest, nothing twice
            subprocess.run(worker_command(project, "--once"), check=True, timeout=120)
            if slow.total() >= 60:
                break
        assert slow.total() == 60
        assert set(slow.counts.values()) == {1}
    finally:
        controller.stop()


def test_a_failed_commit_never_completes_the_smtp_transaction(sink):
    counting, port = sink
    channel = SmtpEmailChannel(host="127.0.0.1", port=port)
    msg = OutboundMessage(
        send_id="a" * 32,
        channel="email",
        customer_id="c1",
        campaign="welcome",
        step="mail",
        transactional=True,
        address="c1@example.com",
        renderings={"email": {"subject": "Hi", "text": "line\n.\n.. two"}},
    )

    def failing(point):
        raise TransientChannelError("the database is gone")

    with pytest.raises(TransientChannelError, match="the database is gone"):
        channel.send_committed(msg, failing)
    time.sleep(0.2)
    assert counting.total() == 0  # the server dropped the transaction without its dot
    channel.send(msg)  # the channel reconnects
    channel.send(msg.__class__(**{**msg.__dict__, "send_id": "b" * 32}))  # reuses it
    channel.close()
    assert dict(counting.counts) == {"a" * 32: 1, "b" * 32: 1}
    assert b"line\r\n.\r\n.. two" in counting.bodies["a" * 32]


def test_a_recovered_claim_cannot_commit_and_two_workers_never_share_a_row(db, sink):
    counting, port = sink
    engine = engine_for(db)
    ids = seed_customers(db, 40)
    for cid in ids:
        engine.handle({"customer_id": cid, "event": "Signed Up", "event_id": f"e-{cid}"})
    channels = ChannelRegistry()
    channels.add(SmtpEmailChannel(host="127.0.0.1", port=port))
    stale = OutboxWorker(db, channels, settings=NO_QUIET)
    row = stale.claim(1)[0]
    stale.recover()  # as a restarted worker would: the row is claimable again
    fresh = OutboxWorker(db, channels, settings=NO_QUIET)

    # the stale claim reaches its commit point after the row was recovered: no dot
    outcome = stale._deliver_row(row)
    assert outcome.values is None
    assert counting.total() == 0

    workers = [fresh, OutboxWorker(db, channels, settings=NO_QUIET)]
    claimed: list[list[str]] = [[], []]

    def run(i: int) -> None:
        while rows := workers[i].claim(5):
            claimed[i] += [r.send_id for r in rows]
            workers[i]._finish([workers[i]._deliver_row(r) for r in rows])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not set(claimed[0]) & set(claimed[1])
    assert len(claimed[0]) + len(claimed[1]) == 40
    assert counting.total() == 40
    assert set(counting.counts.values()) == {1}
    for w in [*workers, stale]:
        w.close()


PHASE_SPEC = """\
version: 1
model: three-stage
touchpoints:
  - {id: visit, phase: before_purchase, match: {event: Page Viewed}}
  - {id: cart, phase: during_purchase, match: {event: Product Added, where: {device: mobile}}}
  - {id: order, phase: during_purchase, match: {event: Order Completed}}
goal: {match: {event: Order Completed}}
"""

PHASE_CAMPAIGN = """\
id: cart_help
trigger: {phase: during_purchase}
steps:
  - {id: hello, type: send, channel: email, transactional: true,
     message: {email: {subject: "Need help?", text: "Hi"}}}
"""


def test_the_feed_enters_phase_campaigns_from_the_spec(db):
    """A customer whose event matches a touchpoint of another phase enters the campaign that
    triggers on that phase, once; an event of no touchpoint or of the same phase does not."""
    from journeymap.model.spec import parse_spec
    from journeymap.orchestration.phases import PHASE_TRAIT, PhaseTracker
    from journeymap.storage.profiles import ProfileStore

    engine = engine_for(db, PHASE_CAMPAIGN)
    seed_customers(db, 3)
    a, b, c = "c000000", "c000001", "c000002"
    append_inbox(
        db,
        [
            message("track", "p1", userId=a, event="Page Viewed"),
            message(
                "track", "p2", userId=a, event="Product Added", properties={"device": "mobile"}
            ),
            message("track", "p3", userId=a, event="Order Completed"),  # same phase: no re-entry
            message(
                "track", "p4", userId=b, event="Product Added", properties={"device": "desktop"}
            ),
            message("track", "p5", userId=c, event="Order Completed"),
        ],
    )
    tracker = PhaseTracker(parse_spec(PHASE_SPEC, "journey.yaml"), ProfileStore(db))
    InboxFeed(db, engine, phases=tracker).feed_all()
    assert sorted(e.customer_id for e in engine.entries()) == [a, c]
    profiles = ProfileStore(db)
    assert profiles.find(a).traits[PHASE_TRAIT] == "during_purchase"
    assert PHASE_TRAIT not in profiles.find(b).traits  # desktop cart matches no touchpoint
    # a restarted worker with a fresh tracker: the cursor and the trait keep it at one entry
    again = PhaseTracker(parse_spec(PHASE_SPEC, "journey.yaml"), ProfileStore(db))
    InboxFeed(db, engine, phases=again).feed_all()
    append_inbox(db, [message("track", "p6", userId=a, event="Order Completed")])
    InboxFeed(db, engine, phases=again).feed_all()
    assert sorted(e.customer_id for e in engine.entries()) == [a, c]
