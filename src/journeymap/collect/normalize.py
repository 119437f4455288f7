"""A stored message as an event (the lake's row) and as an identity operation (profiles).

The mapping follows the importer's Segment preset, so collected and imported events match the
same spec rules:

* ``event_id`` is ``<source>:<messageId>`` (a SHA-256 of the message id when that would pass
  100 characters): deterministic, so reloading a message after a crash finds it in the lake,
  and two sources that reuse each other's ids never collide;
* ``ts`` is ``timestamp``; else ``originalTimestamp`` corrected for the device's clock skew,
  ``receivedAt − (sentAt − originalTimestamp)``; else ``receivedAt``; truncated to µs;
* ``event``: a track's ``event``; ``page_view``, ``screen_view``, ``identify``, ``group``,
  ``alias``, ``consent_updated`` for the other types;
* ``properties``: a track's properties; identify → its traits; group → traits and
  ``groupId``; alias → ``previousId``; page and screen → properties with ``name``/``category``;
* ``channel`` = ``context.campaign.medium`` (else ``.source``), ``campaign`` =
  ``context.campaign.name`` (the UTM parameters analytics.js collects);
* promoted columns: ``revenue`` (``properties.revenue``, else ``total``, DECIMAL(18,2) rounded
  half-even) with ``currency`` (else the project's currency), ``device`` (``properties.device``,
  else ``context.device.type``), ``order_id``, ``product_id``, ``category``, ``score``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Final

from journeymap.collect.messages import InvalidMessage, parse_time_us
from journeymap.model.events import MAX_ID_LENGTH, MAX_TS, MIN_TS
from journeymap.storage.profiles import IdentityOp, parse_consent

EVENT_NAMES: Final = {
    "page": "page_view",
    "screen": "screen_view",
    "identify": "identify",
    "group": "group",
    "alias": "alias",
    "consent": "consent_updated",
}
_CENT: Final = Decimal("0.01")
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MIN_US: Final = (MIN_TS - _EPOCH) // dt.timedelta(microseconds=1)
_MAX_US: Final = (MAX_TS - _EPOCH) // dt.timedelta(microseconds=1)


def event_id_for(source: str, message_id: str) -> str:
    """The lake's ``event_id`` of a message: deterministic in (source, message id)."""
    eid = f"{source}:{message_id}"
    if len(eid) <= MAX_ID_LENGTH:
        return eid
    digest = hashlib.sha256(message_id.encode("utf-8", "surrogatepass")).hexdigest()[:40]
    return f"{source}:h:{digest}"


def event_time_us(msg: dict[str, Any]) -> int:
    """The event's time in µs (see the module doc for the order)."""
    if msg.get("timestamp") is not None:
        return parse_time_us(msg["timestamp"])
    received = parse_time_us(msg["receivedAt"])
    original = msg.get("originalTimestamp")
    if original is None:
        return received
    us = parse_time_us(original)
    if msg.get("sentAt") is not None:
        us = received - (parse_time_us(msg["sentAt"]) - us)
        if not _MIN_US <= us < _MAX_US:
            raise InvalidMessage(
                "timestamp.invalid", "the clock-skew corrected time is outside 1990..2100"
            )
    return us


_ENCODE_UTF8: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_ENCODE_ASCII: Final = json.JSONEncoder(separators=(",", ":")).encode


def _json(value: Any) -> str:
    """Compact JSON text, UTF-8 (spec rules match ``München``, not ``M\\u00fcnchen``)."""
    text: str = _ENCODE_UTF8(value)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: keep them as escapes
            text = _ENCODE_ASCII(value)
    return text


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _scalar_text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip()
    return text or None


def _traits(msg: dict[str, Any]) -> dict[str, Any] | None:
    """Traits an identify (or a PostHog ``$set``) sets on the profile."""
    kind = msg["type"]
    if kind in ("group", "alias"):
        return None
    found = msg.get("traits")
    if kind == "identify" and not found:
        found = _dict(msg.get("context")).get("traits")
    return dict(found) if isinstance(found, dict) and found else None


