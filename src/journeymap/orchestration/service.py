"""``journeymap worker``: the campaign process that feeds events, fires timers and delivers.

One pass (``WorkerService.run_once``)::

    recover claims whose lease passed → feed new inbox events to the engine → fire due timers
    → deliver the outbox (feedback events recorded before the outcomes are written)

**The feed** (``InboxFeed``) tails the collector's inbox by ``seq`` with a durable cursor (the
``meta`` counter ``campaign_feed_seq``), so campaigns see events as they arrive, before the
loader has moved them into the lake. Each batch runs in **one write transaction**: the
messages' identity operations are applied to the profiles as the loader applies them (keyed
by event id, so the loader's later pass changes nothing) and give each event its canonical
customer id; the engine handles the events; the ``Message Suppressed`` and
``Campaign Converted`` events of the touched entries go into the inbox; and the cursor moves —
all or nothing, so a crash repeats the batch from the old cursor and never skips or doubles
it. Only events some campaign listens to (trigger, goal, ``wait_for``) reach the engine;
messages that change profiles (identify, alias, group, consent) are applied whatever they are.

* A row the loader already emptied (its payload is in the lake) is read back from the lake by
  its event id.
* On PostgreSQL a row with a lower ``seq`` may commit after a higher one; the feed does not
  pass a gap in ``seq`` until the row after it is ``settle_seconds`` old (sequence values that
  a rolled-back or conflicting insert burned leave gaps that never fill). SQLite has one
  writer at a time, so ``seq`` order is commit order and there is no wait.
* A first start begins at the oldest message not yet loaded into the lake: campaigns run
  from now on (``journeymap campaigns simulate`` replays history).
* Two workers feeding one database: the cursor update is conditional on the cursor read, so
  the second one's batch rolls back and is not applied twice.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from journeymap.collect.internal import inbox_rows, record_events
from journeymap.collect.messages import InvalidMessage
from journeymap.collect.normalize import event_id_for, event_time_us, to_event, to_identity_op
from journeymap.model.campaigns import WaitForStep
from journeymap.model.spec import COLUMN_CONDITIONS
from journeymap.orchestration.engine import PHASE_EVENT, CampaignEngine, TriggerEvent
from journeymap.orchestration.phases import PhaseTracker
from journeymap.orchestration.worker import FEEDBACK_EVENTS, OutboxWorker, feedback_event
from journeymap.storage.db import (
    OperationalDB,
    campaign_entries,
    campaign_outbox,
    inbox,
    meta,
)
from journeymap.storage.inbox import MESSAGE_COLUMNS
from journeymap.storage.profiles import IdentityOp, ProfileStore

log = logging.getLogger(__name__)

FEED_CURSOR: Final = "campaign_feed_seq"
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class FeedConflictError(RuntimeError):
    """Another worker moved the feed cursor meanwhile; this batch was rolled back."""


@dataclass
class FeedResult:
    messages: int = 0
    events: int = 0
    touched: int = 0
    recorded: int = 0
    cursor: int = 0


class InboxFeed:
    """Feeds new inbox messages of ``db`` to ``engine`` (see the module doc)."""

    def __init__(
        self,
        db: OperationalDB,
        engine: CampaignEngine,
        *,
        lake: str | Path | None = None,
        default_currency: str = "EUR",
        batch: int = 500,
        settle_seconds: float | None = None,
        phases: PhaseTracker | None = None,
    ) -> None:
        self.db = db
        self.engine = engine
        #: live phase entries for campaigns that trigger on a phase (``Phase Entered``)
        self.phases = phases
        self.lake = Path(lake) if lake is not None else None
        self.default_currency = default_currency
        self.batch = batch
        self.settle_us = int(
            1e6
            * (
                settle_seconds
                if settle_seconds is not None
                else (5.0 if db.dialect == "postgresql" else 0.0)
            )
        )
        self.profiles = ProfileStore(db)
        self.listened = listened_events(engine)

    # -- the cursor -----------------------------------------------------------------------
    def cursor(self) -> int:
        """The last fed ``seq``; a first start begins before the oldest unloaded message."""
        with self.db.connect() as conn:
            value = conn.execute(sa.select(meta.c.value).where(meta.c.key == FEED_CURSOR)).scalar()
        if value is not None:
            return int(value)

        def start(conn: Connection) -> int:
            first = conn.execute(
                sa.select(sa.func.min(inbox.c.seq)).where(inbox.c.loaded_at_us.is_(None))
            ).scalar()
            if first is None:
                first = (conn.execute(sa.select(sa.func.max(inbox.c.seq))).scalar() or 0) + 1
            conn.execute(
                self.db.insert_ignore(meta, ["key"]), {"key": FEED_CURSOR, "value": int(first) - 1}
            )
            return int(
                conn.execute(sa.select(meta.c.value).where(meta.c.key == FEED_CURSOR)).scalar_one()
            )

        return self.db.write(start)

    # -- feeding --------------------------------------------------------------------------
    def feed_once(self) -> FeedResult:
        """Feed up to ``batch`` messages after the cursor in one transaction."""
        cursor = self.cursor()
        with self.db.connect() as conn:
            rows = conn.execute(
                sa.select(*MESSAGE_COLUMNS)
                .where(inbox.c.seq > cursor)
                .order_by(inbox.c.seq)
                .limit(self.batch)
            ).all()
        rows = self._settled(rows, cursor)
        if not rows:
            return FeedResult(cursor=cursor)
        parsed: list[tuple[Any, dict[str, Any], int]] = []
        from_lake: list[str] = []
        for row in rows:
            if row.payload is None:
                from_lake.append(event_id_for(row.source, row.message_id))
                continue
            try:
                msg = json.loads(row.payload)
                if not self._wanted(msg):
                    continue
                parsed.append((row, msg, event_time_us(msg)))
            except (InvalidMessage, ValueError, TypeError, KeyError):
                continue  # the loader dead-letters it
        lake_events = self._from_lake(from_lake) if from_lake else []
        new_cursor = int(rows[-1].seq)

        lock = sa.select(meta.c.value).where(meta.c.key == FEED_CURSOR)
        if self.db.dialect == "postgresql":
            lock = lock.with_for_update()

        def run(conn: Connection) -> FeedResult:
            # first, under the write lock (SQLite) or the cursor row's lock (PostgreSQL): a
            # second worker feeding the same messages stops here instead of after the work
            if conn.execute(lock).scalar() != cursor:
                raise FeedConflictError(f"the feed cursor moved past {cursor} meanwhile")
            ops: list[IdentityOp] = []
            kept: list[tuple[Any, dict[str, Any], int]] = []
            for row, msg, ts_us in parsed:
                try:
                    eid = event_id_for(row.source, row.message_id)
                    ops.append(
                        to_identity_op(
                            msg, eid, row.source, _EPOCH + dt.timedelta(microseconds=ts_us)
                        )
                    )
                    kept.append((row, msg, ts_us))
                except (InvalidMessage, ValueError, TypeError, KeyError):
                    continue
            customers = self.profiles.apply_in(conn, ops) if ops else []
            events: list[TriggerEvent] = []
            seen: list[dict[str, Any]] = []  # every customer event, for the phase tracker
            for (row, msg, ts_us), customer in zip(kept, customers, strict=True):
                if customer is None or msg.get("type") != "track":
                    continue
                try:
                    lake_row = to_event(msg, row.source, customer, self.default_currency, ts_us)
                except (InvalidMessage, ValueError, TypeError, ArithmeticError):
                    continue
                seen.append(lake_row)
                if self._listened(msg):
                    events.append(TriggerEvent.of(lake_row))
            known = [e for e in lake_events if e["customer_id"] is not None]
            events += [TriggerEvent.of(e) for e in known if e["event"] in self.listened]
            if self.phases is not None:
                ordered: list[dict[str, Any]] = sorted(
                    seen + known, key=lambda e: (e["ts"], str(e["event_id"]))
                )
                entered = self.phases.observe_in(conn, ordered)
                events = sorted(events + entered, key=lambda e: e.ts or _EPOCH)
            touched = self.engine.handle_in(conn, events) if events else []
            recorded = record_in(self.db, conn, entry_events(conn, touched))
            res = conn.execute(
                meta.update()
                .where(meta.c.key == FEED_CURSOR, meta.c.value == cursor)
                .values(value=new_cursor)
            )
            if res.rowcount != 1:
                raise FeedConflictError(f"the feed cursor moved past {cursor} meanwhile")
            return FeedResult(len(rows), len(events), len(set(touched)), recorded, new_cursor)

        try:
            return self.db.write(run)
        except FeedConflictError:
            log.info("another worker fed messages after %d; skipping this batch", cursor)
            if self.phases is not None:
                self.phases.forget()
            return FeedResult(cursor=cursor)
        except BaseException:
            if self.phases is not None:
                self.phases.forget()
            raise

    def feed_all(
        self, max_batches: int = 1_000_000, stop: threading.Event | None = None
    ) -> FeedResult:
        """Batches until nothing new is settled (or ``stop`` is set)."""
        total = FeedResult()
        for _ in range(max_batches):
            r = self.feed_once()
            total.messages += r.messages
            total.events += r.events
            total.touched += r.touched
            total.recorded += r.recorded
            total.cursor = r.cursor
            if r.messages == 0 or (stop is not None and stop.is_set()):
                break
        return total

    def tick(self, limit: int = 500, batch: int = 100) -> int:
        """Fire due timers, ``batch`` entries per transaction, recording the suppressed
        messages and conversions of the entries they move in the same transaction."""
        due = self.engine.due(limit)
        for i in range(0, len(due), batch):
            part = due[i : i + batch]

            def run(conn: Connection, part: list[int] = part) -> None:
                self.engine.wake_in(conn, part)
                record_in(self.db, conn, entry_events(conn, part))

            self.db.write(run)
        return len(due)

    def _settled(self, rows: Sequence[Any], cursor: int) -> list[Any]:
        if not self.settle_us:
            return list(rows)
        now = time.time_ns() // 1000
        out = []
        expected = cursor + 1
        for row in rows:
            if row.seq != expected and now - row.received_at_us < self.settle_us:
                break  # a gap that an open transaction may still fill
            out.append(row)
            expected = row.seq + 1
        return out

    def _wanted(self, msg: dict[str, Any]) -> bool:
        """Messages that change profiles, that a campaign listens to, or (with phase
        triggers) any event, since any event may move a customer into another phase."""
        return msg.get("type") != "track" or self.phases is not None or self._listened(msg)

    def _listened(self, msg: dict[str, Any]) -> bool:
        return msg.get("type") == "track" and msg.get("event") in self.listened

    def _from_lake(self, event_ids: list[str]) -> list[dict[str, Any]]:
        """Events the loader moved before the feed saw them, read back by id."""
        if self.lake is None:
            log.warning("%d messages were loaded before the feed saw them; no lake", len(event_ids))
            return []
        import pyarrow.dataset as pads

        from journeymap.storage.lake import DeltaEventStore

        store = DeltaEventStore(self.lake)
        if not store.exists():
            return []
        columns = ["event_id", "customer_id", "ts", "event", "channel", "campaign", "properties"]
        columns += list(COLUMN_CONDITIONS)
        table = store.dataset().to_table(
            columns=columns, filter=pads.field("event_id").isin(event_ids)
        )
        order = {eid: i for i, eid in enumerate(event_ids)}
        return sorted(table.to_pylist(), key=lambda r: order.get(r["event_id"], 0))


def listened_events(engine: CampaignEngine) -> set[str]:
    """Event names that trigger, advance or convert some active campaign."""
    names: set[str] = set()
    for c in engine.campaigns.values():
        if c.status != "active":
            continue
        names.add(c.trigger.event or PHASE_EVENT)
        if c.goal is not None:
            names.add(c.goal.event)
        names.update(s.event for s in c.steps if isinstance(s, WaitForStep))
    return names


def entry_events(conn: Connection, entry_ids: Sequence[int]) -> list[dict[str, Any]]:
    """``Message Suppressed`` and ``Campaign Converted`` events of these entries (event ids
    are deterministic: recording them again stores nothing new)."""
    ids = sorted(set(entry_ids))
    out: list[dict[str, Any]] = []
    for i in range(0, len(ids), 500):
        part = ids[i : i + 500]
        for r in conn.execute(
            sa.select(campaign_outbox).where(
                campaign_outbox.c.entry_id.in_(part), campaign_outbox.c.status == "suppressed"
            )
        ):
            out.append(feedback_event(r, "suppressed", r.created_at, reason=r.reason))
        for r in conn.execute(
            sa.select(campaign_entries).where(
                campaign_entries.c.entry_id.in_(part), campaign_entries.c.converted_at.is_not(None)
            )
        ):
            out.append(conversion_event(r))
    return out


def conversion_event(r: Any) -> dict[str, Any]:
    """The ``Campaign Converted`` event of an entry (as ``LoopRecorder.conversions``)."""
    return {
        "event_id": f"jm-conv-{r.campaign}-{r.entry_id}",
        "customer_id": r.customer_id,
        "ts": r.converted_at,
        "event": FEEDBACK_EVENTS["converted"],
        "channel": None,
        "campaign": r.campaign,
        "source": "journeymap",
        "properties": json.dumps(
            {
                "campaign_id": r.campaign,
                "group": r.group_name,
                "variant": r.variant,
                "entry_key": r.entry_key,
            }
        ),
    }


def record_in(db: OperationalDB, conn: Connection, events: Sequence[dict[str, Any]]) -> int:
    """Put ``events`` into the inbox inside the caller's transaction (the rows of
    ``collect.internal.record_events``; the unique key drops ids already there)."""
    rows = inbox_rows(events)
    if rows:
        conn.execute(db.insert_ignore(inbox, ["source", "message_id"]), list(rows))
    return len(rows)


@dataclass
class PassResult:
    fed: int
    fired: int
    delivered: int


class WorkerService:
    """The loop of ``journeymap worker`` around a ``CampaignRuntime``'s engine and worker."""

    def __init__(
        self,
        db: OperationalDB,
        engine: CampaignEngine,
        worker: OutboxWorker,
        feed: InboxFeed,
        *,
        batch_size: int = 200,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.db = db
        self.engine = engine
        self.worker = worker
        self.feed = feed
        self.batch_size = batch_size
        self.progress = progress
        if worker.feedback is None:
            worker.feedback = lambda events: record_events(db, events)
        self._last_report = time.monotonic()
        self._sent_at_report = 0

    def run_once(self, stop: threading.Event | None = None) -> PassResult:
        """One pass: recover expired claims, feed, fire timers, deliver until the outbox has
        nothing due (or ``stop`` is set)."""
        stop = stop or threading.Event()
        self.worker.recover(expired_only=True)
        fed = self.feed.feed_all(stop=stop).events
        fired = self.feed.tick()
        delivered = 0
        while not stop.is_set():
            claimed_before = self.worker.stats.claimed
            self.worker.deliver(self.batch_size)
            n = self.worker.stats.claimed - claimed_before
            delivered += n
            self._report()
            if n < self.batch_size:
                break
            if self.feed.feed_all(max_batches=1, stop=stop).events:  # keep events flowing
                fed += 1
        return PassResult(fed, fired, delivered)

    def run(self, stop: threading.Event, interval: float, *, once: bool = False) -> None:
        """Recover every claim of a crashed worker, then loop until ``stop`` is set."""
        self.worker.recover()
        while not stop.is_set():
            try:
                result = self.run_once(stop)
            except Exception:  # keep the worker alive; the next pass retries
                log.exception("worker pass failed; retrying in %.1f s", interval)
                result = PassResult(0, 0, 0)
                if once:
                    raise
            if once:
                break
            if not (result.fed or result.fired or result.delivered):
                stop.wait(interval)
        self._report(force=True)

    def _report(self, force: bool = False) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if not force and now - self._last_report < 2.0:
            return
        sent = self.worker.stats.sent
        rate = (sent - self._sent_at_report) / max(now - self._last_report, 1e-6)
        self._last_report, self._sent_at_report = now, sent
        s = self.worker.stats
        self.progress(
            f"sent {s.sent:,} ({rate:,.0f}/s), failed {s.failed:,}, retrying {s.retried:,}, "
            f"queue {self.worker.queue_depth():,}, feed at seq {self.feed.cursor():,}"
        )
