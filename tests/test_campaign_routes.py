"""The campaign endpoints through a real uvicorn socket (SQLite and PostgreSQL): an email sent by
the engine and worker to a real SMTP server (aiosmtpd), its tracked link, open pixel, RFC 8058
one-click unsubscribe and preference page followed like a mail client and a customer would;
double opt-in; forged links rejected without side effects; every recorded event in the lake
after a loader round, tied to campaign, step and variant."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import html.parser
import json
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from aiosmtpd.controller import Controller

from journeymap.config import Settings
from journeymap.model.campaigns import parse_campaign
from journeymap.orchestration import FakeClock
from journeymap.orchestration.runtime import CampaignRuntime
from journeymap.server.app import create_app
from journeymap.server.campaign_routes import PIXEL, language
from journeymap.server.testing import BACKENDS, ServerThread, database_for_test, free_port
from journeymap.storage.db import OperationalDB
from journeymap.storage.profiles import ConsentChange, IdentityOp, ProfileStore

T0 = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
FLOW = textwrap.dedent(
    """
    id: cart_mail
    trigger: {event: Cart Abandoned}
    reentry: always
    steps:
      - id: split
        type: split
        variants:
          - {id: a, share: 1}
          - {id: b, share: 1}
      - id: mail
        type: send
        channel: email
        topic: offers
        message:
          email:
            subject: "Your cart, {{ profile.first_name }}"
            html: '<html><body><p>Hi {{ profile.first_name }}</p><a href="https://shop.example/cart?id=7&amp;src=mail">Back to the cart</a></body></html>'
            text: "Your cart is waiting"
    """
)


class Sink:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            email.message_from_bytes(envelope.content, policy=email.policy.default)
        )
        return "250 Message accepted"


class Links(html.parser.HTMLParser):
    """Every ``href`` and ``img src`` of an HTML body."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.images: list[str] = []
        self.inputs: list[dict[str, str | None]] = []
        self.forms: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.hrefs.append(str(a["href"]))
        if tag == "img" and a.get("src"):
            self.images.append(str(a["src"]))
        if tag == "input":
            self.inputs.append(a)
        if tag == "form":
            self.forms.append(a)


def parse(html: str) -> Links:
    p = Links()
    p.feed(html)
    return p


@dataclass
class Env:
    http: httpx.Client
    runtime: CampaignRuntime
    state: Any
    sink: Sink
    clock: FakeClock

    @property
    def profiles(self) -> ProfileStore:
        return ProfileStore(self.state.db)

    def customer(self, cid: str, *, confirmed: bool = True) -> None:
        self.profiles.apply(
            [
                IdentityOp(
                    "identify",
                    f"id-{cid}",
                    "test",
                    self.clock.now(),
                    user_id=cid,
                    traits={"email": f"{cid}@example.com", "first_name": cid.title()},
                    consent=[ConsentChange("email", "*", "granted")],
                )
            ]
        )
        if confirmed:
            self.runtime.engine.confirm_opt_in(self.runtime.engine.request_opt_in(cid))

    def consent(self, cid: str, topic: str = "offers") -> str | None:
        profile = self.profiles.find(cid)
        assert profile is not None
        return self.profiles.consent_status(profile.profile_id, "email", topic)

    def abandon(self, cid: str, n: int) -> list[dict[str, Any]]:
        self.runtime.engine.handle(
            {"customer_id": cid, "event": "Cart Abandoned", "event_id": f"ev-{cid}-{n}"}
        )
        return self.runtime.worker.run_once()

    def lake(self) -> list[dict[str, Any]]:
        self.state.loader.load_all()
        store = self.state.store
        if not store.exists():
            return []
        cols = ["event_id", "event", "customer_id", "channel", "campaign", "properties"]
        return store.read(cols).to_pylist()

    def pending(self) -> int:
        return int(self.state.collector.inbox.stats().pending)


