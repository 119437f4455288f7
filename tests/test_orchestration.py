"""The campaign engine through a fake clock and the dummy channel (SQLite and PostgreSQL):
the right message, channel and local time; quiet hours, caps, consent, holdouts, goals,
waits, splits, retries and the outbox's at-most-once send ids."""

from __future__ import annotations

import datetime as dt
import json
import textwrap

import pyarrow as pa
import pytest
import sqlalchemy as sa

from journeymap.channels import ChannelRegistry
from journeymap.channels.dummy import DummyChannel
from journeymap.errors import ConfigError
from journeymap.model.campaigns import parse_campaign
from journeymap.model.events import EVENT_SCHEMA
from journeymap.orchestration import (
    CampaignEngine,
    FakeClock,
    OutboxWorker,
    PolicySettings,
    feedback_table,
    send_id,
)
from journeymap.server.testing import database_for_test
from journeymap.storage.db import (
    CAMPAIGN_TABLES,
    SCHEMA_VERSION,
    OperationalDB,
    schema_migrations,
)
from journeymap.storage.profiles import ConsentChange, IdentityOp, ProfileStore

# Monday 2 March 2026, 09:00 UTC (New York is on EST, UTC-5, until 8 March)
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
NO_QUIET = {"quiet_start": None, "quiet_end": None}


@pytest.fixture
def clock():
    return FakeClock(T0)


class Harness:
    def __init__(self, db, clock, campaigns, settings=None, **dummy):
        self.db, self.clock = db, clock
        self.channels = ChannelRegistry()
        self.email = DummyChannel(address_trait="email", **dummy)
        self.email.name = "email"
        self.hook = DummyChannel(deduplicates=True)
        self.hook.name = "webhook"
        self.channels.add(self.email)
        self.channels.add(self.hook)
        self.settings = settings or PolicySettings(**NO_QUIET)
        self.engine = CampaignEngine(
            db, campaigns, self.channels, settings=self.settings, clock=clock
        )
        self.worker = OutboxWorker(
            db, self.channels, settings=self.settings, clock=clock, engine=self.engine
        )
        self.profiles = ProfileStore(db)
        self._n = 0

    def customer(self, cid, *, consent="granted", confirmed=True, **traits):
        self._n += 1
        traits.setdefault("email", f"{cid}@example.com")
        traits.setdefault("first_name", cid.title())
        changes = [ConsentChange("email", "*", consent)] if consent else []
        self.profiles.apply(
            [
                IdentityOp(
                    kind="identify",
                    event_id=f"id-{cid}-{self._n}",
                    source="test",
                    ts=self.clock.now(),
                    user_id=cid,
                    traits=traits,
                    consent=changes,
                )
            ]
        )
        if confirmed:
            self.engine.confirm_opt_in(self.engine.request_opt_in(cid, "email"))

    def event(self, cid, name, **props):
        self._n += 1
        return self.engine.handle(
            {
                "customer_id": cid,
                "event": name,
                "ts": self.clock.now(),
                "properties": props,
                "event_id": f"ev-{self._n}",
            }
        )

    def run(self, delta=dt.timedelta(0)):
        self.clock.advance(delta)
        return self.worker.run_once()

    def outbox(self, cid=None):
        return self.engine.outbox(cid)


def campaign(body: str):
    return parse_campaign(textwrap.dedent(body), "test.yaml")


THANK_YOU = """
    id: thank_you
    trigger: {event: Order Completed, entry_key: order_id}
    reentry: always
    steps:
      - id: morning
        type: wait_until
        time: "10:00"
      - id: mail
        type: send
        channel: email
        message:
          email:
            subject: "Thanks {{ profile.first_name }} for order {{ event.order_id }}"
            html: '<p>Hi {{ profile.first_name }}</p><a href="https://shop.example/orders/{{ event.order_id }}">track</a>'
            text: "Order {{ event.order_id }}"
"""


