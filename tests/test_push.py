"""Web Push against a local push service (http.server on 127.0.0.1): the receiver verifies the
VAPID token with the application server's public key and decrypts the aes128gcm payload with
the subscription's private key, as a browser's push service and service worker would. Also:
failure classification, subscription validation, the worker's handling of gone subscriptions,
and the server's ``/v1/push`` endpoints (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import json
import os
import stat
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import http_ece
import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from journeymap.channels import ChannelRegistry, OutboundMessage, TerminalChannelError
from journeymap.channels.push import (
    SUBSCRIPTION_TRAIT,
    PushDelivery,
    PushRetryError,
    PushSubscriptionError,
    PushSubscriptionGoneError,
    VapidKey,
    WebPushChannel,
    parse_subscription,
    subscriptions_of,
)
from journeymap.channels.tracking import TrackingLinks
from journeymap.config import Settings
from journeymap.errors import ConfigError
from journeymap.model.campaigns import parse_campaign
from journeymap.orchestration import CampaignEngine, FakeClock, OutboxWorker, PolicySettings
from journeymap.orchestration.preferences import add_push_subscription, remove_push_subscriptions
from journeymap.orchestration.runtime import CampaignRuntime, project_channels
from journeymap.server.app import create_app
from journeymap.server.testing import ServerThread, free_port
from journeymap.storage.profiles import IdentityOp, ProfileStore

SUBJECT = "mailto:ops@shop.example"
TRACKING = TrackingLinks("https://t.shop.example", "s3cret")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# -- a local push service ------------------------------------------------------------------
class PushService(http.server.BaseHTTPRequestHandler):
    """Accepts pushes at /push/<device>; ``statuses[device]`` lists answers to give first."""

    received: ClassVar[list[tuple[str, dict[str, str], bytes]]] = []
    statuses: ClassVar[dict[str, list[tuple[int, dict[str, str]]]]] = {}

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        device = self.path.rsplit("/", 1)[-1]
        queue = type(self).statuses.get(device) or []
        status, headers = queue.pop(0) if queue else (201, {"Location": f"/msg/{device}"})
        if status < 300:
            type(self).received.append(
                (device, {k.lower(): v for k, v in self.headers.items()}, body)
            )
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def push_service() -> Iterator[str]:
    PushService.received, PushService.statuses = [], {}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PushService)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass
class Device:
    """A browser's subscription: its ECDH key pair and auth secret, as PushManager makes."""

    endpoint: str
    key: ec.EllipticCurvePrivateKey
    auth: bytes

    @classmethod
    def new(cls, base: str, name: str) -> Device:
        return cls(f"{base}/push/{name}", ec.generate_private_key(ec.SECP256R1()), os.urandom(16))

    @property
    def subscription(self) -> dict[str, Any]:
        point = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": b64url(point), "auth": b64url(self.auth)},
        }

    def decrypt(self, body: bytes) -> dict[str, Any]:
        plain = http_ece.decrypt(
            body, private_key=self.key, auth_secret=self.auth, version="aes128gcm"
        )
        return json.loads(plain)


