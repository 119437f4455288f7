"""Campaign definitions (YAML with file/line/field errors), the shipped playbooks, and the
campaign report with uplift vs holdout."""

from __future__ import annotations

import datetime as dt
import textwrap

import pytest

from journeymap.channels import ChannelRegistry
from journeymap.channels.dummy import DummyChannel
from journeymap.errors import SpecError
from journeymap.model.campaigns import (
    CampaignError,
    SendStep,
    load_campaigns,
    parse_campaign,
    parse_duration,
)
from journeymap.orchestration import (
    CampaignEngine,
    FakeClock,
    OutboxWorker,
    PolicySettings,
    campaign_report,
)
from journeymap.orchestration.report import newcombe, wilson
from journeymap.playbooks import PLAYBOOKS, load_playbook, load_playbooks, playbook_text
from journeymap.storage.db import OperationalDB
from journeymap.storage.profiles import ConsentChange, IdentityOp, ProfileStore

VALID = """\
id: reminder
name: Cart reminder
trigger:
  event: Cart Abandoned
  where: {device: [mobile, desktop]}
  entry_key: cart_id
goal: {event: Order Completed, window: 3d}
holdout: 0.1
reentry: after_exit
reentry_cooldown: 7d
steps:
  - {id: pause, type: wait, duration: 2h}
  - {id: evening, type: wait_until, time: "18:30"}
  - id: vip
    type: branch
    if: {field: profile.orders, op: gte, value: 3}
    then: mail
  - id: mail
    type: send
    channel: email
    message:
      email: {subject: "Hi {{ profile.first_name }}", text: "Your cart"}
"""


def test_a_valid_campaign_parses_with_durations_and_times():
    c = parse_campaign(VALID)
    assert c.goal is not None
    assert c.goal.window == dt.timedelta(days=3)
    assert c.steps[0].duration == dt.timedelta(hours=2)  # type: ignore[union-attr]
    assert c.steps[1].time == dt.time(18, 30)  # type: ignore[union-attr]
    assert c.steps[2].if_.op == "gte"  # type: ignore[union-attr]
    assert isinstance(c.step("mail"), SendStep)
    assert c.next_of("vip") == "mail"
    assert c.has_marketing()
    assert c.trigger.where == {"device": ["mobile", "desktop"]}


def problems(text: str) -> list[str]:
    with pytest.raises(CampaignError) as err:
        parse_campaign(textwrap.dedent(text), "c.yaml")
    assert isinstance(err.value, SpecError)
    assert isinstance(err.value, ValueError)
    assert str(err.value).startswith("the campaign has")
    return [str(p) for p in err.value.problems]


def test_every_problem_is_reported_with_file_line_field_and_allowed_values():
    found = problems("""\
        id: Bad-Id
        trigger: {event: Viewed, phase: purchase}
        reentry: sometimes
        holdout: 0.9
        steps:
          - {id: w, type: wait, duration: 2 days}
          - {id: u, type: wait_until, time: "25:00"}
          - {id: x, type: teleport}
          - {id: b, type: branch, if: {field: traits.vip}, then: nowhere}
          - id: s
            type: send
            channel: push
            message:
              push: {title: "Hi {{ profile.name }", body: ok}
          - {id: w, type: exit}
        """)
    assert found == [
        "c.yaml:1: id: 'Bad-Id' is not a valid id: use lower-case letters, digits and "
        "underscores, starting with a letter",
        "c.yaml:2: trigger: give exactly one of event or phase",
        "c.yaml:3: reentry: 'sometimes' is not allowed; allowed: 'never', 'after_exit' or 'always'",
        "c.yaml:4: holdout: Input should be less than or equal to 0.5",
        "c.yaml:6: steps[0].duration: '2 days' is not a duration; use a number and a unit "
        "s, m, h, d or w, e.g. 2d",
        "c.yaml:7: steps[1].time: '25:00' is not a time of day; use HH:MM, e.g. \"10:00\"",
        "c.yaml:8: steps[2]: 'teleport' is not a step type; allowed: wait, wait_until, "
        "wait_for, branch, split, send, update, exit",
        "c.yaml:9: steps[3].if.field: 'traits.vip' must name profile.<trait> or "
        "event.<property>, e.g. profile.orders",
        "c.yaml:9: steps[3].then: unknown step 'nowhere'; allowed: w, u, x, b, s",
        "c.yaml:14: steps[4].message.push.title: template error: unexpected '}' (template line 1)",
        "c.yaml:15: steps[5].id: duplicate step id 'w' (also steps[0])",
    ]