def test_the_message_goes_out_at_the_customers_local_time_with_rendered_content(db, clock):
    h = Harness(db, clock, [campaign(THANK_YOU)])
    h.customer("ana", timezone="America/New_York")
    h.event("ana", "Order Completed", order_id="42")
    # 09:00 UTC is 04:00 in New York: the entry waits for 10:00 local = 15:00 UTC
    assert h.run() == []
    assert h.run(dt.timedelta(hours=5, minutes=59)) == []
    events = h.run(dt.timedelta(minutes=1))
    assert [e["event"] for e in events] == ["Message Sent"]
    (msg,) = h.email.delivered
    assert msg.channel == "email"
    assert msg.address == "ana@example.com"
    assert msg.renderings["email"]["subject"] == "Thanks Ana for order 42"
    assert msg.send_id == send_id("thank_you", "ana", "mail", "42")
    (row,) = h.outbox("ana")
    assert row["status"] == "sent"
    assert row["sent_at"] == T0 + dt.timedelta(hours=6)
    (entry,) = h.engine.entries("thank_you")
    assert entry.status == "completed"


def test_one_order_enters_once_and_nothing_is_sent_twice(db, clock):
    h = Harness(db, clock, [campaign(THANK_YOU)])
    h.customer("ana")
    h.event("ana", "Order Completed", order_id="42")
    h.event("ana", "Order Completed", order_id="42")  # replayed event
    h.event("ana", "Order Completed")  # no entry key: not entered
    h.run(dt.timedelta(days=1))
    h.run(dt.timedelta(days=1))
    assert len(h.engine.entries("thank_you")) == 1
    assert len(h.email.delivered) == 1
    assert max(h.email.calls.values()) == 1


def test_reentry_never_keeps_a_customer_to_one_entry(db, clock):
    body = THANK_YOU.replace("reentry: always", "reentry: never")
    h = Harness(db, clock, [campaign(body)])
    h.customer("ana")
    h.event("ana", "Order Completed", order_id="1")
    h.event("ana", "Order Completed", order_id="2")
    assert [e.entry_key for e in h.engine.entries()] == ["1"]


NOW_MAIL = """
    id: promo
    trigger: {event: Cart Abandoned}
    reentry: always
    steps:
      - id: mail
        type: send
        channel: email
        topic: offers
        message: {email: {subject: "Your cart", text: "Come back"}}
"""


def test_quiet_hours_defer_to_their_end_in_the_recipients_time_zone(db, clock):
    settings = PolicySettings(quiet_start=dt.time(21), quiet_end=dt.time(8))
    h = Harness(db, clock, [campaign(NOW_MAIL)], settings)
    h.customer("ana", timezone="Asia/Tokyo")  # 09:00 UTC = 18:00 Tokyo: fine
    h.customer("ben", timezone="America/Los_Angeles")  # 09:00 UTC = 01:00 LA: quiet
    h.event("ana", "Cart Abandoned")
    h.event("ben", "Cart Abandoned")
    h.run()
    assert [m.customer_id for m in h.email.delivered] == ["ana"]
    h.run(dt.timedelta(hours=6, minutes=59))  # 07:59 in LA
    assert len(h.email.delivered) == 1
    h.run(dt.timedelta(minutes=1))  # 08:00 in LA
    assert [m.customer_id for m in h.email.delivered] == ["ana", "ben"]
    assert h.outbox("ben")[0]["sent_at"] == dt.datetime(2026, 3, 2, 16, 0, tzinfo=dt.UTC)


def test_frequency_caps_count_the_local_day_and_week(db, clock):
    settings = PolicySettings(**NO_QUIET, caps={"email": {"day": 1}, "*": {"week": 2}})
    h = Harness(db, clock, [campaign(NOW_MAIL)], settings)
    h.customer("ana", timezone="Europe/Berlin")  # 10:00 Monday in Berlin
    h.event("ana", "Cart Abandoned")
    h.event("ana", "Cart Abandoned")
    h.run()
    assert len(h.email.delivered) == 1
    assert [r["reason"] for r in h.outbox("ana")] == [None, "cap"]
    # 23:30 UTC Monday is 00:30 Tuesday in Berlin: a new local day
    clock.set(dt.datetime(2026, 3, 2, 23, 30, tzinfo=dt.UTC))
    h.event("ana", "Cart Abandoned")
    h.run()
    assert len(h.email.delivered) == 2
    clock.advance(dt.timedelta(days=1))  # Wednesday: the weekly cap of 2 is reached
    h.event("ana", "Cart Abandoned")
    h.run()
    assert len(h.email.delivered) == 2
    assert h.outbox("ana")[-1]["reason"] == "cap"


