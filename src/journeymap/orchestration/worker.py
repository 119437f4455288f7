"""The outbox worker: delivers queued messages through channels and decides their fate.

Adapters classify, the engine decides (STYLE habit 7): this is the one place that turns
channel outcomes into outbox states.

States of an outbox row::

    pending ─┐                    ┌─> sent            (reply 250; or committed, no reply)
    retry ───┴─> sending ─(commit)┴─> retry | failed  (the reply after the commit: 4xx | 5xx)
                    │
                    └─> retry | failed                (an error before the commit)

* **claim**: one transaction claims up to ``limit`` due rows (``FOR UPDATE SKIP LOCKED`` on
  PostgreSQL, so several workers never claim the same row; SQLite's single writer serialises
  claims): ``sending``, ``attempts + 1`` (the row's *fencing token*) and ``next_attempt_at``
  = now + ``lease`` (when a stuck claim may be recovered by another worker);
* **commit** (two-phase channels, ``channels.base``: SMTP): the channel sends everything a
  dropped connection undoes (MAIL, RCPT, DATA, the body), the worker records the commit
  (``sent_at`` set on the ``sending`` row whose ``attempts`` still match; ``CommitLog``: one
  transaction for every sending thread's record queued meanwhile), and the thread that
  committed writes each final ``<CRLF>.<CRLF>`` the moment the commit returns; the sending
  thread then reads the reply. A commit that finds the row re-claimed (fencing) makes the
  channel abandon the transaction (close, no dot);
* **outcome**: success → ``sent``; ``TransientChannelError`` → ``retry`` with exponential
  backoff, ``failed`` (``retries_exhausted``) after ``max_attempts``; ``TerminalChannelError``
  → ``failed`` with its reason, a ``hard_bounce`` also suppresses the address; an unknown error
  after the commit (no reply) → ``sent`` with reason ``unconfirmed``; before the commit of a
  two-phase channel → retried (nothing was delivered); on a one-phase channel → retried only
  where the provider deduplicates on the send id (``Channel.deduplicates``), else ``failed``
  (``unknown``): it may have been delivered, and a second send is worse than none.

Outcomes of two-phase channels are written per claimed batch (one transaction); a crash
before that leaves rows ``sending``, which ``recover`` resolves:

* committed (``sent_at`` set) → ``sent`` (``unconfirmed``): the commit precedes the dot;
* not committed, two-phase channel → ``retry``: the server never saw the dot, so it dropped
  the transaction when the connection died (RFC 5321 §4.1.1.4);
* not committed, one-phase channel → ``retry`` where the provider deduplicates, else
  ``failed`` (``unknown``).

**Exactly once to an SMTP server** follows, with residual windows:

* a kill between the commit becoming visible and the dot's ``write()`` leaves a committed row
  whose dot never left: recovery counts it sent, so that message is lost, never doubled. The
  record commits without waiting for the flush (see ``CommitLog``: a commit is visible to a
  restarted process from the WAL write on SQLite, from the server's receipt of ``COMMIT`` on
  PostgreSQL, so waiting for the fsync would put the whole fsync inside the window) and the
  dots follow through the DB-API with no library code in between: tens of microseconds, plus
  any time the operating system preempts that thread (the commit thread asks for a higher
  priority where permitted). Once the dot is in the kernel's socket buffer the kernel
  delivers it after a SIGKILL;
* a power cut (not a process kill) within milliseconds of a commit record can lose the record
  after its dot went out: that message is sent again;
* a server that accepted the dot but whose 5xx/4xx reply was never read is counted ``sent``;
* the server must complete a DATA whose final dot arrived before the client's EOF (RFC 5321;
  Postfix does; stock aiosmtpd cancels the session at EOF even then).

Every outcome is a closing-the-loop event (``Message Sent``, ``Message Failed``,
``Message Bounced``, ``Message Suppressed``) with campaign, step and variant, shaped as rows of
``EVENT_SCHEMA`` (``feedback_table``). ``run_once`` returns them; with a ``feedback`` callback
(``journeymap worker``: ``collect.internal.record_events``) the worker stores them durably
*before* it writes the outcomes, so a crash in between records them again (the inbox drops the
repeated ids) and never loses one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from journeymap.channels import gilheld
from journeymap.channels.base import (
    OutboundMessage,
    TerminalChannelError,
    TransientChannelError,
    concurrency,
    is_two_phase,
)
from journeymap.channels.registry import ChannelRegistry
from journeymap.errors import JourneymapError
from journeymap.orchestration.clock import Clock, SystemClock
from journeymap.orchestration.engine import CampaignEngine, suppress_in
from journeymap.orchestration.policies import PolicySettings, backoff
from journeymap.storage.batches import next_batch
from journeymap.storage.db import (
    OperationalDB,
    StoreUnavailableError,
    campaign_outbox,
    sqlite_setup,
)

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

#: Stores feedback events durably (``collect.internal.record_events`` bound to the database).
Feedback = Callable[[list[dict[str, Any]]], object]


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


# Built once; the SET clause comes from the parameters' other keys
_OUTCOME = campaign_outbox.update().where(
    campaign_outbox.c.send_id == sa.bindparam("b_sid"),
    campaign_outbox.c.status == "sending",
    campaign_outbox.c.attempts == sa.bindparam("b_attempts"),
)


def _message(row: Any) -> OutboundMessage:
    payload = json.loads(row.payload)
    return OutboundMessage(
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


class ClaimLostError(JourneymapError):
    """The row was recovered and re-claimed meanwhile: this worker must not complete it."""


@dataclass
class Outcome:
    """What became of one claimed row: the values to write (``None``: leave the row), the
    feedback event, and whether the address goes on the suppression list."""

    row: Any
    values: dict[str, Any] | None
    event: dict[str, Any] | None = None
    suppress: bool = False


@dataclass
class WorkerStats:
    claimed: int = 0
    sent: int = 0
    failed: int = 0
    retried: int = 0
    released: int = 0
    recovered: int = 0
    by_status: dict[str, int] = field(default_factory=dict)


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
        feedback: Feedback | None = None,
        lease: dt.timedelta = dt.timedelta(minutes=15),
    ) -> None:
        self.db = db
        self.channels = channels
        self.settings = settings or PolicySettings()
        self.clock: Clock = clock or SystemClock()
        self.engine = engine
        self.feedback = feedback
        self.lease = lease
        self.stats = WorkerStats()
        #: set to stop between messages: claimed rows not yet started are released
        self.stopping = threading.Event()
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._commit_log: CommitLog | None = None
        self._lock = threading.Lock()

    # -- recovery -------------------------------------------------------------------------
    def recover(self, *, expired_only: bool = False) -> int:
        """Resolve rows left ``sending`` by a crashed worker (see the module doc); with
        ``expired_only`` just those whose lease has passed (the claims of live workers stay;
        were one recovered anyway, the fencing token keeps its send from completing)."""
        now = self.clock.now()
        q = sa.select(campaign_outbox).where(campaign_outbox.c.status == "sending")
        if expired_only:
            q = q.where(campaign_outbox.c.next_attempt_at < now)
        with self.db.connect() as conn:
            stuck = conn.execute(q).all()
        outcomes: list[Outcome] = []
        for row in stuck:
            channel = self.channels.get(row.channel)
            if row.sent_at is not None:  # committed: the dot followed (or was lost in the window)
                outcomes.append(self._sent(row, row.sent_at, "unconfirmed", "worker crashed"))
            elif is_two_phase(channel) or getattr(channel, "deduplicates", False):
                values = {"status": "retry", "next_attempt_at": now, "last_error": "worker crashed"}
                outcomes.append(Outcome(row, values))
            else:
                values = {"status": "failed", "reason": "unknown", "last_error": "worker crashed"}
                event = feedback_event(row, "failed", now, reason="unknown", error="worker crashed")
                outcomes.append(Outcome(row, values, event))
        self._finish(outcomes)
        self.stats.recovered += len(stuck)
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

    def queue_depth(self) -> int:
        """Messages waiting to be sent (pending, retry, sending)."""
        with self.db.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count()).where(
                        campaign_outbox.c.status.in_(("pending", "retry", "sending"))
                    )
                ).scalar_one()
            )

    # -- delivering -----------------------------------------------------------------------
    def run_once(self, limit: int = 100) -> list[dict[str, Any]]:
        """Fire due timers (with an engine), deliver due messages; returns feedback events."""
        if self.engine is not None:
            self.engine.tick()
        return self.deliver(limit)

    def deliver(self, limit: int = 100) -> list[dict[str, Any]]:
        """Claim up to ``limit`` due messages and deliver them; returns feedback events."""
        rows = self.claim(limit)
        if not rows:
            return []
        by_channel: dict[str, list[tuple[Any, object]]] = {}
        for row in rows:
            by_channel.setdefault(row.channel, []).append((row, None))
        batched: list[Outcome] = []
        events: list[dict[str, Any]] = []
        for name, part in by_channel.items():
            channel = self.channels.get(name)
            two_phase = is_two_phase(channel)
            n = min(concurrency(channel), len(part))
            prepare = getattr(channel, "prepare", None) if two_phase else None
            if callable(prepare):  # the CPU-heavy part first, in this thread (see base)
                part = [(row, self._prepare(prepare, row)) for row, _ in part]
            if n > 1:
                pool = self._pools.get(name)
                if pool is None:
                    pool = self._pools[name] = ThreadPoolExecutor(
                        concurrency(channel), thread_name_prefix=f"journeymap-send-{name}"
                    )
                results = list(pool.map(lambda job: self._deliver_row(*job), part))
            else:
                results = [self._deliver_row(row, ready) for row, ready in part]
            for out in results:
                if out.event is not None:
                    events.append(out.event)
            if two_phase:
                batched += results  # the commit records are durable: one write for the batch
            else:
                for out in results:  # one-phase: the outcome is the only record, write it now
                    self._finish([out])
        self._finish(batched)
        return events

    def claim(self, limit: int, send_ids: Sequence[str] | None = None) -> list[Any]:
        """Claim up to ``limit`` due rows (or the given ``send_ids``) in one transaction."""
        now = self.clock.now()
        postgres = self.db.dialect == "postgresql"

        def run(conn: Connection) -> list[Any]:
            q = sa.select(campaign_outbox.c.send_id).where(
                campaign_outbox.c.status.in_(("pending", "retry"))
            )
            if send_ids is not None:
                q = q.where(campaign_outbox.c.send_id.in_(list(send_ids)))
            else:
                q = q.where(campaign_outbox.c.next_attempt_at <= now)
            q = q.order_by(campaign_outbox.c.next_attempt_at, campaign_outbox.c.send_id)
            q = q.limit(limit)
            if postgres:
                q = q.with_for_update(skip_locked=True)
            ids = list(conn.execute(q).scalars())
            if not ids:
                return []
            res = conn.execute(
                campaign_outbox.update()
                .where(
                    campaign_outbox.c.send_id.in_(ids),
                    campaign_outbox.c.status.in_(("pending", "retry")),
                )
                .values(
                    status="sending",
                    attempts=campaign_outbox.c.attempts + 1,
                    next_attempt_at=now + self.lease,
                    sent_at=None,
                )
            )
            assert res.rowcount == len(ids), "claimed rows changed under the claim"
            rows = conn.execute(
                sa.select(campaign_outbox)
                .where(campaign_outbox.c.send_id.in_(ids))
                .order_by(campaign_outbox.c.next_attempt_at, campaign_outbox.c.send_id)
            ).all()
            order = {sid: i for i, sid in enumerate(ids)}
            return sorted(rows, key=lambda r: order[r.send_id])

        rows = self.db.write(run)
        self.stats.claimed += len(rows)
        return rows

    def _claim(self, sid: str) -> Any:
        """Claim one row (tests: a claim whose worker then dies)."""
        rows = self.claim(1, [sid])
        return rows[0] if rows else None

    def _commit(self, row: Any, point: Callable[[], None]) -> None:
        """The commit record of a two-phase send, then ``point`` (the dot) the moment it is
        committed (``CommitLog``); raises ``ClaimLostError`` when the row is no longer this
        claim's."""
        if self._commit_log is None:
            with self._lock:
                if self._commit_log is None:
                    self._commit_log = CommitLog(self.db)
        if not self._commit_log.commit(row.send_id, row.attempts, self.clock.now(), point):
            raise ClaimLostError(f"send {row.send_id}: claim {row.attempts} was recovered")

    @staticmethod
    def _prepare(prepare: Callable[[OutboundMessage], object], row: Any) -> object:
        try:
            return prepare(_message(row))
        except Exception as exc:  # the send reports it (classified) when it builds again
            return exc

    def _deliver_row(self, row: Any, prepared: object = None) -> Outcome:
        if self.stopping.is_set():  # shutting down: give the claim back untouched
            self.stats.released += 1
            values = {"status": "retry", "attempts": row.attempts - 1}
            return Outcome(row, values | {"next_attempt_at": self.clock.now()})
        message = _message(row)
        channel = self.channels.get(row.channel)
        two_phase = is_two_phase(channel)
        committed = False

        def commit(point: Callable[[], None]) -> None:
            nonlocal committed
            self._commit(row, point)
            committed = True

        try:
            if two_phase:
                ready = None if isinstance(prepared, Exception) else prepared
                result = channel.send_committed(message, commit, ready)  # type: ignore[attr-defined]
            else:
                result = channel.send(message)
        except ClaimLostError:
            log.info("send %s: recovered by another worker meanwhile; left to it", row.send_id)
            return Outcome(row, None)
        except TransientChannelError as exc:
            return self._retry_or_fail(row, str(exc), exc.retry_after)
        except TerminalChannelError as exc:
            now = self.clock.now()
            values = {"status": "failed", "reason": exc.reason, "last_error": str(exc)}
            kind = "bounced" if exc.reason == "hard_bounce" else "failed"
            event = feedback_event(row, kind, now, reason=exc.reason, error=str(exc))
            self.stats.failed += 1
            bounced = exc.reason == "hard_bounce" and row.address is not None
            return Outcome(row, values | {"sent_at": None}, event, suppress=bounced)
        except Exception as exc:  # unknown
            if committed:  # the dot went out, the reply did not come back
                log.warning(
                    "send %s: no reply after the commit, counted sent: %r", row.send_id, exc
                )
                return self._sent(row, self.clock.now(), "unconfirmed", repr(exc))
            if two_phase or getattr(channel, "deduplicates", False):
                return self._retry_or_fail(row, f"{type(exc).__name__}: {exc}")
            now = self.clock.now()
            values = {"status": "failed", "reason": "unknown", "last_error": repr(exc)}
            log.warning("send %s failed with an unknown error, not retried: %r", row.send_id, exc)
            self.stats.failed += 1
            event = feedback_event(row, "failed", now, reason="unknown", error=repr(exc))
            return Outcome(row, values, event)
        gone = tuple(getattr(result, "gone", ()) or ())
        if gone:  # devices that unsubscribed (push): off the profile, the others keep it
            self._forget_devices(row.customer_id, gone)
        return self._sent(row, self.clock.now(), None, None, result.provider_id)

    def _forget_devices(self, customer_id: str, endpoints: Sequence[str]) -> None:
        from journeymap.orchestration.preferences import remove_push_subscriptions

        try:
            remove_push_subscriptions(self.db, endpoints, user_id=customer_id, now=self.clock.now())
        except Exception:  # the message went out; a stale device is retried and reported again
            log.exception("could not remove %d gone push device(s)", len(endpoints))

    def _sent(
        self,
        row: Any,
        now: dt.datetime,
        reason: str | None,
        error: str | None,
        provider_id: str | None = None,
    ) -> Outcome:
        self.stats.sent += 1
        values = {
            "status": "sent",
            "sent_at": now,
            "provider_id": provider_id,
            "last_error": error,
            "reason": reason,
        }
        extra = {"reason": reason} if reason else {}
        return Outcome(
            row, values, feedback_event(row, "sent", now, attempts=row.attempts, **extra)
        )

    def _retry_or_fail(self, row: Any, error: str, retry_after: float | None = None) -> Outcome:
        now = self.clock.now()
        values: dict[str, Any]
        if row.attempts >= self.settings.max_attempts:
            self.stats.failed += 1
            values = {"status": "failed", "reason": "retries_exhausted", "last_error": error}
            event = feedback_event(row, "failed", now, reason="retries_exhausted", error=error)
            return Outcome(row, values | {"sent_at": None}, event)
        self.stats.retried += 1
        values = {
            "status": "retry",
            "next_attempt_at": now
            + max(backoff(row.attempts, self.settings), dt.timedelta(seconds=retry_after or 0)),
            "last_error": error,
            "sent_at": None,
        }
        return Outcome(row, values)

    def _finish(self, outcomes: Sequence[Outcome]) -> None:
        """Store the feedback events (durably, when there is a callback), then write the
        outcomes in one transaction, each fenced by the claim's ``attempts``."""
        todo = [o for o in outcomes if o.values is not None]
        if not todo:
            return
        events = [o.event for o in todo if o.event is not None]
        if events and self.feedback is not None:
            self.feedback(events)
        now = self.clock.now()

        def run(conn: Connection) -> None:
            # executemany per shape of the values (a batch is mostly ``sent`` rows)
            shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for o in todo:
                assert o.values is not None
                params = {"b_sid": o.row.send_id, "b_attempts": o.row.attempts, **o.values}
                shapes.setdefault(tuple(sorted(o.values)), []).append(params)
            for params_list in shapes.values():
                conn.execute(_OUTCOME, params_list)
            for o in todo:
                if o.suppress:
                    suppress_in(self.db, conn, o.row.channel, o.row.address, "hard_bounce", now)

        self.db.write(run)

    # -- the loop -------------------------------------------------------------------------
    def run(self, stop: threading.Event, poll: float = 1.0) -> None:
        """Loop until ``stop`` is set (tests; ``journeymap worker`` adds the event feed)."""
        self.recover()
        while not stop.is_set():
            try:
                events = self.run_once()
            except Exception:  # keep the worker alive; the next pass retries
                log.exception("outbox pass failed")
                events = []
            if not events:
                stop.wait(poll)

    def close(self) -> None:
        """Stop the sending threads and close the channels' connections."""
        for pool in self._pools.values():
            pool.shutdown(wait=True)
        self._pools.clear()
        if self._commit_log is not None:
            self._commit_log.close()
            self._commit_log = None
        for name in self.channels.names():
            close = getattr(self.channels.get(name), "close", None)
            if callable(close):
                close()


