"""The decide API (SQLite and PostgreSQL): offers with file/line errors, eligibility, Thompson
sampling, holdout and control, caps per local day, consent, campaign banners first, exposure
events in the lake, tracked clicks and conversions — over a real uvicorn socket where HTTP
matters."""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
import textwrap
from urllib.parse import parse_qs, urlsplit

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from journeymap.channels.banner import BannerChannel
from journeymap.channels.base import OutboundMessage, TerminalChannelError
from journeymap.channels.tracking import TrackingLinks
from journeymap.collect.loader import InboxLoader
from journeymap.config import Settings
from journeymap.decide import DecideError, DecideService, OfferError, PersonaIndex, parse_offers
from journeymap.decide.offers import load_offers
from journeymap.model.campaigns import parse_campaign
from journeymap.orchestration import FakeClock, PolicySettings
from journeymap.orchestration.phases import PHASE_TRAIT
from journeymap.orchestration.runtime import CampaignRuntime, project_channels
from journeymap.server.app import create_app
from journeymap.server.testing import ServerThread
from journeymap.storage.db import (
    DECIDE_TABLES,
    SCHEMA_VERSION,
    OperationalDB,
    campaign_outbox,
    decide_exposures,
    offer_stats,
    schema_migrations,
)
from journeymap.storage.lake import DeltaEventStore
from journeymap.storage.profiles import ConsentChange, IdentityOp, ProfileStore

# Monday 2 March 2026, 09:00 UTC
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
NO_QUIET = {"quiet_start": None, "quiet_end": None}
LINKS = TrackingLinks("https://jm.example", "secret")

OFFERS = """\
slots: [home_hero, cart_sidebar, in_app_modal]
offers:
  - id: welcome
    slots: [home_hero]
    content:
      headline: "Welcome {{ profile.first_name }}"
      cta: Browse
      url: "https://shop.example/new?c={{ customer_id }}"
    eligible: {phases: [awareness, consideration]}
  - id: vip
    slots: [home_hero]
    content: {headline: "VIP <3", body: "For {{ persona }}", cta: Go, url: "https://shop.example/vip"}
    eligible:
      personas: [loyal]
      where: [{field: profile.orders, op: gte, value: 3}]
  - id: cart_deal
    slots: [cart_sidebar]
    content:
      headline: Free shipping
      cta: Checkout
      url: https://shop.example/cart
      image: https://shop.example/img/ship.png
    conversion: {event: Order Completed, window: 2d}
"""


def catalog(text: str = OFFERS):
    return parse_offers(textwrap.dedent(text), "offers.yaml")


@pytest.fixture
def clock():
    return FakeClock(T0)


def customer(db, cid, clock, *, consent=None, anonymous_id=None, **traits):
    if "phase" in traits:  # the trait the worker keeps (orchestration.phases)
        traits[PHASE_TRAIT] = traits.pop("phase")
    changes = [ConsentChange("banner", topic, status) for topic, status in (consent or {}).items()]
    ProfileStore(db).apply(
        [
            IdentityOp(
                kind="identify",
                event_id=f"id-{cid}-{clock.now().timestamp()}-{len(traits)}-{bool(consent)}",
                source="test",
                ts=clock.now(),
                user_id=cid,
                anonymous_id=anonymous_id,
                traits=traits or None,
                consent=changes,
            )
        ]
    )


def service(db, clock, offers=None, *, settings=None, **options):
    options.setdefault("seed", 7)
    return DecideService(
        db,
        offers if offers is not None else catalog(),
        tracking=LINKS,
        settings=settings or PolicySettings(**NO_QUIET),
        clock=clock,
        **options,
    )


def exposures(db, **where):
    q = sa.select(decide_exposures).order_by(decide_exposures.c.decided_at)
    for k, v in where.items():
        q = q.where(decide_exposures.c[k] == v)
    with db.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def stats(db):
    with db.connect() as conn:
        return {
            (r.offer, r.persona): (r.exposures, r.clicks, r.conversions)
            for r in conn.execute(sa.select(offer_stats))
        }


