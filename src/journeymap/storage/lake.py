"""The event lake: a Delta Lake table of events, partitioned by UTC event date.

Appends are idempotent on ``event_id``: a batch is first deduplicated on its own ids, then rows
whose id is already in the lake are dropped, and only the rest is appended, as one Delta commit.
Existing ids are looked up in the partitions (event dates) the batch touches; an event id is
derived from or travels with its timestamp, so a resent event lands on the same date (see
docs/architecture.md, "Idempotent appends").

One process appends at a time (an advisory file lock beside the table serialises writers);
any number of readers see consistent snapshots meanwhile, which is what Delta gives.

DuckDB extensions that download at run time are unavailable offline, so the lake is read with
``deltalake`` itself: ``dataset()`` returns a pyarrow dataset of the current snapshot, which
DuckDB (through Ibis) scans zero-copy.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, WriterProperties, write_deltalake
from deltalake.exceptions import TableNotFoundError

from journeymap.errors import LakeError
from journeymap.model.events import EVENT_SCHEMA, PARTITION_COLUMN, conform

if TYPE_CHECKING:
    import pyarrow.dataset as pads

_WRITER_PROPERTIES = WriterProperties(compression="ZSTD")
#: Target size of a data file written by compaction (Delta's own default is 100 MiB).
COMPACT_TARGET_BYTES = 128 * 1024 * 1024


@dataclass(frozen=True)
class AppendResult:
    """What one append did: ``received = duplicates_in_batch + already_in_lake + appended``."""

    received: int
    duplicates_in_batch: int
    already_in_lake: int
    appended: int
    version: int | None


@dataclass(frozen=True)
class CompactResult:
    files_before: int
    files_after: int
    files_removed_from_disk: int
    version: int | None


@dataclass(frozen=True)
class LakeStats:
    """A short description of the lake's current snapshot."""

    path: Path
    version: int | None
    events: int
    files: int
    first_date: str | None
    last_date: str | None