def test_never_without_consent_and_double_opt_in_counts_only_once_confirmed(db, clock):
    h = Harness(db, clock, [campaign(NOW_MAIL)])
    h.customer("ana", confirmed=False)
    h.customer("ben", consent="denied")
    h.customer("cy", consent=None)
    for cid in ("ana", "ben", "cy"):
        h.event(cid, "Cart Abandoned")
    h.run()
    assert h.email.delivered == []
    reasons = {r["customer_id"]: r["reason"] for r in h.outbox()}
    assert reasons == {"ana": "unconfirmed", "ben": "no_consent", "cy": "no_consent"}
    token = h.engine.request_opt_in("ana")
    assert h.engine.confirm_opt_in(token)
    assert not h.engine.confirm_opt_in(token)
    h.event("ana", "Cart Abandoned")
    h.run()
    assert [m.customer_id for m in h.email.delivered] == ["ana"]


def test_consent_is_per_topic(db, clock):
    h = Harness(db, clock, [campaign(NOW_MAIL)])
    h.customer("ana")
    h.profiles.set_consent("ana", [ConsentChange("email", "offers", "denied")], ts=clock.now())
    h.event("ana", "Cart Abandoned")
    h.run()
    assert h.email.delivered == []
    assert h.outbox("ana")[0]["reason"] == "no_consent"


GOAL = """
    id: reminder
    trigger: {event: Cart Abandoned, entry_key: cart_id}
    goal: {event: Order Completed, window: 7d}
    steps:
      - {id: pause, type: wait, duration: 2d}
      - id: mail
        type: send
        channel: email
        message: {email: {subject: "Still thinking?", text: "Your cart"}}
"""


def test_exit_on_goal(db, clock):
    h = Harness(db, clock, [campaign(GOAL)])
    h.customer("ana")
    h.customer("ben")
    h.event("ana", "Cart Abandoned", cart_id="c1")
    h.event("ben", "Cart Abandoned", cart_id="c2")
    clock.advance(dt.timedelta(days=1))
    h.event("ana", "Order Completed")
    h.run(dt.timedelta(days=2))
    assert [m.customer_id for m in h.email.delivered] == ["ben"]
    ana = h.engine.entries(customer_id="ana")[0]
    assert (ana.status, ana.exit_reason) == ("exited", "goal")
    assert ana.converted_at == T0 + dt.timedelta(days=1)


def test_holdout_members_receive_nothing_but_are_recorded(db, clock):
    body = GOAL.replace("steps:", "holdout: 0.3\n    steps:") + textwrap.indent(
        textwrap.dedent("""
        - id: receipt
          type: send
          channel: webhook
          transactional: true
          message: {webhook: {kind: receipt, cart: "{{ event.cart_id }}"}}
        """),
        "      ",
    )
    h = Harness(db, clock, [campaign(body)])
    customers = [f"c{i}" for i in range(40)]
    for cid in customers:
        h.customer(cid)
        h.event(cid, "Cart Abandoned", cart_id=f"cart-{cid}")
    h.run(dt.timedelta(days=2))
    groups = {e.customer_id: e.group for e in h.engine.entries()}
    held = {c for c, g in groups.items() if g == "holdout"}
    assert 4 <= len(held) <= 20
    mailed = {m.customer_id for m in h.email.delivered}
    assert mailed == set(customers) - held
    suppressed = [r for r in h.outbox() if r["status"] == "suppressed"]
    assert {r["customer_id"] for r in suppressed} == held
    assert {r["reason"] for r in suppressed} == {"holdout"}
    # transactional messages are exempt from holdouts
    assert {m.customer_id for m in h.hook.delivered} == set(customers)
    hooks = {m.customer_id: m.renderings["webhook"] for m in h.hook.delivered}
    assert hooks["c0"] == {"kind": "receipt", "cart": "cart-c0"}
    # the same customers are held out every time (hash of customer and campaign)
    again = Harness(db, clock, [campaign(body)])
    assert {e.customer_id for e in again.engine.entries() if e.group == "holdout"} == held
    events = h.worker.suppressed_events()
    assert {json.loads(e["properties"])["reason"] for e in events} == {"holdout"}


