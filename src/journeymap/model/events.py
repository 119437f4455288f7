"""The event: one thing a customer did or received at a touchpoint.

One Arrow schema, ``EVENT_SCHEMA``, is shared by the importers, the collector, the lake and the
simulator. Besides the fields of the vocabulary (DESIGN.md) it carries

* **promoted columns** (``device``, ``order_id``, ``product_id``, ``category``, ``score``):
  well-known keys of ``properties`` / ``context`` stored as typed columns at ingestion, so the
  analytics never parse JSON on a hot path (portability rule 6);
* **derived columns** (``ts_us``, ``event_date``): the timestamp as integer microseconds, for
  durations that agree exactly between engines (rule 4), and the UTC date the lake is
  partitioned by.

Validation rules (``RULES``) are enforced by every loader; a row breaking one is rejected with
the field and the reason, and the other rows are kept.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

MONEY_TYPE: Final = pa.decimal128(18, 2)
TS_TYPE: Final = pa.timestamp("us", tz="UTC")

EVENT_SCHEMA: Final = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("customer_id", pa.string()),
        pa.field("anonymous_id", pa.string()),
        pa.field("ts", TS_TYPE, nullable=False),
        pa.field("event", pa.string(), nullable=False),
        pa.field("channel", pa.string()),
        pa.field("campaign", pa.string()),
        pa.field("source", pa.string()),
        pa.field("revenue", MONEY_TYPE),
        pa.field("currency", pa.string()),
        pa.field("properties", pa.string()),
        pa.field("context", pa.string()),
        # promoted from properties / context at ingestion
        pa.field("device", pa.string()),
        pa.field("order_id", pa.string()),
        pa.field("product_id", pa.string()),
        pa.field("category", pa.string()),
        pa.field("score", pa.int32()),
        # derived
        pa.field("ts_us", pa.int64(), nullable=False),
        pa.field("event_date", pa.date32(), nullable=False),
    ]
)

#: Columns an input must provide (after mapping); everything else is optional.
REQUIRED_COLUMNS: Final = ("ts", "event")
#: At least one of these identifies who the event belongs to.
IDENTITY_COLUMNS: Final = ("customer_id", "anonymous_id")
#: Keys of ``properties`` promoted to typed columns (``context.device.type`` feeds ``device``).
PROMOTED_PROPERTIES: Final = ("device", "order_id", "product_id", "category", "score")
#: Columns computed from others; inputs never provide them.
DERIVED_COLUMNS: Final = ("ts_us", "event_date")
#: The partition column of the lake.
PARTITION_COLUMN: Final = "event_date"

MAX_ID_LENGTH: Final = 100
MAX_NAME_LENGTH: Final = 200
MIN_TS: Final = dt.datetime(1990, 1, 1, tzinfo=dt.UTC)
MAX_TS: Final = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
MAX_ABS_REVENUE: Final = 10**15

RULES: Final[dict[str, str]] = {
    "event_id": f"text of 1 to {MAX_ID_LENGTH} characters, unique; derived from the row's "
    "content when the source has none",
    "customer_id": f"text of at most {MAX_ID_LENGTH} characters; customer_id or anonymous_id "
    "must be present",
    "anonymous_id": f"text of at most {MAX_ID_LENGTH} characters",
    "ts": "a time between 1990-01-01 and 2100-01-01: ISO 8601 with offset, naive (read in the "
    "import time zone), or epoch seconds / milliseconds / microseconds; stored as UTC, "
    "truncated to microseconds",
    "event": f"non-empty text of at most {MAX_NAME_LENGTH} characters",
    "channel": f"text of at most {MAX_NAME_LENGTH} characters",
    "campaign": f"text of at most {MAX_NAME_LENGTH} characters",
    "source": f"text of at most {MAX_NAME_LENGTH} characters",
    "revenue": f"a number with absolute value below {MAX_ABS_REVENUE:.0e}, stored as "
    "DECIMAL(18,2) (rounded half-even to cents)",
    "currency": "a three-letter ISO 4217 code such as EUR or USD",
    "properties": "a JSON object",
    "context": "a JSON object",
    "score": "a whole number (survey answer, e.g. NPS 0-10, CSAT 1-5, CES 1-7)",
}


def empty_events() -> pa.Table:
    """An empty table with the event schema."""
    return EVENT_SCHEMA.empty_table()


def with_derived(table: pa.Table) -> pa.Table:
    """Add or refresh ``ts_us`` and ``event_date`` from ``ts`` (which must be UTC, µs)."""
    ts = table.column("ts").cast(TS_TYPE)
    ts_us = pc.cast(ts, pa.int64())
    # The UTC calendar date: floor division of µs by a day, then to date32.
    days = pc.floor(pc.divide(pc.cast(ts_us, pa.float64()), 86_400_000_000.0))
    event_date = pc.cast(pc.cast(days, pa.int32()), pa.date32())
    for name, col in (("ts", ts), ("ts_us", ts_us), ("event_date", event_date)):
        idx = table.schema.get_field_index(name)
        table = table.set_column(idx, name, col) if idx >= 0 else table.append_column(name, col)
    return table


def conform(table: pa.Table) -> pa.Table:
    """Order, type and complete a table of events so that it has exactly ``EVENT_SCHEMA``.

    Missing optional columns are added as nulls and derived columns are computed. The rows must
    already satisfy ``RULES`` (loaders check them); this only shapes the table.
    """
    table = with_derived(table)
    n = table.num_rows
    columns = []
    for field in EVENT_SCHEMA:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        else:
            columns.append(pa.nulls(n, field.type))
    return pa.Table.from_arrays(columns, schema=EVENT_SCHEMA)