def test_a_send_step_needs_the_rendering_of_its_channel_and_push_limits():
    found = problems(f"""\
        id: c
        trigger: {{event: X}}
        steps:
          - id: s
            type: send
            channel: email
            message: {{text: hi}}
          - id: p
            type: send
            channel: push
            message: {{push: {{title: "{"t" * 51}", body: ok}}}}
          - {{id: m, type: send, channel: email, message: {{}}}}
        """)
    assert found == [
        "c.yaml:7: steps[0].message: channel 'email' needs a message.email rendering",
        "c.yaml:11: steps[1].message.push.title: 51 characters; at most 50",
        "c.yaml:12: steps[2].message: no rendering; give one of email, push, banner, webhook, text",
    ]


def test_unknown_fields_missing_fields_and_bad_yaml():
    assert problems("id: c\ntrigger: {event: X}\nstepz: []\n") == [
        "c.yaml:1: steps: required field is missing",
        "c.yaml:3: stepz: unknown field 'stepz'; check the spelling (see docs/spec.md)",
    ]
    assert problems("id: [\n")[0].startswith("c.yaml:2: not valid YAML")
    assert problems("- a\n") == [
        "c.yaml:1: a campaign is a YAML mapping with id, trigger and steps"
    ]


def test_durations():
    assert parse_duration("90s") == dt.timedelta(seconds=90)
    assert parse_duration("1w") == dt.timedelta(days=7)
    assert parse_duration(30) == dt.timedelta(seconds=30)
    with pytest.raises(ValueError, match="use a number and a unit"):
        parse_duration("soon")


def test_a_folder_of_campaigns_reports_problems_of_every_file(tmp_path):
    (tmp_path / "a.yaml").write_text(VALID)
    (tmp_path / "b.yaml").write_text(VALID)
    (tmp_path / "c.yml").write_text("id: c\ntrigger: {event: X}\nsteps: []\n")
    with pytest.raises(CampaignError) as err:
        load_campaigns(tmp_path)
    text = [str(p) for p in err.value.problems]
    assert any("b.yaml: id: duplicate campaign id 'reminder'" in t for t in text)
    assert any(t.startswith(f"{tmp_path / 'c.yml'}:3: steps:") for t in text)


def test_the_shipped_playbooks_validate():
    campaigns = load_playbooks()
    assert [c.id for c in campaigns] == list(PLAYBOOKS)
    assert {c.phase for c in campaigns} == {
        "consideration",
        "preference",
        "purchase",
        "after_sale",
        "loyalty",
    }  # awareness: none by design
    thanks = load_playbook("purchase_thank_you")
    assert all(s.transactional for s in thanks.steps if isinstance(s, SendStep))
    assert "tracking_number" in playbook_text("purchase_thank_you")
    with pytest.raises(KeyError, match="shipped: consideration_reminder"):
        playbook_text("awareness")


T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def test_the_playbooks_run_end_to_end_with_a_fake_clock(tmp_path):
    db = OperationalDB(f"sqlite:///{tmp_path / 'op.db'}")
    clock = FakeClock(T0)
    channels = ChannelRegistry()
    for name, trait in (("email", "email"), ("push", "push_token")):
        ch = DummyChannel(address_trait=trait)
        ch.name = name
        channels.add(ch)
    settings = PolicySettings(default_timezone="Europe/Berlin", caps={})
    engine = CampaignEngine(db, load_playbooks(), channels, settings=settings, clock=clock)
    worker = OutboxWorker(db, channels, settings=settings, clock=clock, engine=engine)
    ProfileStore(db).apply(
        [
            IdentityOp(
                kind="identify",
                event_id="e0",
                source="t",
                ts=T0,
                user_id="ana",
                traits={"email": "ana@example.com", "first_name": "Ana", "best_hour": 20},
                consent=[ConsentChange("email", "*", "granted")],
            )
        ]
    )
    engine.confirm_opt_in(engine.request_opt_in("ana"))
    order = {"order_id": "o1", "tracking_number": "TRK-77", "product_name": "Boots"}
    engine.handle({"customer_id": "ana", "event": "Order Completed", "properties": order})
    engine.handle({"customer_id": "ana", "event": "Order Delivered", "properties": order})
    events = []
    for _ in range(24 * 5):
        clock.advance(dt.timedelta(hours=1))
        events += worker.run_once()
    mails = channels.get("email").delivered  # type: ignore[attr-defined]
    subjects = [m.renderings["email"]["subject"] for m in mails]
    assert subjects[0] == "Thank you for order o1"
    assert "TRK-77" in mails[0].renderings["email"]["text"]
    assert ProfileStore(db).find("ana").traits["last_thanked_order"] == "o1"  # type: ignore[union-attr]
    review = [m for m in mails if m.campaign == "after_sale_review"]
    # ana is not in the holdout (hash 0.86 > 0.1): asked at 20:00 Berlin, her best hour
    assert [m.renderings["email"]["subject"] for m in review] == ["How do you like Boots?"]
    (row,) = [r for r in engine.outbox("ana") if r["campaign"] == "after_sale_review"][:1]
    assert row["sent_at"] == dt.datetime(2026, 3, 5, 19, 0, tzinfo=dt.UTC)  # 20:00 CET
    assert all(e["campaign"] in PLAYBOOKS for e in events)
    db.close()


