"""Import one file into the event lake: read, normalise, derive ids, append, report.

The file streams through in chunks (blocks of bytes for CSV and JSON, record batches for
Parquet); valid rows are appended about a million at a time, and every append is idempotent
on ``event_id``, so importing a file again, or resuming after a failure, changes nothing that
is already in the lake. Rejected rows go to a JSON-lines rejects file (see ``rejects``).
"""

from __future__ import annotations

import contextlib
import time
import zoneinfo
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal

import duckdb
import pyarrow as pa

from journeymap.errors import ConfigError, InputDataError
from journeymap.importing.mapping import check_mapping, resolve_columns, resolve_keys
from journeymap.importing.normalize import (
    EventIdDeriver,
    Normalizer,
    Stage,
    column_stage,
    json_keys_sql,
    json_stage,
    lit,
)
from journeymap.importing.presets import PRESETS, Preset
from journeymap.importing.readers import ParquetReader, detect_format, open_reader
from journeymap.importing.rejects import Reject, RejectsWriter
from journeymap.importing.sources import Format, Reader
from journeymap.model.events import MAX_NAME_LENGTH
from journeymap.storage.lake import AppendResult, DeltaEventStore

#: Rows (of the source) gathered before one append to the lake.
APPEND_ROWS = 1_000_000


@dataclass(frozen=True)
class ImportSummary:
    """What one import did: ``rows_read = rows_taken + rows_rejected`` and
    ``rows_taken = appended + duplicates`` (rows whose event id was already in the lake or
    earlier in the file)."""

    file: Path
    rows_read: int
    rows_taken: int
    rows_rejected: int
    appended: int
    duplicates: int
    rejects_path: Path | None
    seconds: float
    #: rejected rows per rule code (``ts.unparseable``, ``csv.field_count``, ...)
    rejected_by_rule: Mapping[str, int] = field(default_factory=dict)
    #: the lake's Delta version after the import
    lake_version: int | None = None

    def __str__(self) -> str:
        text = (
            f"{self.file.name}: {self.rows_read:,} rows read in {self.seconds:.1f} s; "
            f"{self.rows_taken:,} taken ({self.appended:,} new in the lake, "
            f"{self.duplicates:,} duplicate{'s' if self.duplicates != 1 else ''} already there "
            f"or repeated in the file); {self.rows_rejected:,} rejected"
        )
        if self.rows_rejected:
            top = sorted(self.rejected_by_rule.items(), key=lambda kv: (-kv[1], kv[0]))
            text += " (" + ", ".join(f"{rule} {n:,}" for rule, n in top) + ")"
            text += f", listed in {self.rejects_path}"
        return text + "."


