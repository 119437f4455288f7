"""Per-customer behaviour features, computed by the engine in one query (one row per customer).

``customer_features_expr`` is portable Ibis over the journey table. Besides the customer's
totals it counts, per customer, session starts by entry channel, events by device, category,
touchpoint and local hour, the orders with a discount code, and the first step at which each
phase and touchpoint was reached. The vocabularies (which channels, devices, categories
and touchpoints get a column) come from ``feature_vocabulary``, a small aggregate query, so
the wide query has a fixed, known shape.

Local hours. Ibis has no portable time-zone conversion (shared/research/engine.md, P5), so the
UTC offset is computed in Python from the IANA zone for the data's time range and applied in
the engine as a piecewise constant: ``offset = CASE WHEN ts_us < t1 THEN o0 WHEN ts_us < t2
THEN o1 ... END``, with one branch per offset change (two a year with daylight saving time).
That is exact, including the DST switches, and plain integer arithmetic on both engines.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from zoneinfo import ZoneInfo

import ibis
import ibis.expr.types as ir

from journeymap.analytics.engine import to_arrow
from journeymap.analytics.journey import property_value

HOUR_US = 3_600_000_000
DAY_US = 86_400_000_000
#: Key of the order property that carries a discount code.
DISCOUNT_KEY = "discount_code"
_MONEY = "decimal(18, 2)"


@dataclass(frozen=True)
class FeatureVocabulary:
    """Which values get a feature column, and the data's time range (UTC µs)."""

    channels: tuple[str, ...]
    devices: tuple[str, ...]
    categories: tuple[str, ...]
    touchpoints: tuple[str, ...]
    phases: tuple[str, ...]
    first_us: int
    last_us: int


def _top(journey: ir.Table, col: str, limit: int, where: ir.BooleanValue | None) -> list[str]:
    t = journey if where is None else journey.filter(where)
    t = t.filter(t[col].notnull())
    rows = to_arrow(
        t.group_by(col).agg(n=t.count()).order_by([ibis.desc("n"), col]).limit(limit)
    ).to_pylist()
    return [str(r[col]) for r in rows]


def feature_vocabulary(
    journey: ir.Table,
    phases: Sequence[str],
    *,
    max_channels: int = 12,
    max_devices: int = 4,
    max_categories: int = 12,
    max_touchpoints: int = 40,
) -> FeatureVocabulary:
    """The most frequent values of each column (by events; channels by session starts)."""
    span = journey.aggregate(first_us=journey.ts_us.min(), last_us=journey.ts_us.max())
    row = to_arrow(span).to_pylist()[0]
    if row["first_us"] is None:
        raise ValueError("the journey table is empty: import events first")
    return FeatureVocabulary(
        channels=tuple(_top(journey, "channel", max_channels, journey.is_session_start)),
        devices=tuple(_top(journey, "device", max_devices, None)),
        categories=tuple(_top(journey, "category", max_categories, None)),
        touchpoints=tuple(_top(journey, "touchpoint", max_touchpoints, None)),
        phases=tuple(phases),
        first_us=int(row["first_us"]),
        last_us=int(row["last_us"]),
    )


def utc_offsets(timezone: str, first_us: int, last_us: int) -> list[tuple[int, int]]:
    """``(from_us, offset_us)`` pieces of ``timezone``'s UTC offset over ``[first, last]``.

    The first piece starts at ``first_us``; each later one at an offset change, found by
    bisection to the second (zones change offsets at whole seconds) between daily samples.
    """
    zone = ZoneInfo(timezone)

    def offset(sec: int) -> int:
        off = dt.datetime.fromtimestamp(sec, tz=dt.UTC).astimezone(zone).utcoffset()
        return int(off.total_seconds()) * 1_000_000 if off is not None else 0

    day = DAY_US // 1_000_000
    first, last = first_us // 1_000_000, -(-last_us // 1_000_000)
    pieces = [(first_us, offset(first))]
    t = first
    while t < last:
        nxt = min(t + day, last)
        if offset(nxt) != pieces[-1][1]:
            lo, hi = t, nxt  # offset(lo) is the current one, offset(hi) the new one
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if offset(mid) == pieces[-1][1]:
                    lo = mid
                else:
                    hi = mid
            pieces.append((hi * 1_000_000, offset(hi)))
        t = nxt
    return pieces