def test_wilson_and_newcombe_match_the_published_example():
    # Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 vs 48/80
    low, high = newcombe(56, 70, 48, 80)
    assert (round(low, 4), round(high, 4)) == (0.0524, 0.3339)
    assert wilson(0, 10)[0] == 0.0


def test_the_report_shows_uplift_against_the_holdout(tmp_path):
    db = OperationalDB(f"sqlite:///{tmp_path / 'op.db'}")
    clock = FakeClock(T0)
    channels = ChannelRegistry()
    ch = DummyChannel()
    ch.name = "webhook"
    channels.add(ch)
    c = parse_campaign("""\
id: promo
trigger: {event: Visit}
goal: {event: Order Completed, window: 7d}
holdout: 0.5
steps:
  - {id: s, type: send, channel: webhook, message: {webhook: {x: 1}}}
""")
    engine = CampaignEngine(db, [c], channels, settings=PolicySettings(caps={}), clock=clock)
    store = ProfileStore(db)
    ids = [f"c{i}" for i in range(200)]
    store.apply(
        [
            IdentityOp(
                kind="identify",
                event_id=f"e{cid}",
                source="t",
                ts=T0,
                user_id=cid,
                consent=[ConsentChange("webhook", "*", "granted")],
            )
            for cid in ids
        ]
    )
    for cid in ids:
        engine.handle({"customer_id": cid, "event": "Visit"})
    groups = {e.customer_id: e.group for e in engine.entries()}
    clock.advance(dt.timedelta(days=1))
    for i, cid in enumerate(ids):  # treatment converts 1 in 2, holdout 1 in 5
        if i % (2 if groups[cid] == "treatment" else 5) == 0:
            engine.handle({"customer_id": cid, "event": "Order Completed"})
    OutboxWorker(db, channels, clock=clock).run_once(limit=1000)
    report = campaign_report(db, "promo")
    t, h = report.groups["treatment"], report.groups["holdout"]
    assert t.entries + h.entries == 200
    assert 60 < h.entries < 140
    assert t.messages_sent == t.entries
    assert h.messages_sent == 0
    assert h.messages_suppressed == h.entries
    assert report.uplift == pytest.approx(t.rate - h.rate)
    assert report.uplift_low is not None
    assert report.uplift_high is not None
    assert report.uplift_low < report.uplift < report.uplift_high
    assert report.significant
    db.close()


def test_preview_renders_every_send_step_sandboxed():
    from journeymap.orchestration.simulate import preview

    c = load_playbook("consideration_reminder")
    (out,) = preview(
        c,
        {"first_name": "<Ana>"},
        {"name": "Boots", "deal_percent": 15, "review_excerpt": "Warm & dry", "product_id": "p1"},
    )
    email = out["renderings"]["email"]
    assert email["subject"].startswith("<Ana>, Boots is still waiting: 15 % off")
    assert "&lt;Ana&gt;" in email["html"]  # autoescaped
    assert "Warm &amp; dry" in email["html"]
    assert out["renderings"]["push"]["deep_link"] == "shop://product/p1"
    assert len(out["renderings"]["push"]["title"]) <= 50
    evil = parse_campaign(
        "id: x\ntrigger: {event: X}\nsteps:\n  - {id: s, type: send, channel: text, "
        "message: {text: \"{{ ''.__class__.__mro__ }}\"}}\n"
    )
    from journeymap.orchestration.content import ContentError

    with pytest.raises(ContentError, match="unsafe"):
        preview(evil)


def test_simulate_replays_events_through_the_engine():
    from journeymap.orchestration.simulate import simulate

    events = [
        {
            "customer_id": f"c{i}",
            "event": "Order Completed",
            "ts": T0 + dt.timedelta(minutes=i),
            "properties": {"order_id": f"o{i}"},
        }
        for i in range(20)
    ] + [
        {
            "customer_id": f"c{i}",
            "event": "Order Delivered",
            "ts": T0 + dt.timedelta(days=2),
            "properties": {"order_id": f"o{i}"},
        }
        for i in range(20)
    ]
    result = simulate(
        [load_playbook("purchase_thank_you"), load_playbook("after_sale_review")],
        events,
        settings=PolicySettings(caps={}),
        traits={f"c{i}": {"email": f"c{i}@example.com"} for i in range(20)},
    )
    assert result.messages[("purchase_thank_you", "thanks", "sent")] == 20
    held = result.entries[("after_sale_review", "holdout")]
    assert result.entries[("after_sale_review", "treatment")] + held == 20
    assert result.messages[("after_sale_review", "ask", "sent")] == 20 - held
    assert result.messages[("after_sale_review", "ask", "holdout")] == held
    assert result.exits[("purchase_thank_you", "end")] == 20
