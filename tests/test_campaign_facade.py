"""Campaigns through the facade and the CLI: the report joins the operational database with
the lake's feedback and goal events; ``simulate`` replays the lake (with phase entries from the
journey table) without touching the project's database."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from click.testing import CliRunner

from conftest import make_events
from journeymap import Journeymap
from journeymap.channels import ChannelRegistry
from journeymap.channels.dummy import DummyChannel
from journeymap.cli import main
from journeymap.collect.internal import record_events
from journeymap.collect.loader import InboxLoader
from journeymap.errors import ConfigError
from journeymap.orchestration import FakeClock, OutboxWorker, PolicySettings
from journeymap.orchestration.engine import CampaignEngine
from journeymap.orchestration.worker import feedback_event
from journeymap.storage.profiles import ConsentChange, IdentityOp

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)

SPEC = """\
version: 1
model: three-stage
touchpoints:
  - {id: visit, phase: before_purchase, match: {event: page_view}}
  - {id: cart, phase: during_purchase, match: {event: add_to_cart}}
  - {id: order, phase: during_purchase, match: {event: order_completed}}
  - {id: review, phase: after_purchase, match: {event: review_written}}
goal: {match: {event: order_completed}}
"""

PROMO = """\
id: promo
trigger: {event: add_to_cart}
goal: {event: order_completed, window: 7d}
holdout: 0.5
steps:
  - {id: nudge, type: send, channel: webhook, message: {webhook: {x: 1}}}
"""

AFTER = """\
id: after
trigger: {phase: after_purchase}
steps:
  - {id: ask, type: send, channel: webhook, message: {webhook: {review: true}}}
