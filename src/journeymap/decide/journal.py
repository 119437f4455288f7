"""The decision journal: decisions are durable in an fsynced local file before the answer.

Why not commit each decision to the operational database before answering? Because the
database has one writer: on SQLite the loader (in the server or in another process) holds the
write lock for whole rounds, and in the server every write queues behind the others on the
writer thread. Measured at 200 decisions/s with the loader in its own process, waiting for
that commit put the p99 at 317 ms (the constant endpoint's p99 in the same conditions: 6.6
ms; BENCHMARKS.md). The journal takes the database off the hot path without giving up
durability:

1. ``append`` queues the decision; one thread writes everything queued meanwhile as JSON lines
   and fsyncs once (group commit; an fsync costs ~0.15 ms on the idle project machine), then
   completes each caller's future — the server answers only after that. The fsync runs on
   that thread, never on the event loop: under heavy disk traffic from other processes an
   fsync took hundreds of milliseconds, which on the loop stalled every request (measured);
2. a second thread applies the journaled decisions to the database every ``interval``
   (``apply`` is idempotent: keyed by decision id), and deletes segment files whose every
   record is applied;
3. ``recover`` (at start) applies the segments of journals whose process died (their lock file
   is no longer locked) and deletes them. A torn last line was never acknowledged (its fsync
   had not returned), so it is skipped.

A decision the page received is therefore never lost: it is in the database or in a journal
segment the next start applies. One journal per process, in a folder beside the project's
state (``.journeymap/decide-journal``), guarded by an ``flock`` on ``<run>.lock``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import queue
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, BinaryIO

from journeymap.storage.batches import next_batch

log = logging.getLogger(__name__)

Apply = Callable[[Sequence[dict[str, Any]]], None]


class DecisionJournal:
    """An append-only, fsynced log of decisions not yet in the database (see the module)."""

    def __init__(
        self,
        folder: str | Path,
        apply: Apply,
        *,
        interval: float = 0.2,
        segment_records: int = 20_000,
    ) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.apply = apply
        self.interval = interval
        self.segment_records = segment_records
        self.run = uuid.uuid4().hex
        self._lock_fh = open(self.folder / f"{self.run}.lock", "a+b")  # noqa: SIM115
        fcntl.flock(self._lock_fh.fileno(), fcntl.LOCK_EX)
        self._queue: queue.SimpleQueue[tuple[dict[str, Any], Future[None]] | None] = (
            queue.SimpleQueue()
        )
        self._segment_no = 0
        self._segment: BinaryIO = self._open_segment()
        self._in_segment = 0
        #: (segment path, last sequence number) of closed segments not yet deleted
        self._closed: list[tuple[Path, int]] = []
        self._seq = 0
        self._pending: list[tuple[int, dict[str, Any]]] = []
        self._applied_upto = 0
        self._state = threading.Lock()
        self._file = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._writer = threading.Thread(target=self._write_loop, name="jm-decide-journal")
        self._mover = threading.Thread(target=self._move_loop, name="jm-decide-mover")
        self._writer.daemon = self._mover.daemon = True
        self._writer.start()
        self._mover.start()

    def _segment_path(self, no: int) -> Path:
        return self.folder / f"{self.run}-{no:06d}.jsonl"

    def _open_segment(self) -> BinaryIO:
        self._segment_no += 1
        return open(self._segment_path(self._segment_no), "ab")

    # -- writing ---------------------------------------------------------------------------
    def append(self, record: dict[str, Any]) -> Future[None]:
        """Queue ``record`` (JSON-serialisable); the future completes once it is fsynced."""
        fut: Future[None] = Future()
        if self._stop.is_set():
            fut.set_exception(RuntimeError("the decision journal is closed"))
            return fut
        self._queue.put((record, fut))
        return fut

    def _write_loop(self) -> None:
        while (batch := next_batch(self._queue)) is not None:
            try:
                self._write_records([r for r, _ in batch])
            except BaseException as exc:  # every waiter must hear about it
                for _, fut in batch:
                    fut.set_exception(exc)
                continue
            for _, fut in batch:
                fut.set_result(None)

    def _write_records(self, records: Sequence[dict[str, Any]]) -> None:
        """Append and fsync ``records`` (one fsync for all), then hand them to the mover."""
        data = b"".join(
            json.dumps(r, separators=(",", ":"), default=str).encode() + b"\n" for r in records
        )
        with self._file:
            self._segment.write(data)
            self._segment.flush()
            os.fsync(self._segment.fileno())
            with self._state:
                for r in records:
                    self._seq += 1
                    self._pending.append((self._seq, r))
                self._in_segment += len(records)
                if self._in_segment >= self.segment_records:
                    self._segment.close()
                    self._closed.append((self._segment_path(self._segment_no), self._seq))
                    self._segment = self._open_segment()
                    self._in_segment = 0

    # -- moving into the database ----------------------------------------------------------
    def flush(self) -> int:
        """Apply every journaled decision to the database now; returns how many."""
        with self._flush_lock:
            with self._state:
                todo = list(self._pending)
            if not todo:
                return 0
            self.apply([r for _, r in todo])
            upto = todo[-1][0]
            with self._state:
                self._pending = [p for p in self._pending if p[0] > upto]
                self._applied_upto = upto
                done = [c for c in self._closed if c[1] <= upto]
                self._closed = [c for c in self._closed if c[1] > upto]
            for path, _ in done:
                path.unlink(missing_ok=True)
            return len(todo)

    def _move_loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.flush()
            except Exception:  # the records stay journaled; the next round retries
                log.exception("decide: applying journaled decisions failed; retrying")

    def close(self) -> None:
        """Stop, apply what is journaled, delete the journal (it stays if applying fails)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._queue.put(None)
        self._writer.join()
        self._mover.join()
        self._segment.close()
        try:
            self.flush()
        except Exception:
            log.exception("decide: journaled decisions stay for the next start to apply")
            self._release()
            return
        for path in self.folder.glob(f"{self.run}-*.jsonl"):
            path.unlink(missing_ok=True)
        self._release(delete=True)

    def _release(self, *, delete: bool = False) -> None:
        if delete:
            (self.folder / f"{self.run}.lock").unlink(missing_ok=True)
        fcntl.flock(self._lock_fh.fileno(), fcntl.LOCK_UN)
        self._lock_fh.close()

    # -- recovery --------------------------------------------------------------------------
    def recover(self) -> int:
        """Apply and delete the journals of processes that died; returns the records."""
        return recover(self.folder, self.apply, skip=self.run)


def read_segment(path: Path) -> list[dict[str, Any]]:
    """The records of a segment; a torn last line (never acknowledged) is skipped."""
    lines = path.read_bytes().split(b"\n")
    out = []
    for i, line in enumerate(lines):
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            if i < len(lines) - 2:  # not the last line: the file is damaged
                raise
            log.warning("decide: skipping a torn last line in %s", path.name)
    return out


def recover(folder: str | Path, apply: Apply, *, skip: str | None = None) -> int:
    """Apply the segments of every dead journal in ``folder`` (see ``DecisionJournal``)."""
    root = Path(folder)
    if not root.is_dir():
        return 0
    total = 0
    for lock in sorted(root.glob("*.lock")):
        run = lock.stem
        if run == skip:
            continue
        with open(lock, "a+b") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live process owns it
            segments = sorted(root.glob(f"{run}-*.jsonl"))
            records = [r for s in segments for r in read_segment(s)]
            if records:
                apply(records)
            for s in segments:
                s.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                lock.unlink()
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            total += len(records)
            if records:
                log.info("decide: applied %d decisions journaled by run %s", len(records), run)
    return total
