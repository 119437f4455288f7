"""Per-message validation: what is stored in the inbox, and what goes to dead letters (why).

Runs on the request path, after the batch was accepted as a whole (Segment semantics: one bad
message never costs the others). A message is kept when

* it is a JSON object of a known ``type`` (identify, track, page, screen, group, alias;
  ``consent`` from ``/v1/consent``);
* it has a ``userId`` or an ``anonymousId`` (JSON ``null`` and ``""`` count as absent; numbers
  become text), an alias has ``previousId`` and ``userId``, a track has an ``event``, a group
  a ``groupId``; ids are at most 100 characters, event names at most 200;
* ``properties``, ``traits``, ``context`` and ``integrations`` are objects when present;
  ``timestamp``, ``originalTimestamp`` and ``sentAt`` are ISO 8601 times between 1990 and 2100;
* the promoted fields follow the event RULES (``revenue``/``total`` a number below 1e15,
  ``currency`` a three-letter code, ``score`` a whole number);
* it is at most ``max_message_bytes`` (32 KB) as stored and nested at most ``max_depth`` deep.

The stored message is the client's, plus the batch's ``context`` and ``integrations`` (the
message's own keys win), the batch ``sentAt`` when the message has none, ``receivedAt`` (server
time) and, when the client sent none, a ``messageId`` derived from the message's content (so a
resend of it is still recognised). The batch's ``writeKey`` is never stored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Final

from journeymap.collect.posthog import posthog_message
from journeymap.collect.wire import Envelope
from journeymap.model.events import MAX_ABS_REVENUE, MAX_ID_LENGTH, MAX_NAME_LENGTH, MAX_TS, MIN_TS
from journeymap.storage.inbox import DeadLetterRow, InboxRow

TYPES: Final = ("identify", "track", "page", "screen", "group", "alias", "consent")
_TYPES: Final = frozenset(TYPES)
_OBJECT_FIELDS: Final = ("properties", "traits", "context", "integrations")
_PROMOTED: Final = frozenset(("revenue", "total", "currency", "score"))
_TIME_FIELDS: Final = ("timestamp", "originalTimestamp", "sentAt")
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MIN_US: Final = (MIN_TS - _EPOCH) // dt.timedelta(microseconds=1)
_MAX_US: Final = (MAX_TS - _EPOCH) // dt.timedelta(microseconds=1)
#: One encoder for every message (``json.dumps`` with options builds a new one per call).
_ENCODE: Final = json.JSONEncoder(separators=(",", ":")).encode
#: Dead-letter payloads are cut here (the reason says what was wrong; this is for a look).
_DEAD_PAYLOAD_CHARS: Final = 65_536


@dataclass(frozen=True)
class MessageLimits:
    max_message_bytes: int = 32_768
    max_depth: int = 32


class InvalidMessage(Exception):
    """Internal: a message breaks a rule (``reason`` is a stable code)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def parse_time_us(value: Any) -> int:
    """An ISO 8601 time (offset optional, then UTC) as integer µs; ``ValueError`` otherwise."""
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not an ISO 8601 text")
    t = dt.datetime.fromisoformat(value.strip())
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    us = (t - _EPOCH) // dt.timedelta(microseconds=1)
    if not _MIN_US <= us < _MAX_US:
        raise ValueError(f"{value!r} is outside 1990-01-01 .. 2100-01-01")
    return us


def iso_from_us(us: int) -> str:
    return (_EPOCH + dt.timedelta(microseconds=us)).isoformat()


def _text_ok(s: str) -> bool:
    """Whether ``s`` can be stored as UTF-8 (lone surrogates cannot)."""
    if s.isascii():
        return True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _id(msg: dict[str, Any], key: str, limit: int = MAX_ID_LENGTH) -> str | None:
    """The id at ``key`` as text (numbers become text; null/empty: ``None``), written back."""
    value = msg.get(key)
    if value.__class__ is str and 0 < len(value) <= limit and value.isascii():
        return value  # the common case, checked cheaply
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidMessage(f"{key}.type", f"{key} must be text, got {type(value).__name__}")
    if not isinstance(value, str):
        if isinstance(value, float) and not value.is_integer():
            raise InvalidMessage(f"{key}.type", f"{key} must be text, got the number {value}")
        value = str(int(value))
        msg[key] = value
    if len(value) > limit:
        raise InvalidMessage(
            f"{key}.too_long", f"{key} has {len(value)} characters; at most {limit} are allowed"
        )
    if not _text_ok(value):
        raise InvalidMessage(f"{key}.encoding", f"{key} is not valid Unicode text")
    return value


