"""CSV files with a header line, read fast by quote parity and pyarrow, or leniently."""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from journeymap.errors import InputDataError
from journeymap.importing.rejects import Locator, Reject
from journeymap.importing.sources import (
    LOC,
    SMALL_CHUNK_ROWS,
    ByteFile,
    Chunk,
    Shape,
    gather,
    read_failed,
)
from journeymap.importing.textblocks import (
    BOM,
    QUOTE,
    UTF8_HINT,
    Block,
    Irregular,
    PrefixedStream,
    RecordSplitter,
    describe_bad_utf8,
)


class CsvReader:
    """CSV with a header line; the delimiter (``,`` ``;`` tab ``|``) is taken from the header.

    Fast path: records are cut by quote parity (NumPy), checked for UTF-8 and parsed by
    pyarrow, which also finds records with the wrong number of fields. A quote that parity
    cannot follow (``5" screen``) switches the rest of the file to Python's lenient ``csv``
    module, as spreadsheet tools read such values.
    """

    shape: Shape = "text"
    locator: Locator = "line"
    progress_unit: Literal["bytes", "rows"] = "bytes"

    def __init__(self, path: Path, *, max_line_bytes: int, block_bytes: int) -> None:
        self._file = ByteFile(path)
        self.total = self._file.total
        self._max = max_line_bytes
        self._block = block_bytes
        try:
            self._rest, self._header_line = self._read_header()
        except Exception:
            self._file.close()
            raise

    def _read_header(self) -> tuple[bytes, int]:
        name = self._file.path.name
        try:
            head = self._file.stream.read(max(self._block, self._max + 2)).removeprefix(BOM)
        except (OSError, EOFError) as exc:
            raise read_failed(self._file.path, exc) from exc
        line = 1
        while head.startswith((b"\n", b"\r\n")):  # leading blank lines
            head = head[1:] if head.startswith(b"\n") else head[2:]
            line += 1
        end = head.find(b"\n")
        if not head.strip():
            raise InputDataError(f"{name}: the file is empty; a CSV needs a header line")
        if end < 0:
            end = len(head)
        if end > self._max:
            raise InputDataError(
                f"{name}: the header (line {line}) is longer than max_line_bytes={self._max:,}"
            )
        raw = head[:end].rstrip(b"\r")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputDataError(
                f"{name}: the header (line {line}) has {describe_bad_utf8(raw, exc.start)}; "
                + UTF8_HINT
            ) from None
        self.delimiter = _sniff_delimiter(text)
        names = [n.strip() for n in next(csv.reader([text], delimiter=self.delimiter))]
        names = [n or f"column_{i + 1}" for i, n in enumerate(names)]
        seen: set[str] = set()
        for n in names:
            if n in seen:
                raise InputDataError(
                    f"{name}: the header (line {line}) names the column {n!r} twice; "
                    "column names must be unique"
                )
            seen.add(n)
        reserved = [n for n in names if n.startswith("_jm_")]
        if reserved:
            raise InputDataError(
                f"{name}: column names starting with _jm_ are reserved: {reserved}"
            )
        self.header = names
        return head[end + 1 :], line + 1

    def columns(self) -> list[str] | None:
        return list(self.header)

    def close(self) -> None:
        self._file.close()

    def chunks(self) -> Iterator[Chunk]:
        delim = ord(self.delimiter)
        splitter = RecordSplitter(
            PrefixedStream(self._rest, self._file.stream),
            max_bytes=self._max,
            quote=QUOTE,
            delimiter=delim,
            strict_quotes=True,
            block_bytes=self._block,
            first_line=self._header_line,
            strip_bom=False,
        )
        try:
            for block in splitter:
                if isinstance(block, Irregular):
                    yield from self._lenient(block)
                    return
                yield self._fast_chunk(block, delim)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise read_failed(self._file.path, exc) from exc

    # fast path -------------------------------------------------------------------------------
    def _fast_chunk(self, block: Block, delim: int) -> Chunk:
        """Parse a block's records with pyarrow. Records with the wrong number of fields are
        only counted out (a running count of separators outside quotes) when pyarrow reports
        some, so a clean block costs one parse."""
        rejects = list(block.rejects)
        if len(block.starts) == 0:
            return Chunk(_text_table(self.header, [], None), rejects, self._file.position)
        arr = np.frombuffer(block.buf, np.uint8)
        good = block.bad_utf8 < 0
        for i in np.flatnonzero(~good):
            raw = block.buf[block.starts[i] : block.ends[i]]
            rejects.append(self._bad_utf8(raw, int(block.bad_utf8[i]), int(block.lines[i])))
        table = self._parse_records(block, np.flatnonzero(good))
        if table is None:
            fields = self._field_counts(block, arr, delim)
            for i in np.flatnonzero(good & (fields != len(self.header))):
                raw = block.buf[block.starts[i] : block.ends[i]]
                rejects.append(self._field_count(raw, int(fields[i]), int(block.lines[i])))
            good &= fields == len(self.header)
            table = self._parse_records(block, np.flatnonzero(good))
            if table is None:  # pyarrow disagrees with the splitter: parse record by record
                table = self._parse_each(block, np.flatnonzero(good))
        lines = block.lines[good]
        table = table.append_column(LOC, pa.array(lines, pa.int64()))
        rejects.sort(key=lambda r: r.number)
        return Chunk(table, rejects, self._file.position)

    def _parse_records(self, block: Block, idx: np.ndarray) -> pa.Table | None:
        if len(idx) == 0:
            return _text_table(self.header, [], None)
        data = gather(block.buf, block.starts[idx], block.stops[idx])
        return self._parse(data, len(idx))

    def _field_counts(self, block: Block, arr: np.ndarray, delim: int) -> np.ndarray:
        """Fields per record: separators outside quotes, from a running count."""
        separators = arr == delim
        quotes = np.cumsum(arr == QUOTE, dtype=np.uint8)  # mod 256 keeps the parity
        separators &= (quotes & 1) == 0
        running = np.cumsum(separators, dtype=np.uint32)
        starts, ends = block.starts, block.ends
        before = np.where(starts > 0, running[np.maximum(starts - 1, 0)], 0)
        counts: np.ndarray = (running[ends - 1] - before).astype(np.int64) + 1
        return counts

    def _parse(self, data: bytes, expected: int) -> pa.Table | None:
        invalid = 0

        def on_invalid(_row: object) -> str:
            nonlocal invalid
            invalid += 1
            return "skip"

        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(
                column_names=self.header,
                block_size=min(max(4 << 20, 2 * self._max + 2), 2**31 - 1),
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=self.delimiter,
                newlines_in_values=True,
                ignore_empty_lines=False,
                invalid_row_handler=on_invalid,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(self.header, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                check_utf8=False,
            ),
        )
        if invalid or table.num_rows != expected:
            return None
        return table

    def _parse_each(self, block: Block, idx: np.ndarray) -> pa.Table:
        rows = []
        for i in idx:
            text = block.buf[block.starts[i] : block.ends[i]].decode("utf-8")
            row = next(csv.reader(io.StringIO(text, newline=""), delimiter=self.delimiter), [])
            rows.append((row + [""] * len(self.header))[: len(self.header)])
        return _text_table(self.header, rows, None)

    # lenient path ----------------------------------------------------------------------------
    def _lenient(self, irregular: Irregular) -> Iterator[Chunk]:
        """Python's csv module over the rest of the file: quotes inside unquoted values are
        literal characters, as in most spreadsheet tools."""
        rejects: list[Reject] = list(irregular.rejects)
        splitter = RecordSplitter(
            PrefixedStream(irregular.buf, self._file.stream),
            max_bytes=self._max,
            first_line=irregular.line,
            block_bytes=self._block,
            strip_bom=False,
        )
        pulled: list[int] = []

        def physical_lines() -> Iterator[str]:
            for block in splitter:
                assert isinstance(block, Block)  # no quoting: never Irregular
                rejects.extend(block.rejects)
                for i in range(len(block.starts)):
                    raw = block.buf[block.starts[i] : block.ends[i]]
                    if block.bad_utf8[i] >= 0:
                        rejects.append(
                            self._bad_utf8(raw, int(block.bad_utf8[i]), int(block.lines[i]))
                        )
                        continue
                    pulled.append(int(block.lines[i]))
                    yield raw.decode("utf-8") + "\n"

        reader = csv.reader(physical_lines(), delimiter=self.delimiter)
        rows: list[list[str]] = []
        lines: list[int] = []
        while True:
            pulled.clear()
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                line = pulled[0] if pulled else 0
                rejects.append(
                    Reject("line", line, None, None, f"cannot parse the CSV: {exc}", "csv.syntax")
                )
                continue
            if not pulled or not row:
                continue
            if len(row) != len(self.header):
                text = self.delimiter.join(row)
                rejects.append(self._field_count(text.encode(), len(row), pulled[0]))
                continue
            rows.append(row)
            lines.append(pulled[0])
            if len(rows) >= SMALL_CHUNK_ROWS:
                yield self._lenient_chunk(rows, lines, rejects)
                rows, lines, rejects = [], [], []
        yield self._lenient_chunk(rows, lines, rejects)

    def _lenient_chunk(
        self, rows: list[list[str]], lines: list[int], rejects: list[Reject]
    ) -> Chunk:
        table = _text_table(self.header, rows, None).append_column(LOC, pa.array(lines, pa.int64()))
        return Chunk(table, sorted(rejects, key=lambda r: r.number), self._file.position)

    # rejects -----------------------------------------------------------------------------
    def _field_count(self, raw: bytes, found: int, line: int) -> Reject:
        expected = len(self.header)
        shown = {"\t": "tab"}.get(self.delimiter, repr(self.delimiter))
        return Reject(
            "line",
            line,
            None,
            raw[:1000].decode("utf-8", "backslashreplace"),
            f"the line has {found} field{'s' if found != 1 else ''} but the header has "
            f"{expected}; every line must have {expected} fields separated by {shown} "
            "(quote values that contain the delimiter or a line break)",
            "csv.field_count",
        )

    def _bad_utf8(self, raw: bytes, offset: int, line: int) -> Reject:
        """Name the column that holds the bad bytes."""
        text = raw.decode("utf-8", "surrogateescape")
        column: str | None = None
        value = raw.decode("utf-8", "backslashreplace")
        try:
            row = next(csv.reader(io.StringIO(text, newline=""), delimiter=self.delimiter), [])
        except csv.Error:
            row = []
        for i, cell in enumerate(row):
            if any("\udc80" <= ch <= "\udcff" for ch in cell) and i < len(self.header):
                column = self.header[i]
                value = cell.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
                break
        where = f" in column {column!r}" if column else ""
        return Reject(
            "line",
            line,
            column,
            value,
            f"{describe_bad_utf8(raw, offset)}{where}; {UTF8_HINT}",
            "line.not_utf8",
        )


def _sniff_delimiter(header: str) -> str:
    counts = {d: header.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _text_table(
    header: list[str], rows: list[list[str]], columns: list[list[str]] | None
) -> pa.Table:
    if columns is None:
        columns = [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in header]
    return pa.table(
        {name: pa.array(col, pa.string()) for name, col in zip(header, columns, strict=True)}
    )