"""


@pytest.fixture
def project(tmp_path):
    (tmp_path / "journey.yaml").write_text(SPEC, encoding="utf-8")
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "promo.yaml").write_text(PROMO, encoding="utf-8")
    (tmp_path / "campaigns" / "after.yaml").write_text(AFTER, encoding="utf-8")
    return tmp_path


def test_report_counts_feedback_and_goal_revenue_per_group(project):
    ids = [f"c{i:03d}" for i in range(120)]
    with Journeymap(project) as jm:
        clock = FakeClock(T0)
        channels = ChannelRegistry()
        hook = DummyChannel()
        hook.name = "webhook"
        channels.add(hook)
        engine = CampaignEngine(
            jm.db,
            [jm.campaign("promo")],
            channels,
            settings=PolicySettings(caps={}, quiet_start=None, quiet_end=None),
            clock=clock,
        )
        jm.profiles.apply(
            [
                IdentityOp(
                    kind="identify",
                    event_id=f"id-{c}",
                    source="t",
                    ts=T0,
                    user_id=c,
                    consent=[ConsentChange("webhook", "*", "granted")],
                )
                for c in ids
            ]
        )
        for c in ids:
            engine.handle({"customer_id": c, "event": "add_to_cart", "ts": T0})
        groups = {e.customer_id: e.group for e in engine.entries()}
        OutboxWorker(jm.db, channels, clock=clock).run_once(limit=1000)
        sent = [r for r in engine.outbox() if r["status"] == "sent"]
        treated = sorted(groups[r["customer_id"]] for r in sent)
        assert set(treated) == {"treatment"}
        # every third delivered message is opened (twice: one open counts), every sixth clicked
        rows = {r.send_id: r for r in _outbox_rows(jm)}
        feedback = []
        for i, r in enumerate(sent):
            row = rows[r["send_id"]]
            if i % 3 == 0:
                feedback += [feedback_event(row, "opened", T0 + dt.timedelta(hours=1))] * 2
            if i % 6 == 0:
                feedback.append(feedback_event(row, "clicked", T0 + dt.timedelta(hours=2)))
        record_events(jm.db, feedback)
        InboxLoader(jm.db, jm.store).load_all()
        # orders: treatment customers c000, c001 … every second; holdout every fourth
        orders, expected = [], {"treatment": Decimal(0), "holdout": Decimal(0)}
        converted = {"treatment": 0, "holdout": 0}
        clock.advance(dt.timedelta(days=1))
        for i, c in enumerate(ids):
            g = groups[c]
            if i % (2 if g == "treatment" else 4) == 0:
                value = Decimal(10 + i)
                orders.append(
                    {
                        "customer_id": c,
                        "ts": clock.now(),
                        "event": "order_completed",
                        "revenue": value,
                        "event_id": f"o{i}",
                    }
                )
                engine.handle({"customer_id": c, "event": "order_completed", "ts": clock.now()})
                expected[g] += value
                converted[g] += 1
        jm.append(make_events(orders))
        report = jm.campaign_report("promo")
    t, h = report.groups["treatment"], report.groups["holdout"]
    assert t.entries + h.entries == 120
    assert t.messages_sent == len(sent) == t.entries
    assert t.opened == len(range(0, len(sent), 3))
    assert t.clicked == len(range(0, len(sent), 6))
    assert h.opened == h.clicked == h.messages_sent == 0
    assert (t.conversions, h.conversions) == (converted["treatment"], converted["holdout"])
    assert (t.revenue, h.revenue) == (expected["treatment"], expected["holdout"])
    assert report.uplift == pytest.approx(t.rate - h.rate)
    assert [(v.group, v.variant) for v in report.variants] == [
        ("treatment", None),
        ("holdout", None),
    ]


def _outbox_rows(jm):
    import sqlalchemy as sa

    from journeymap.storage.db import campaign_outbox

    with jm.db.connect() as conn:
        return conn.execute(sa.select(campaign_outbox)).all()


def _journey_events():
    day = dt.timedelta(days=1)
    rows = []
    # a: visit → cart → order → review (enters promo at the cart, converts; after at review)
    # b: visit → cart, no order;  c: visit only
    for c, steps in {
        "a": ["page_view", "add_to_cart", "order_completed", "review_written"],
        "b": ["page_view", "add_to_cart"],
        "c": ["page_view"],
    }.items():
        for k, event in enumerate(steps):
            rows.append(
                {
                    "customer_id": c,
                    "ts": T0 + k * day,
                    "event": event,
                    "revenue": 50 if event == "order_completed" else None,
                    "event_id": f"{c}{k}",
                }
            )
    return make_events(rows)


def test_simulate_replays_the_lake_with_phase_entries(project):
    with Journeymap(project) as jm:
        jm.append(_journey_events())
        result = jm.simulate_campaigns(days=30)
        assert not jm.has_db()  # the project's database was never created
    promo = {g: n for (c, g), n in result.entries.items() if c == "promo"}
    assert sum(promo.values()) == 2  # a and b put something in the cart
    # only a reached after_purchase; its phase entry triggers the review request
    assert sum(n for (c, _), n in result.entries.items() if c == "after") == 1
    sent_after = sum(n for (c, s, o), n in result.messages.items() if c == "after")
    assert sent_after == 1
    # a converted within the goal window (after the flow ended: measured, not an exit)
    assert sum(n for (c, _), n in result.conversions.items() if c == "promo") == 1
    assert result.exits[("promo", "end")] == 2


def test_cli_simulate_prints_entries_and_messages(project):
    with Journeymap(project) as jm:
        jm.append(_journey_events())
    out = CliRunner().invoke(
        main, ["--project", str(project), "campaigns", "simulate", "--days", "30"]
    )
    assert out.exit_code == 0, out.output
    assert "promo" in out.output
    assert "after" in out.output
    assert "Messages" in out.output


def test_unknown_campaign_names_the_known_ones(project):
    with (
        Journeymap(project) as jm,
        pytest.raises(ConfigError, match=r"unknown campaign 'nope'.*after.*promo"),
    ):
        jm.campaign("nope")


def test_feedback_event_properties_roundtrip(project):
    """The lake keeps the send id the report joins on."""
    with Journeymap(project) as jm:
        row = type(
            "Row",
            (),
            {
                "send_id": "s1",
                "campaign": "promo",
                "step": "nudge",
                "variant": None,
                "topic": "marketing",
                "transactional": False,
                "customer_id": "a",
                "channel": "webhook",
            },
        )()
        record_events(jm.db, [feedback_event(row, "opened", T0)])
        InboxLoader(jm.db, jm.store).load_all()
        props = json.loads(jm.store.read().to_pylist()[0]["properties"])
    assert props["send_id"] == "s1"