def verify_vapid(headers: dict[str, str], server_key: str, endpoint_origin: str) -> dict[str, Any]:
    """Check ``Authorization: vapid t=<JWT>, k=<key>`` like a push service (RFC 8292);
    ``headers`` has lower-case names."""
    scheme, _, params = headers["authorization"].partition(" ")
    assert scheme == "vapid"
    parts = dict(p.strip().split("=", 1) for p in params.split(","))
    assert parts["k"] == server_key
    head, payload, signature = parts["t"].split(".")
    assert json.loads(b64url_decode(head)) == {"typ": "JWT", "alg": "ES256"}
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(parts["k"]))
    raw = b64url_decode(signature)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public.verify(der, f"{head}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
    claims = json.loads(b64url_decode(payload))
    assert claims["aud"] == endpoint_origin
    assert claims["sub"] == SUBJECT
    assert time.time() < claims["exp"] <= time.time() + 24 * 3600
    return claims


def push(address: Any, *, transactional: bool = False, **rendering: Any) -> OutboundMessage:
    return OutboundMessage(
        send_id="sid-push-1",
        channel="push",
        customer_id="ana",
        campaign="reminder",
        step="nudge",
        variant="b",
        transactional=transactional,
        address=address if isinstance(address, str) else json.dumps(address),
        renderings={
            "push": {
                "title": "Still thinking, Ana?",
                "body": "Your cart is waiting — 10 % off until tonight.",
                "deep_link": "https://shop.example/cart?id=7",
                **rendering,
            }
        },
    )


@pytest.fixture
def channel(tmp_path) -> Iterator[WebPushChannel]:
    ch = WebPushChannel(
        vapid_private_key_file=tmp_path / "keys" / "vapid.pem",
        vapid_subject=SUBJECT,
        tracking=TRACKING,
    )
    yield ch
    ch.close()


# -- the channel -----------------------------------------------------------------------------
def test_a_push_is_vapid_signed_encrypted_and_decrypts_to_the_rendering(
    push_service, channel, tmp_path
):
    device = Device.new(push_service, "d1")
    result = channel.send(push(device.subscription))
    assert result.provider_id == "/msg/d1"
    ((name, headers, body),) = PushService.received
    assert name == "d1"
    key_file = tmp_path / "keys" / "vapid.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    server_key = channel.key.application_server_key
    assert len(b64url_decode(server_key)) == 65
    verify_vapid(headers, server_key, push_service)
    assert headers["content-encoding"] == "aes128gcm"
    assert headers["ttl"] == "86400"
    assert headers["urgency"] == "normal"
    topic = headers["topic"]
    assert len(topic) <= 32
    assert set(topic) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert b"Ana" not in body  # encrypted
    payload = device.decrypt(body)
    assert payload["title"] == "Still thinking, Ana?"
    assert payload["body"] == "Your cart is waiting — 10 % off until tonight."
    assert payload["deep_link"] == "https://shop.example/cart?id=7"
    assert payload["url"] == TRACKING.click("sid-push-1", "https://shop.example/cart?id=7")
    assert (payload["campaign"], payload["step"], payload["variant"]) == ("reminder", "nudge", "b")
    # the key survives a restart: the same file gives the same applicationServerKey
    assert VapidKey.from_file(key_file).application_server_key == server_key


def test_the_vapid_signature_does_not_verify_with_another_key(push_service, channel):
    device = Device.new(push_service, "d1")
    channel.send(push(device.subscription))
    ((_, headers, _),) = PushService.received
    other = VapidKey.generate().application_server_key
    forged = headers["authorization"].replace(channel.key.application_server_key, other)
    with pytest.raises(InvalidSignature):
        verify_vapid({"authorization": forged}, other, push_service)


def test_transactional_pushes_are_urgent_untracked_and_have_no_topic(push_service, channel):
    device = Device.new(push_service, "d1")
    channel.send(push(device.subscription, transactional=True))
    ((_, headers, body),) = PushService.received
    assert headers["urgency"] == "high"
    assert "topic" not in headers
    assert device.decrypt(body)["url"] == "https://shop.example/cart?id=7"


def test_every_device_gets_it_and_gone_ones_are_reported(push_service, channel):
    phone, laptop = Device.new(push_service, "phone"), Device.new(push_service, "laptop")
    PushService.statuses["phone"] = [(410, {})]
    result = channel.send(push([phone.subscription, laptop.subscription]))
    assert isinstance(result, PushDelivery)
    assert result.gone == (phone.endpoint,)
    assert [d for d, _, _ in PushService.received] == ["laptop"]
    assert laptop.decrypt(PushService.received[0][2])["title"] == "Still thinking, Ana?"


def test_all_devices_gone_is_a_terminal_hard_bounce(push_service, channel):
    phone, laptop = Device.new(push_service, "phone"), Device.new(push_service, "laptop")
    PushService.statuses = {"phone": [(410, {})], "laptop": [(404, {})]}
    with pytest.raises(PushSubscriptionGoneError) as err:
        channel.send(push([phone.subscription, laptop.subscription]))
    assert err.value.reason == "hard_bounce"
    assert set(err.value.endpoints) == {phone.endpoint, laptop.endpoint}


def test_failures_are_classified_and_retry_after_is_kept(push_service, channel):
    device = Device.new(push_service, "d1")
    PushService.statuses["d1"] = [
        (429, {"Retry-After": "120"}),
        (503, {}),
        (413, {}),
        (400, {}),
        (403, {}),
    ]
    with pytest.raises(PushRetryError, match="HTTP 429") as err:
        channel.send(push(device.subscription))
    assert err.value.retry_after == 120
    with pytest.raises(PushRetryError, match="HTTP 503") as err:
        channel.send(push(device.subscription))
    assert err.value.retry_after is None
    for reason in ("content", "content", "config"):
        with pytest.raises(TerminalChannelError) as terr:
            channel.send(push(device.subscription))
        assert terr.value.reason == reason
    assert PushService.received == []
    down = Device.new(f"http://127.0.0.1:{free_port()}", "d2")
    with pytest.raises(PushRetryError, match="ConnectionError"):
        channel.send(push(down.subscription))


def test_retry_after_as_an_http_date(push_service, tmp_path):
    now = 1_800_000_000.0
    ch = WebPushChannel(vapid_key=VapidKey.generate(), vapid_subject=SUBJECT, now=lambda: now)
    device = Device.new(push_service, "d1")
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now + 90))
    PushService.statuses["d1"] = [(503, {"Retry-After": when})]
    with pytest.raises(PushRetryError) as err:
        ch.send(push(device.subscription))
    ch.close()
    assert err.value.retry_after == 90