def import_file(
    store: DeltaEventStore,
    path: Path,
    *,
    format: Literal["csv", "jsonl", "parquet"] | None = None,
    preset: Literal["segment", "ga4"] | None = None,
    mapping: Mapping[str, str] | None = None,
    timezone: str = "UTC",
    source: str | None = None,
    default_currency: str = "EUR",
    rejects_path: Path | None = None,
    progress: bool = False,
    max_line_bytes: int = 1_048_576,
) -> ImportSummary:
    """Import a CSV, JSON-lines or Parquet file (gzip too) into the lake, idempotently.

    * ``format``: from the suffix when ``None`` (.csv/.tsv, .jsonl/.ndjson/.json, .parquet,
      each optionally + .gz).
    * ``preset``: the layout of a known export (``PRESETS``: ``segment``, ``ga4``).
    * ``mapping``: event field → source column (``parse_mapping``); a field is otherwise fed
      by the column of its own name. Columns that feed no field are folded into
      ``properties``.
    * ``timezone``: the zone of naive timestamps (text without offset, naive Parquet
      timestamps, dates); explicit offsets and ``Z`` are honoured.
    * ``source``: stored in ``source`` where the file has none (default: the file name
      without its suffixes).
    * ``default_currency``: the currency of a revenue given without one.
    * ``rejects_path``: where rejected rows go (default
      ``<lake's parent>/rejects/<file name>.rejects.jsonl``).
    * ``max_line_bytes``: longer lines are rejected (and never held in memory).

    Rows without an ``event_id`` get one derived from their content (``EventIdDeriver``),
    so importing the same file twice leaves the lake unchanged.
    """
    started = time.perf_counter()
    path = Path(path)
    fmt = _check_format(path, format)
    chosen = _check_preset(preset)
    checked = check_mapping(mapping or {})
    tz = _check_timezone(timezone)
    currency = _check_currency(default_currency)
    default_source = _check_source(source if source is not None else _stem(path))
    if max_line_bytes < 1:
        raise ConfigError(
            f"max_line_bytes must be a positive number of bytes, not {max_line_bytes}"
        )
    target = rejects_path or store.path.parent / "rejects" / f"{path.name}.rejects.jsonl"

    reader = open_reader(path, fmt, max_line_bytes=max_line_bytes)
    writer = RejectsWriter(target, path.name)
    con = duckdb.connect()
    taken = 0
    try:
        try:
            con.execute(f"SET TimeZone = {lit(tz)}")
        except duckdb.Error:
            raise _unknown_zone(tz) from None
        con.execute("SET enable_progress_bar = false")
        if isinstance(reader, ParquetReader):
            con.execute(f"CREATE TEMP VIEW src AS {reader.relation_sql()}")
        planner = _Planner(con, reader, chosen, checked, path.name)
        normalizer = Normalizer(
            con,
            locator=reader.locator,
            timezone=tz,
            default_source=default_source,
            default_currency=currency,
        )
        ids = EventIdDeriver(con.cursor())
        pending: list[pa.Table] = []
        pending_rows = 0
        with (
            _Appender(store) as appender,
            _progress_bar(reader, path.name, enabled=progress) as advance,
        ):
            for valid, rejects, position in _normalised(reader, planner, normalizer):
                if valid.num_rows:
                    valid = ids.fill(valid)
                    pending.append(valid)
                    taken += valid.num_rows
                writer.write(rejects)
                # count source rows: a Parquet batch of APPEND_ROWS is appended on its own
                pending_rows += valid.num_rows + len(rejects)
                if pending_rows >= APPEND_ROWS and pending:
                    appender.submit(pa.concat_tables(pending))
                    pending, pending_rows = [], 0
                advance(position)
            if pending:
                appender.submit(pa.concat_tables(pending))
        appended, duplicates = appender.appended, appender.duplicates
        version = appender.version if appender.version is not None else store.version()
    except BaseException:
        writer.abort()
        raise
    finally:
        con.close()
        reader.close()
    written = writer.finish()
    return ImportSummary(
        file=path,
        rows_read=taken + writer.count,
        rows_taken=taken,
        rows_rejected=writer.count,
        appended=appended,
        duplicates=duplicates,
        rejects_path=written,
        seconds=time.perf_counter() - started,
        rejected_by_rule=MappingProxyType(dict(writer.by_rule)),
        lake_version=version,
    )


def _normalised(
    reader: Reader, planner: _Planner, normalizer: Normalizer
) -> Iterator[tuple[pa.Table, list[Reject], int]]:
    """Valid rows, rejects (in file order) and progress, chunk by chunk."""
    if isinstance(reader, ParquetReader):
        stage = planner.stage(None)
        done = 0
        for valid, rejects, rows in normalizer.stream(reader.relation_sql(), stage, APPEND_ROWS):
            done += rows
            yield valid, rejects, done
        return
    for chunk in reader.chunks():
        rejects = chunk.rejects
        valid = _EMPTY
        if chunk.table.num_rows:
            valid, bad = normalizer.run(chunk.table, planner.stage(chunk.table))
            if bad:
                rejects = sorted([*rejects, *bad], key=lambda r: r.number)
        yield valid, rejects, chunk.position


_EMPTY = pa.table({})


class _Appender:
    """Appends to the lake on one background thread, in order, while the next chunk is read
    and normalised (DuckDB, pyarrow and deltalake release the GIL). At most one append runs,
    so memory holds at most two chunks; leaving the block waits for it (and re-raises its
    error)."""

    def __init__(self, store: DeltaEventStore) -> None:
        self._store = store
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journeymap-append")
        self._running: Future[AppendResult] | None = None
        self.appended = 0
        self.duplicates = 0
        self.version: int | None = None

    def submit(self, table: pa.Table) -> None:
        self._collect()
        self._running = self._pool.submit(self._store.append, table)

    def _collect(self) -> None:
        if self._running is None:
            return
        running, self._running = self._running, None
        result = running.result()
        self.appended += result.appended
        self.duplicates += result.duplicates_in_batch + result.already_in_lake
        self.version = result.version

    def __enter__(self) -> _Appender:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                self._collect()
        finally:
            self._pool.shutdown(wait=True)