class CommitLog:
    """Commit records of two-phase sends, each followed at once by its irrevocable step.

    A killed process leaves a commit visible as soon as the database has it: on SQLite once
    the WAL frame is *written* (the page cache survives the process), on PostgreSQL once the
    server received ``COMMIT``. Waiting for the fsync before the dot would widen the window in
    which a kill leaves a committed message whose dot never left to the whole fsync (ms). So
    the records commit without waiting for the flush — their own SQLite connection with
    ``synchronous=NORMAL`` (WAL: durable across process crashes, flushed by the next
    ``synchronous=FULL`` commit, e.g. the batch's outcomes) and ``synchronous_commit=off`` on
    PostgreSQL — and one thread commits every record queued meanwhile in one transaction
    (group commit), then runs each ``point`` (a few µs each) before anything else: with the
    GIL held from the commit to the last dot, and unpreempted where the system allows a
    real-time section (``gilheld.not_preempted``; on PostgreSQL the COMMIT wakes the server's
    backend, which otherwise took the CPU inside the window: 3 losses in 11 crash-test runs
    before, none in 10 after).

    The price: a power cut (not a process kill) within a few ms after a record may lose the
    record while its dot went out; that message is then sent again (at least once, never
    lost). The stricter order — fsync, then dot — would turn process kills in the fsync into
    lost messages instead.
    """

    def __init__(self, db: OperationalDB) -> None:
        self.db = db
        self.engine = _commit_engine(db)
        self._queue: queue.SimpleQueue[_CommitItem | None] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._loop, name="journeymap-outbox-commit", daemon=True
        )
        self._thread.start()

    def commit(self, sid: str, attempts: int, now: dt.datetime, point: Callable[[], None]) -> bool:
        """Record the commit of claim ``attempts`` of ``sid`` and run ``point`` right after;
        False (and ``point`` not run) when the row is no longer that claim's."""
        item = _CommitItem(sid, attempts, now, point)
        self._queue.put(item)
        return item.future.result()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(30)
        self.engine.dispose()

    def _loop(self) -> None:
        # Where the system allows it (CAP_SYS_NICE), this thread runs ahead of the process's
        # others: on a busy machine, a preemption between a commit and its dots would widen
        # the residual window from microseconds to a scheduler time slice.
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), -10)
        raw: Any = None
        sqlite = self.db.dialect == "sqlite"
        mark = "?" if sqlite else "%s"
        # the DB-API directly: no library code between the commit and the dots
        sql = (
            f"UPDATE campaign_outbox SET sent_at = {mark} WHERE send_id = {mark} "
            f"AND status = 'sending' AND attempts = {mark} AND sent_at IS NULL"
        )
        while (items := next_batch(self._queue)) is not None:
            dotted = False
            unpreempted = contextlib.ExitStack()
            try:
                if raw is None:
                    raw = self.engine.raw_connection()
                    if not sqlite:  # this loop drives the transactions itself
                        raw.driver_connection.autocommit = True
                cur = raw.cursor()
                cur.execute("BEGIN IMMEDIATE" if sqlite else "BEGIN")
                if not sqlite:
                    cur.execute("SET LOCAL synchronous_commit TO OFF")
                oks = []
                for i in items:
                    cur.execute(sql, (_db_time(i.now, sqlite), i.sid, i.attempts))
                    oks.append(cur.rowcount == 1)
                if sqlite:
                    # the GIL stays held from the commit to the dots, and the thread is not
                    # preempted by the processes its dots wake (channels.gilheld)
                    unpreempted.enter_context(gilheld.not_preempted())
                    if not gilheld.sqlite_commit(raw.driver_connection):
                        cur.execute("COMMIT")
                else:
                    # The server commits on receipt of COMMIT, killed client or not: the dots
                    # go out right after the COMMIT is sent, not after its reply (a round trip).
                    dotted = True
                    _pg_commit(
                        raw.driver_connection,
                        [i.point for i, ok in zip(items, oks, strict=True) if ok],
                    )
            except BaseException as exc:  # nothing committed: no dot; every sender hears it
                unpreempted.close()
                if raw is not None:
                    with contextlib.suppress(Exception):
                        raw.invalidate()
                raw = None
                err: BaseException = exc
                if isinstance(exc, Exception) and not isinstance(exc, JourneymapError):
                    err = StoreUnavailableError(f"the outbox commit record failed: {exc}")
                for i in items:
                    i.future.set_exception(err)
                continue
            with unpreempted:
                for i, ok in zip(items, oks, strict=True):  # committed: the dots, at once
                    if ok and not dotted:
                        i.point()
            for i, ok in zip(items, oks, strict=True):
                i.future.set_result(ok)
        if raw is not None:
            raw.close()


