"""The loader: inbox → profiles → event lake, exactly once, resumable after any crash.

One round (``load_once``) takes up to ``batch_size`` pending messages in ``seq`` order and

1. applies their identity operations to the profiles (one write transaction; keyed by event
   id, so a repeated round changes nothing) and gets each event's canonical customer id;
2. appends the events to the lake, which drops every ``event_id`` it already holds (ids are
   deterministic in source and message id, and the stored message always gives the same
   time, hence the same date partition);
3. marks exactly those inbox rows loaded, and records messages it could not convert as dead
   letters — in one transaction.

A crash between any two steps leaves the rows pending: the next round repeats steps 1–3 and
the lake and profiles end up as if it had run once. Nothing is lost (rows are only marked after
the lake commit) and nothing is doubled (the lake drops known ids).

One loader runs at a time per lake: an exclusive lock file beside the lake (``.loader.lock``)
is held for the round; GDPR erasure takes it too, so a round never re-adds events of a customer
being erased.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from journeymap.collect.messages import InvalidMessage
from journeymap.collect.normalize import event_id_for, event_time_us, to_event, to_identity_op
from journeymap.model.events import EVENT_SCHEMA, conform
from journeymap.storage.db import OperationalDB, now_us
from journeymap.storage.inbox import DeadLetterRow, InboxStore, PendingMessage
from journeymap.storage.lake import DeltaEventStore
from journeymap.storage.profiles import IdentityOp, ProfileStore

log = logging.getLogger(__name__)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
#: inbox rows marked loaded per transaction
_MARK_CHUNK = 2_000


@dataclass(frozen=True)
class LoadResult:
    """One round: ``messages = appended + already_in_lake + duplicates + dead_letters``."""

    messages: int
    appended: int
    already_in_lake: int
    dead_letters: int
    lake_version: int | None

    @property
    def empty(self) -> bool:
        return self.messages == 0


@contextlib.contextmanager
def loader_lock(lake: Path, *, blocking: bool = True) -> Iterator[bool]:
    """Hold the loader lock of ``lake``; yields False when not blocking and it is taken."""
    lake.parent.mkdir(parents=True, exist_ok=True)
    path = lake.with_name(lake.name + ".loader.lock")
    with open(path, "a+b") as fh:
        flags = fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB)
        try:
            fcntl.flock(fh.fileno(), flags)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


class InboxLoader:
    """Moves inbox messages of ``db`` into ``store`` (and their identities into profiles)."""

    def __init__(
        self,
        db: OperationalDB,
        store: DeltaEventStore,
        *,
        batch_size: int = 20_000,
        default_currency: str = "EUR",
        retention_days: int = 30,
    ) -> None:
        self.db = db
        self.store = store
        self.inbox = InboxStore(db)
        self.profiles = ProfileStore(db)
        self.batch_size = batch_size
        self.default_currency = default_currency
        self.retention_days = retention_days
        #: test hook: called between the steps ("profiles", "lake") of a round
        self.crash_hook: Any = None

    def load_once(self) -> LoadResult:
        with loader_lock(self.store.path):
            return self._round()

    def load_all(self, max_rounds: int = 1_000_000) -> list[LoadResult]:
        """Rounds until the inbox has nothing pending (bounded)."""
        results = []
        for _ in range(max_rounds):
            r = self.load_once()
            if r.empty:
                break
            results.append(r)
        return results

    def _round(self) -> LoadResult:
        pending = self.inbox.pending(self.batch_size)
        if not pending:
            return LoadResult(0, 0, 0, 0, self.store.version())
        messages: list[tuple[PendingMessage, dict[str, Any], int]] = []
        ops: list[IdentityOp] = []
        dead: list[DeadLetterRow] = []
        for row in pending:
            try:
                msg = json.loads(row.payload)
                eid = event_id_for(row.source, row.message_id)
                ts_us = event_time_us(msg)
                ts = _EPOCH + dt.timedelta(microseconds=ts_us)
                ops.append(to_identity_op(msg, eid, row.source, ts))
                messages.append((row, msg, ts_us))
            except InvalidMessage as bad:
                dead.append(_dead(row, bad.reason, bad.detail))
            except (ValueError, TypeError, KeyError) as exc:
                dead.append(_dead(row, "message.unloadable", f"{type(exc).__name__}: {exc}"))

        customers = self.profiles.apply(ops) if ops else []
        self._hook("profiles")

        rows: list[dict[str, Any]] = []
        for (row, msg, ts_us), customer in zip(messages, customers, strict=True):
            try:
                rows.append(to_event(msg, row.source, customer, self.default_currency, ts_us))
            except (InvalidMessage, ValueError, TypeError, ArithmeticError) as exc:
                reason = exc.reason if isinstance(exc, InvalidMessage) else "message.unloadable"
                dead.append(_dead(row, reason, str(exc)[:300]))
        appended = already = 0
        version = self.store.version()
        if rows:
            table = conform(pa.Table.from_pylist(rows, schema=_INPUT_SCHEMA))
            result = self.store.append(table)
            appended, already = result.appended, result.already_in_lake + result.duplicates_in_batch
            version = result.version
        self._hook("lake")

        # the checkpoint, in short transactions so that the collector's commits interleave
        # (rows marked before a crash are in the lake; the others are loaded again)
        self.db.write(lambda conn: self.inbox.add_dead_letters(conn, dead))
        seqs = [p.seq for p in pending]
        for i in range(0, len(seqs), _MARK_CHUNK):
            part = seqs[i : i + _MARK_CHUNK]
            self.db.write(lambda conn, part=part: self.inbox.mark_loaded(conn, part))  # type: ignore[misc]
        return LoadResult(len(pending), appended, already, len(dead), version)

    def _hook(self, step: str) -> None:
        if self.crash_hook is not None:
            self.crash_hook(step)

    def prune(self) -> int:
        """Drop loaded inbox keys older than the retention."""
        cutoff = now_us() - self.retention_days * 86_400 * 1_000_000
        return self.inbox.prune(cutoff)


_INPUT_SCHEMA = pa.schema([f for f in EVENT_SCHEMA if f.name not in ("ts_us", "event_date")])


def _dead(row: PendingMessage, reason: str, detail: str) -> DeadLetterRow:
    ids: dict[str, str | None] = {"userId": None, "anonymousId": None}
    with contextlib.suppress(ValueError, TypeError):
        msg = json.loads(row.payload)
        for key in ids:
            value = msg.get(key)
            ids[key] = value[:200] if isinstance(value, str) else None
    return {
        "source": row.source,
        "message_id": row.message_id,
        "received_at_us": row.received_at_us,
        "reason": reason,
        "detail": detail,
        "user_id": ids["userId"],
        "anonymous_id": ids["anonymousId"],
        "payload": row.payload,
    }


class LoaderThread:
    """Runs ``InboxLoader`` rounds every ``interval`` seconds in a daemon thread."""

    def __init__(self, loader: InboxLoader, interval: float) -> None:
        self.loader = loader
        self.interval = interval
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="journeymap-loader", daemon=True)
        self.rounds = 0
        self.last_error: str | None = None
        self._prune_at = 0.0

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Run a round now."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                while not self._stop.is_set():
                    result = self.loader.load_once()
                    self.rounds += 1
                    if result.messages < self.loader.batch_size:
                        break
                if time.monotonic() >= self._prune_at:
                    self.loader.prune()
                    self._prune_at = time.monotonic() + 3600
                self.last_error = None
            except Exception as exc:  # keep loading; the error is visible in status
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("loader round failed; retrying in %.1f s", self.interval)
            self._wake.wait(self.interval)
            self._wake.clear()
