"""The outbox worker: delivers queued messages through channels and decides their fate.

Adapters classify, the engine decides (STYLE habit 7): this is the one place that turns
channel outcomes into outbox states.

* success → ``sent``;
* ``TransientChannelError`` → ``retry`` with exponential backoff, ``failed``
  (``retries_exhausted``) after ``max_attempts``;
* ``TerminalChannelError`` → ``failed`` with its reason; a ``hard_bounce`` also puts the
  address on the channel's suppression list;
* any other exception → retried only on a channel that deduplicates on the send id
  (``Channel.deduplicates``), else ``failed`` (``unknown``): it may have been delivered, and a
  second send is worse than none.

A row is *claimed* (``sending``, attempts + 1) in its own transaction before the send. A row
still ``sending`` after a crash is resolved by ``recover``: retried where the provider
deduplicates, otherwise marked ``failed`` (``unknown``).

Every outcome is returned as a closing-the-loop event (``Message Sent``, ``Message Failed``,
``Message Bounced``, ``Message Suppressed``) with campaign, step and variant, shaped as rows of
``EVENT_SCHEMA`` (``feedback_table``) for the caller to append to the lake.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from journeymap.channels.base import (
    OutboundMessage,
    TerminalChannelError,
    TransientChannelError,
)
from journeymap.channels.registry import ChannelRegistry
from journeymap.orchestration.clock import Clock, SystemClock
from journeymap.orchestration.engine import CampaignEngine, suppress_in
from journeymap.orchestration.policies import PolicySettings, backoff
from journeymap.storage.db import OperationalDB, campaign_outbox

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

FEEDBACK_EVENTS = {
    "sent": "Message Sent",
    "failed": "Message Failed",
    "bounced": "Message Bounced",
    "suppressed": "Message Suppressed",
    "opened": "Message Opened",
    "clicked": "Message Link Clicked",
    "unsubscribed": "Unsubscribed",
    "converted": "Campaign Converted",
}


def feedback_event(row: Any, kind: str, ts: dt.datetime, **extra: Any) -> dict[str, Any]:
    """A closing-the-loop event for outbox ``row`` (keys of ``EVENT_SCHEMA``)."""
    props = {
        "send_id": row.send_id,
        "campaign_id": row.campaign,
        "step": row.step,
        "variant": row.variant,
        "topic": row.topic,
        "transactional": row.transactional,
        **extra,
    }
    return {
        "event_id": f"jm-msg-{row.send_id}-{kind}",
        "customer_id": row.customer_id,
        "ts": ts,
        "event": FEEDBACK_EVENTS[kind],
        "channel": row.channel,
        "campaign": row.campaign,
        "source": "journeymap",
        "properties": json.dumps(props, default=str),
    }


def feedback_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """The events as a table with exactly ``EVENT_SCHEMA`` (ready for the lake)."""
    import pyarrow as pa

    from journeymap.model.events import EVENT_SCHEMA, conform, empty_events

    if not rows:
        return empty_events()
    names = [
        "event_id",
        "customer_id",
        "ts",
        "event",
        "channel",
        "campaign",
        "source",
        "properties",
    ]
    schema = pa.schema([EVENT_SCHEMA.field(n) for n in names])
    return conform(pa.Table.from_pylist([{n: r[n] for n in names} for r in rows], schema=schema))


class OutboxWorker:
    """Delivers due outbox rows; ``run_once`` is one pass, ``run`` loops until stopped."""

    def __init__(
        self,
        db: OperationalDB,
        channels: ChannelRegistry,
        *,
        settings: PolicySettings | None = None,
        clock: Clock | None = None,
        engine: CampaignEngine | None = None,
    ) -> None:
        self.db = db
        self.channels = channels
        self.settings = settings or PolicySettings()
        self.clock: Clock = clock or SystemClock()
        self.engine = engine

    def recover(self) -> int:
        """Resolve rows left ``sending`` by a crashed worker."""
        now = self.clock.now()
        with self.db.connect() as conn:
            stuck = conn.execute(
                sa.select(campaign_outbox.c.send_id, campaign_outbox.c.channel).where(
                    campaign_outbox.c.status == "sending"
                )
            ).all()
        for sid, channel in stuck:
            dedup = getattr(self.channels.get(channel), "deduplicates", False)
            values: dict[str, Any] = (
                {"status": "retry", "next_attempt_at": now}
                if dedup
                else {"status": "failed", "reason": "unknown", "last_error": "worker crashed"}
            )
            self.db.write(
                lambda conn, sid=sid, values=values: conn.execute(  # type: ignore[misc]
                    campaign_outbox.update()
                    .where(campaign_outbox.c.send_id == sid, campaign_outbox.c.status == "sending")
                    .values(**values)
                )
            )
        return len(stuck)

    def suppressed_events(self, since: dt.datetime | None = None) -> list[dict[str, Any]]:
        """``Message Suppressed`` events (holdout, consent, caps …), for the report and lake."""
        q = sa.select(campaign_outbox).where(campaign_outbox.c.status == "suppressed")
        if since is not None:
            q = q.where(campaign_outbox.c.created_at >= since)
        with self.db.connect() as conn:
            return [
                feedback_event(r, "suppressed", r.created_at, reason=r.reason)
                for r in conn.execute(q.order_by(campaign_outbox.c.created_at))
            ]

    def run_once(self, limit: int = 100) -> list[dict[str, Any]]:
        """Fire due timers (with an engine), deliver due messages; returns feedback events."""
        if self.engine is not None:
            self.engine.tick()
        now = self.clock.now()
        with self.db.connect() as conn:
            due = (
                conn.execute(
                    sa.select(campaign_outbox.c.send_id)
                    .where(
                        campaign_outbox.c.status.in_(("pending", "retry")),
                        campaign_outbox.c.next_attempt_at <= now,
                    )
                    .order_by(campaign_outbox.c.next_attempt_at, campaign_outbox.c.send_id)
                    .limit(limit)
                )
                .scalars()
                .all()
            )
        events: list[dict[str, Any]] = []
        for sid in due:
            event = self._deliver(sid)
            if event is not None:
                events.append(event)
        return events

    def run(self, stop: threading.Event, poll: float = 1.0) -> None:
        """Loop until ``stop`` is set (``journeymap worker``)."""
        self.recover()
        while not stop.is_set():
            try:
                events = self.run_once()
            except Exception:  # keep the worker alive; the next pass retries
                log.exception("outbox pass failed")
                events = []
            if not events:
                stop.wait(poll)

    def _claim(self, sid: str) -> Any:
        def run(conn: Connection) -> Any:
            res = conn.execute(
                campaign_outbox.update()
                .where(
                    campaign_outbox.c.send_id == sid,
                    campaign_outbox.c.status.in_(("pending", "retry")),
                )
                .values(status="sending", attempts=campaign_outbox.c.attempts + 1)
            )
            if not res.rowcount:
                return None  # claimed by another worker
            return conn.execute(
                sa.select(campaign_outbox).where(campaign_outbox.c.send_id == sid)
            ).one()

        return self.db.write(run)

    def _deliver(self, sid: str) -> dict[str, Any] | None:
        row = self._claim(sid)
        if row is None:
            return None
        payload = json.loads(row.payload)
        message = OutboundMessage(
            send_id=row.send_id,
            channel=row.channel,
            customer_id=row.customer_id,
            campaign=row.campaign,
            step=row.step,
            topic=row.topic,
            transactional=bool(row.transactional),
            variant=row.variant,
            address=row.address,
            renderings=payload.get("renderings", {}),
            links=payload.get("links", {}),
        )
        channel = self.channels.get(row.channel)
        values: dict[str, Any]
        try:
            result = channel.send(message)
        except TransientChannelError as exc:
            return self._retry_or_fail(row, str(exc))
        except TerminalChannelError as exc:
            now = self.clock.now()
            values = {"status": "failed", "reason": exc.reason, "last_error": str(exc)}
            bounced = exc.reason == "hard_bounce" and row.address is not None

            def run(conn: Connection) -> None:
                self._update(conn, sid, values)
                if bounced:
                    suppress_in(self.db, conn, row.channel, row.address, "hard_bounce", now)

            self.db.write(run)
            kind = "bounced" if exc.reason == "hard_bounce" else "failed"
            return feedback_event(row, kind, now, reason=exc.reason, error=str(exc))
        except Exception as exc:  # unknown: maybe delivered
            if getattr(channel, "deduplicates", False):
                return self._retry_or_fail(row, f"{type(exc).__name__}: {exc}")
            now = self.clock.now()
            values = {"status": "failed", "reason": "unknown", "last_error": repr(exc)}
            self.db.write(lambda conn: self._update(conn, sid, values))
            log.warning("send %s failed with an unknown error, not retried: %r", sid, exc)
            return feedback_event(row, "failed", now, reason="unknown", error=repr(exc))
        now = self.clock.now()
        values = {
            "status": "sent",
            "sent_at": now,
            "provider_id": result.provider_id,
            "last_error": None,
            "reason": None,
        }
        self.db.write(lambda conn: self._update(conn, sid, values))
        return feedback_event(row, "sent", now, attempts=row.attempts)

    def _retry_or_fail(self, row: Any, error: str) -> dict[str, Any] | None:
        now = self.clock.now()
        values: dict[str, Any]
        if row.attempts >= self.settings.max_attempts:
            values = {"status": "failed", "reason": "retries_exhausted", "last_error": error}
            self.db.write(lambda conn: self._update(conn, row.send_id, values))
            return feedback_event(row, "failed", now, reason="retries_exhausted", error=error)
        values = {
            "status": "retry",
            "next_attempt_at": now + backoff(row.attempts, self.settings),
            "last_error": error,
        }
        self.db.write(lambda conn: self._update(conn, row.send_id, values))
        return None

    @staticmethod
    def _update(conn: Connection, sid: str, values: dict[str, Any]) -> None:
        conn.execute(
            campaign_outbox.update().where(campaign_outbox.c.send_id == sid).values(**values)
        )