class _Planner:
    """The stage (raw field selection) for each chunk, checked against the file once."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        reader: Reader,
        preset: Preset | None,
        mapping: Mapping[str, str],
        label: str,
    ) -> None:
        self._con = con
        self._reader = reader
        self._preset = preset
        self._mapping = mapping
        self._label = label
        self._fixed: Stage | None = None
        self._checked = False
        columns = reader.columns()
        if preset is None and columns is not None:
            sources, extras = resolve_columns(label, columns, mapping)
            self._fixed = column_stage(sources, extras, text=reader.shape == "text")

    def stage(self, table: pa.Table | None) -> Stage:
        """The stage for ``table`` (``None``: the ``src`` view DuckDB scans)."""
        if self._fixed is not None:
            return self._fixed
        typed = self._reader.columns() if self._reader.shape == "typed" else None
        if self._preset is not None:
            if not self._checked:
                keys = self._keys(table, self._preset.keys_sql(typed))
                if keys:
                    self._check_signature(self._preset, keys)
                    self._checked = True
            stage = self._preset.stage(self._mapping, typed)
            if typed is not None:
                self._fixed = stage
            return stage
        keys = self._keys(table, json_keys_sql())
        strict = not self._checked and bool(keys)
        paths, extras = resolve_keys(self._label, keys, self._mapping, strict=strict)
        self._checked = self._checked or strict
        return json_stage(paths, extras)

    def _keys(self, table: pa.Table | None, sql: str) -> list[str]:
        if table is None:
            return [str(r[0]) for r in self._con.sql(sql).fetchall()]
        self._con.register("src", table)
        try:
            return [str(r[0]) for r in self._con.sql(sql).fetchall()]
        finally:
            self._con.unregister("src")

    def _check_signature(self, preset: Preset, keys: list[str]) -> None:
        missing = preset.missing_signature(set(keys))
        if missing:
            raise InputDataError(
                f"{self._label}: does not look like a {preset.description}: no "
                f"{'; no '.join(missing)} in the first rows; they have "
                f"{', '.join(keys)}. Choose another --preset, or none and --map the columns"
            )


@contextlib.contextmanager
def _progress_bar(reader: Reader, label: str, *, enabled: bool) -> Iterator[Callable[[int], None]]:
    if not enabled:
        yield lambda _position: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    amount = DownloadColumn() if reader.progress_unit == "bytes" else MofNCompleteColumn()
    with Progress(
        TextColumn("importing {task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        amount,
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=reader.total or None)
        yield lambda position: bar.update(task, completed=position)


# -- argument checks --------------------------------------------------------------------------
def _check_format(path: Path, fmt: str | None) -> Format:
    if fmt is None:
        return detect_format(path)
    if fmt not in ("csv", "jsonl", "parquet"):
        raise ConfigError(f"format {fmt!r} is not one of csv, jsonl, parquet")
    return fmt  # type: ignore[return-value]


def _check_preset(name: str | None) -> Preset | None:
    if name is None:
        return None
    if name not in PRESETS:
        raise ConfigError(f"preset {name!r} is not one of {', '.join(PRESETS)}")
    return PRESETS[name]


def _check_timezone(tz: str) -> str:
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise _unknown_zone(tz) from None
    return tz


def _unknown_zone(tz: str) -> ConfigError:
    return ConfigError(
        f"time zone {tz!r} is unknown; use an IANA name such as UTC or Europe/Berlin "
        "(--timezone, or timezone in journeymap.toml)"
    )


def _check_currency(code: str) -> str:
    upper = code.strip().upper()
    if len(upper) != 3 or not upper.isascii() or not upper.isalpha():
        raise ConfigError(
            f"default currency {code!r} is not a three-letter ISO 4217 code such as EUR or USD"
        )
    return upper


def _check_source(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH:
        raise ConfigError(f"source {name!r} must be text of 1 to {MAX_NAME_LENGTH} characters")
    return name


def _stem(path: Path) -> str:
    """``events.csv.gz`` → ``events``."""
    return path.name.split(".", 1)[0] or path.name
