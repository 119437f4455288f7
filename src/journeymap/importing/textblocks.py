"""Cut a byte stream into records with their physical line numbers, vectorised with NumPy.

A record ends at a newline; with quoting (CSV), only at a newline outside quotes, so a quoted
value may span lines and the record reports the number of its first line. The stream is read
in blocks; each block yields the complete records it holds, so memory stays bounded by the
block size plus the longest allowed record.

Three problems are found here rather than by a parser, so the rest of the file continues:

* a record longer than ``max_bytes`` (a 10 MB line) is skipped without being held in memory
  and reported with its line number and size;
* a record with bytes that are not UTF-8 is flagged (the reader names the column);
* a quoted field never closed before the end of the file is reported at the line it opened.

The quote-parity rule (a newline ends a record when the quotes before it are balanced) is what
a CSV parser does only if every quote opens a field, closes it, or is doubled inside it.
``strict_quotes`` checks that for every quote of a block; a quote elsewhere (``5" screen``)
makes the splitter hand the rest of the stream back as ``Irregular`` for a slower, lenient
parser.
"""

from __future__ import annotations

import codecs
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from journeymap.importing.rejects import Reject

BOM = b"\xef\xbb\xbf"
NEWLINE, CR, QUOTE = 10, 13, 34
#: Bytes read from the file at a time (compressed bytes for gzip are fewer).
DEFAULT_BLOCK_BYTES = 32 * 1024 * 1024

IntArray = npt.NDArray[np.int64]


