"""journeymap's own events (sends, opens, clicks, exposures, consent changes) into the lake.

They take the collector's path: each event becomes a Segment ``track`` message in the durable
inbox (source ``journeymap``), committed before the caller acknowledges anything, and the
loader moves it into the lake with everything else. The inbox's unique (source, message id)
key makes recording idempotent: a pixel loaded twice, or a worker that replays a batch after a
crash, stores one event.

    record_events(db, [feedback_event(row, "opened", now)])          # wait for the commit
    future = submit_events(db, events)                               # async paths
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from typing import Any, Final

from journeymap.collect.messages import MessageLimits, prepare
from journeymap.collect.wire import Envelope
from journeymap.errors import JourneymapError
from journeymap.storage.db import OperationalDB
from journeymap.storage.inbox import InboxRow, InboxStore

INTERNAL_SOURCE: Final = "journeymap"


def _iso(ts: Any) -> str:
    if isinstance(ts, dt.datetime):
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=dt.UTC)
        return str(ts.isoformat())
    return str(ts)


def segment_message(event: Mapping[str, Any]) -> dict[str, Any]:
    """The Segment ``track`` message of an event given as a lake row (keys of
    ``EVENT_SCHEMA``: event_id, customer_id, ts, event, channel, campaign, properties,
    revenue, currency); the loader turns it back into the same row."""
    props = event.get("properties") or {}
    if isinstance(props, str):
        props = json.loads(props)
    props = dict(props)
    if event.get("revenue") is not None:
        props["revenue"] = str(event["revenue"])
        if event.get("currency"):
            props["currency"] = event["currency"]
    campaign = {
        k: v
        for k, v in (("medium", event.get("channel")), ("name", event.get("campaign")))
        if v is not None
    }
    msg: dict[str, Any] = {
        "type": "track",
        "messageId": str(event["event_id"]),
        "userId": str(event["customer_id"]),
        "event": str(event["event"]),
        "timestamp": _iso(event["ts"]),
        "properties": props,
    }
    if campaign:
        msg["context"] = {"campaign": campaign}
    return msg


def inbox_rows(
    events: Iterable[Mapping[str, Any]], limits: MessageLimits | None = None
) -> list[InboxRow]:
    """The inbox rows of ``events``, through the collector's own checks (``prepare``): a
    message it refuses is a bug of ours, so it raises instead of becoming a dead letter."""
    messages = [segment_message(e) for e in events]
    if not messages:
        return []
    received = time.time_ns() // 1000
    rows, dead = prepare(
        Envelope("segment", messages), INTERNAL_SOURCE, received, limits or MessageLimits()
    )
    if dead:
        first = dead[0]
        raise JourneymapError(
            f"{len(dead)} of journeymap's own events were refused by the inbox: "
            f"{first['reason']}: {first['detail']} (message {first['message_id']})"
        )
    return rows


def submit_events(db: OperationalDB, events: Iterable[Mapping[str, Any]]) -> Future[int]:
    """Queue ``events`` for the inbox's next group commit; the future resolves once durable."""
    return InboxStore(db).submit(inbox_rows(events))


def record_events(db: OperationalDB, events: Iterable[Mapping[str, Any]]) -> int:
    """Store ``events`` in the inbox and wait until they are durable."""
    rows = inbox_rows(events)
    return InboxStore(db).append(rows) if rows else 0
