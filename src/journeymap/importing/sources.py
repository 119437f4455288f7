"""What the readers produce: Arrow chunks with a location column, and shared helpers.

Every chunk holds a ``_jm_loc`` column (the physical line number of each record, or the row
number for Parquet and whole-document JSON) beside the source data:

* CSV: one string column per header name (all text; typing happens in ``normalize``);
* JSON: one ``_jm_json`` string column with the text of each line (or array element);
* Parquet: not chunked; DuckDB scans the file (``ParquetReader.relation_sql``).

Problems of a line itself (too long, not UTF-8, a CSV record with the wrong number of fields,
an unclosed quote) are returned as rejects with the chunk; the rest of the file continues.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal, Protocol

import numpy as np
import pyarrow as pa

from journeymap.errors import InputDataError
from journeymap.importing.rejects import Locator, Reject
from journeymap.importing.textblocks import ByteStream

Format = Literal["csv", "jsonl", "parquet"]
Shape = Literal["text", "json", "typed"]

LOC = "_jm_loc"
JSON_COL = "_jm_json"
#: Rows per chunk of the lenient CSV parser and of whole-document JSON.
SMALL_CHUNK_ROWS = 100_000


@dataclass
class Chunk:
    table: pa.Table
    rejects: list[Reject] = field(default_factory=list)
    #: progress so far: bytes of the file read (compressed bytes for gzip), or Parquet rows
    position: int = 0


class Reader(Protocol):
    shape: Shape
    locator: Locator
    #: progress total: the file size in bytes, or Parquet rows
    total: int
    progress_unit: Literal["bytes", "rows"]

    def columns(self) -> list[str] | None:
        """The source's columns, or ``None`` when only the data tells (JSON)."""

    def chunks(self) -> Iterator[Chunk]: ...

    def close(self) -> None: ...


class ByteFile:
    """A file opened for bytes, transparently gunzipped; ``position`` counts raw bytes read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._raw: IO[bytes] = open(path, "rb")  # noqa: SIM115 (closed by close())
        self.gzipped = self._raw.read(2) == b"\x1f\x8b"
        self._raw.seek(0)
        self.total = path.stat().st_size
        self.stream: ByteStream = (
            gzip.GzipFile(fileobj=self._raw, mode="rb") if self.gzipped else self._raw
        )

    @property
    def position(self) -> int:
        return self._raw.tell()

    def close(self) -> None:
        if isinstance(self.stream, gzip.GzipFile):
            self.stream.close()
        self._raw.close()


def read_failed(path: Path, exc: Exception) -> InputDataError:
    return InputDataError(f"{path.name}: cannot read the file: {exc}")


def gather(buf: bytes, starts: np.ndarray, stops: np.ndarray) -> bytes:
    """The bytes ``buf[starts[i]:stops[i]]`` of the given records, in order: one slice per run
    of adjacent records (records are adjacent unless a line between them was dropped)."""
    if len(starts) == 0:
        return b""
    breaks = np.flatnonzero(starts[1:] != stops[:-1]) + 1
    if len(breaks) == 0:
        return buf[int(starts[0]) : int(stops[-1])]
    run_starts = starts[np.concatenate(([0], breaks))]
    run_stops = stops[np.concatenate((breaks - 1, [len(stops) - 1]))]
    view = memoryview(buf)
    return b"".join(view[int(a) : int(b)] for a, b in zip(run_starts, run_stops, strict=True))