def test_a_message_without_push_rendering_or_subscription_is_terminal(channel, push_service):
    device = Device.new(push_service, "d1")
    msg = push(device.subscription)
    no_render = OutboundMessage(msg.send_id, "push", "ana", "c", "s", address=msg.address)
    with pytest.raises(TerminalChannelError, match="no push rendering") as err:
        channel.send(no_render)
    assert err.value.reason == "content"
    with pytest.raises(TerminalChannelError, match="no push subscription") as err:
        channel.send(push([]))
    assert err.value.reason == "config"
    with pytest.raises(TerminalChannelError, match="at most 3993"):
        channel.send(push(device.subscription, deep_link="https://shop.example/" + "x" * 4000))
    assert PushService.received == []


def test_subscriptions_are_validated_with_precise_errors():
    good = Device.new("https://fcm.googleapis.com/fcm/send", "abc").subscription
    assert parse_subscription(good) == {"endpoint": good["endpoint"], "keys": good["keys"]}
    cases = [
        ("not json", "must be an object"),
        ({"keys": good["keys"]}, "subscription.endpoint is missing"),
        ({**good, "endpoint": "ftp://x/y"}, "is not an https URL"),
        ({**good, "endpoint": "http://push.example/x"}, "must use https"),
        ({"endpoint": good["endpoint"]}, "subscription.keys is missing"),
        ({**good, "keys": {"auth": good["keys"]["auth"]}}, "keys.p256dh is missing"),
        ({**good, "keys": {**good["keys"], "p256dh": "AAAA"}}, "keys.p256dh is not a base64url"),
        ({**good, "keys": {**good["keys"], "auth": b64url(b"short")}}, "of 16 bytes"),
    ]
    for value, message in cases:
        with pytest.raises(PushSubscriptionError, match=message) as err:
            parse_subscription(value)
        assert "PushSubscription" in str(err.value)  # names the fix
    # the address is the trait's str(): JSON and the Python literal both read back
    assert (
        subscriptions_of(str([good]))
        == subscriptions_of(json.dumps(good))
        == [parse_subscription(good)]
    )


