"""From request bytes to an ``Envelope``: decompression, JSON, write keys, batch shapes.

What real clients send is in shared/COLLECTOR.md; the rules here:

* the body is inflated when ``Content-Encoding`` is ``gzip`` (or ``deflate``, or PostHog's
  ``?compression=gzip-js``), with the *inflated* size bounded, so a small gzip bomb is refused
  at the limit instead of filling memory; a truncated stream is refused;
* the bytes are parsed as JSON whatever the ``Content-Type`` says (``text/plain`` from
  analytics.js, ``application/x-www-form-urlencoded`` from rudder-sdk-node);
* the write key is the Basic username (empty password, colon optional), else the body's
  ``writeKey``, else PostHog's ``api_key`` / ``token``.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from dataclasses import dataclass
from typing import Any, Final, Literal

from journeymap.collect.errors import RequestRejectedError, UnknownWriteKeyError

Protocol = Literal["segment", "posthog"]

#: Segment's documented ceiling on messages per batch.
MAX_BATCH_MESSAGES: Final = 2500

#: ``/v1/<name>`` single-message routes and the type they stand for (analytics.js uses the
#: one-letter forms).
SEGMENT_TYPES: Final = {
    "identify": "identify",
    "track": "track",
    "page": "page",
    "screen": "screen",
    "group": "group",
    "alias": "alias",
    "i": "identify",
    "t": "track",
    "p": "page",
    "s": "screen",
    "g": "group",
    "a": "alias",
}


@dataclass
class Envelope:
    """The messages of one request, and what the request said about all of them."""

    protocol: Protocol
    messages: list[Any]
    write_key: str | None = None
    sent_at: Any = None
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    #: the type every message has (single-message routes)
    forced_type: str | None = None


def _reject(code: str, message: str, detail: Any = None) -> RequestRejectedError:
    return RequestRejectedError(code, message, detail)


def too_large(limit: int) -> RequestRejectedError:
    return _reject(
        "request_too_large",
        f"the request is larger than {limit} bytes (after decompression); send smaller batches",
        {"limit_bytes": limit},
    )


def decode_body(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """The request body, inflated if compressed, at most ``limit`` bytes."""
    enc = (content_encoding or "").strip().lower()
    if enc in ("", "identity"):
        if len(body) > limit:
            raise too_large(limit)
        return body
    if enc in ("gzip", "x-gzip"):
        return _inflate(body, 47, limit, "gzip")  # 32 + 15: gzip or zlib header
    if enc == "deflate":
        try:
            return _inflate(body, 15, limit, "deflate")  # zlib-wrapped, as HTTP says
        except RequestRejectedError as exc:
            if exc.code != "bad_compression":
                raise
            return _inflate(body, -15, limit, "deflate")  # raw deflate, as some clients send
    raise _reject(
        "unsupported_encoding",
        f"Content-Encoding {content_encoding!r} is not supported; allowed: gzip, deflate, identity",
    )


def _inflate(body: bytes, wbits: int, limit: int, name: str) -> bytes:
    out = bytearray()
    data = body
    try:
        while True:
            d = zlib.decompressobj(wbits)
            out += d.decompress(data, limit + 1 - len(out))
            if len(out) > limit:
                raise too_large(limit)
            if not d.eof:
                raise _reject(
                    "bad_compression", f"the {name} body is truncated", {"encoding": name}
                )
            data = d.unused_data
            if not data.strip(b"\x00"):  # trailing padding is tolerated
                return bytes(out)
            if wbits != 47:  # only gzip streams may have several members
                raise _reject("bad_compression", f"data after the end of the {name} stream", None)
    except zlib.error as exc:
        raise _reject(
            "bad_compression", f"the body is not valid {name}: {exc}", {"encoding": name}
        ) from None


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(data: bytes) -> Any:
    """The JSON document in ``data`` (UTF-8/16/32); a 400 names the problem."""
    if not data.strip():
        raise _reject("invalid_json", "the request body is empty; send a JSON object")
    try:
        return json.loads(data, parse_constant=_no_constants)
    except RecursionError:
        raise _reject("invalid_json", "the JSON is nested too deeply") from None
    except ValueError as exc:
        raise _reject(
            "invalid_json", "the request body is not valid JSON", str(exc)[:200]
        ) from None


def basic_write_key(authorization: str | None) -> str | None:
    """The write key in an ``Authorization: Basic`` header (``None`` without one)."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None  # Bearer (Segment OAuth) carries the write key in the body
    try:
        raw = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise UnknownWriteKeyError(
            "invalid_authorization",
            "the Authorization header is not Basic base64('<writeKey>:')",
        ) from None
    key = raw.split(":", 1)[0]
    return key or None


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _object_or_none(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def segment_envelope(doc: Any, route_type: str | None) -> Envelope:
    """A Segment / RudderStack request: ``{"batch": [...]}`` or one message per request."""
    if not isinstance(doc, dict):
        raise _reject(
            "invalid_envelope",
            f"expected a JSON object, got {type(doc).__name__}",
            {"expected": '{"batch": [...]}' if route_type is None else "a message object"},
        )
    if route_type is None:
        batch = doc.get("batch")
        if not isinstance(batch, list):
            raise _reject(
                "invalid_batch",
                'a batch request needs "batch": a list of messages',
                {"got": type(batch).__name__ if "batch" in doc else "nothing"},
            )
        if len(batch) > MAX_BATCH_MESSAGES:
            raise _reject(
                "batch_too_large",
                f"the batch has {len(batch)} messages; at most {MAX_BATCH_MESSAGES} are allowed",
                {"messages": len(batch), "limit": MAX_BATCH_MESSAGES},
            )
        return Envelope(
            "segment",
            batch,
            write_key=_str_or_none(doc.get("writeKey")),
            sent_at=doc.get("sentAt"),
            context=_object_or_none(doc.get("context")),
            integrations=_object_or_none(doc.get("integrations")),
        )
    return Envelope(
        "segment",
        [doc],
        write_key=_str_or_none(doc.get("writeKey")),
        sent_at=doc.get("sentAt"),
        forced_type=route_type,
    )


def posthog_envelope(doc: Any) -> Envelope:
    """A PostHog request: ``{"batch": [...], "api_key"}``, a list of events, or one event."""
    key: str | None = None
    sent_at: Any = None
    if isinstance(doc, dict) and "batch" in doc:
        events = doc["batch"]
        if not isinstance(events, list):
            raise _reject("invalid_batch", '"batch" must be a list of events')
        key = _str_or_none(doc.get("api_key")) or _str_or_none(doc.get("token"))
        sent_at = doc.get("sent_at")
    elif isinstance(doc, list):
        events = doc
    elif isinstance(doc, dict):
        events = [doc]
    else:
        raise _reject(
            "invalid_envelope", f"expected a JSON object or list, got {type(doc).__name__}"
        )
    if len(events) > MAX_BATCH_MESSAGES:
        raise _reject(
            "batch_too_large",
            f"the batch has {len(events)} events; at most {MAX_BATCH_MESSAGES} are allowed",
        )
    if key is None:
        for ev in events[:1]:
            if isinstance(ev, dict):
                props = ev.get("properties")
                key = _str_or_none(ev.get("api_key")) or (
                    _str_or_none(props.get("token")) if isinstance(props, dict) else None
                )
    return Envelope("posthog", events, write_key=key, sent_at=sent_at)