def test_the_global_control_group_gets_no_marketing_from_any_campaign(db, clock):
    settings = PolicySettings(**NO_QUIET, global_control=0.2)
    h = Harness(db, clock, [campaign(NOW_MAIL)], settings)
    for i in range(30):
        h.customer(f"c{i}")
        h.event(f"c{i}", "Cart Abandoned")
    h.run()
    control = {e.customer_id for e in h.engine.entries() if e.group == "control"}
    assert control
    assert len(control) < 15
    assert not control & {m.customer_id for m in h.email.delivered}


WAIT_FOR = """
    id: review
    trigger: {event: Order Shipped, entry_key: order_id}
    steps:
      - id: delivered
        type: wait_for
        event: Order Delivered
        timeout: 5d
        on_timeout: sorry
      - id: ask
        type: send
        channel: email
        message: {email: {subject: "How was it?", text: "Review"}}
      - {id: done, type: exit}
      - id: sorry
        type: send
        channel: email
        message: {email: {subject: "Sorry for the delay", text: "Delay"}}
"""


def test_wait_for_an_event_with_a_timeout_branch(db, clock):
    h = Harness(db, clock, [campaign(WAIT_FOR)])
    h.customer("ana")
    h.customer("ben")
    h.event("ana", "Order Shipped", order_id="1")
    h.event("ben", "Order Shipped", order_id="2")
    clock.advance(dt.timedelta(days=2))
    h.event("ana", "Order Delivered")
    h.run()
    h.run(dt.timedelta(days=3))
    subjects = {m.customer_id: m.renderings["email"]["subject"] for m in h.email.delivered}
    assert subjects == {"ana": "How was it?", "ben": "Sorry for the delay"}
    reasons = {e.customer_id: e.exit_reason for e in h.engine.entries()}
    assert reasons == {"ana": "exit", "ben": "end"}


BRANCH = """
    id: loyalty
    trigger: {event: Order Completed, entry_key: order_id}
    steps:
      - id: vip
        type: branch
        if: {field: profile.orders, op: gte, value: 5}
        then: ab
        else: thanks
      - id: ab
        type: split
        variants:
          - {id: a, share: 50, next: offer_a}
          - {id: b, share: 50, next: offer_b}
      - id: offer_a
        type: send
        channel: email
        next: tag
        message: {email: {subject: "A", text: "a"}}
      - id: offer_b
        type: send
        channel: email
        next: tag
        message: {email: {subject: "B", text: "b"}}
      - id: thanks
        type: send
        channel: email
        next: tag
        message: {email: {subject: "Thanks", text: "t"}}
      - id: tag
        type: update
        set: {loyalty_contacted: true}
"""


def test_branches_splits_and_profile_updates(db, clock):
    h = Harness(db, clock, [campaign(BRANCH)])
    for i in range(40):
        h.customer(f"c{i}", orders=10 if i < 30 else 1)
        h.event(f"c{i}", "Order Completed", order_id=f"o{i}")
    h.run()
    by = {m.customer_id: m.renderings["email"]["subject"] for m in h.email.delivered}
    assert {by[f"c{i}"] for i in range(30, 40)} == {"Thanks"}
    vip = [by[f"c{i}"] for i in range(30)]
    assert set(vip) == {"A", "B"}
    assert 5 <= vip.count("A") <= 25
    variants = {m.customer_id: m.variant for m in h.email.delivered}
    assert all(variants[c] == s.lower() for c, s in by.items() if s in ("A", "B"))
    assert h.profiles.find("c0").traits["loyalty_contacted"] is True


