"""Web Push (RFC 8030) with VAPID (RFC 8292) and aes128gcm payloads (RFC 8291), via
``pywebpush`` (the ``push`` extra).

The address is the profile trait ``push_subscription``: the browser's ``PushSubscription``
JSON ``{"endpoint", "keys": {"p256dh", "auth"}}``, or a list of them (one per device; the
server's ``POST /v1/push/subscribe`` keeps that list). A message goes to every device; it is
delivered when one device's push service accepted it.

The payload is the ``push`` rendering as JSON ``{"title", "body", "url", "deep_link", "icon",
"tag", "send_id", "campaign", "step", "variant"}`` (``url`` is the deep link through the click
redirect for marketing messages, so a tap is measured); the service worker shows it. Headers:
``TTL`` (how long the push service keeps it for an offline device), ``Urgency`` (``high`` for
transactional, else ``normal``) and, for marketing messages, ``Topic`` per campaign step, so a
newer message of the same step replaces one still waiting on an offline device.

Failures are classified per device, then for the message:

* 404 / 410 → the subscription is gone. When every device is gone the send raises
  ``PushSubscriptionGoneError`` (terminal ``hard_bounce``: the worker puts the address on the
  push suppression list, so it is not used again until the customer subscribes anew); when
  some devices got it, the result is a ``PushDelivery`` whose ``gone`` names the endpoints to
  drop from the profile (``orchestration.preferences.remove_push_subscriptions``);
* 400 / 413 → terminal ``content`` (payload too large or malformed); 401 / 403 → terminal
  ``config`` (the VAPID key does not match the one the browser subscribed with);
* 408 / 425 / 429 / 5xx, timeouts and connection errors → ``PushRetryError`` (transient) with
  ``retry_after`` in seconds when the push service sent ``Retry-After``.
"""

from __future__ import annotations

import ast
import base64
import binascii
import datetime as dt
import hashlib
import ipaddress
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from journeymap.channels.base import (
    BaseChannel,
    DeliveryResult,
    OutboundMessage,
    TerminalChannelError,
    TransientChannelError,
)
from journeymap.channels.tracking import TrackingLinks
from journeymap.errors import ConfigError, JourneymapError
from journeymap.storage.files import ensure_secret_file

if TYPE_CHECKING:
    import requests

#: The profile trait holding a customer's subscriptions.
SUBSCRIPTION_TRAIT: Final = "push_subscription"
#: Devices kept per customer (the oldest are dropped beyond it).
MAX_DEVICES: Final = 10
MAX_ENDPOINT_LENGTH: Final = 2048
#: Largest plaintext in one aes128gcm record of a 4096-byte push message (RFC 8291 §4:
#: 4096 − 86 bytes of header − 16 bytes of tag − 1 padding delimiter).
MAX_PAYLOAD_BYTES: Final = 3993
#: Push services keep messages at most about four weeks (FCM: 28 days).
MAX_TTL_SECONDS: Final = 28 * 86_400
INSTALL_HINT: Final = "Web Push needs the push extra: pip install 'journeymap[push]'"


class PushSubscriptionError(JourneymapError, ValueError):
    """A push subscription that is not the browser's ``PushSubscription`` JSON."""


class PushRetryError(TransientChannelError):
    """A transient push failure; ``retry_after`` (seconds) when the push service asked for a
    delay (``Retry-After`` on 429 / 503): the worker should wait at least that long."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PushSubscriptionGoneError(TerminalChannelError):
    """Every subscription of the address is gone (404 / 410): never use them again.

    ``reason`` is ``hard_bounce`` so the worker suppresses the address; ``endpoints`` lists
    the gone endpoints for whoever removes them from the profile."""

    def __init__(self, message: str, endpoints: tuple[str, ...]) -> None:
        super().__init__(message, "hard_bounce")
        self.endpoints = endpoints


@dataclass(frozen=True)
class PushDelivery(DeliveryResult):
    """A delivered push message; ``gone``: endpoints of devices that unsubscribed (404/410),
    to be removed from the customer's ``push_subscription``."""

    gone: tuple[str, ...] = field(default_factory=tuple)