def _pg_commit(conn: Any, points: list[Callable[[], None]]) -> None:
    """Send ``COMMIT`` on a psycopg connection, run ``points`` while it travels, then read
    the reply. The statements before it succeeded, so only a lost server can fail it now:
    those messages are then sent again (at least once), like after a power cut."""
    import select

    from psycopg import pq

    pgconn = conn.pgconn
    # psycopg's send_query releases the GIL around PQsendQuery, which puts COMMIT on the
    # wire: winning the GIL back can take a switch interval while the other threads run, and
    # the woken server backend may take the CPU; a kill then leaves a committed message
    # without its dot (gilheld)
    with gilheld.not_preempted():
        if not gilheld.pg_send_commit(pgconn):
            pgconn.send_query(b"COMMIT")
            while pgconn.flush():
                select.select([], [pgconn.socket], [], 1.0)
        for point in points:
            point()
    ok = False
    while True:
        pgconn.consume_input()
        if pgconn.is_busy():
            select.select([pgconn.socket], [], [], 1.0)
            continue
        res = pgconn.get_result()
        if res is None:
            break
        ok = ok or (res.status == pq.ExecStatus.COMMAND_OK and res.command_status == b"COMMIT")
    if not ok:
        log.error("a commit record failed after its dots were sent; those messages will be retried")
        raise StoreUnavailableError("the outbox commit record failed after the dots were sent")


def _db_time(ts: dt.datetime, sqlite: bool) -> Any:
    """``ts`` as ``UTCDateTime`` stores it (SQLite: naive UTC text)."""
    if not sqlite:
        return ts
    return ts.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


@dataclass
class _CommitItem:
    sid: str
    attempts: int
    now: dt.datetime
    point: Callable[[], None]
    future: Future[bool] = field(default_factory=Future)


def _commit_engine(db: OperationalDB) -> Engine:
    """An engine for ``CommitLog``: the database's URL, commits that do not wait for the
    flush (see there), one connection."""
    if db.dialect != "sqlite":
        return sa.create_engine(db.url, poolclass=sa.pool.NullPool)
    engine = sa.create_engine(db.url, poolclass=sa.pool.NullPool, connect_args={"timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, record: Any) -> None:
        sqlite_setup(dbapi_conn, synchronous="NORMAL")

    return engine