@pytest.fixture(params=BACKENDS)
def env(request, tmp_path) -> Iterator[Env]:
    url, cleanup = database_for_test(request.param, tmp_path)
    db = OperationalDB(url)
    sink = Sink()
    smtp_port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    port = free_port()
    settings = Settings.load(
        tmp_path,
        overrides={
            "tracking_base_url": f"http://127.0.0.1:{port}",
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp_port,
            "smtp_sender": "shop@example.com",
            "quiet_hours": "",
        },
    )
    clock = FakeClock(T0)
    runtime = CampaignRuntime.open(
        settings, db, clock=clock, campaigns=[parse_campaign(FLOW, "cart.yaml")]
    )
    app = create_app(settings, db=db, loader_interval=0, campaigns=runtime)
    try:
        with ServerThread(app, port=port) as server:
            http = httpx.Client(base_url=server.url, timeout=30)
            yield Env(http, runtime, app.state.jm, sink, clock)
            http.close()
    finally:
        controller.stop()
        db.close()
        cleanup()


def local(url: str) -> str:
    """The path and query of a URL that points at the test server."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def props(event: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(event["properties"]))


# -- the full loop ---------------------------------------------------------------------------
def test_the_full_loop_from_mail_to_click_open_unsubscribe_and_suppression(env):
    env.customer("ana")
    (sent,) = env.abandon("ana", 1)
    assert sent["event"] == "Message Sent", sent
    (msg,) = env.sink.messages
    send_id = msg["X-Journeymap-Send-Id"]
    body = msg.get_body(("html",)).get_content()
    links = parse(body)

    # the tracked link redirects to the shop and records a click
    (tracked,) = [h for h in links.hrefs if "/t/c/" in h]
    r = env.http.get(local(tracked))
    assert r.status_code == 302
    assert r.headers["location"] == "https://shop.example/cart?id=7&src=mail"

    # the pixel is a GIF that is never cached and records an open
    (pixel,) = links.images
    r = env.http.get(local(pixel))
    assert (r.status_code, r.content) == (200, PIXEL)
    assert r.headers["content-type"] == "image/gif"
    assert "no-store" in r.headers["cache-control"]
    env.http.get(local(pixel))  # a second load is the same event

    # the footer links the preference page
    prefs = env.runtime.tracking.preferences("ana")
    assert prefs in links.hrefs

    # List-Unsubscribe: GET shows a page and changes nothing (mail scanners prefetch)
    unsubscribe = msg["List-Unsubscribe"].strip().strip("<>")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    page = env.http.get(local(unsubscribe))
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "no-store" in page.headers["cache-control"]
    form = parse(page.text)
    assert form.forms[0]["method"] == "post"
    assert {"type": "hidden", "name": "List-Unsubscribe", "value": "One-Click"} in form.inputs
    assert env.consent("ana") == "granted"

    # RFC 8058 one-click POST (what Gmail and Yahoo send): consent revoked, idempotent
    for _ in range(2):
        r = env.http.post(local(unsubscribe), data={"List-Unsubscribe": "One-Click"})
        assert r.status_code == 200, r.text
        assert "unsubscribed" in r.text
    assert env.consent("ana") == "revoked"

    # a following send is suppressed for consent
    env.clock.advance(dt.timedelta(hours=1))
    assert env.abandon("ana", 2) == []
    assert len(env.sink.messages) == 1
    assert env.runtime.engine.outbox("ana")[-1]["reason"] == "no_consent"

    (variant,) = [r["variant"] for r in env.runtime.engine.outbox("ana") if r["send_id"] == send_id]
    assert variant in ("a", "b")
    # every recorded event is in the lake, once, tied to campaign, step and variant
    events = [e for e in env.lake() if e["campaign"] == "cart_mail"]
    names = sorted(e["event"] for e in events)
    assert names == ["Message Link Clicked", "Message Opened", "Unsubscribed"]
    for e in events:
        assert e["customer_id"] == "ana"
        assert e["channel"] == "email"
        assert e["event_id"].startswith("journeymap:jm-msg-")
        p = props(e)
        assert (p["send_id"], p["step"], p["topic"]) == (send_id, "mail", "offers")
        assert p["variant"] == variant
    (click,) = [e for e in events if e["event"] == "Message Link Clicked"]
    assert props(click)["link_url"] == "https://shop.example/cart?id=7&src=mail"
    assert env.pending() == 0


def test_forged_and_damaged_links_are_rejected_without_side_effects(env):
    env.customer("ana")
    env.abandon("ana", 1)
    (msg,) = env.sink.messages
    send_id = msg["X-Journeymap-Send-Id"]
    before = env.pending()

    # no open redirect: another target with the same signature, or a bad signature
    tracked = env.runtime.tracking.click(send_id, "https://shop.example/cart")
    sig = tracked.rsplit("s=", 1)[1]
    for url in (
        f"/t/c/{send_id}?u=https%3A%2F%2Fevil.example%2F&s={sig}",
        f"/t/c/{send_id}?u=https%3A%2F%2Fshop.example%2Fcart&s=0000",
        f"/t/c/{send_id}?u=https%3A%2F%2Fshop.example%2Fcart&s=%C3%A4",
        f"/t/c/{send_id}?s={sig}",
        f"/t/c/other?u=https%3A%2F%2Fshop.example%2Fcart&s={sig}",
    ):
        r = env.http.get(url)
        assert r.status_code == 400, url
        assert "location" not in r.headers
        assert "damaged or incomplete" in r.text

    # a forged pixel is still a pixel, but nothing is recorded
    r = env.http.get(f"/t/o/{send_id}.gif?s=forged")
    assert (r.status_code, r.content) == (200, PIXEL)
    r = env.http.get("/t/o/unknown.gif")
    assert (r.status_code, r.content) == (200, PIXEL)

    # a forged unsubscribe changes no consent
    for method in ("GET", "POST"):
        r = env.http.request(
            method, f"/u/{send_id}?s=forged", data={"List-Unsubscribe": "One-Click"}
        )
        assert r.status_code == 400
    # a valid link without the RFC 8058 body changes nothing either
    r = env.http.post(local(env.runtime.tracking.unsubscribe(send_id)), data={"x": "y"})
    assert r.status_code == 400
    assert "List-Unsubscribe=One-Click" in r.text
    assert env.consent("ana") == "granted"

    # a forged preference token
    token = env.runtime.tracking.preference_token("ana")
    forged = token.rsplit(".", 1)[0] + ".deadbeef"
    assert env.http.get(f"/prefs/{forged}").status_code == 400
    r = env.http.post(f"/prefs/{forged}", data={"shown": "email:*"})
    assert r.status_code == 400
    other = env.runtime.tracking.preference_token("ben").split(".")[0] + "." + token.split(".")[1]
    assert env.http.get(f"/prefs/{other}").status_code == 400
    assert env.consent("ana") == "granted"
    assert env.pending() == before
    assert [e for e in env.lake() if e["campaign"] == "cart_mail"] == []


# -- double opt-in ---------------------------------------------------------------------------
def test_double_opt_in_is_confirmed_by_the_button_not_by_opening_the_link(env):
    env.customer("ben", confirmed=False)
    env.abandon("ben", 1)
    assert env.runtime.engine.outbox("ben")[-1]["reason"] == "unconfirmed"
    token = env.runtime.engine.request_opt_in("ben")
    url = env.runtime.tracking.opt_in(token)
    assert url == f"{env.runtime.settings.tracking_base_url}/optin/{token}"

    page = env.http.get(local(url))  # a mail scanner prefetching the link
    assert page.status_code == 200
    assert parse(page.text).forms[0]["method"] == "post"
    env.clock.advance(dt.timedelta(hours=1))
    env.abandon("ben", 2)
    assert env.runtime.engine.outbox("ben")[-1]["reason"] == "unconfirmed"
    assert env.sink.messages == []

    r = env.http.post(local(url))  # the customer presses the button
    assert r.status_code == 200
    assert "confirmed" in r.text
    again = env.http.post(local(url))
    assert (again.status_code, "confirmed already" in again.text) == (200, True)
    assert "confirmed already" in env.http.get(local(url)).text

    env.clock.advance(dt.timedelta(hours=1))
    (sent,) = env.abandon("ben", 3)
    assert sent["event"] == "Message Sent"
    assert len(env.sink.messages) == 1

    (event,) = [e for e in env.lake() if e["event"] == "Opt-In Confirmed"]
    assert (event["customer_id"], event["channel"]) == ("ben", "email")
    assert props(event) == {"channel": "email", "double_opt_in": True}


def test_unknown_and_expired_opt_in_links_get_a_clear_404_page(env):
    env.customer("cleo", confirmed=False)
    r = env.http.get("/optin/no-such-token")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert "unknown" in r.text
    assert env.http.post("/optin/no-such-token").status_code == 404
    token = env.runtime.engine.request_opt_in("cleo")
    env.clock.advance(dt.timedelta(days=8))
    for method in ("GET", "POST"):
        r = env.http.request(method, f"/optin/{token}")
        assert r.status_code == 404
        assert "expired" in r.text
    env.abandon("cleo", 1)
    assert env.runtime.engine.outbox("cleo")[-1]["reason"] == "unconfirmed"


# -- the preference page ---------------------------------------------------------------------
def test_the_preference_page_round_trip(env):
    env.customer("ana")
    url = env.runtime.tracking.preferences("ana")
    page = env.http.get(local(url))
    assert page.status_code == 200
    links = parse(page.text)
    shown = [i["value"] for i in links.inputs if i["name"] == "shown"]
    assert shown == ["email:*", "email:offers"]  # consent the customer has + campaign topics
    ticked = [i["value"] for i in links.inputs if i["name"] == "c" and "checked" in i]
    assert ticked == ["email:*", "email:offers"]

    # keep email in general, but no offers
    r = env.http.post(local(url), data={"shown": shown, "c": ["email:*"]})
    assert r.status_code == 200, r.text
    assert "preferences are saved" in r.text
    assert env.consent("ana", "offers") == "denied"
    assert env.consent("ana", "*") == "granted"
    ticked = [i["value"] for i in parse(r.text).inputs if i["name"] == "c" and "checked" in i]
    assert ticked == ["email:*"]
    profile = env.profiles.find("ana")
    assert profile is not None
    history = env.profiles.consent_history(profile.profile_id)
    assert history[-1]["source"] == "preference_page"

    # the same form again changes nothing and records nothing
    r = env.http.post(local(url), data={"shown": shown, "c": ["email:*"]})
    assert "Nothing changed" in r.text
    env.abandon("ana", 1)
    assert env.runtime.engine.outbox("ana")[-1]["reason"] == "no_consent"

    # a box that was not on the page is refused, nothing saved
    r = env.http.post(local(url), data={"shown": shown, "c": ["email:*", "sms:*"]})
    assert r.status_code == 400
    assert "was not on the page" in r.text
    assert env.consent("ana", "offers") == "denied"

    (event,) = [e for e in env.lake() if e["event"] == "Preferences Updated"]
    assert event["customer_id"] == "ana"
    assert props(event) == {
        "changes": [{"channel": "email", "topic": "offers", "status": "denied"}],
        "source": "preference_page",
    }


def test_the_preference_page_of_an_unknown_customer_is_a_404_page(env):
    url = env.runtime.tracking.preferences("nobody")
    r = env.http.get(local(url))
    assert r.status_code == 404
    assert "do not know this customer" in r.text


def test_pages_speak_german_when_the_browser_asks_for_it(env):
    env.customer("ana")
    url = local(env.runtime.tracking.preferences("ana"))
    r = env.http.get(url, headers={"Accept-Language": "de-DE,de;q=0.9,en;q=0.8"})
    assert '<html lang="de">' in r.text
    assert "Einstellungen speichern" in r.text
    assert "E-Mail" in r.text
    assert language("en-US,en;q=0.9,de;q=0.8") == "en"
    assert language("fr-FR, de;q=0.5") == "de"
    assert language(None) == "en"


def test_pages_are_self_contained_and_escape_what_they_show(env):
    env.customer("ana")
    r = env.http.get(local(env.runtime.tracking.preferences("ana")))
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert r.headers["referrer-policy"] == "no-referrer"
    assert "http://" not in r.text.replace(env.runtime.settings.tracking_base_url, "")
    assert "https://" not in r.text
    assert "<script" not in r.text
    # a topic name from the database is escaped, never markup
    profile = env.profiles.find("ana")
    assert profile is not None
    env.profiles.set_consent("ana", [ConsentChange("email", "<b>x</b>", "granted")])
    r = env.http.get(local(env.runtime.tracking.preferences("ana")))
    assert "<b>x</b>" not in r.text
    assert "&lt;b&gt;x&lt;/b&gt;" in r.text