# -- subscriptions -----------------------------------------------------------------------------
def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url(data: bytes) -> str:
    """Unpadded base64url (the encoding of every Web Push key)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_subscription(value: Any, where: str = "subscription") -> dict[str, Any]:
    """The normalised subscription ``{"endpoint", "keys": {"p256dh", "auth"}}`` of the
    browser's ``PushSubscription.toJSON()``; ``PushSubscriptionError`` names the bad field."""

    def bad(path: str, problem: str) -> PushSubscriptionError:
        return PushSubscriptionError(
            f"{where}.{path} {problem}; send the browser's PushSubscription as JSON "
            '(subscription.toJSON(): {"endpoint": "https://…", "keys": {"p256dh": "…", '
            '"auth": "…"}})'
        )

    if not isinstance(value, Mapping):
        raise PushSubscriptionError(
            f"{where} must be an object (the browser's PushSubscription JSON), "
            f"got {type(value).__name__}"
        )
    endpoint = value.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        raise bad("endpoint", "is missing")
    if len(endpoint) > MAX_ENDPOINT_LENGTH:
        raise bad("endpoint", f"has {len(endpoint)} characters; at most {MAX_ENDPOINT_LENGTH}")
    parts = urlsplit(endpoint)
    if not parts.hostname or parts.scheme not in ("https", "http"):
        raise bad("endpoint", f"{endpoint[:80]!r} is not an https URL")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise bad("endpoint", f"{endpoint[:80]!r} must use https (http only on loopback)")
    keys = value.get("keys")
    if not isinstance(keys, Mapping):
        raise bad("keys", "is missing (an object with p256dh and auth)")
    p256dh, auth = keys.get("p256dh"), keys.get("auth")
    if not isinstance(p256dh, str) or not p256dh:
        raise bad("keys.p256dh", "is missing")
    if not isinstance(auth, str) or not auth:
        raise bad("keys.auth", "is missing")
    try:
        point = _b64url_decode(p256dh)
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        if len(point) != 65:
            raise ValueError("not an uncompressed point")
    except (ValueError, binascii.Error):
        raise bad(
            "keys.p256dh", "is not a base64url P-256 public key (65 bytes, uncompressed)"
        ) from None
    try:
        secret = _b64url_decode(auth)
    except (ValueError, binascii.Error):
        secret = b""
    if len(secret) != 16:
        raise bad("keys.auth", "is not a base64url secret of 16 bytes")
    return {"endpoint": endpoint, "keys": {"p256dh": b64url(point), "auth": b64url(secret)}}


def subscriptions_of(value: Any) -> list[dict[str, Any]]:
    """The subscriptions an address (or the trait) holds: one object or a list of them, as
    Python values, JSON text, or the text of a Python literal (an address is the trait's
    ``str()``). Invalid entries raise ``PushSubscriptionError``."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = json.loads(text)
        except ValueError:
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                raise PushSubscriptionError(
                    f"the push address {text[:60]!r} is neither JSON nor a subscription object"
                ) from None
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return [parse_subscription(s, f"{SUBSCRIPTION_TRAIT}[{i}]") for i, s in enumerate(items)]


# -- VAPID -------------------------------------------------------------------------------------
def _new_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem.decode("ascii")


@dataclass(frozen=True)
class VapidKey:
    """The application server's P-256 key pair (VAPID)."""

    private_key: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls) -> VapidKey:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> VapidKey:
        """The key in ``path`` (PEM), created with a new key pair (mode 0600) when missing."""
        pem, _ = ensure_secret_file(path, _new_pem)
        try:
            key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
        except (ValueError, TypeError, UnicodeEncodeError) as exc:
            raise ConfigError(
                f"vapid_private_key_file {str(path)!r} does not hold an unencrypted PEM private "
                f"key ({exc}); delete it to create a new key pair (subscribed browsers must then "
                "subscribe again)"
            ) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ConfigError(
                f"vapid_private_key_file {str(path)!r} holds a {type(key).__name__}; VAPID needs "
                "an EC P-256 (prime256v1) key: delete the file to create one"
            )
        return cls(key)

    @cached_property
    def public_bytes(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )

    @property
    def application_server_key(self) -> str:
        """What browsers pass as ``applicationServerKey`` to ``pushManager.subscribe``."""
        return b64url(self.public_bytes)

    def headers(self, endpoint: str, subject: str, now: float) -> dict[str, str]:
        """``Authorization: vapid t=<JWT>, k=<public key>`` for ``endpoint``'s push service
        (``aud`` is its origin; the token is valid for 12 hours, the RFC's 24-hour maximum
        leaves room for clock skew)."""
        from py_vapid import Vapid02  # type: ignore[import-untyped]

        parts = urlsplit(endpoint)
        claims = {"aud": f"{parts.scheme}://{parts.netloc}", "exp": int(now) + 12 * 3600}
        claims["sub"] = subject
        signed: dict[str, str] = Vapid02(private_key=self.private_key).sign(claims)
        return signed