class DeltaEventStore:
    """The event lake at ``path`` (a local folder; created on first append)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    # -- reading -------------------------------------------------------------------------
    def exists(self) -> bool:
        return DeltaTable.is_deltatable(str(self.path))

    def table(self) -> DeltaTable:
        """The Delta table, or a ``LakeError`` that says how to create it."""
        try:
            return DeltaTable(str(self.path))
        except TableNotFoundError:
            raise LakeError(
                f"no event lake at {self.path}: import events first "
                "(journeymap import FILE, or journeymap demo for sample data)"
            ) from None

    def version(self) -> int | None:
        """The current Delta version, or ``None`` when the lake does not exist yet."""
        return self.table().version() if self.exists() else None

    def dataset(self) -> pads.Dataset:
        """A pyarrow dataset of the current snapshot (empty if there is no lake yet)."""
        if not self.exists():
            import pyarrow.dataset as pads

            return pads.dataset(EVENT_SCHEMA.empty_table())
        return self.table().to_pyarrow_dataset()

    def read(self, columns: Sequence[str] | None = None) -> pa.Table:
        """The whole current snapshot as an Arrow table (for small lakes and tests)."""
        table = self.dataset().to_table(columns=list(columns) if columns else None)
        return table if columns else table.select(EVENT_SCHEMA.names)

    def file_uris(self) -> list[str]:
        """Data files of the current snapshot (what Spark reads when delta-spark is absent)."""
        return self.table().file_uris() if self.exists() else []

    def stats(self) -> LakeStats:
        if not self.exists():
            return LakeStats(self.path, None, 0, 0, None, None)
        t = self.table()
        dates = self.dataset().to_table(columns=[PARTITION_COLUMN]).column(PARTITION_COLUMN)
        bounds: dict[str, Any] = pc.min_max(dates).as_py() if len(dates) else {}
        return LakeStats(
            path=self.path,
            version=t.version(),
            events=len(dates),
            files=len(t.file_uris()),
            first_date=str(bounds["min"]) if bounds.get("min") else None,
            last_date=str(bounds["max"]) if bounds.get("max") else None,
        )

    # -- writing -------------------------------------------------------------------------
    @contextlib.contextmanager
    def writer_lock(self) -> Iterator[None]:
        """Serialise writers across processes (readers never wait)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with open(lock_path, "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def append(self, events: pa.Table) -> AppendResult:
        """Append events, skipping every ``event_id`` already in the batch or the lake."""
        batch = conform(events)
        received = batch.num_rows
        if received == 0:
            return AppendResult(0, 0, 0, 0, self.version())
        with self.writer_lock():
            fresh, dup_batch, dup_lake = self._new_rows(batch)
            version = self.version()
            if fresh.num_rows:
                write_deltalake(
                    str(self.path),
                    fresh,
                    mode="append",
                    partition_by=[PARTITION_COLUMN],
                    writer_properties=_WRITER_PROPERTIES,
                )
                version = self.version()
        return AppendResult(received, dup_batch, dup_lake, fresh.num_rows, version)

    def _new_rows(self, batch: pa.Table) -> tuple[pa.Table, int, int]:
        """Rows of ``batch`` to append: first occurrence per id, not yet in the lake.

        Only the ids are hashed (an Arrow group-by, then ``is_in`` against the ids of the
        touched partitions); the rows are taken by position, which keeps the input order and
        moves no other column (about 8× faster than passing whole rows through DuckDB).
        """
        n = batch.num_rows
        ids = batch.column("event_id")
        keyed = pa.table({"event_id": ids, "pos": pa.array(np.arange(n, dtype=np.int64))})
        first = keyed.group_by("event_id").aggregate([("pos", "min")])
        n_uniq = first.num_rows
        keep = first.column("pos_min")
        if self.exists():
            import pyarrow.dataset as pads

            dates = pc.unique(batch.column(PARTITION_COLUMN))
            existing = self.dataset().to_table(
                columns=["event_id"], filter=pads.field(PARTITION_COLUMN).isin(dates)
            )
            if existing.num_rows:
                known = existing.column("event_id").combine_chunks()
                keep = keep.filter(pc.invert(pc.is_in(first.column("event_id"), value_set=known)))
        fresh = batch if len(keep) == n else batch.take(pa.array(np.sort(keep.to_numpy())))
        return fresh.cast(EVENT_SCHEMA), n - n_uniq, n_uniq - len(keep)

    def delete_customer(self, customer_id: str, anonymous_ids: Sequence[str] = ()) -> int:
        """Delete every event of a customer (and of the given anonymous ids); returns rows.

        The rows disappear from the current snapshot at once; the files of older versions keep
        them until ``vacuum`` removes those files (``gdpr delete`` vacuums immediately).
        """
        if not self.exists():
            return 0
        terms = [f"customer_id = {_sql_literal(customer_id)}"]
        terms += [f"anonymous_id = {_sql_literal(a)}" for a in anonymous_ids]
        with self.writer_lock():
            metrics = self.table().delete(" OR ".join(terms))
        return int(metrics.get("num_deleted_rows", 0))

    def compact(self, *, vacuum_hours: int | None = 168) -> CompactResult:
        """Rewrite small files into large ones per date, then remove unreferenced old files.

        ``vacuum_hours`` keeps files that readers of recent versions may still use; ``0``
        removes every unreferenced file now, ``None`` skips the vacuum.
        """
        with self.writer_lock():
            t = self.table()
            before = len(t.file_uris())
            t.optimize.compact(
                target_size=COMPACT_TARGET_BYTES, writer_properties=_WRITER_PROPERTIES
            )
            removed = 0
            if vacuum_hours is not None:
                removed = len(self.vacuum(vacuum_hours))
            t = self.table()
            return CompactResult(before, len(t.file_uris()), removed, t.version())

    def vacuum(self, retention_hours: int = 168) -> list[str]:
        """Delete data files no longer referenced by versions younger than the retention."""
        return list(
            self.table().vacuum(
                retention_hours=retention_hours,
                dry_run=False,
                enforce_retention_duration=False,
            )
        )


def _sql_literal(value: str) -> str:
    """A single-quoted SQL string literal (quotes doubled), for Delta predicates."""
    return "'" + value.replace("'", "''") + "'"