def _check_number(props: dict[str, Any], key: str) -> None:
    value = props.get(key)
    if value is None:
        return
    ok = False
    if isinstance(value, int | float) and not isinstance(value, bool):
        ok = math.isfinite(value) and abs(value) < MAX_ABS_REVENUE
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            ok = False
        else:
            ok = math.isfinite(number) and abs(number) < MAX_ABS_REVENUE
    if not ok:
        raise InvalidMessage(
            "revenue.invalid",
            f"properties.{key} {value!r} is not a number below {MAX_ABS_REVENUE:.0e}",
        )


def _check_promoted(props: dict[str, Any]) -> None:
    _check_number(props, "revenue" if props.get("revenue") is not None else "total")
    currency = props.get("currency")
    if currency is not None and not (
        isinstance(currency, str)
        and len(currency) == 3
        and currency.isascii()
        and currency.isalpha()
    ):
        raise InvalidMessage(
            "currency.invalid", f"properties.currency {currency!r} is not a code such as EUR"
        )
    score = props.get("score")
    if score is not None:
        try:
            whole = (
                not isinstance(score, bool)
                and isinstance(score, int | float | str)
                and float(score).is_integer()
                and abs(float(score)) < 2**31
            )
        except ValueError:
            whole = False
        if not whole:
            raise InvalidMessage(
                "score.invalid", f"properties.score {score!r} is not a whole number"
            )