def test_transient_then_success_terminal_recorded_and_never_twice(db, clock):
    h = Harness(db, clock, [campaign(NOW_MAIL)], script=["transient", "ok", "terminal"])
    h.customer("ana")
    h.customer("ben")
    h.event("ana", "Cart Abandoned")
    events = h.run()  # ana: transient; nothing to report yet
    assert events == []
    assert h.outbox("ana")[0]["status"] == "retry"
    assert h.run(dt.timedelta(seconds=30)) == []  # backoff: 1 minute
    events = h.run(dt.timedelta(seconds=30))
    assert [e["event"] for e in events] == ["Message Sent"]
    h.event("ben", "Cart Abandoned")
    events = h.run()
    assert [e["event"] for e in events] == ["Message Failed"]
    assert h.outbox("ben")[0]["status"] == "failed"
    assert h.outbox("ben")[0]["reason"] == "rejected"
    h.run(dt.timedelta(hours=2))
    assert h.email.calls == {h.outbox("ana")[0]["send_id"]: 2, h.outbox("ben")[0]["send_id"]: 1}
    assert [m.customer_id for m in h.email.delivered] == ["ana"]


def test_retries_stop_after_max_attempts(db, clock):
    settings = PolicySettings(**NO_QUIET, max_attempts=3)
    h = Harness(db, clock, [campaign(NOW_MAIL)], settings, transient=1.0)
    h.customer("ana")
    h.event("ana", "Cart Abandoned")
    for _ in range(5):
        h.run(dt.timedelta(hours=1))
    (row,) = h.outbox("ana")
    assert (row["status"], row["reason"], row["attempts"]) == ("failed", "retries_exhausted", 3)


def test_an_unknown_error_is_retried_only_where_the_provider_deduplicates(db, clock):
    h = Harness(db, clock, [campaign(NOW_MAIL)], script=["crash"])
    h.customer("ana")
    h.event("ana", "Cart Abandoned")
    h.run()
    h.run(dt.timedelta(hours=1))
    (row,) = h.outbox("ana")
    assert (row["status"], row["reason"]) == ("failed", "unknown")
    assert sum(h.email.calls.values()) == 1
    h.hook.script = ["crash"]
    body = NOW_MAIL.replace(
        "channel: email", "channel: webhook\n        transactional: true"
    ).replace(
        'message: {email: {subject: "Your cart", text: "Come back"}}',
        "message: {webhook: {x: 1}}",
    )
    h2 = Harness(db, clock, [campaign(body.replace("id: promo", "id: promo_hook"))])
    h2.hook.script = ["crash"]
    h2.customer("ben")
    h2.event("ben", "Cart Abandoned")
    h2.run()
    h2.run(dt.timedelta(minutes=1))
    assert [m.customer_id for m in h2.hook.delivered] == ["ben"]


def test_a_hard_bounce_suppresses_the_address_even_for_transactional_mail(db, clock):
    body = NOW_MAIL.replace("topic: offers", "transactional: true")
    h = Harness(db, clock, [campaign(body)], script=["bounce"])
    h.customer("ana", consent=None)  # transactional: no marketing consent needed
    h.event("ana", "Cart Abandoned")
    events = h.run()
    assert [e["event"] for e in events] == ["Message Bounced"]
    h.event("ana", "Cart Abandoned")
    h.run()
    rows = h.outbox("ana")
    assert [(r["status"], r["reason"]) for r in rows] == [
        ("failed", "hard_bounce"),
        ("suppressed", "bounced"),
    ]
    assert h.email.delivered == []


def test_transactional_mail_ignores_caps_and_quiet_hours(db, clock):
    body = NOW_MAIL.replace("topic: offers", "transactional: true")
    settings = PolicySettings(caps={"*": {"day": 1}})
    h = Harness(db, clock, [campaign(body)], settings)
    h.customer("ana", timezone="America/Los_Angeles", consent=None)  # 01:00 local
    for _ in range(3):
        h.event("ana", "Cart Abandoned")
    h.run()
    assert len(h.email.delivered) == 3