def _properties(msg: dict[str, Any], kind: str) -> dict[str, Any] | None:
    props = _dict(msg.get("properties"))
    if kind == "identify":
        found = msg.get("traits") or _dict(msg.get("context")).get("traits")
        return dict(found) if isinstance(found, dict) and found else None
    if kind == "group":
        return {**_dict(msg.get("traits")), "groupId": msg.get("groupId")}
    if kind == "alias":
        return {"previousId": msg.get("previousId")}
    if kind == "consent":
        return {"consent": msg.get("consent")}
    if kind in ("page", "screen"):
        extra = {k: msg[k] for k in ("name", "category") if msg.get(k) is not None}
        if kind == "screen":
            extra.pop("category", None)
        return {**props, **extra} or None
    return props or None


def to_event(
    msg: dict[str, Any],
    source: str,
    customer_id: str | None,
    default_currency: str,
    ts_us: int | None = None,
) -> dict[str, Any]:
    """The lake row of a stored message (``customer_id`` is the resolved canonical id;
    ``ts_us`` the message's ``event_time_us`` when the caller has it already)."""
    kind = msg["type"]
    props = _dict(msg.get("properties"))
    context = _dict(msg.get("context"))
    campaign = _dict(context.get("campaign"))
    revenue_raw = props.get("revenue", props.get("total"))
    if revenue_raw is None:
        revenue_raw = props.get("total")
    revenue = None
    currency = None
    if revenue_raw is not None and not isinstance(revenue_raw, bool):
        revenue = Decimal(str(revenue_raw)).quantize(_CENT, rounding=ROUND_HALF_EVEN)
        cur = props.get("currency")
        currency = cur.upper() if isinstance(cur, str) else default_currency
    score_raw = props.get("score")
    score = int(float(score_raw)) if score_raw is not None else None
    properties = _properties(msg, kind)
    if ts_us is None:
        ts_us = event_time_us(msg)
    return {
        "event_id": event_id_for(source, msg["messageId"]),
        "customer_id": customer_id,
        "anonymous_id": msg.get("anonymousId") or None,
        "ts": _EPOCH + dt.timedelta(microseconds=ts_us),
        "event": msg["event"] if kind == "track" else EVENT_NAMES[kind],
        "channel": _scalar_text(campaign.get("medium")) or _scalar_text(campaign.get("source")),
        "campaign": _scalar_text(campaign.get("name")),
        "source": source,
        "revenue": revenue,
        "currency": currency,
        "properties": _json(properties) if properties else None,
        "context": _json(context) if context else None,
        "device": _scalar_text(props.get("device"))
        or _scalar_text(_dict(context.get("device")).get("type")),
        "order_id": _scalar_text(props.get("order_id")),
        "product_id": _scalar_text(props.get("product_id")),
        "category": _scalar_text(props.get("category")),
        "score": score,
    }


def to_identity_op(msg: dict[str, Any], event_id: str, source: str, ts: dt.datetime) -> IdentityOp:
    """What the message means for profiles (consent errors are dead letters)."""
    kind = msg["type"]
    traits = _traits(msg)
    consent_value = msg.get("consent") if kind == "consent" else (traits or {}).get("consent")
    consent = []
    if consent_value is not None:
        try:
            consent = parse_consent(consent_value)
        except ValueError as exc:
            if kind == "consent":
                raise InvalidMessage("consent.invalid", str(exc)) from None
            # a malformed consent trait is kept as data but records no consent
    once = msg.get("traitsOnce")
    return IdentityOp(
        kind=kind,
        event_id=event_id,
        source=source,
        ts=ts,
        user_id=msg.get("userId") or None,
        anonymous_id=msg.get("anonymousId") or None,
        previous_id=msg.get("previousId") or None,
        group_id=msg.get("groupId") or None,
        traits=traits if kind != "group" else None,
        traits_once=dict(once) if isinstance(once, dict) and once else None,
        group_traits=_dict(msg.get("traits")) if kind == "group" else None,
        group_only=bool(msg.get("groupTraitsOnly")),
        consent=consent,
    )