def test_vapid_settings_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="vapid_subject 'admin' must be a mailto: or https:"):
        WebPushChannel(vapid_key=VapidKey.generate(), vapid_subject="admin")
    bad = tmp_path / "vapid.pem"
    bad.write_text("not a key\n")
    with pytest.raises(ConfigError, match="delete it to create a new key pair"):
        VapidKey.from_file(bad)


def test_the_project_configures_push_through_the_channel_setup_hook(tmp_path):
    settings = Settings.load(tmp_path, overrides={"vapid_subject": SUBJECT})
    registry = project_channels(settings, TRACKING, entry_points=False)
    ch = registry.get("push")
    assert isinstance(ch, WebPushChannel)
    assert not settings.vapid_private_key_file.exists()  # created on first use
    assert ch.key.application_server_key
    assert settings.vapid_private_key_file.exists()


# -- the worker: a gone subscription is never used again -----------------------------------


T0 = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
PUSH_FLOW = textwrap.dedent(
    """
    id: cart_push
    trigger: {event: Cart Abandoned}
    reentry: always
    steps:
      - id: nudge
        type: send
        channel: push
        topic: offers
        message:
          push:
            title: "Still thinking, {{ profile.first_name }}?"
            body: "Your cart is waiting."
            deep_link: "https://shop.example/cart"
    """
)


def test_the_worker_suppresses_a_gone_subscription_and_sends_to_a_new_one(
    db, push_service, channel
):
    clock = FakeClock(T0)
    registry = ChannelRegistry()
    registry.add(channel)
    settings = PolicySettings(quiet_start=None, quiet_end=None)
    engine = CampaignEngine(
        db, [parse_campaign(PUSH_FLOW, "push.yaml")], registry, settings=settings, clock=clock
    )
    worker = OutboxWorker(db, registry, settings=settings, clock=clock, engine=engine)
    ProfileStore(db).apply(
        [
            IdentityOp(
                "identify", "n1", "t", clock.now(), user_id="ana", traits={"first_name": "Ana"}
            )
        ]
    )
    # three devices: their subscriptions together are longer than any email address, which
    # the outbox (TEXT) and the suppression list (a digest as key) must take on PostgreSQL too
    olds = [Device.new(push_service, f"old{i}") for i in range(3)]
    for old in olds:
        add_push_subscription(
            db, old.subscription, user_id="ana", anonymous_id=None, granted=True, now=clock.now()
        )
    profile = ProfileStore(db).find("ana")
    assert profile is not None
    assert profile.traits[SUBSCRIPTION_TRAIT] == [parse_subscription(o.subscription) for o in olds]
    assert len(json.dumps(profile.traits[SUBSCRIPTION_TRAIT])) > 320

    def abandon(n: int) -> list[dict[str, Any]]:
        engine.handle({"customer_id": "ana", "event": "Cart Abandoned", "event_id": f"e{n}"})
        return worker.run_once()

    for i in range(3):
        PushService.statuses[f"old{i}"] = [(410, {})]
    (event,) = abandon(1)
    assert event["event"] == "Message Bounced"
    clock.advance(dt.timedelta(hours=1))
    assert abandon(2) == []  # the same (gone) address is suppressed, nothing is sent
    assert engine.outbox("ana")[-1]["reason"] == "bounced"
    assert PushService.received == []
    # the service worker's pushsubscriptionchange: the page drops the old device, adds the new
    new = Device.new(push_service, "new")
    remove_push_subscriptions(db, [o.endpoint for o in olds], user_id="ana", now=clock.now())
    add_push_subscription(
        db, new.subscription, user_id="ana", anonymous_id=None, granted=True, now=clock.now()
    )
    clock.advance(dt.timedelta(hours=1))
    (event,) = abandon(3)
    assert event["event"] == "Message Sent"
    ((device, _, body),) = PushService.received
    assert device == "new"
    assert new.decrypt(body)["title"] == "Still thinking, Ana?"