def test_feedback_events_fit_the_event_schema(db, clock):
    h = Harness(db, clock, [campaign(THANK_YOU)])
    h.customer("ana")
    h.event("ana", "Order Completed", order_id="7")
    events = h.run(dt.timedelta(days=1))
    table = feedback_table(events)
    assert table.schema == EVENT_SCHEMA
    row = table.to_pylist()[0]
    assert row["event"] == "Message Sent"
    assert row["campaign"] == "thank_you"
    props = json.loads(row["properties"])
    assert props["step"] == "mail"
    assert props["send_id"] == send_id("thank_you", "ana", "mail", "7")
    assert feedback_table([]).num_rows == 0
    assert isinstance(table, pa.Table)


def test_a_send_step_on_an_unconfigured_channel_is_a_config_error(db, clock):
    body = NOW_MAIL.replace("channel: email", "channel: sms")
    with pytest.raises(ConfigError, match="'sms', which is not configured; configured: email"):
        Harness(db, clock, [campaign(body)])


def test_a_crashed_worker_does_not_send_twice(db, clock):
    h = Harness(db, clock, [campaign(NOW_MAIL)])
    h.customer("ana")
    h.event("ana", "Cart Abandoned")
    row = h.outbox("ana")[0]
    h.worker._claim(row["send_id"])  # claimed, then the process died before the outcome
    assert h.worker.recover() == 1
    h.run(dt.timedelta(hours=1))
    assert h.email.delivered == []
    assert h.outbox("ana")[0]["reason"] == "unknown"


def test_migration_2_adds_the_campaign_tables_to_an_existing_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    db = OperationalDB(url)
    with db.engine.begin() as conn:
        for table in CAMPAIGN_TABLES:
            table.drop(conn)
        conn.execute(schema_migrations.delete().where(schema_migrations.c.version >= 2))
    db.close()
    db = OperationalDB(url)
    try:
        assert db.schema_version() == SCHEMA_VERSION
        names = set(sa.inspect(db.engine).get_table_names())
        assert {t.name for t in CAMPAIGN_TABLES} <= names
    finally:
        db.close()


def test_opens_clicks_unsubscribes_and_conversions_close_the_loop(db, clock):
    from journeymap.channels.tracking import TrackingLinks
    from journeymap.orchestration.loop import LoopRecorder, TrackingError

    settings = PolicySettings(
        **NO_QUIET, tracking_base_url="https://t.shop.example", tracking_secret="k"
    )
    body = GOAL.replace("    steps:", "    reentry: always\n    steps:")
    h = Harness(db, clock, [campaign(body)], settings)
    h.customer("ana")
    h.event("ana", "Cart Abandoned", cart_id="c1")
    h.run(dt.timedelta(days=2))
    (msg,) = h.email.delivered
    assert msg.links["unsubscribe"].startswith("https://t.shop.example/u/")
    tracking = TrackingLinks("https://t.shop.example", "k")
    loop = LoopRecorder(db, tracking, clock)
    sid = msg.send_id
    opened = loop.opened(sid, tracking.sign(sid, "open"))
    url = "https://shop.example/cart"
    clicked = loop.clicked(sid, url, tracking.sign(sid, url))
    with pytest.raises(TrackingError, match="bad signature"):
        loop.clicked(sid, "https://evil.example", tracking.sign(sid, url))
    with pytest.raises(TrackingError, match="unknown send id"):
        loop.opened("nope", tracking.sign("nope", "open"))
    h.event("ana", "Order Completed")
    unsub = loop.unsubscribed(sid, tracking.sign(sid, "unsubscribe"))
    conversions = loop.conversions("reminder")
    events = [opened, clicked, unsub, *conversions]
    assert [e["event"] for e in events] == [
        "Message Opened",
        "Message Link Clicked",
        "Unsubscribed",
        "Campaign Converted",
    ]
    assert all(e["campaign"] == "reminder" for e in events)
    assert json.loads(clicked["properties"])["step"] == "mail"
    assert json.loads(conversions[0]["properties"])["group"] == "treatment"
    assert feedback_table(events).num_rows == 4
    pid = h.profiles.find("ana").profile_id
    assert h.profiles.consent_status(pid, "email", "marketing") == "revoked"
    h.event("ana", "Cart Abandoned", cart_id="c2")
    h.run(dt.timedelta(days=3))
    assert len(h.email.delivered) == 1  # unsubscribed: no more marketing mail
    assert [r["reason"] for r in h.outbox("ana")] == [None, "no_consent"]