class ByteStream(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class PrefixedStream:
    """``prefix`` followed by the rest of ``stream``."""

    def __init__(self, prefix: bytes, stream: ByteStream) -> None:
        self._prefix = prefix
        self._stream = stream

    def read(self, size: int = -1, /) -> bytes:
        if self._prefix:
            if size < 0 or size >= len(self._prefix):
                out, self._prefix = self._prefix, b""
                return out
            out, self._prefix = self._prefix[:size], self._prefix[size:]
            return out
        return self._stream.read(size)


@dataclass
class Block:
    """Complete records of one block. Offsets index ``buf``; all arrays are per record."""

    buf: bytes
    starts: IntArray
    #: end of the record's content (before ``\\r\\n``)
    ends: IntArray
    #: just after the record's terminating newline
    stops: IntArray
    lines: IntArray
    #: offset of the first invalid UTF-8 byte inside the record, or -1
    bad_utf8: IntArray
    rejects: list[Reject] = field(default_factory=list)


@dataclass
class Irregular:
    """The rest of the stream (from ``buf``, whose first byte is on ``line``) needs a lenient
    parser: a quote stands where quote parity cannot track it."""

    buf: bytes
    line: int
    rejects: list[Reject] = field(default_factory=list)


@dataclass
class _Skip:
    """State while skipping an over-long record."""

    line: int
    head: bytes
    size: int
    newlines: int
    parity: int


def line_too_long(line: int, size: int, head: bytes, max_bytes: int) -> Reject:
    return Reject(
        "line",
        line,
        None,
        head[:1000].decode("utf-8", "backslashreplace"),
        f"the line is {size:,} bytes long, more than max_line_bytes={max_bytes:,}; every "
        "line must be shorter (raise max_line_bytes if such lines are genuine)",
        "line.too_long",
    )


def unterminated_quote(line: int, head: bytes) -> Reject:
    return Reject(
        "line",
        line,
        None,
        head[:1000].decode("utf-8", "backslashreplace"),
        "a quoted field opened on this line is never closed; a quoted value must end with a "
        'quote (write a quote inside a value as "")',
        "csv.unterminated_quote",
    )


class RecordSplitter:
    """Iterate ``Block`` s (and at most one final ``Irregular``) over a byte stream."""

    def __init__(
        self,
        stream: ByteStream,
        *,
        max_bytes: int,
        quote: int | None = None,
        delimiter: int | None = None,
        strict_quotes: bool = False,
        block_bytes: int = DEFAULT_BLOCK_BYTES,
        first_line: int = 1,
        strip_bom: bool = True,
    ) -> None:
        self._stream = stream
        self._max = max_bytes
        self._quote = quote
        self._delim = delimiter
        self._strict = strict_quotes and quote is not None and delimiter is not None
        self._block = max(block_bytes, 1)
        self._line = first_line
        self._strip_bom = strip_bom

    def __iter__(self) -> Iterator[Block | Irregular]:
        carry = b""
        line = self._line  # physical line number of carry[0]
        skip: _Skip | None = None
        first = self._strip_bom
        while True:
            data = self._stream.read(self._block)
            eof = not data
            if first:
                data = data.removeprefix(BOM)
                first = False
            rejects: list[Reject] = []
            if skip is not None:
                rest, line = self._skip_through(skip, data)
                if rest is None:
                    if not eof:
                        continue
                    rejects.append(self._skip_reject(skip))
                    yield _empty_block(rejects)
                    return
                rejects.append(self._skip_reject(skip))
                skip = None
                data = rest
            buf = carry + data
            if eof and buf and not buf.endswith(b"\n"):
                buf += b"\n"
            arr = np.frombuffer(buf, np.uint8)
            nl = np.flatnonzero(arr == NEWLINE).astype(np.int64)
            quotes: IntArray | None = None
            if self._quote is not None:
                quotes = np.flatnonzero(arr == self._quote).astype(np.int64)
                if self._strict and quotes.size and not self._regular_quotes(arr, quotes):
                    yield Irregular(buf, line, rejects)
                    return
                term = nl[(np.searchsorted(quotes, nl) & 1) == 0]
            else:
                term = nl
            if term.size == 0:
                if eof:
                    if buf:  # only an unterminated quote leaves bytes without a terminator
                        rejects.append(unterminated_quote(line, buf))
                    yield _empty_block(rejects)
                    return
                if len(buf) > self._max:
                    skip = self._start_skip(line, buf, nl, quotes)
                    carry = b""
                else:
                    carry = buf
                if rejects:
                    yield _empty_block(rejects)
                continue
            cut = int(term[-1]) + 1
            starts = np.concatenate((np.zeros(1, np.int64), term[:-1] + 1))
            stops = term + 1
            ends = term - (arr[np.maximum(term - 1, 0)] == CR).astype(np.int64)
            ends = np.maximum(ends, starts)
            lines = line + np.searchsorted(nl, starts).astype(np.int64)
            next_line = line + int(np.searchsorted(nl, cut))
            carry = buf[cut:]
            block = self._make_block(buf, arr, starts, ends, stops, lines, rejects)
            if eof:
                if carry:
                    block.rejects.append(unterminated_quote(next_line, carry))
                yield block
                return
            line = next_line
            if len(carry) > self._max:
                # an over-long record is in progress: stop holding it
                c_arr = np.frombuffer(carry, np.uint8)
                c_nl = np.flatnonzero(c_arr == NEWLINE).astype(np.int64)
                c_q = (
                    np.flatnonzero(c_arr == self._quote).astype(np.int64)
                    if self._quote is not None
                    else None
                )
                skip = self._start_skip(line, carry, c_nl, c_q)
                carry = b""
            yield block

    # -- helpers -----------------------------------------------------------------------------
    def _make_block(
        self,
        buf: bytes,
        arr: npt.NDArray[np.uint8],
        starts: IntArray,
        ends: IntArray,
        stops: IntArray,
        lines: IntArray,
        rejects: list[Reject],
    ) -> Block:
        lengths = ends - starts
        keep = lengths > 0
        # whitespace-only lines count as blank
        maybe_blank = np.flatnonzero(keep & (lengths <= 16) & np.isin(arr[starts], (32, 9)))
        for i in maybe_blank:
            if not buf[starts[i] : ends[i]].strip():
                keep[i] = False
        too_long = np.flatnonzero(lengths > self._max)
        for i in too_long:
            rejects.append(
                line_too_long(
                    int(lines[i]), int(lengths[i]), buf[starts[i] : starts[i] + 1000], self._max
                )
            )
        keep[too_long] = False
        idx = np.flatnonzero(keep)
        starts, ends, stops, lines = starts[idx], ends[idx], stops[idx], lines[idx]
        bad = np.full(len(idx), -1, np.int64)
        checked = int(stops[-1]) if len(stops) else 0
        for pos in invalid_utf8_positions(memoryview(buf)[:checked]):
            k = int(np.searchsorted(starts, pos, side="right")) - 1
            if k >= 0 and pos < ends[k] and bad[k] < 0:
                bad[k] = pos - int(starts[k])
        return Block(buf, starts, ends, stops, lines, bad, rejects)

    def _regular_quotes(self, arr: npt.NDArray[np.uint8], quotes: IntArray) -> bool:
        """Whether each quote opens a field, closes it, or is doubled inside it.

        Counting from the block start (a record boundary), even quotes open: the byte before
        must end a field (delimiter, line break) or be the closing half of a doubled quote;
        odd quotes close: the byte after must be a delimiter, a line break or a quote.
        """
        assert self._quote is not None
        assert self._delim is not None
        edge = np.zeros(256, np.bool_)
        edge[[self._delim, NEWLINE, CR, self._quote]] = True
        n = len(arr)
        opening, closing = quotes[0::2], quotes[1::2]
        before = arr[opening - 1]
        if opening.size and opening[0] == 0:
            before[0] = NEWLINE
        after = arr[np.minimum(closing + 1, n - 1)]
        if closing.size and closing[-1] == n - 1:
            after[-1] = NEWLINE
        return bool(edge[before].all() and edge[after].all())

    def _start_skip(self, line: int, buf: bytes, nl: IntArray, quotes: IntArray | None) -> _Skip:
        parity = int(quotes.size & 1) if quotes is not None else 0
        return _Skip(line, buf[:1000], len(buf), int(nl.size), parity)

    def _skip_through(self, skip: _Skip, data: bytes) -> tuple[bytes | None, int]:
        """Consume ``data`` while in an over-long record; return the bytes after its end."""
        arr = np.frombuffer(data, np.uint8)
        nl = np.flatnonzero(arr == NEWLINE).astype(np.int64)
        if self._quote is not None:
            quotes = np.flatnonzero(arr == self._quote).astype(np.int64)
            term = nl[((skip.parity + np.searchsorted(quotes, nl)) & 1) == 0]
        else:
            quotes, term = None, nl
        if term.size == 0:
            skip.size += len(data)
            skip.newlines += int(nl.size)
            if quotes is not None:
                skip.parity ^= int(quotes.size & 1)
            return None, skip.line
        end = int(term[0])
        skip.size += end
        skip.newlines += int(np.searchsorted(nl, end))
        next_line = skip.line + skip.newlines + 1
        return data[end + 1 :], next_line

    def _skip_reject(self, skip: _Skip) -> Reject:
        if skip.parity:
            return unterminated_quote(skip.line, skip.head)
        return line_too_long(skip.line, skip.size, skip.head, self._max)


def _empty_block(rejects: list[Reject]) -> Block:
    empty = np.zeros(0, np.int64)
    return Block(b"", empty, empty, empty, empty, empty, rejects)


# -- UTF-8 ------------------------------------------------------------------------------------
_positions = threading.local()


def _collect_errors(exc: UnicodeError) -> tuple[str, int]:
    assert isinstance(exc, UnicodeDecodeError)
    _positions.found.append(exc.start)
    return "", exc.end


codecs.register_error("journeymap.collect", _collect_errors)


def invalid_utf8_positions(buf: bytes | memoryview) -> list[int]:
    """Byte offsets of every invalid UTF-8 sequence in ``buf`` (one C-speed decode pass)."""
    _positions.found = []
    str(buf, "utf-8", "journeymap.collect")
    found: list[int] = _positions.found
    return found


def describe_bad_utf8(raw: bytes, offset: int) -> str:
    """'invalid UTF-8 byte 0xe9 at byte 17 of the line'."""
    return f"invalid UTF-8 byte 0x{raw[offset]:02x} at byte {offset + 1} of the line"


UTF8_HINT = "the file must be UTF-8 (convert it first, e.g. iconv -f latin1 -t utf-8)"