# -- the server's push endpoints -------------------------------------------------------------
@pytest.fixture
def server(db, tmp_path, push_service) -> Iterator[Any]:
    settings = Settings.load(
        tmp_path, overrides={"vapid_subject": SUBJECT, "cors_origins": "https://shop.example"}
    )
    clock = FakeClock(T0)
    runtime = CampaignRuntime.open(
        settings, db, clock=clock, campaigns=[parse_campaign(PUSH_FLOW, "push.yaml")]
    )
    app = create_app(settings, db=db, loader_interval=0, campaigns=runtime)
    with ServerThread(app) as srv:
        _, key = app.state.jm.collector.registry.add("web")
        http = httpx.Client(base_url=srv.url, timeout=30, auth=(key, ""))
        yield http, app.state.jm, runtime
        http.close()
    channel = runtime.registry.get("push")
    assert isinstance(channel, WebPushChannel)
    channel.close()


def test_browsers_subscribe_and_get_pushed(server, push_service):
    http, state, runtime = server
    key = http.get("/v1/push/key").json()["applicationServerKey"]
    device = Device.new(push_service, "browser")
    r = http.post(
        "/v1/push/subscribe",
        json={"userId": "ana", "subscription": device.subscription, "permission": "granted"},
        headers={"Origin": "https://shop.example"},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True, "devices": 1}
    assert r.headers["access-control-allow-origin"] == "https://shop.example"
    profile = ProfileStore(state.db).find("ana")
    assert profile is not None
    assert profile.traits[SUBSCRIPTION_TRAIT] == [parse_subscription(device.subscription)]
    assert ProfileStore(state.db).consent_status(profile.profile_id, "push") == "granted"
    # the engine and worker deliver to it, signed with the key the browser subscribed with
    runtime.engine.handle({"customer_id": "ana", "event": "Cart Abandoned", "event_id": "e1"})
    (event,) = runtime.worker.run_once()
    assert event["event"] == "Message Sent", event
    ((_, headers, body),) = PushService.received
    verify_vapid(headers, key, push_service)
    payload = device.decrypt(body)
    assert payload["title"] == "Still thinking, ?"  # no first_name trait: renders empty
    assert payload["deep_link"] == "https://shop.example/cart"
    assert payload["url"] == runtime.tracking.click(payload["send_id"], payload["deep_link"])
    # the subscription event reaches the lake through the inbox
    state.loader.load_all()
    events = state.store.read(["event", "customer_id", "channel"]).to_pylist()
    assert {"event": "Push Subscribed", "customer_id": "ana", "channel": "push"} in events
    # the browser unsubscribes: the device is gone and push consent is denied
    r = http.request(
        "DELETE",
        "/v1/push/subscribe",
        json={"userId": "ana", "endpoint": device.endpoint, "permission": "denied"},
    )
    assert r.json() == {"success": True, "devices": 0}
    profile = ProfileStore(state.db).find("ana")
    assert profile is not None
    assert profile.traits[SUBSCRIPTION_TRAIT] == []
    assert ProfileStore(state.db).consent_status(profile.profile_id, "push") == "revoked"


def test_no_consent_is_recorded_without_the_permission(server, push_service):
    http, state, _ = server
    device = Device.new(push_service, "browser")
    r = http.post(
        "/v1/push/subscribe", json={"anonymousId": "v1", "subscription": device.subscription}
    )
    assert r.status_code == 200, r.text
    profile = ProfileStore(state.db).find("v1")
    assert profile is not None
    assert ProfileStore(state.db).consent_status(profile.profile_id, "push") is None
    # the same device again: refreshed, not doubled
    http.post("/v1/push/subscribe", json={"anonymousId": "v1", "subscription": device.subscription})
    profile = ProfileStore(state.db).find("v1")
    assert profile is not None
    assert len(profile.traits[SUBSCRIPTION_TRAIT]) == 1