def test_gdpr_erasure_removes_campaign_state(db, clock):
    from journeymap.orchestration.engine import erase_customers

    h = Harness(db, clock, [campaign(NOW_MAIL)])
    h.customer("ana")
    h.customer("ben")
    h.event("ana", "Cart Abandoned")
    h.event("ben", "Cart Abandoned")
    counts = db.write(lambda conn: erase_customers(conn, ["ana"]))
    assert counts == {"campaign_entries": 1, "campaign_outbox": 1, "campaign_optins": 1}
    assert [e.customer_id for e in h.engine.entries()] == ["ben"]
    assert [r["customer_id"] for r in h.outbox()] == ["ben"]


def test_invariants_over_a_random_week_never_quiet_never_over_caps_never_without_consent(db, clock):
    import random
    from collections import Counter
    from zoneinfo import ZoneInfo

    settings = PolicySettings(
        quiet_start=dt.time(20), quiet_end=dt.time(9), caps={"email": {"day": 2, "week": 5}}
    )
    h = Harness(db, clock, [campaign(NOW_MAIL), campaign(GOAL)], settings, transient=0.2)
    rng = random.Random(7)
    zones = ["Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Sydney"]
    consenting = set()
    for i in range(12):
        consent = rng.choice(["granted", "granted", "denied", None])
        h.customer(f"c{i}", consent=consent, timezone=zones[i % 4])
        if consent == "granted":
            consenting.add(f"c{i}")
    for _ in range(7 * 24 * 2):  # a week in half hours
        for _ in range(rng.randrange(3)):
            cid = f"c{rng.randrange(12)}"
            h.event(cid, "Cart Abandoned", cart_id=f"k{rng.randrange(10**6)}")
        h.run(dt.timedelta(minutes=30))
    sent = [r for r in h.outbox() if r["status"] == "sent"]
    assert len(sent) > 20
    per_day: Counter[tuple[str, dt.date]] = Counter()
    per_week: Counter[tuple[str, int]] = Counter()
    for r in sent:
        tz = ZoneInfo(zones[int(r["customer_id"][1:]) % 4])
        # queued outside quiet hours (delivery may lag by a retry's backoff)
        created = r["created_at"].astimezone(tz)
        assert dt.time(9) <= created.time() < dt.time(20), (r["customer_id"], created)
        assert r["customer_id"] in consenting
        per_day[(r["customer_id"], created.date())] += 1
        per_week[(r["customer_id"], created.isocalendar().week)] += 1
    assert max(per_day.values()) <= 2
    assert max(per_week.values()) <= 5
    assert max(h.email.calls.values()) <= settings.max_attempts
    assert len({m.send_id for m in h.email.delivered}) == len(h.email.delivered)


def test_migration_4_widens_outbox_addresses_of_an_existing_database(tmp_path):
    """A database from before version 4 (address VARCHAR(320)) takes a push subscription
    document afterwards; on PostgreSQL, where the length is enforced."""

    url, cleanup = database_for_test("postgresql", tmp_path)
    db = OperationalDB(url)
    try:
        with db.engine.begin() as conn:
            conn.exec_driver_sql(
                "ALTER TABLE campaign_outbox ALTER COLUMN address TYPE VARCHAR(320)"
            )
            conn.execute(schema_migrations.delete().where(schema_migrations.c.version >= 4))
        db.close()
        db = OperationalDB(url)
        assert db.schema_version() == SCHEMA_VERSION >= 4
        column = {c["name"]: c for c in sa.inspect(db.engine).get_columns("campaign_outbox")}[
            "address"
        ]
        assert isinstance(column["type"], sa.Text)
    finally:
        db.close()
        cleanup()
