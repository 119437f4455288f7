"""The journeys of attribution, built in the engine (one Ibis implementation).

**A journey.** Per customer, in ``(ts, event_id)`` order (the journey table's
``step_index``), every conversion (``is_conversion``) closes one journey: its touches are
the customer's events with a non-null ``channel`` (``level="channel"``) or ``touchpoint``
(``level="touchpoint"``) after the previous conversion and before this one, within
``lookback_days`` before the conversion (``None``: no limit). The touches after a customer's
last conversion (all touches of a customer who never converted) form one *null* journey,
with the lookback counted back from its last touch. Conversion events are never touches.
A converting journey without touches cannot be attributed (``unattributed_conversions``).
The value of a journey is the revenue of the conversion that closes it.
``touch="session"`` counts only each session's entry event (the journey table's
``is_session_start``) as a touch: one touch per visit, labelled with how the customer came
in. ``collapse_repeats`` merges repeated consecutive identical touches (``a > a > b`` becomes
``a > b``, keeping the first of the run); by default they are kept, as ChannelAttribution
does.

**In the engine.** Touch values are replaced by their index in the sorted list of values
(``touch_names``): integer windows and sorts are much cheaper than string ones. One ordered
window per customer numbers the journeys and finds each touch's neighbours
(``journey_rows_expr``); the rest are filters and hash aggregations:

* ``paths_expr``: the distinct paths (arrays of codes) with conversions, value and nulls, by
  the portable collect-sort-map pattern of shared/research/engine.md §4;
* ``transitions_expr``: the k-order Markov chain's transition counts, from lag/lead;
* ``time_decay_expr``: time-decay credit per touch value.

Only these aggregates leave the engine; NumPy / SciPy do the rest (``attribution_models``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from journeymap.analytics.attribution_models import (
    CONVERSION,
    EMPTY,
    NULL,
    PathSet,
    Transitions,
)
from journeymap.analytics.engine import to_arrow
from journeymap.errors import JourneymapError

if TYPE_CHECKING:
    import ibis.expr.types as ir

Level = Literal["channel", "touchpoint"]
#: what one touch is: every event with a value, or the entry event of each session
Touch = Literal["event", "session"]
_US_PER_DAY = 86_400 * 1_000_000
#: a lookback that keeps everything (about 270 years; the microseconds fit in int64)
_NO_LOOKBACK_DAYS = 100_000
#: touch codes are packed with their step index as step_index * radix + code
_CODE_RADIX = 1 << 16


class AttributionError(JourneymapError, ValueError):
    """Invalid attribution arguments or path input."""


def touch_key(journey: ir.Table, level: Level, touch: Touch = "event") -> ir.StringValue:
    """The touch value of each event: its ``level`` column; with ``touch="session"`` only on
    the event that opened its session (the session's entry channel or touchpoint; a session
    whose first event has none has no touch)."""
    import ibis

    check_level(level)
    if touch == "event":
        return journey[level]
    if touch == "session":
        return ibis.ifelse(journey.is_session_start, journey[level], ibis.null("string"))
    raise AttributionError(f"unknown touch {touch!r}; allowed: event, session")


# -- engine expressions ----------------------------------------------------------------------------
def touch_names(journey: ir.Table, level: Level = "channel", touch: Touch = "event") -> list[str]:
    """The distinct touch values (channels or touchpoints) of the journey table, sorted: the
    engine works on their index in this list (integer windows are much cheaper)."""
    key = touch_key(journey, level, touch)
    rows = to_arrow(
        journey.filter(key.notnull() & ~journey.is_conversion).select(touch=key).distinct()
    )
    return sorted(str(v) for v in rows.column("touch").to_pylist())


def journey_rows_expr(
    journey: ir.Table,
    names: Sequence[str],
    *,
    level: Level = "channel",
    lookback_days: float | None = 30,
    collapse_repeats: bool = False,
    context: int = 1,
    touch: Touch = "event",
) -> ir.Table:
    """The rows attribution works on: touches within their journey's lookback, and the
    conversions that close journeys. Columns: ``customer_id``, ``journey_no`` (0-based:
    conversions before the row; a conversion carries the number of the journey it closes),
    ``step_index``, ``ts_us``, ``is_touch``, ``code`` (the touch's index in ``names``),
    ``revenue``, ``converted`` (1 when the row's journey converted), ``end_us`` (its
    conversion's time, or the null journey's last touch), ``prev1`` .. ``prev{context}``
    (codes of the touches before a touch in its journey and lookback, else NULL) and
    ``next`` (the code of the following touch of the journey, NULL at its end). A
    conversion's ``prev1`` is its journey's last touch (NULL: no touch, not attributed).

    Everything comes from one ordered window per customer (one sort), then filters: a
    conversion row separates journeys, and the lookback keeps a suffix of each journey, so a
    neighbour belongs to the journey when no conversion lies between them and its time is
    within the lookback. ``collapse_repeats`` drops a touch equal to its previous touch;
    ``prev`` / ``next`` stay those of the raw sequence (callers that need the neighbours of
    the collapsed sequence number it again).
    """
    import ibis

    key = touch_key(journey, level, touch)
    t = journey.filter(journey.is_conversion | key.notnull()).select(
        "customer_id",
        "step_index",
        "ts_us",
        "is_conversion",
        _name=key,
        revenue=journey.revenue,
    )
    lookup = ibis.memtable(
        pa.table(
            {
                "_key": pa.array(list(names), pa.string()),
                "code": pa.array(range(len(names)), pa.int64()),
            }
        )
    )
    t = t.left_join(lookup, t._name == lookup._key).drop("_name", "_key")
    w = ibis.window(group_by=t.customer_id, order_by=t.step_index)
    conv = t.is_conversion.cast("int64")
    n_lags = max(context, 1)
    no_int = ibis.null("int64")
    # a lagged time of -1 marks a conversion (times are after 1990, so positive)
    marked_ts = ibis.ifelse(t.is_conversion, ibis.literal(-1, "int64"), t.ts_us)
    cols: dict[str, ir.Value] = {
        "journey_no": conv.cumsum(group_by=t.customer_id, order_by=t.step_index).cast("int64")
        - conv,
        "_next": ibis.ifelse(t.is_conversion, ibis.literal(-1, "int64"), t.code).lead().over(w),
    }
    if lookback_days is None:
        # whether a conversion follows: fewer conversions before the row than in total
        cols["_total"] = conv.sum().over(w)  # an ordered window without frame: whole partition
    else:
        following = ibis.window(
            group_by=t.customer_id, order_by=t.step_index, preceding=0, following=None
        )
        # the time of the conversion that closes the row's journey (NULL: it never converts)
        cols["_conv_us"] = ibis.ifelse(t.is_conversion, t.ts_us, no_int).min().over(following)
        # the customer's last row: the end of the null journey after the last conversion
        cols["_last_us"] = t.ts_us.max().over(w)
    for j in range(1, n_lags + 1):
        cols[f"_code{j}"] = t.code.lag(j).over(w)
        cols[f"_ts{j}"] = marked_ts.lag(j).over(w)
    t = t.mutate(**cols)
    if lookback_days is None:
        t = t.mutate(converted=(t.journey_no < t._total).cast("int64"), end_us=ibis.null("int64"))
        start = None
    else:
        t = t.mutate(
            converted=t._conv_us.notnull().cast("int64"),
            end_us=ibis.coalesce(t._conv_us, t._last_us),
        )
        start = t.end_us - round(lookback_days * _US_PER_DAY)
        t = t.filter(t.is_conversion | (t.ts_us >= start))
    prev: dict[str, ir.Value] = {}
    same: ir.BooleanValue = ibis.literal(True)
    for j in range(1, n_lags + 1):
        lagged = t[f"_ts{j}"]
        same = same & (lagged >= 0).fill_null(False)
        ok = same & (lagged >= start) if start is not None else same
        prev[f"prev{j}"] = ibis.ifelse(ok, t[f"_code{j}"], no_int)
    t = t.mutate(
        is_touch=~t.is_conversion,
        next=ibis.ifelse(t.is_conversion | (t._next < 0).fill_null(True), no_int, t._next),
        **prev,
    )
    if collapse_repeats:
        t = t.filter(t.is_conversion | t.prev1.isnull() | (t.prev1 != t.code))
    return t.select(
        "customer_id",
        "journey_no",
        "step_index",
        "ts_us",
        "is_touch",
        "code",
        "revenue",
        "converted",
        "end_us",
        *(f"prev{j}" for j in range(1, n_lags + 1)),
        "next",
    )


def paths_expr(
    journey: ir.Table,
    names: Sequence[str],
    *,
    level: Level = "channel",
    lookback_days: float | None = 30,
    collapse_repeats: bool = False,
    touch: Touch = "event",
) -> ir.Table:
    """Aggregated paths: ``path`` (an array of the touches' codes in ``names``),
    ``total_conversions``, ``total_conversion_value`` (DECIMAL), ``total_null``. Journeys
    without touches have no path and are not in it (see ``attribution_paths`` for names)."""
    import ibis

    r = journey_rows_expr(
        journey,
        names,
        level=level,
        lookback_days=lookback_days,
        collapse_repeats=collapse_repeats,
        touch=touch,
    )
    # portable ordered aggregation (collect, sort, map; engine.md §4) on one integer per touch,
    # step_index * 2^16 + code, which sorts like (step_index, code) and is cheaper to sort
    # than a struct; the conversion row of a journey brings its value (collect skips NULLs)
    if len(names) >= _CODE_RADIX:
        raise AttributionError(
            f"{len(names)} distinct touch values; attribution supports up to {_CODE_RADIX - 1}"
        )
    packed = r.step_index * _CODE_RADIX + r.code
    j = r.group_by(["customer_id", "journey_no"]).agg(
        steps=ibis.ifelse(r.is_touch, packed, ibis.null("int64")).collect(),
        touches=r.is_touch.cast("int64").sum(),
        converted=r.converted.max(),
        value=ibis.ifelse(r.is_touch, ibis.null(r.revenue.type()), r.revenue).max(),
    )
    j = j.filter(j.touches > 0)
    j = j.mutate(path=j.steps.sort().map(lambda x: x % _CODE_RADIX))
    zero, one = ibis.literal(0, "int64"), ibis.literal(1, "int64")
    return j.group_by("path").agg(
        total_conversions=j.converted.sum().cast("int64"),
        total_conversion_value=ibis.ifelse(j.converted == 1, j.value.fill_null(0), None).sum(),
        total_null=ibis.ifelse(j.converted == 1, zero, one).sum(),
    )


def transitions_expr(
    journey: ir.Table,
    names: Sequence[str],
    *,
    order: int = 1,
    level: Level = "channel",
    lookback_days: float | None = 30,
    collapse_repeats: bool = False,
    touch: Touch = "event",
) -> ir.Table:
    """Counts ``n`` of each (``s1`` .. ``s{order}`` -> ``next``) transition, as codes of
    ``names``: ``s{order}`` is the touch, ``s1``.. the ones before it (NULL before the
    journey's start), ``next`` the following touch (NULL at the journey's end, which is a
    conversion when ``converted``); ``starts`` counts the rows, which for ``is_first`` rows
    are the journeys starting in that state. One more row, with ``is_conversion`` true and
    NULL states, counts the attributed conversions (journeys with a touch) in ``n`` and sums
    their value in ``value``."""
    import ibis

    check_order(order)
    scope: dict[str, Any] = {"level": level, "lookback_days": lookback_days, "touch": touch}
    no_int = ibis.null("int64")
    if collapse_repeats and order > 1:
        # states are runs of the collapsed sequence: number the kept rows again
        t = journey_rows_expr(journey, names, collapse_repeats=True, **scope)
        w = ibis.window(group_by=[t.customer_id, t.journey_no], order_by=t.step_index)
        code = ibis.ifelse(t.is_touch, t.code, no_int)
        cols: dict[str, ir.Value] = {f"prev{j}": code.lag(j).over(w) for j in range(1, order)}
        t = t.mutate(**cols, next=ibis.ifelse(t.is_touch, code.lead().over(w), no_int))
    else:
        t = journey_rows_expr(journey, names, context=max(order - 1, 1), **scope)
    # order 1: collapsing runs removes exactly the self-transitions (but a run's first row
    # still starts the journey: it is counted in ``starts``)
    self_loop = (t.next == t.code).fill_null(False) if collapse_repeats and order == 1 else None
    # an attributed conversion is one whose journey has a touch before it
    t = t.filter(t.is_touch | t.prev1.notnull())
    states = {
        f"s{j}": ibis.ifelse(t.is_touch, t[f"prev{order - j}"], no_int) for j in range(1, order)
    }
    x = t.select(
        counted=ibis.literal(1, "int64")
        if self_loop is None
        else ibis.ifelse(self_loop, ibis.literal(0, "int64"), ibis.literal(1, "int64")),
        is_conversion=~t.is_touch,
        converted=t.converted,
        value=ibis.ifelse(t.is_touch, ibis.null(t.revenue.type()), t.revenue.fill_null(0)),
        next=t.next,
        is_first=t.is_touch & t.prev1.isnull(),
        **states,
        **{f"s{order}": ibis.ifelse(t.is_touch, t.code, no_int)},
    )
    keys = [
        *(f"s{j}" for j in range(1, order + 1)),
        "next",
        "is_first",
        "converted",
        "is_conversion",
    ]
    return x.group_by(keys).agg(n=x.counted.sum(), starts=x.count(), value=x.value.sum())


def time_decay_expr(
    journey: ir.Table,
    names: Sequence[str],
    *,
    half_life_days: float = 7.0,
    level: Level = "channel",
    lookback_days: float | None = 30,
    collapse_repeats: bool = False,
    touch: Touch = "event",
) -> ir.Table:
    """Per touch ``code``: time-decay ``conversions`` and ``value`` (DECIMAL).

    A touch's weight is 0.5 ** (age / half-life), age = conversion time - touch time; each
    journey's weights are normalised to 1 and multiplied by its conversion (and value)."""
    import ibis

    if not half_life_days > 0:
        raise AttributionError(f"half_life_days must be > 0, got {half_life_days!r}")
    r = journey_rows_expr(
        journey,
        names,
        level=level,
        # the age needs the conversion time, which only the lookback variant computes
        lookback_days=lookback_days if lookback_days is not None else _NO_LOOKBACK_DAYS,
        collapse_repeats=collapse_repeats,
        touch=touch,
    )
    r = r.filter(r.converted == 1)
    age = (r.end_us - r.ts_us).cast("float64") / (half_life_days * _US_PER_DAY)
    r = r.mutate(
        weight=ibis.ifelse(r.is_touch, ibis.literal(0.5, "float64") ** age, 0.0),
        code=ibis.ifelse(r.is_touch, r.code, ibis.null("int64")),
        value=ibis.ifelse(r.is_touch, ibis.null(r.revenue.type()), r.revenue.fill_null(0)),
    )
    # per (journey, touch) first: the per-journey sums run on that much smaller table
    g = r.group_by(["customer_id", "journey_no", "code"]).agg(
        weight=r.weight.sum(), value=r.value.max()
    )
    jw = ibis.window(group_by=[g.customer_id, g.journey_no])
    g = g.mutate(total=g.weight.sum().over(jw), journey_value=g.value.max().over(jw))
    g = g.filter(g.code.notnull() & (g.total > 0))
    # each (journey, touch) credit is a double; summing doubles depends on the row order, so
    # they are summed as DECIMALs (exact and order-free) after rounding to 1e-18 (value 1e-9)
    credit = g.weight / g.total
    value = credit * g.journey_value.fill_null(0).cast("float64")
    return g.group_by("code").agg(
        conversions=credit.cast("decimal(38, 18)").sum(),
        value=value.cast("decimal(38, 9)").sum(),
    )


def conversions_expr(journey: ir.Table) -> ir.Table:
    """One row: all conversions and their value."""
    c = journey.filter(journey.is_conversion)
    return c.aggregate(conversions=c.count(), value=c.revenue.sum())


def decimal_units(
    col: pa.ChunkedArray | pa.Array | Sequence[Any], scale: int | None
) -> tuple[np.ndarray[Any, np.dtype[np.int64]], int]:
    """Values as integers in units of 10**-scale (scale: the most decimals seen, >= 2)."""
    raw: list[Decimal] = []
    values = col.to_pylist() if isinstance(col, (pa.ChunkedArray, pa.Array)) else col
    for i, v in enumerate(values):
        if v is None or v == "":
            raw.append(Decimal(0))
            continue
        try:
            raw.append(v if isinstance(v, Decimal) else Decimal(str(v).strip()))
        except InvalidOperation:
            raise AttributionError(
                f"total_conversion_value row {i + 1}: {v!r} is not a number"
            ) from None
    if scale is None:
        exps = [d.as_tuple().exponent for d in raw if d.is_finite()]
        scale = min(max([2, *(-e for e in exps if isinstance(e, int))]), 9)
    units = np.array([int(d.scaleb(scale).to_integral_value()) for d in raw], dtype=np.int64)
    return units, scale


def paths_from_codes(table: pa.Table, names: Sequence[str]) -> PathSet:
    """A ``PathSet`` from the rows of ``paths_expr`` (paths as arrays of codes)."""
    lists = table.column("path").combine_chunks()
    codes = np.asarray(
        pc.cast(pc.list_flatten(lists), pa.int64()).to_numpy(zero_copy_only=False), np.int64
    )
    lengths = np.asarray(pc.list_value_length(lists).to_numpy(zero_copy_only=False), np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    value, scale = decimal_units(table.column("total_conversion_value"), 2)
    return PathSet(
        tuple(names),
        offsets,
        codes,
        np.asarray(table.column("total_conversions").to_numpy(zero_copy_only=False), np.int64),
        value,
        np.asarray(table.column("total_null").to_numpy(zero_copy_only=False), np.int64),
        scale,
    )


def transitions_from_arrow(
    table: pa.Table, names: Sequence[str], order: int
) -> tuple[Transitions, JourneyTotals]:
    """``Transitions`` and the attributed journeys' totals from ``transitions_expr`` rows."""
    is_conv = np.asarray(table.column("is_conversion").to_numpy(zero_copy_only=False), bool)
    totals_rows = table.filter(pa.array(is_conv))
    table = table.filter(pa.array(~is_conv))

    def codes(name: str) -> np.ndarray[Any, np.dtype[np.int64]]:
        col = pc.fill_null(table.column(name), EMPTY)
        return np.asarray(col.to_numpy(zero_copy_only=False), np.int64)

    state = np.stack([codes(f"s{j}") for j in range(1, order + 1)], axis=1).reshape(-1, order)
    nxt = codes("next")
    converted = np.asarray(table.column("converted").to_numpy(zero_copy_only=False), np.int64)
    first = np.asarray(table.column("is_first").to_numpy(zero_copy_only=False), dtype=bool)
    n = np.asarray(table.column("n").to_numpy(zero_copy_only=False), np.int64)
    starts = np.asarray(table.column("starts").to_numpy(zero_copy_only=False), np.int64)
    end = nxt == EMPTY
    nxt = np.where(end, np.where(converted == 1, CONVERSION, NULL), nxt)
    start_state = np.full((int(first.sum()), order), EMPTY, dtype=np.int64)
    trans = Transitions(
        tuple(names),
        order,
        np.concatenate([state, start_state]),
        np.concatenate([nxt, state[first, order - 1]]),
        np.concatenate([n, starts[first]]),
    )
    value = decimal_units(totals_rows.column("value"), 2)[0]
    conversions = int(pc.sum(totals_rows.column("n")).as_py() or 0)
    nulls = int(n[end & (converted == 0)].sum())
    return trans, JourneyTotals(conversions, int(value.sum()), nulls, 0)


@dataclass(frozen=True)
class JourneyTotals:
    """The attributed journeys: conversions, value units, nulls, distinct paths."""

    conversions: int
    value_units: int
    nulls: int
    distinct_paths: int
    scale: int = 2


def check_level(level: str) -> None:
    if level not in get_args(Level):
        raise AttributionError(f"unknown level {level!r}; allowed: {', '.join(get_args(Level))}")


def check_order(order: int) -> None:
    if not isinstance(order, int) or not 1 <= order <= 4:
        raise AttributionError(f"markov_order must be 1, 2, 3 or 4, got {order!r}")