def test_bad_subscribe_requests_get_precise_json_errors_and_store_nothing(server, push_service):
    http, state, _ = server
    good = Device.new(push_service, "b").subscription

    def error(body: Any, status: int, code: str, auth: Any = None) -> str:
        kwargs: dict[str, Any] = {"json": body} if auth is None else {"json": body, "auth": auth}
        r = http.post("/v1/push/subscribe", **kwargs)
        assert r.status_code == status, r.text
        doc = r.json()
        assert set(doc) == {"code", "message", "detail"}
        assert doc["code"] == code
        return str(doc["message"])

    assert "userId or anonymousId" in error({"subscription": good}, 400, "identity_missing")
    assert "subscription is missing" in error({"userId": "ana"}, 400, "invalid_subscription")
    bad_keys = {**good, "keys": {"p256dh": good["keys"]["p256dh"]}}
    assert "keys.auth is missing" in error(
        {"userId": "ana", "subscription": bad_keys}, 400, "invalid_subscription"
    )
    assert "Notification.permission" in error(
        {"userId": "ana", "subscription": good, "permission": "yes"}, 400, "invalid_request"
    )
    error({"userId": "ana", "subscription": good}, 401, "unknown_write_key", auth=("nope", ""))
    assert ProfileStore(state.db).find("ana") is None


def test_push_preflight_allows_only_configured_origins(server):
    http, _, _ = server
    ok = http.options("/v1/push/subscribe", headers={"Origin": "https://shop.example"})
    assert ok.status_code == 204
    assert "DELETE" in ok.headers["access-control-allow-methods"]
    bad = http.options("/v1/push/subscribe", headers={"Origin": "https://evil.example"})
    assert bad.status_code == 403
    assert bad.json()["code"] == "origin_not_allowed"


def test_the_worker_drops_gone_devices_and_waits_as_long_as_the_service_asks(
    db, push_service, channel
):
    clock = FakeClock(T0)
    registry = ChannelRegistry()
    registry.add(channel)
    settings = PolicySettings(quiet_start=None, quiet_end=None)
    engine = CampaignEngine(
        db, [parse_campaign(PUSH_FLOW, "push.yaml")], registry, settings=settings, clock=clock
    )
    worker = OutboxWorker(db, registry, settings=settings, clock=clock, engine=engine)
    ProfileStore(db).apply(
        [IdentityOp("identify", "n1", "t", clock.now(), user_id="ana", traits={"first_name": "A"})]
    )
    phone, laptop = Device.new(push_service, "phone"), Device.new(push_service, "laptop")
    for d in (phone, laptop):
        add_push_subscription(
            db, d.subscription, user_id="ana", anonymous_id=None, granted=True, now=clock.now()
        )
    # the phone unsubscribed (410): the laptop gets it, the phone leaves the profile
    PushService.statuses["phone"] = [(410, {})]
    engine.handle({"customer_id": "ana", "event": "Cart Abandoned", "event_id": "e1"})
    (event,) = worker.run_once()
    assert event["event"] == "Message Sent"
    left = ProfileStore(db).find("ana").traits[SUBSCRIPTION_TRAIT]
    assert [s["endpoint"] for s in left] == [laptop.endpoint]
    # the service is overloaded and asks for an hour: no retry before that (backoff is 1 min)
    PushService.statuses["laptop"] = [(429, {"Retry-After": "3600"})]
    clock.advance(dt.timedelta(hours=1))
    engine.handle({"customer_id": "ana", "event": "Cart Abandoned", "event_id": "e2"})
    assert worker.run_once() == []
    (row,) = [r for r in engine.outbox("ana") if r["status"] == "retry"]
    assert row["next_attempt_at"] >= clock.now() + dt.timedelta(seconds=3600)