def _retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds (a number or an HTTP date), ``None`` when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, when.timestamp() - now)


def _topic(message: OutboundMessage) -> str:
    """A ``Topic`` header (at most 32 base64url characters) per campaign step."""
    digest = hashlib.sha256(f"{message.campaign}\x1f{message.step}".encode()).digest()
    return b64url(digest[:24])


class WebPushChannel(BaseChannel):
    """Sends the ``push`` rendering to every subscribed device of the recipient."""

    address_trait: str | None = SUBSCRIPTION_TRAIT

    def __init__(
        self,
        *,
        vapid_private_key_file: str | os.PathLike[str] | None = None,
        vapid_key: VapidKey | None = None,
        vapid_subject: str = "mailto:admin@localhost",
        ttl: int = 86_400,
        timeout: float = 10.0,
        tracking: TrackingLinks | None = None,
        session: requests.Session | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        if vapid_key is None and vapid_private_key_file is None:
            raise ConfigError("the push channel needs vapid_private_key_file (or a VapidKey)")
        if not vapid_subject.startswith(("mailto:", "https:")):
            raise ConfigError(
                f"vapid_subject {vapid_subject!r} must be a mailto: or https: URL that push "
                "services can use to contact the sender, e.g. mailto:ops@shop.example"
            )
        if not 0 <= ttl <= MAX_TTL_SECONDS:
            raise ConfigError(f"push ttl {ttl} must be between 0 and {MAX_TTL_SECONDS} seconds")
        self.name = "push"
        self._key = vapid_key
        self.key_file = Path(vapid_private_key_file) if vapid_private_key_file else None
        self.subject = vapid_subject
        self.ttl = ttl
        self.timeout = timeout
        self.tracking = tracking
        self._session = session
        self.now = now

    @property
    def key(self) -> VapidKey:
        """The VAPID key, read (or created) on first use."""
        if self._key is None:
            assert self.key_file is not None
            self._key = VapidKey.from_file(self.key_file)
        return self._key

    def payload(self, message: OutboundMessage) -> bytes:
        content = message.renderings.get("push")
        if not isinstance(content, dict) or not content.get("title"):
            raise TerminalChannelError(
                f"send {message.send_id}: the message has no push rendering", "content"
            )
        deep_link = content.get("deep_link") or content.get("url")
        url = deep_link
        if deep_link and self.tracking is not None and not message.transactional:
            url = self.tracking.click(message.send_id, deep_link)
        data = {
            "title": content["title"],
            "body": content.get("body") or "",
            "url": url,
            "deep_link": deep_link,
            "icon": content.get("icon"),
            "tag": content.get("tag"),
            "send_id": message.send_id,
            "campaign": message.campaign,
            "step": message.step,
            "variant": message.variant,
        }
        body = json.dumps(
            {k: v for k, v in data.items() if v is not None},
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()
        if len(body) > MAX_PAYLOAD_BYTES:
            raise TerminalChannelError(
                f"send {message.send_id}: the push payload has {len(body)} bytes; Web Push "
                f"carries at most {MAX_PAYLOAD_BYTES} (shorten the deep link or the texts)",
                "content",
            )
        return body

    def headers(self, message: OutboundMessage) -> dict[str, str]:
        headers = {"Urgency": "high" if message.transactional else "normal"}
        if not message.transactional:
            headers["Topic"] = _topic(message)
        return headers

    def send(self, message: OutboundMessage) -> DeliveryResult:
        try:
            subscriptions = subscriptions_of(message.address)
        except PushSubscriptionError as exc:
            raise TerminalChannelError(f"send {message.send_id}: {exc}", "config") from exc
        if not subscriptions:
            raise TerminalChannelError(f"send {message.send_id}: no push subscription", "config")
        body = self.payload(message)
        delivered: list[str] = []
        gone: list[str] = []
        transient: list[PushRetryError] = []
        terminal: list[TerminalChannelError] = []
        for sub in subscriptions:
            try:
                delivered.append(self._send_one(sub, body, message))
            except PushSubscriptionGoneError:
                gone.append(sub["endpoint"])
            except PushRetryError as exc:
                transient.append(exc)
            except TerminalChannelError as exc:
                terminal.append(exc)
        if delivered:
            detail = f"delivered to {len(delivered)} of {len(subscriptions)} devices"
            if gone:
                detail += f"; {len(gone)} gone"
            return PushDelivery(
                message.send_id, provider_id=delivered[0], detail=detail, gone=tuple(gone)
            )
        if transient:
            waits = [e.retry_after for e in transient if e.retry_after is not None]
            raise PushRetryError(
                "; ".join(str(e) for e in transient), max(waits) if waits else None
            )
        if terminal:
            raise terminal[0]
        raise PushSubscriptionGoneError(
            f"send {message.send_id}: every push subscription is gone (404/410); the customer "
            "must subscribe again",
            tuple(gone),
        )

    def close(self) -> None:
        """Close the HTTP connections to the push services."""
        if self._session is not None:
            self._session.close()
            self._session = None

    def _session_or_new(self) -> requests.Session:
        if self._session is None:
            import requests

            self._session = requests.Session()
        return self._session

    def _send_one(self, sub: dict[str, Any], body: bytes, message: OutboundMessage) -> str:
        """Send to one device; returns the push service's message location (or endpoint)."""
        try:
            from pywebpush import WebPusher, WebPushException  # type: ignore[import-untyped]
        except ImportError:  # pragma: no cover - the push extra is missing
            raise TerminalChannelError(INSTALL_HINT, "config") from None
        import requests

        endpoint = sub["endpoint"]
        host = urlsplit(endpoint).netloc
        headers = {**self.headers(message), **self.key.headers(endpoint, self.subject, self.now())}
        try:
            pusher = WebPusher(sub, requests_session=self._session_or_new())
            resp = pusher.send(
                body, headers, ttl=self.ttl, content_encoding="aes128gcm", timeout=self.timeout
            )
        except WebPushException as exc:
            raise TerminalChannelError(
                f"push subscription {host}: {exc.message}", "config"
            ) from exc
        except requests.RequestException as exc:
            raise PushRetryError(f"push service {host}: {type(exc).__name__}: {exc}") from exc
        code = resp.status_code
        if 200 <= code < 300:
            return str(resp.headers.get("Location") or endpoint)
        text = f"push service {host}: HTTP {code}"
        if code in (404, 410):
            raise PushSubscriptionGoneError(f"{text} (subscription gone)", (endpoint,))
        if code in (408, 425, 429) or code >= 500:
            raise PushRetryError(text, _retry_after(resp.headers.get("Retry-After"), self.now()))
        if code in (400, 413):
            raise TerminalChannelError(f"{text} (payload refused)", "content")
        if code in (401, 403):
            raise TerminalChannelError(
                f"{text} (VAPID refused: the browser subscribed with another "
                "applicationServerKey, or vapid_subject is invalid)",
                "config",
            )
        raise TerminalChannelError(text, "rejected")