def local_hour_expr(ts_us: ir.IntegerValue, pieces: Sequence[tuple[int, int]]) -> ir.IntegerValue:
    """The hour of day (0–23) in local time, from ``utc_offsets`` pieces."""
    if not pieces:
        raise ValueError("no UTC offset pieces")
    offset: ir.IntegerValue
    if len(pieces) == 1:
        offset = ibis.literal(pieces[0][1], "int64")
    else:
        branches = [
            (ts_us < start, ibis.literal(off, "int64")) for (_, off), (start, _) in pairwise(pieces)
        ]
        offset = ibis.cases(*branches, else_=ibis.literal(pieces[-1][1], "int64"))
    hours = (ts_us + offset) // HOUR_US
    return (hours % 24).cast("int64")


def customer_features_expr(
    journey: ir.Table, vocab: FeatureVocabulary, *, timezone: str = "UTC"
) -> ir.Table:
    """One row per customer: totals, counts per vocabulary value, hour histogram, first steps.

    Columns: ``customer_id``, ``n_events``, ``n_sessions``, ``max_phase``, ``n_conversions``,
    ``revenue`` (DECIMAL, of conversions), ``discount_orders``, ``first_us``, ``last_us``;
    ``ch_<i>`` (session starts from channel i of the vocabulary), ``dev_<i>``, ``cat_<i>``,
    ``tp_<i>`` (events), ``hour_<h>`` (events on a device at local hour h: the customer's own
    interactions, not the messages sent to them or back-office events, which carry no device),
    ``phase_first_<k>`` and ``tp_first_<i>`` (first step index reaching phase k / touchpoint i,
    NULL if never). Columns are numbered, not named by value, so any value is a valid column
    name.
    """
    j = journey
    start = j.is_session_start
    one, zero = ibis.literal(1, "int64"), ibis.literal(0, "int64")
    null_int = ibis.null("int64")

    def count_if(cond: ir.BooleanValue) -> ir.Value:
        return ibis.ifelse(cond.fill_null(False), one, zero).sum()

    hour = local_hour_expr(j.ts_us, utc_offsets(timezone, vocab.first_us, vocab.last_us))
    discount = property_value(j.properties.fill_null(""), DISCOUNT_KEY)
    revenue = (
        ibis.ifelse(j.is_conversion, j.revenue, ibis.null(_MONEY))
        .sum()
        .fill_null(ibis.literal(0, _MONEY))
        .cast(_MONEY)
    )
    aggs: dict[str, ir.Value] = {
        "n_events": j.count(),
        "n_sessions": j.session_index.max().cast("int64"),
        "max_phase": j.phase_index.max().fill_null(0).cast("int64"),
        "n_conversions": count_if(j.is_conversion),
        "revenue": revenue,
        "discount_orders": count_if(j.is_conversion & (discount.fill_null("") != "")),
        "first_us": j.ts_us.min(),
        "last_us": j.ts_us.max(),
    }
    for i, ch in enumerate(vocab.channels):
        aggs[f"ch_{i}"] = count_if(start & (j.channel == ch))
    for i, dev in enumerate(vocab.devices):
        aggs[f"dev_{i}"] = count_if(j.device == dev)
    for i, cat in enumerate(vocab.categories):
        aggs[f"cat_{i}"] = count_if(j.category == cat)
    for i, tp in enumerate(vocab.touchpoints):
        aggs[f"tp_{i}"] = count_if(j.touchpoint == tp)
        aggs[f"tp_first_{i}"] = ibis.ifelse(j.touchpoint == tp, j.step_index, null_int).min()
    for h in range(24):
        aggs[f"hour_{h}"] = count_if(j.device.notnull() & (hour == h))
    for k in range(1, len(vocab.phases) + 1):
        aggs[f"phase_first_{k}"] = ibis.ifelse(j.phase_index == k, j.step_index, null_int).min()
    return j.group_by("customer_id").agg(**aggs)
