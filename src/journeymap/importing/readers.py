"""Readers: open a file (CSV, JSON lines, Parquet; gzip too) by its format.

``open_reader`` returns a ``Reader`` (see ``sources``): CSV (``csvreader``), JSON lines or a
JSON document, or Parquet, which DuckDB scans itself.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from journeymap.errors import InputDataError
from journeymap.importing.csvreader import CsvReader
from journeymap.importing.rejects import Locator, Reject
from journeymap.importing.sources import (
    JSON_COL,
    LOC,
    SMALL_CHUNK_ROWS,
    ByteFile,
    Chunk,
    Format,
    Reader,
    Shape,
    gather,
    read_failed,
)
from journeymap.importing.textblocks import (
    BOM,
    DEFAULT_BLOCK_BYTES,
    UTF8_HINT,
    Block,
    PrefixedStream,
    RecordSplitter,
    describe_bad_utf8,
)

_SUFFIXES: dict[str, Format] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def detect_format(path: Path) -> Format:
    """The format from the file name: .csv/.tsv, .jsonl/.ndjson/.json, .parquet (+ .gz)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".gzip"):
        suffixes = suffixes[:-1]
    fmt = _SUFFIXES.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise InputDataError(
            f"{path.name}: cannot tell the format from the file name; name it .csv, .jsonl "
            "(.ndjson, .json), .parquet (optionally + .gz) or pass format='csv'|'jsonl'|"
            "'parquet' (--format)"
        )
    return fmt