# -- the offers file ----------------------------------------------------------------------
def test_offer_problems_are_reported_with_file_line_field_and_allowed_values():
    with pytest.raises(OfferError) as err:
        parse_offers(
            textwrap.dedent("""\
                offers:
                  - id: Spring
                    slots: [home_hero]
                    content: {headline: "Hi {{ profile.name }", cta: Go, url: "https://x"}
                    eligible:
                      phases: [buying]
                      where: [{field: traits.vip}]
                    start: soon
                    holdout: 0.8
                  - id: b
                    slots: [home_hero]
                    content: {headline: h, url: u}
                    conversion: {window: 2 days}
                    colour: red
                  - {id: b, slots: [x], content: {headline: h, cta: c, url: u},
                     start: 2026-03-10, end: 2026-03-01}
                """),
            "offers.yaml",
            phases=["awareness", "purchase"],
        )
    assert isinstance(err.value, ValueError)
    assert str(err.value).startswith("the offers file has 11 problems:")
    assert [str(p) for p in err.value.problems] == [
        "offers.yaml:2: offers[0].id: 'Spring' is not a valid id: use lower-case letters, "
        "digits and underscores, starting with a letter",
        "offers.yaml:4: offers[0].content.headline: template error: unexpected '}' "
        "(template line 1)",
        "offers.yaml:6: offers[0].eligible.phases[0]: unknown phase 'buying'; allowed: "
        "awareness, purchase",
        "offers.yaml:7: offers[0].eligible.where[0].field: 'traits.vip' must name "
        "profile.<trait> or event.<key> (the request's context: page, locale …), "
        "e.g. profile.orders",
        "offers.yaml:8: offers[0].start: 'soon' is not a date or time; use 2026-03-01 or "
        "2026-03-01T08:00",
        "offers.yaml:9: offers[0].holdout: Input should be less than or equal to 0.5",
        "offers.yaml:12: offers[1].content.cta: required field is missing",
        "offers.yaml:13: offers[1].conversion.window: '2 days' is not a duration; use a number "
        "and a unit s, m, h, d or w, e.g. 2d",
        "offers.yaml:14: offers[1].colour: unknown field 'colour'; check the spelling "
        "(see docs/spec.md)",
        "offers.yaml:15: offers[2].id: duplicate offer id 'b' (also offers[1])",
        "offers.yaml:16: offers[2].end: the end 2026-03-01 is before the start 2026-03-10",
    ]


def test_offers_file_defaults_and_a_missing_file(tmp_path):
    c = catalog()
    deal = c.get("cart_deal")
    assert deal is not None
    assert deal.topic == "marketing"
    assert deal.conversion.event == "Order Completed"
    assert deal.conversion.window == dt.timedelta(days=2)
    assert c.known_slots() == ["home_hero", "cart_sidebar", "in_app_modal"]
    assert load_offers(tmp_path / "nope.yaml").offers == []


def test_a_broken_offers_file_keeps_the_last_valid_offers(db, clock, tmp_path):
    path = tmp_path / "offers.yaml"
    path.write_text(OFFERS)
    svc = service(db, clock, path, check_seconds=0)
    customer(db, "ana", clock, phase="awareness", first_name="Ana")
    assert svc.decide_and_log("home_hero", user_id="ana").offer is not None
    path.write_text(OFFERS + "  - id: Broken\n")
    d = svc.decide_and_log("home_hero", user_id="ana")
    assert d.offer is not None
    assert d.offer.id == "welcome"
    assert svc.catalog_error is not None
    assert "offers.yaml:" in str(svc.catalog_error)
    # a file that never was valid: the API says why (503)
    bad = tmp_path / "bad.yaml"
    bad.write_text("offers: [{id: x}]\n")
    with pytest.raises(DecideError) as err:
        service(db, clock, bad).decide("home_hero", user_id="ana")
    assert err.value.status == 503
    assert "bad.yaml:1: offers[0].slots: required field is missing" in err.value.message


