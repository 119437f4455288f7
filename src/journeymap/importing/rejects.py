"""Rejected rows: what was wrong, where, and the file they are written to.

Every rejected row becomes one JSON object on one line of the rejects file::

    {"file": "orders.csv", "line": 17, "field": "ts", "value": "2024-13-45 10:00",
     "reason": "cannot read '2024-13-45 10:00' as a time; expected a time between ...",
     "rule": "ts.unparseable"}

* ``line`` is the physical line number (header = line 1; a record spanning several lines
  reports its first line); Parquet and whole-document JSON report ``row`` (1-based) instead.
* ``field`` is the event field (after mapping) or, for problems of the line itself (wrong
  number of fields, invalid JSON, a line too long), ``null``; for a non-UTF-8 CSV line it
  is the column holding the bad bytes.
* ``value`` is the offending text, cut to 200 characters.
* ``reason`` says what is wrong and names the allowed form (``RULES`` of the event model).
* ``rule`` is a stable code (``ts.unparseable``, ``csv.field_count``, ...) to group by.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from journeymap.model.events import RULES

#: Longest ``value`` written to the rejects file.
MAX_VALUE_CHARS = 200

Locator = Literal["line", "row"]


@dataclass(frozen=True)
class Reject:
    """One rejected row."""

    locator: Locator
    number: int
    field: str | None
    value: str | None
    reason: str
    rule: str

    def to_json(self, file: str) -> str:
        value = self.value
        if value is not None and len(value) > MAX_VALUE_CHARS:
            value = value[: MAX_VALUE_CHARS - 1] + "…"
        record = {
            "file": file,
            self.locator: self.number,
            "field": self.field,
            "value": value,
            "reason": self.reason,
            "rule": self.rule,
        }
        return json.dumps(record, ensure_ascii=False)


# -- reasons of the row-level (normalisation) rules -------------------------------------------
# rule code -> (field, template). Templates see {value!r}, {length}, {tz}, {type}.
_EXPECT = "expected {}"

ROW_RULES: dict[str, tuple[str, str]] = {
    "event_id.too_long": (
        "event_id",
        "the id is {length} characters long; " + _EXPECT.format(RULES["event_id"]),
    ),
    "identity.missing": (
        "customer_id",
        "neither customer_id nor anonymous_id is set; " + _EXPECT.format(RULES["customer_id"]),
    ),
    "customer_id.too_long": (
        "customer_id",
        "the id is {length} characters long; " + _EXPECT.format(RULES["customer_id"]),
    ),
    "anonymous_id.too_long": (
        "anonymous_id",
        "the id is {length} characters long; " + _EXPECT.format(RULES["anonymous_id"]),
    ),
    "ts.missing": ("ts", "the time is missing; " + _EXPECT.format(RULES["ts"])),
    "ts.unparseable": (
        "ts",
        "cannot read {value!r} as a time (naive times are read in {tz}); "
        + _EXPECT.format(RULES["ts"]),
    ),
    "ts.out_of_range": (
        "ts",
        "{value!r} is outside the allowed years (epoch numbers are read as seconds, "
        "milliseconds or microseconds by their size); " + _EXPECT.format(RULES["ts"]),
    ),
    "event.missing": ("event", "the event name is missing; " + _EXPECT.format(RULES["event"])),
    "event.too_long": (
        "event",
        "the name is {length} characters long; " + _EXPECT.format(RULES["event"]),
    ),
    "channel.too_long": (
        "channel",
        "the text is {length} characters long; " + _EXPECT.format(RULES["channel"]),
    ),
    "campaign.too_long": (
        "campaign",
        "the text is {length} characters long; " + _EXPECT.format(RULES["campaign"]),
    ),
    "source.too_long": (
        "source",
        "the text is {length} characters long; " + _EXPECT.format(RULES["source"]),
    ),
    "revenue.not_number": (
        "revenue",
        "cannot read {value!r} as an amount (use a dot as decimal separator, no thousands "
        "separators or currency signs); " + _EXPECT.format(RULES["revenue"]),
    ),
    "revenue.out_of_range": (
        "revenue",
        "{value} is too large; " + _EXPECT.format(RULES["revenue"]),
    ),
    "currency.invalid": (
        "currency",
        "{value!r} is not a currency code; " + _EXPECT.format(RULES["currency"]),
    ),
    "properties.not_object": (
        "properties",
        "{type}; " + _EXPECT.format(RULES["properties"]) + ' such as {{"page": "/cart"}}',
    ),
    "context.not_object": (
        "context",
        "{type}; " + _EXPECT.format(RULES["context"]) + ' such as {{"device": {{"type": '
        '"mobile"}}}}',
    ),
    "score.not_integer": (
        "score",
        "cannot read {value!r} as a whole number; " + _EXPECT.format(RULES["score"]),
    ),
}


def row_reject(
    locator: Locator, number: int, rule: str, value: str | None, *, tz: str, detail: str | None
) -> Reject:
    """The reject of a row that broke one of the event ``RULES`` (``ROW_RULES``)."""
    field, template = ROW_RULES[rule]
    text = "" if value is None else value
    reason = template.format(value=text, length=len(text), tz=tz, type=detail or "not JSON")
    return Reject(locator, number, field, value, reason, rule)


class RejectsWriter:
    """Writes rejects as JSON lines to a temporary file, renamed into place by ``finish``.

    The file describes the last import of a source file: it is replaced on every import, and
    an earlier rejects file at the same path is removed when an import rejects nothing.
    """

    def __init__(self, path: Path, file_label: str) -> None:
        self.path = path
        self.file_label = file_label
        self.count = 0
        self.by_rule: Counter[str] = Counter()
        self._tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self._fh: IO[str] | None = None

    def write(self, rejects: Iterable[Reject]) -> None:
        for reject in rejects:
            if self._fh is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = open(self._tmp, "w", encoding="utf-8")  # noqa: SIM115 (closed in finish)
            self._fh.write(reject.to_json(self.file_label) + "\n")
            self.count += 1
            self.by_rule[reject.rule] += 1

    def finish(self) -> Path | None:
        """Move the rejects into place; ``None`` when there were none."""
        if self._fh is None:
            if _is_rejects_file(self.path):
                self.path.unlink()
            return None
        self._fh.close()
        self._fh = None
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the partial rejects of a failed import."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()


def _is_rejects_file(path: Path) -> bool:
    """Whether ``path`` holds rejects written by us (never delete anything else)."""
    try:
        with open(path, encoding="utf-8") as fh:
            first = json.loads(fh.readline())
    except (OSError, ValueError):
        return False
    return isinstance(first, dict) and {"file", "reason", "rule"} <= first.keys()