def open_reader(
    path: Path,
    fmt: Format,
    *,
    max_line_bytes: int,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> Reader:
    if not path.is_file():
        raise InputDataError(f"{path}: no such file")
    if fmt == "parquet":
        return ParquetReader(path)
    if fmt == "csv":
        return CsvReader(path, max_line_bytes=max_line_bytes, block_bytes=block_bytes)
    return JsonReader(path, max_line_bytes=max_line_bytes, block_bytes=block_bytes)


# -- JSON -------------------------------------------------------------------------------------
class JsonReader:
    """JSON lines (one object per line), or one JSON document: an array of objects or an
    object with a ``batch`` array (Segment's batch format), read whole."""

    shape: Shape = "json"
    progress_unit: Literal["bytes", "rows"] = "bytes"

    def __init__(self, path: Path, *, max_line_bytes: int, block_bytes: int) -> None:
        self._file = ByteFile(path)
        self.total = self._file.total
        self._max = max_line_bytes
        self._block = block_bytes
        self.locator: Locator = "line"
        self._document: list[object] | None = None
        try:
            self._head = self._file.stream.read(self._block).removeprefix(BOM)
            self._detect_document()
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            self._file.close()
            raise read_failed(path, exc) from exc

    def _detect_document(self) -> None:
        stripped = self._head.lstrip()
        if not stripped:
            return
        if stripped[:1] == b"{":
            # a pretty-printed document opens with a line that is not a whole object
            first_line = stripped.split(b"\n", 1)[0].strip()
            if first_line.endswith(b"}"):
                return  # JSON lines (a broken first line is rejected like any other)
        elif stripped[:1] != b"[":
            return
        data = self._head + self._file.stream.read()
        try:
            doc = json.loads(data)
        except ValueError:
            self._head = data  # not one document: read it as lines, bad lines rejected
            return
        if isinstance(doc, dict) and isinstance(doc.get("batch"), list):
            self._document = list(doc["batch"])
        elif isinstance(doc, list):
            self._document = doc
        else:
            self._document = [doc]
        self.locator = "row"

    def columns(self) -> list[str] | None:
        return None

    def close(self) -> None:
        self._file.close()

    def chunks(self) -> Iterator[Chunk]:
        if self._document is not None:
            yield from self._document_chunks(self._document)
            return
        splitter = RecordSplitter(
            PrefixedStream(self._head, self._file.stream),
            max_bytes=self._max,
            block_bytes=self._block,
            strip_bom=False,
        )
        try:
            for block in splitter:
                assert isinstance(block, Block)
                yield self._lines_chunk(block)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise read_failed(self._file.path, exc) from exc

    def _lines_chunk(self, block: Block) -> Chunk:
        rejects = list(block.rejects)
        for i in np.flatnonzero(block.bad_utf8 >= 0):
            raw = block.buf[block.starts[i] : block.ends[i]]
            rejects.append(
                Reject(
                    "line",
                    int(block.lines[i]),
                    None,
                    raw[:1000].decode("utf-8", "backslashreplace"),
                    f"{describe_bad_utf8(raw, int(block.bad_utf8[i]))}; {UTF8_HINT}",
                    "line.not_utf8",
                )
            )
        idx = np.flatnonzero(block.bad_utf8 < 0)
        # each text keeps its line break: JSON allows trailing white space, and adjacent lines
        # then need no copying apart
        starts, stops = block.starts[idx], block.stops[idx]
        data = gather(block.buf, starts, stops)
        offsets = np.zeros(len(idx) + 1, np.int64)
        np.cumsum(stops - starts, out=offsets[1:])
        texts = pa.Array.from_buffers(
            pa.large_string(), len(idx), [None, pa.py_buffer(offsets), pa.py_buffer(data)]
        )
        table = pa.table({LOC: pa.array(block.lines[idx], pa.int64()), JSON_COL: texts})
        rejects.sort(key=lambda r: r.number)
        return Chunk(table, rejects, self._file.position)

    def _document_chunks(self, items: list[object]) -> Iterator[Chunk]:
        for begin in range(0, max(len(items), 1), SMALL_CHUNK_ROWS):
            part = items[begin : begin + SMALL_CHUNK_ROWS]
            texts = [json.dumps(x, ensure_ascii=False) for x in part]
            table = pa.table(
                {
                    LOC: pa.array(range(begin + 1, begin + 1 + len(part)), pa.int64()),
                    JSON_COL: pa.array(texts, pa.large_string()),
                }
            )
            yield Chunk(table, [], self.total if begin + len(part) >= len(items) else 0)


# -- Parquet ----------------------------------------------------------------------------------
class ParquetReader:
    """Parquet, scanned by DuckDB itself (parallel, streaming; no copy through Python).

    ``relation_sql`` selects the file's typed columns and ``_jm_loc``, the 1-based row number.
    """

    shape: Shape = "typed"
    locator: Locator = "row"
    progress_unit: Literal["bytes", "rows"] = "rows"

    def __init__(self, path: Path) -> None:
        with open(path, "rb") as fh:
            if fh.read(2) == b"\x1f\x8b":
                raise InputDataError(
                    f"{path.name}: a gzip-compressed Parquet file cannot be read in place; "
                    "decompress it first (Parquet compresses its data itself)"
                )
        try:
            meta = pq.read_metadata(path)
            schema = pq.read_schema(path)
        except (pa.ArrowException, OSError) as exc:
            raise InputDataError(f"{path.name}: not a readable Parquet file: {exc}") from None
        self.total = meta.num_rows
        self._names = list(schema.names)
        reserved = [n for n in self._names if n.startswith("_jm_") or n == "file_row_number"]
        if reserved:
            raise InputDataError(f"{path.name}: column names reserved by the importer: {reserved}")
        self._path = path

    def columns(self) -> list[str] | None:
        return list(self._names)

    def relation_sql(self) -> str:
        path = "'" + str(self._path).replace("'", "''") + "'"
        return (
            f"SELECT * EXCLUDE (file_row_number), file_row_number + 1 AS {LOC}"
            f" FROM read_parquet({path}, file_row_number = true)"
        )

    def chunks(self) -> Iterator[Chunk]:  # pragma: no cover - the importer scans instead
        raise NotImplementedError("Parquet files are scanned by DuckDB: use relation_sql()")

    def close(self) -> None:
        pass