# -- eligibility, persona, request errors -------------------------------------------------
def test_eligibility_by_phase_persona_and_traits(db, clock, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    pq.write_table(
        pa.table({"customer_id": ["lea", "max"], "persona": ["loyal", "loyal"]}),
        cache / "personas-abc.parquet",
    )
    svc = service(db, clock, personas=PersonaIndex(cache))
    customer(db, "ana", clock, phase="consideration", first_name="Ana <3")
    customer(db, "lea", clock, phase="loyalty", orders=5)
    customer(db, "max", clock, phase="loyalty", orders=1)
    customer(db, "bob", clock, phase="loyalty", orders=9, persona="loyal")  # trait wins

    ana = svc.decide_and_log("home_hero", user_id="ana", context={"page": "/"})
    assert ana.offer is not None
    assert ana.offer.id == "welcome"
    assert ana.offer.headline == "Welcome Ana &lt;3"  # traits are HTML-escaped
    assert ana.persona == "all"
    assert ana.reason == "sampled"
    assert ana.group == "treatment"
    lea = svc.decide_and_log("home_hero", user_id="lea")
    assert lea.offer is not None
    assert lea.offer.id == "vip"
    assert (lea.offer.headline, lea.offer.body) == ("VIP <3", "For loyal")
    assert lea.persona == "loyal"
    assert svc.decide_and_log("home_hero", user_id="bob").offer.id == "vip"  # type: ignore[union-attr]
    mx = svc.decide_and_log("home_hero", user_id="max")  # loyal, but only 1 order
    assert (mx.offer, mx.reason) == (None, "no_offer")
    # a visitor nobody knows: persona "all", no phase, so nothing for home_hero
    anon = svc.decide_and_log("home_hero", anonymous_id="visitor-1")
    assert (anon.offer, anon.reason, anon.persona) == (None, "no_offer", "all")
    deal = svc.decide_and_log("cart_sidebar", anonymous_id="visitor-1")
    assert deal.offer is not None
    assert deal.offer.image == "https://shop.example/img/ship.png"

    with pytest.raises(DecideError) as err:
        svc.decide("checkout", user_id="ana")
    assert err.value.code == "unknown_slot"
    assert "known slots: home_hero, cart_sidebar, in_app_modal" in err.value.message
    with pytest.raises(DecideError, match="give userId"):
        svc.decide("home_hero")


def test_offer_dates_and_request_context_conditions(db, clock):
    svc = service(
        db,
        clock,
        catalog("""\
            offers:
              - id: march
                slots: [s]
                content: {headline: h, cta: c, url: u}
                start: 2026-03-03
                end: 2026-03-04
                eligible: {where: [{field: event.locale, op: eq, value: de}]}
            """),
    )
    assert svc.decide_and_log("s", anonymous_id="v", context={"locale": "de"}).offer is None
    clock.set(dt.datetime(2026, 3, 3, 0, 0, tzinfo=dt.UTC))
    assert svc.decide_and_log("s", anonymous_id="v", context={"locale": "de"}).offer is not None
    assert svc.decide_and_log("s", anonymous_id="v", context={"locale": "fr"}).offer is None
    clock.set(dt.datetime(2026, 3, 4, 23, 59, tzinfo=dt.UTC))  # the end day is included
    assert svc.decide_and_log("s", anonymous_id="v", context={"locale": "de"}).offer is not None
    clock.set(dt.datetime(2026, 3, 5, 0, 0, tzinfo=dt.UTC))
    assert svc.decide_and_log("s", anonymous_id="v", context={"locale": "de"}).offer is None


def test_persona_index_reloads_when_a_newer_assignment_file_appears(tmp_path):
    index = PersonaIndex(tmp_path, check_seconds=0)
    assert index.persona("c1", {}) == "all"
    pq.write_table(
        pa.table({"customer_id": ["c1"], "persona": ["p1"], "persona_label": ["x"]}),
        tmp_path / "personas-old.parquet",
    )
    assert index.persona("c1", {}) == "p1"
    newer = tmp_path / "personas-new.parquet"
    pq.write_table(pa.table({"customer_id": ["c1"], "persona": ["p2"]}), newer)
    import os

    st = (tmp_path / "personas-old.parquet").stat()
    os.utime(newer, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert index.persona("c1", {}) == "p2"
    assert index.persona("c1", {"persona": "vip"}) == "vip"


# -- Thompson sampling --------------------------------------------------------------------
TWO = """\
offers:
  - {id: a, slots: [s], content: {headline: A, cta: c, url: "https://x/a"}}
  - {id: b, slots: [s], content: {headline: B, cta: c, url: "https://x/b"}}
"""


def test_thompson_sampling_converges_to_the_better_offer_and_explores(db, clock):
    svc = service(db, clock, catalog(TWO), seed=11)
    world = random.Random(3)
    rate = {"a": 0.10, "b": 0.02}
    shown = {"a": 0, "b": 0}
    late = {"a": 0, "b": 0}
    conversions = []
    rounds = 1500
    for i in range(rounds):
        clock.advance(dt.timedelta(seconds=10))
        d = svc.decide_and_log("s", anonymous_id=f"v{i}")
        assert d.offer is not None
        shown[d.offer.id] += 1
        if i >= rounds // 2:
            late[d.offer.id] += 1
        if world.random() < rate[d.offer.id]:
            conversions.append(
                {
                    "event_id": f"order-{i}",
                    "customer_id": None,
                    "anonymous_id": f"v{i}",
                    "event": "Order Completed",
                    "ts": clock.now() + dt.timedelta(minutes=5),
                }
            )
        if i % 50 == 49:  # the refresh the server runs: attribute, then take the counts
            svc.attribute(conversions)
            svc.load_counts()
    assert late["a"] > 0.75 * (rounds // 2), (shown, late)
    assert shown["b"] >= 20, "it keeps exploring the weaker offer"
    counts = stats(db)
    assert counts[("a", "all")][0] == shown["a"]
    assert counts[("b", "all")][0] == shown["b"]
    assert svc.attribute(conversions) == 0  # idempotent
    total = sum(c for _, _, c in counts.values())
    assert total == len(conversions)


def test_the_same_seed_replays_the_same_choices(db, clock):
    picks = []
    for _ in range(2):
        svc = service(db, clock, catalog(TWO), seed=5)
        picks.append([svc.decide("s", anonymous_id=f"w{i}")[0].offer.id for i in range(30)])  # type: ignore[union-attr]
    assert picks[0] == picks[1]
    assert set(picks[0]) == {"a", "b"}


# -- holdout, control, caps, consent ------------------------------------------------------
def test_holdout_and_control_get_nothing_but_are_logged(db, clock):
    text = TWO.replace('url: "https://x/a"}', 'url: "https://x/a"}, holdout: 0.5')
    svc = service(db, clock, catalog(text), settings=PolicySettings(global_control=0.2, **NO_QUIET))
    seen = {"treatment": 0, "holdout": 0, "control": 0}
    for i in range(300):
        d = svc.decide_and_log("s", user_id=f"c{i}")
        seen[d.group] += 1
        if d.group != "treatment":
            assert d.offer is None
            assert d.reason == d.group
            assert d.offer_id in ("a", "b")  # the offer they would have seen
        else:
            assert d.offer is not None
        if d.group == "control":  # a stable membership, whatever the draw
            assert svc.decide("s", user_id=f"c{i}")[0].group == "control"
    assert 30 <= seen["control"] <= 90
    assert seen["holdout"] >= 20
    rows = exposures(db)
    assert len(rows) == 300
    withheld = [r for r in rows if not r["shown"]]
    assert len(withheld) == seen["control"] + seen["holdout"]
    assert {r["reason"] for r in withheld} == {"control", "holdout"}
    assert all(r["offer"] in ("a", "b") for r in withheld)
    # the bandit counts only real exposures
    assert sum(e for e, _, _ in stats(db).values()) == seen["treatment"]


def test_caps_count_banner_exposures_per_local_day_and_offer(db, clock):
    text = TWO.replace('url: "https://x/b"}', 'url: "https://x/b"}, cap: {day: 1}')
    settings = PolicySettings(caps={"banner": {"day": 3}}, **NO_QUIET)
    svc = service(db, clock, catalog(text), settings=settings)
    # Tokyo (UTC+9): 09:00 UTC is 18:00 local; the local day ends at 15:00 UTC
    customer(db, "kei", clock, timezone="Asia/Tokyo")
    got = [svc.decide_and_log("s", user_id="kei") for _ in range(4)]
    assert [d.reason for d in got] == ["sampled", "sampled", "sampled", "cap"]
    assert sum(1 for d in got if d.offer_id == "b") <= 1  # b: once a day
    clock.set(dt.datetime(2026, 3, 2, 14, 59, tzinfo=dt.UTC))
    assert svc.decide_and_log("s", user_id="kei").reason == "cap"
    clock.set(dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC))  # midnight in Tokyo
    assert svc.decide_and_log("s", user_id="kei").reason == "sampled"
    # a new process counts what the database holds
    again = service(db, clock, catalog(text), settings=settings)
    assert [again.decide_and_log("s", user_id="kei").reason for _ in range(3)] == [
        "sampled",
        "sampled",
        "cap",
    ]


def test_consent_revoked_means_nothing_and_no_record_means_shown(db, clock):
    svc = service(db, clock, catalog(TWO))
    customer(db, "ana", clock)
    customer(db, "bea", clock, consent={"marketing": "revoked"})
    customer(db, "cid", clock, consent={"*": "denied"})
    customer(db, "dan", clock, consent={"*": "denied", "marketing": "granted"})
    assert svc.decide_and_log("s", user_id="ana").reason == "sampled"
    assert svc.decide_and_log("s", user_id="bea").reason == "no_consent"
    assert svc.decide_and_log("s", user_id="cid").reason == "no_consent"
    assert svc.decide_and_log("s", user_id="dan").reason == "sampled"
    ProfileStore(db).set_consent("ana", [ConsentChange("banner", "*", "revoked")], ts=clock.now())
    d = svc.decide_and_log("s", user_id="ana")
    assert (d.offer, d.reason) == (None, "no_consent")
    # with banners opt-in instead, no record means nothing
    strict = service(
        db, clock, catalog(TWO), settings=PolicySettings(opt_out_channels=(), **NO_QUIET)
    )
    assert strict.decide_and_log("s", anonymous_id="new-visitor").reason == "no_consent"


# -- campaign banners ---------------------------------------------------------------------
BANNER_CAMPAIGN = """\
id: cart_banner
trigger: {event: Cart Abandoned, entry_key: cart_id}
steps:
  - id: show
    type: send
    channel: banner
    message:
      banner:
        headline: "Your cart misses you, {{ profile.first_name }}"
        cta: Back to cart
        url: "https://shop.example/cart/{{ event.cart_id }}"
        slot: cart_sidebar
"""


def test_the_banner_channel_is_in_every_project_and_refuses_a_message_without_banner(tmp_path):
    import journeymap.decide  # noqa: F401  (the hook)

    registry = project_channels(Settings.load(tmp_path), LINKS, entry_points=False)
    assert "banner" in registry.names()
    channel = registry.get("banner")
    assert isinstance(channel, BannerChannel)
    msg = OutboundMessage("s1", "banner", "c", "camp", "step", renderings={"text": "hi"})
    with pytest.raises(TerminalChannelError) as err:
        channel.send(msg)
    assert err.value.reason == "content"


def test_a_campaign_banner_is_served_first_and_marked_delivered(db, clock, tmp_path):
    (tmp_path / "offers.yaml").write_text(OFFERS)
    settings = Settings.load(tmp_path, overrides={"quiet_hours": ""})
    runtime = CampaignRuntime.open(
        settings, db, clock=clock, campaigns=[parse_campaign(BANNER_CAMPAIGN, "c.yaml")]
    )
    customer(db, "ana", clock, first_name="Ana")
    runtime.engine.handle(
        {"customer_id": "ana", "event": "Cart Abandoned", "properties": {"cart_id": "k1"}}
    )
    svc = DecideService.open(runtime, seed=1)
    assert svc.campaign_slots == ["cart_sidebar"]
    assert svc.decide_and_log("home_hero", user_id="ana").reason != "campaign"  # other slot
    d = svc.decide_and_log("cart_sidebar", user_id="ana")
    assert d.reason == "campaign"
    assert d.offer is not None
    assert d.offer.headline == "Your cart misses you, Ana"
    assert d.offer.id == "campaign:cart_banner:show"
    assert d.offer.url is not None
    assert "/t/d/" in d.offer.url
    target = parse_qs(urlsplit(d.offer.url).query)["u"][0]
    assert target == "https://shop.example/cart/k1"
    with db.connect() as conn:
        row = conn.execute(sa.select(campaign_outbox)).one()
    assert (row.status, row.provider_id) == ("sent", f"decision:{d.decision_id}")
    assert exposures(db, decision_id=d.decision_id)[0]["send_id"] == row.send_id
    # delivered once; then the sampled offer
    nxt = svc.decide_and_log("cart_sidebar", user_id="ana")
    assert (nxt.reason, nxt.offer.id) == ("sampled", "cart_deal")  # type: ignore[union-attr]
    # the worker finds nothing left to do for it
    assert runtime.worker.run_once() == []


# -- over HTTP ----------------------------------------------------------------------------
class Env:
    def __init__(self, tmp_path, db, clock):
        (tmp_path / "offers.yaml").write_text(OFFERS)
        self.settings = Settings.load(
            tmp_path,
            overrides={
                "cors_origins": "https://shop.example",
                "tracking_base_url": "http://127.0.0.1:1",
                "quiet_hours": "",
            },
        )
        self.db = db
        runtime = CampaignRuntime.open(self.settings, db, clock=clock)
        self.app = create_app(
            self.settings, db=db, admin_token="t", loader_interval=0, campaigns=runtime
        )
        self.state = self.app.state.jm
        self.service = self.app.state.decide
        self.server = ServerThread(self.app).start()
        _, self.key = self.state.collector.registry.add("web")
        self.http = httpx.Client(base_url=self.server.url, timeout=30)

    def decide(self, body, *, key=None, basic=True):
        headers = {}
        if basic:
            raw = (key or self.key) + ":"
            headers["Authorization"] = "Basic " + base64.b64encode(raw.encode()).decode()
        return self.http.post("/v1/decide", content=json.dumps(body), headers=headers)

    def lake(self):
        self.service.flush()
        InboxLoader(self.db, self.state.store).load_all()
        store: DeltaEventStore = self.state.store
        return store.read().to_pylist() if store.exists() else []

    def close(self):
        self.http.close()
        self.server.stop()


@pytest.fixture
def env(db, clock, tmp_path):
    e = Env(tmp_path, db, clock)
    yield e
    e.close()


def assert_error(resp, status, code):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"code", "message", "detail"}
    assert body["code"] == code
    return body


def test_http_decide_answers_and_every_decision_lands_in_the_lake(env, clock):
    customer(env.db, "ana", clock, phase="awareness", first_name="Ana")
    r = env.decide({"userId": "ana", "slot": "home_hero", "context": {"page": "/home"}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"decision_id", "slot", "offer", "reason", "persona", "group"}
    assert body["offer"]["id"] == "welcome"
    assert body["offer"]["headline"] == "Welcome Ana"
    assert set(body["offer"]) == {"id", "headline", "body", "cta", "url", "image"}
    assert body["offer"]["url"].startswith("http://127.0.0.1:1/t/d/" + body["decision_id"])
    # writeKey in the body, an anonymous visitor, nothing eligible
    r2 = env.decide({"anonymousId": "v9", "slot": "home_hero", "writeKey": env.key}, basic=False)
    assert r2.status_code == 200, r2.text
    assert (r2.json()["offer"], r2.json()["reason"]) == (None, "no_offer")

    events = {e["event_id"]: e for e in env.lake()}
    shown = events[f"web:{body['decision_id']}"]
    assert shown["event"] == "Offer Shown"
    assert shown["customer_id"] == "ana"
    assert shown["channel"] == "banner"
    props = json.loads(shown["properties"])
    assert props["offer_id"] == "welcome"
    assert props["slot"] == "home_hero"
    assert props["persona"] == "all"
    assert props["group"] == "treatment"
    assert json.loads(shown["context"])["page"] == "/home"
    withheld = events[f"web:{r2.json()['decision_id']}"]
    assert withheld["event"] == "Offer Withheld"
    assert withheld["anonymous_id"] == "v9"
    assert json.loads(withheld["properties"])["reason"] == "no_offer"


def test_http_errors_auth_and_cors(env):
    body = assert_error(env.decide({"userId": "ana", "slot": "nowhere"}), 400, "unknown_slot")
    assert "home_hero, cart_sidebar, in_app_modal" in body["message"]
    assert body["detail"]["known_slots"] == ["home_hero", "cart_sidebar", "in_app_modal"]
    assert_error(env.decide({"slot": "home_hero"}), 400, "missing_customer")
    assert_error(env.decide({"userId": "ana"}), 400, "missing_slot")
    assert_error(
        env.decide({"userId": "a", "slot": "home_hero", "context": 3}), 400, "invalid_context"
    )
    assert_error(
        env.decide({"userId": "ana", "slot": "home_hero"}, basic=False), 401, "missing_write_key"
    )
    assert_error(
        env.decide({"userId": "ana", "slot": "home_hero"}, key="nope"), 401, "unknown_write_key"
    )
    bad = env.http.post(
        "/v1/decide",
        content=b"{not json",
        headers={"Authorization": "Basic " + base64.b64encode(f"{env.key}:".encode()).decode()},
    )
    assert bad.status_code == 400
    pre = env.http.options(
        "/v1/decide",
        headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"},
    )
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == "https://shop.example"
    r = env.http.post(
        "/v1/decide",
        content=json.dumps({"anonymousId": "v", "slot": "cart_sidebar", "writeKey": env.key}),
        headers={"Origin": "https://shop.example", "Content-Type": "text/plain"},
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "https://shop.example"


def test_http_click_records_a_click_and_redirects(env, clock):
    r = env.decide({"anonymousId": "v1", "slot": "cart_sidebar"})
    decision = r.json()
    url = decision["offer"]["url"]
    path = url.removeprefix("http://127.0.0.1:1")
    click = env.http.get(path, follow_redirects=False)
    assert click.status_code == 302
    assert click.headers["location"] == "https://shop.example/cart"
    assert env.http.get(path, follow_redirects=False).status_code == 302  # again: one click
    env.service.flush()
    assert stats(env.db)[("cart_deal", "all")] == (1, 1, 0)
    assert exposures(env.db)[0]["clicked_at"] is not None
    tampered = path.replace("cart", "evil")
    assert_error(env.http.get(tampered, follow_redirects=False), 400, "bad_signature")
    clicks = [e for e in env.lake() if e["event"] == "Offer Clicked"]
    assert len(clicks) == 1
    assert clicks[0]["anonymous_id"] == "v1"
    props = json.loads(clicks[0]["properties"])
    assert props["decision_id"] == decision["decision_id"]
    assert props["link_url"] == "https://shop.example/cart"


def test_conversions_in_the_lake_count_within_the_window(env, clock):
    customer(env.db, "ana", clock)
    customer(env.db, "bo", clock)
    for cid in ("ana", "bo"):
        assert env.decide({"userId": cid, "slot": "cart_sidebar"}).status_code == 200
    order = {"type": "track", "event": "Order Completed", "properties": {"revenue": 20}}
    msgs = [
        {
            **order,
            "userId": "ana",
            "messageId": "o1",
            "timestamp": (T0 + dt.timedelta(days=1)).isoformat(),
        },
        {
            **order,
            "userId": "bo",
            "messageId": "o2",
            "timestamp": (T0 + dt.timedelta(days=3)).isoformat(),
        },
        {
            **order,
            "userId": "bo",
            "messageId": "o0",
            "timestamp": (T0 - dt.timedelta(hours=1)).isoformat(),
        },
    ]
    basic = {"Authorization": "Basic " + base64.b64encode(f"{env.key}:".encode()).decode()}
    assert env.http.post("/v1/batch", json={"batch": msgs}, headers=basic).status_code == 200
    env.lake()
    clock.advance(dt.timedelta(days=3))
    result = env.service.refresh(env.state.store)
    assert result.conversions == 1  # bo's orders: one before, one after the 2-day window
    assert stats(env.db)[("cart_deal", "all")] == (2, 0, 1)
    assert env.service.refresh(env.state.store).conversions == 0
    assert env.service.sampler.counts("cart_deal", "all").conversions == 1
    converted = [r for r in exposures(env.db) if r["converted_at"] is not None]
    assert [r["customer_id"] for r in converted] == ["ana"]
    assert converted[0]["conversion_id"] == "web:o1"


def test_conversion_on_click_counts_at_once(db, clock):
    one = """\
        offers:
          - id: a
            slots: [s]
            content: {headline: A, cta: c, url: "https://x/a"}
            conversion: {on_click: true}
        """
    svc = service(db, clock, catalog(one))
    d = svc.decide_and_log("s", anonymous_id="v")
    assert d.offer is not None
    assert d.offer.id == "a"
    assert d.offer.url is not None
    q = parse_qs(urlsplit(d.offer.url).query)
    assert svc.click(d.decision_id, q["u"][0], q["s"][0]) == "https://x/a"
    assert stats(db)[("a", "all")] == (1, 1, 1)
    assert svc.sampler.counts("a", "all").conversions == 1


def test_migration_3_adds_the_decide_tables_to_an_existing_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    db = OperationalDB(url)
    with db.engine.begin() as conn:
        for table in DECIDE_TABLES:
            table.drop(conn)
        conn.execute(schema_migrations.delete().where(schema_migrations.c.version >= 3))
    db.close()
    db = OperationalDB(url)
    try:
        assert db.schema_version() == SCHEMA_VERSION >= 3
        names = set(sa.inspect(db.engine).get_table_names())
        assert {t.name for t in DECIDE_TABLES} <= names
    finally:
        db.close()


def test_gdpr_erasure_removes_the_decisions_of_a_customer(db, clock):
    from journeymap.decide.service import erase_decisions

    svc = service(db, clock, catalog(TWO))
    svc.decide_and_log("s", user_id="ana")
    svc.decide_and_log("s", anonymous_id="v-ana")
    svc.decide_and_log("s", user_id="bo")
    assert db.write(lambda conn: erase_decisions(conn, ["ana", "v-ana"])) == {"decide_exposures": 2}
    assert [r["customer_id"] for r in exposures(db)] == ["bo"]


CRASH_CHILD = """
import os, sys, time
from journeymap.decide import DecideService, parse_offers
from journeymap.channels.tracking import TrackingLinks
from journeymap.orchestration import PolicySettings
from journeymap.storage.db import OperationalDB
db = OperationalDB(sys.argv[1])
svc = DecideService(db, parse_offers(sys.argv[3]), tracking=TrackingLinks("https://x", "s"),
                    settings=PolicySettings(quiet_start=None, quiet_end=None),
                    journal_dir=sys.argv[2])
svc.start()
svc.journal.interval = 3600  # the mover would apply them; this process dies first
time.sleep(0.5)
for i in range(5):
    decision, record = svc.decide("s", anonymous_id=f"crash-{i}")
    svc.log(record).result()  # durable: the server would answer now
    print(decision.decision_id, flush=True)
os._exit(0)  # killed before the journal reached the database
"""


def test_a_crash_loses_no_answered_decision(db, clock, tmp_path):
    import subprocess
    import sys

    journal = tmp_path / "journal"
    url = db.url.render_as_string(hide_password=False)
    out = subprocess.run(
        [sys.executable, "-c", CRASH_CHILD, url, str(journal), TWO],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    answered = out.stdout.split()
    assert len(answered) == 5
    assert exposures(db) == []  # nothing reached the database before the crash
    (segment,) = journal.glob("*.jsonl")
    from journeymap.decide.journal import read_segment

    records = read_segment(segment)
    svc = service(db, clock, catalog(TWO), journal_dir=journal)
    assert svc.start() == 5
    try:
        assert sorted(r["decision_id"] for r in exposures(db)) == sorted(answered)
        assert sum(e for e, _, _ in stats(db).values()) == 5
        assert not segment.exists()
        svc._apply(records)  # a crash after the commit, before the deletion: applied again
        assert len(exposures(db)) == 5
        assert sum(e for e, _, _ in stats(db).values()) == 5
        d = svc.decide_and_log("s", anonymous_id="after")
        assert len(exposures(db)) == 6
        assert d.offer is not None
    finally:
        svc.close()
    assert list(journal.iterdir()) == []  # a clean shutdown leaves no journal
    InboxLoader(db, DeltaEventStore(tmp_path / "lake")).load_all()
    events = DeltaEventStore(tmp_path / "lake").read().to_pylist()
    assert sorted(e["anonymous_id"] for e in events if e["event"] == "Offer Shown") == sorted(
        ["after", *(f"crash-{i}" for i in range(5))]
    )