def _depth(value: Any) -> int:
    """Nesting depth of a JSON value (iterative: never recursion-limited)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, dict):
            deepest = max(deepest, d)
            stack.extend((v, d + 1) for v in node.values())
        elif isinstance(node, list):
            deepest = max(deepest, d)
            stack.extend((v, d + 1) for v in node)
    return deepest


def check_message(msg: dict[str, Any]) -> str:
    """Validate (and normalise ids of) ``msg`` in place; returns its type."""
    kind = msg.get("type")
    if kind.__class__ is not str or kind not in _TYPES:
        if not isinstance(kind, str) or kind.lower() not in _TYPES:
            raise InvalidMessage("type.invalid", f"type {kind!r} is not one of {', '.join(TYPES)}")
        kind = kind.lower()
        msg["type"] = kind
    _id(msg, "messageId")
    user = _id(msg, "userId")
    anon = _id(msg, "anonymousId")
    if kind == "alias":
        if not _id(msg, "previousId") or not user:
            raise InvalidMessage("alias.ids_missing", "an alias needs previousId and userId")
    elif not user and not anon:
        raise InvalidMessage("identity.missing", "the message has neither userId nor anonymousId")
    if kind == "track":
        event = msg.get("event")
        if not isinstance(event, str) or not event.strip():
            raise InvalidMessage("event.missing", "a track message needs a non-empty event")
        if len(event) > MAX_NAME_LENGTH or not _text_ok(event):
            raise InvalidMessage(
                "event.invalid",
                f"event must be valid text of at most {MAX_NAME_LENGTH} characters",
            )
    elif kind == "group":
        if not _id(msg, "groupId"):
            raise InvalidMessage("group.id_missing", "a group message needs a groupId")
    elif kind == "consent":
        consent = msg.get("consent")
        if not isinstance(consent, dict | list) or not consent:
            raise InvalidMessage(
                "consent.missing", "a consent message needs consent: {channel: status, …}"
            )
    for key in _OBJECT_FIELDS:
        value = msg.get(key)
        if value is not None and not isinstance(value, dict):
            raise InvalidMessage(
                f"{key}.type", f"{key} must be an object, got {type(value).__name__}"
            )
    for key in _TIME_FIELDS:
        value = msg.get(key)
        if value is not None:
            try:
                parse_time_us(value)
            except ValueError as exc:
                raise InvalidMessage("timestamp.invalid", f"{key}: {exc}") from None
    props = msg.get("properties")
    if props and not _PROMOTED.isdisjoint(props):
        _check_promoted(props)
    return kind


def derived_message_id(msg: dict[str, Any]) -> str:
    """A deterministic id for a message sent without one: a hash of its content."""
    blob = json.dumps(msg, sort_keys=True, separators=(",", ":"), default=str)
    return "jm-" + hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def _dead(source: str, raw: Any, received_at_us: int, reason: str, detail: str) -> DeadLetterRow:
    ids: dict[str, str | None] = {"messageId": None, "userId": None, "anonymousId": None}
    if isinstance(raw, dict):
        for key in ids:
            value = raw.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool):
                ids[key] = str(value)[:200]
    message_id = ids["messageId"]
    if message_id is not None and (len(message_id) > MAX_ID_LENGTH or not _text_ok(message_id)):
        message_id = None
    try:
        payload = json.dumps(raw, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):  # pragma: no cover - raw came from JSON
        payload = repr(raw)
    if len(payload) > _DEAD_PAYLOAD_CHARS:
        payload = payload[:_DEAD_PAYLOAD_CHARS] + "…(cut)"
    return {
        "source": source,
        "message_id": message_id,
        "received_at_us": received_at_us,
        "reason": reason,
        "detail": detail,
        "user_id": ids["userId"] if ids["userId"] and _text_ok(ids["userId"]) else None,
        "anonymous_id": (
            ids["anonymousId"] if ids["anonymousId"] and _text_ok(ids["anonymousId"]) else None
        ),
        "payload": payload,
    }


def prepare(
    envelope: Envelope, source: str, received_at_us: int, limits: MessageLimits
) -> tuple[list[InboxRow], list[DeadLetterRow]]:
    """The inbox rows and dead letters of one accepted request."""
    received = iso_from_us(received_at_us)
    sent_at = envelope.sent_at
    if sent_at is not None:
        try:
            parse_time_us(sent_at)
        except ValueError:
            sent_at = None  # a bad batch sentAt only loses the skew correction
    rows: list[InboxRow] = []
    dead: list[DeadLetterRow] = []
    posthog = envelope.protocol == "posthog"
    for raw in envelope.messages:
        msg = posthog_message(raw) if posthog else raw
        if not isinstance(msg, dict):
            dead.append(
                _dead(
                    source,
                    raw,
                    received_at_us,
                    "message.not_object",
                    f"a message must be a JSON object, got {type(msg).__name__}",
                )
            )
            continue
        msg = dict(msg)
        msg.pop("writeKey", None)
        if envelope.forced_type is not None:
            msg["type"] = envelope.forced_type
        try:
            check_message(msg)
            if envelope.context:
                own = msg.get("context")
                msg["context"] = {**envelope.context, **own} if own else dict(envelope.context)
            if envelope.integrations:
                own = msg.get("integrations")
                msg["integrations"] = (
                    {**envelope.integrations, **own} if own else dict(envelope.integrations)
                )
            if not msg.get("messageId"):
                msg["messageId"] = derived_message_id(msg)
            if sent_at is not None and msg.get("sentAt") is None:
                msg["sentAt"] = sent_at
            msg["receivedAt"] = received
            payload = _ENCODE(msg)
            if len(payload) > limits.max_message_bytes:
                raise InvalidMessage(
                    "message.too_large",
                    f"the message has {len(payload)} bytes; at most "
                    f"{limits.max_message_bytes} are allowed",
                )
            if payload.count("{") + payload.count("[") > limits.max_depth and (
                _depth(msg) > limits.max_depth
            ):
                raise InvalidMessage(
                    "message.too_deep",
                    f"the message is nested more than {limits.max_depth} levels deep",
                )
        except InvalidMessage as bad:
            dead.append(_dead(source, raw, received_at_us, bad.reason, bad.detail))
            continue
        except (TypeError, ValueError, RecursionError) as exc:
            dead.append(_dead(source, raw, received_at_us, "message.invalid", str(exc)[:200]))
            continue
        rows.append(
            {
                "source": source,
                "message_id": msg["messageId"],
                "received_at_us": received_at_us,
                "payload": payload,
            }
        )
    return rows, dead
