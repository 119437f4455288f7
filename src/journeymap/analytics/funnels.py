"""Ordered funnels over the journey table, the customers who dropped off, and touchpoint reach.

A funnel is a list of steps: values of one level of the journey table (``phase``,
``touchpoint``, ``event`` or ``channel``). The *unit* walking through it is a customer
(``per="customer"``) or a session (``per="session"``: ``(customer_id, session_index)``); the
counts called ``customers`` below are sessions then.

**Loose order** (``order="loose"``, the default): other events may happen between steps. Each
unit is walked greedily in ``(ts, event_id)`` order (the journey table's ``step_index``): step
k is the unit's earliest step-k event after the event that matched the previous step. For a
fixed start this greedy match is exact.

* ``skips=True`` (the phase funnel's default): a unit that never shows step k keeps going
  from where it was, so someone who goes from awareness straight to purchase counts in both;
  ``entered`` is every unit with any step.
* ``skips=False`` (a classic conversion funnel): a unit stops at the first missing step;
  ``entered`` is every unit with step 1.

**Strict order** (``order="strict"``, needs ``skips=False``): step k must be the very next
event *at the funnel's level* after step k-1 (events whose value at the level is NULL, such as
events of no touchpoint in a touchpoint funnel, do not count; at ``level="event"`` it is the
very next event). Every step-1 event may start an attempt (a repeated first step starts
over); the unit's attempt that gets furthest, the earliest of equals, is the one reported.

``window_seconds`` limits the funnel to events within that time after the unit's first
matched step (the *anchor*). ``exclude`` lists values of the same level that break the funnel:
when an exclusion event lies strictly between the events matched for step k-1 and step k, the
unit does not reach step k nor any later step (with ``skips=True`` "step k-1" is the last step
matched before k). In strict order no other event of the level can lie between two steps, so
exclusions are implied there.

``breakdown`` splits every count by the unit's value at its anchor event (its first matched
step): any journey column (``device``, ``channel``, ``campaign``, ...), ``"cohort"`` (the
anchor's month, UTC, ``YYYY-MM``) or ``"persona"`` (from a ``customer_id, persona`` table).
The overall funnel is computed in the same pass. Time to convert is the time from the anchor
to the last step, for the units that reach it: quartiles, the 90th percentile and a histogram.

Times are integer microseconds (``ts_us``) in the engine, reported as seconds.

How it runs (and why 12 steps cost little more than 4): one scan collects, per unit, the
positions and times of each step value's events into arrays (one hash aggregation); the greedy
chain then runs as array filters over those small per-unit arrays, one projection per step; one
more aggregation gives every count, median and histogram. The chain of one join and one
group-by per step that this replaced grew with the number of steps (5M events, 4 steps then
the same 4 repeated to 12: 0.37 s → 1.40 s; now 0.28 s → 0.41 s), and on Spark each of those
steps is a shuffle. Strict order uses one ordered window (``lead`` by 1..n-1) instead. Each
intermediate table is consumed once, so Ibis never inlines a sub-query twice
(architecture.md, "Funnels").
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.compute as pc

from journeymap.analytics.engine import to_arrow
from journeymap.analytics.results import TableResult
from journeymap.errors import JourneymapError

StepLevel = Literal["phase", "touchpoint", "event", "channel"]
FunnelOrder = Literal["loose", "strict"]
FunnelUnit = Literal["customer", "session"]
LEVELS: tuple[StepLevel, ...] = ("phase", "touchpoint", "event", "channel")
ORDERS: tuple[FunnelOrder, ...] = ("loose", "strict")
UNITS: tuple[FunnelUnit, ...] = ("customer", "session")
#: Breakdowns that are not journey columns.
SPECIAL_BREAKDOWNS = ("cohort", "persona")
EXIT = "(exit)"
NO_TOUCHPOINT = "(none)"
#: How a NULL breakdown value is named in records.
NULL_SEGMENT = "(none)"

_US = 1_000_000
#: A position no event has: the unit left the funnel (an exclusion step, or a missing step).
_DEAD = 2**62
#: Time-to-convert histogram: upper bounds in seconds (the last bucket is open).
TTC_BOUNDS = (60, 300, 900, 3600, 6 * 3600, 86400, 3 * 86400, 7 * 86400, 14 * 86400, 30 * 86400)
_TTC_LABELS = ("≤1m", "1–5m", "5–15m", "15m–1h", "1–6h", "6–24h", "1–3d", "3–7d", "7–14d",
               "14–30d", ">30d")  # fmt: skip
TTC_QUANTILES = (0.25, 0.5, 0.75, 0.9)


class FunnelError(JourneymapError, ValueError):
    """Invalid funnel arguments."""


_names = itertools.count()


def _stage(table: ir.Table, tag: str) -> ir.Table:
    """``table`` as a named sub-query (a CTE).

    A barrier: Ibis does not merge it into the next projection, so a column computed here is
    computed once however often later expressions use it. And cheap to compile: the SQL
    compiler deep-copies nested sub-queries at every level (quadratic in the depth: a 12-step
    chain of ``.view()`` sub-queries took 1.5-2 s to compile), while CTEs stay flat.
    """
    return table.alias(f"_jm_{tag}_{next(_names)}")


# -- results ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class FunnelStep:
    index: int
    step: str
    label: str
    #: customers (sessions for per="session") who reached this step (in order)
    customers: int
    #: customers who reached this step and the previous one
    from_previous: int
    #: customers who reached this step without the previous one (skipped it)
    skipped_previous: int
    #: from_previous / customers of the previous step (None for the first step)
    conversion_from_previous: float | None
    #: customers / entered
    conversion_from_start: float | None
    #: customers of the previous step who did not reach this one
    dropped: int
    #: median seconds from the previous step (customers reaching both)
    median_seconds_from_previous: float | None
    #: median seconds from the customer's first matched step
    median_seconds_from_start: float | None


@dataclass(frozen=True)
class TimeBucket:
    label: str
    #: the bucket holds times t with lower < t <= upper (the first one includes 0)
    lower_seconds: int
    #: None for the last, open bucket
    upper_seconds: int | None
    customers: int


@dataclass(frozen=True)
class TimeToConvert:
    """Time from the first matched step to the last step, for the units that reached it."""

    customers: int
    p25_seconds: float | None
    p50_seconds: float | None
    p75_seconds: float | None
    p90_seconds: float | None
    buckets: list[TimeBucket]


@dataclass(frozen=True)
class FunnelSegment:
    """The funnel of the units with one breakdown value (None: the value was NULL)."""

    value: str | None
    entered: int
    steps: list[FunnelStep]
    time_to_convert: TimeToConvert


@dataclass(frozen=True)
class FunnelResult(TableResult):
    level: StepLevel
    steps: list[FunnelStep]
    entered: int
    skips: bool
    window_seconds: int | None
    order: FunnelOrder = "loose"
    per: FunnelUnit = "customer"
    exclude: tuple[str, ...] = ()
    time_to_convert: TimeToConvert | None = None
    #: what ``segments`` are split by (None: no breakdown)
    breakdown: str | None = None
    segments: list[FunnelSegment] = field(default_factory=list)

    def to_records(self) -> list[dict[str, Any]]:
        if self.breakdown is None:
            return [asdict(s) for s in self.steps]
        rows = [{"segment": "(all)", **asdict(s)} for s in self.steps]
        for seg in self.segments:
            name = NULL_SEGMENT if seg.value is None else seg.value
            rows += [{"segment": name, **asdict(s)} for s in seg.steps]
        return rows

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "level": self.level,
            "per": self.per,
            "order": self.order,
            "entered": self.entered,
            "skips": self.skips,
            "window_seconds": self.window_seconds,
            "exclude": list(self.exclude),
            "steps": [asdict(s) for s in self.steps],
            "time_to_convert": asdict(self.time_to_convert) if self.time_to_convert else None,
        }
        if self.breakdown is not None:
            out["breakdown"] = self.breakdown
            out["segments"] = [asdict(s) for s in self.segments]
        return out


@dataclass(frozen=True)
class NextStep:
    """What dropped-off units did next: a value and how many units did it."""

    value: str
    customers: int
    share: float


@dataclass(frozen=True)
class FunnelDropoffs(TableResult):
    """The units that reached step ``at_step - 1`` but not ``at_step``, and what they did next.

    ``customers`` has one row per unit: ``customer_id`` (and ``session_index`` for session
    funnels), ``previous_ts_us`` (their step ``at_step - 1`` event), ``next_event`` and
    ``next_touchpoint`` (the event right after it, ``"(exit)"`` when there is none — for
    session funnels, none in the same session; ``"(none)"``: an event of no touchpoint) and
    ``seconds_to_next``; sorted by ``customer_id``.
    """

    level: StepLevel
    per: FunnelUnit
    at_step: int
    step: str
    previous_step: str
    dropped: int
    next_events: list[NextStep]
    next_touchpoints: list[NextStep]
    customers: pa.Table

    def to_records(self) -> list[dict[str, Any]]:
        return list(self.customers.to_pylist())

    def to_pandas(self) -> Any:
        return self.customers.to_pandas()

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "per": self.per,
            "at_step": self.at_step,
            "step": self.step,
            "previous_step": self.previous_step,
            "dropped": self.dropped,
            "next_events": [asdict(n) for n in self.next_events],
            "next_touchpoints": [asdict(n) for n in self.next_touchpoints],
            "customers": self.to_records(),
        }


# -- expressions -----------------------------------------------------------------------------
def _unit_keys(per: str) -> list[str]:
    return ["customer_id"] if per == "customer" else ["customer_id", "session_index"]


def _check(
    journey: ir.Table,
    steps: Sequence[str],
    level: str,
    skips: bool,
    window_seconds: int | None,
    order: str,
    exclude: Sequence[str],
    per: str,
    breakdown: str | None,
    personas: ir.Table | None,
) -> None:
    if not steps:
        raise FunnelError("a funnel needs at least one step, e.g. steps=['awareness', 'purchase']")
    if level not in LEVELS:
        raise FunnelError(f"unknown funnel level {level!r}; allowed: {', '.join(LEVELS)}")
    if order not in ORDERS:
        raise FunnelError(f"unknown funnel order {order!r}; allowed: {', '.join(ORDERS)}")
    if per not in UNITS:
        raise FunnelError(f"unknown funnel unit per={per!r}; allowed: {', '.join(UNITS)}")
    if order == "strict" and skips:
        raise FunnelError(
            "a strict-order funnel cannot skip steps: pass skips=False (CLI: --strict)"
        )
    if window_seconds is not None and window_seconds < 0:
        raise FunnelError(f"window_seconds must be >= 0 (got {window_seconds})")
    both = sorted(set(steps) & set(exclude))
    if both:
        raise FunnelError(
            f"{', '.join(map(repr, both))} cannot be both a step and an exclusion step"
        )
    if breakdown is not None:
        allowed = [*SPECIAL_BREAKDOWNS, *journey.columns]
        if breakdown not in allowed:
            raise FunnelError(f"unknown breakdown {breakdown!r}; allowed: {', '.join(allowed)}")
        if breakdown == "persona":
            if personas is None:
                raise FunnelError(
                    "breakdown='persona' needs personas=<a table with columns customer_id, "
                    "persona; one row per customer>"
                )
            missing = {"customer_id", "persona"} - set(personas.columns)
            if missing:
                raise FunnelError(
                    f"the personas table lacks column(s) {', '.join(sorted(missing))}; it has "
                    f"{', '.join(personas.columns)}"
                )


def _breakdown_value(journey: ir.Table, breakdown: str | None) -> ir.StringValue | None:
    """The per-event value a breakdown reads at the anchor (persona is joined later)."""
    if breakdown is None or breakdown == "persona":
        return None
    if breakdown == "cohort":
        return journey.ts.strftime("%Y-%m")
    col = journey[breakdown]
    return col if col.type().is_string() else col.cast("string")


def funnel_units_expr(
    journey: ir.Table,
    steps: Sequence[str],
    *,
    level: StepLevel = "phase",
    skips: bool = True,
    window_seconds: int | None = None,
    order: FunnelOrder = "loose",
    exclude: Sequence[str] = (),
    per: FunnelUnit = "customer",
    breakdown: str | None = None,
    personas: ir.Table | None = None,
) -> ir.Table:
    """One row per unit that entered the funnel: ``customer_id`` (``session_index``),
    ``anchor_us`` (the first matched step's time), ``seq_k`` / ``ts_k`` (the ``step_index``
    and ``ts_us`` of the event matched for step k, NULL if not reached) and, with a
    breakdown, ``breakdown`` (the unit's value at the anchor)."""
    return _units(
        journey, steps, level, skips, window_seconds, order, exclude, per, breakdown, personas
    )


def _units(
    journey: ir.Table,
    steps: Sequence[str],
    level: str,
    skips: bool,
    window_seconds: int | None,
    order: str,
    exclude: Sequence[str],
    per: str,
    breakdown: str | None,
    personas: ir.Table | None,
    *,
    positions: bool = True,
) -> ir.Table:
    """``funnel_units_expr``; without ``positions`` a strict funnel's ``seq_k`` only tells
    whether step k was reached (the counts need no more, and it saves a window column)."""
    _check(journey, steps, level, skips, window_seconds, order, exclude, per, breakdown, personas)
    bd = _breakdown_value(journey, breakdown)
    if order == "strict":
        units = _strict_units(journey, steps, level, window_seconds, per, bd, positions)
    else:
        units = _loose_units(journey, steps, level, skips, window_seconds, exclude, per, bd)
    if breakdown == "persona":
        assert personas is not None
        p = personas.select(_p_customer=personas.customer_id, _persona=personas.persona)
        units = units.left_join(p, units.customer_id == p._p_customer)
        units = units.mutate(breakdown=units._persona.cast("string")).drop(
            "_p_customer", "_persona"
        )
    return units


def _loose_units(
    journey: ir.Table,
    steps: Sequence[str],
    level: str,
    skips: bool,
    window_seconds: int | None,
    exclude: Sequence[str],
    per: str,
    bd: ir.StringValue | None,
) -> ir.Table:
    unit = _unit_keys(per)
    key = journey[level]
    values = list(dict.fromkeys(steps))
    extra = {"bd": bd} if bd is not None else {}
    s = journey.filter(key.isin([*values, *exclude])).select(
        *unit, "step_index", "ts_us", key=key, **extra
    )
    arr = {v: f"a_{i}" for i, v in enumerate(values)}
    # where the greedy walk can start: any step (skips) or step 1
    starts = values if skips else [steps[0]]
    last_use = {v: max(i for i, x in enumerate(steps) if x == v) for v in values}
    ev = _Events.of(journey)
    # A value used as step 1 only is read once, as its first event: a min instead of an array
    # (step 1 is often the most frequent value: 5M events, product view first, 4 steps: the
    # arrays held 1.8M events, now 0.3M).
    aggs: dict[str, ir.Value] = {}
    for v in values:
        aggs.update(ev.aggregate(s, arr[v], s.key == v, first_only=last_use[v] == 0))
    aggs["n_start"] = s.count(where=s.key.isin(starts))
    if exclude:
        aggs["x"] = s.step_index.collect(where=s.key.isin(list(exclude)))
    if bd is not None:
        # the anchor is the first event of the first step (in step order) the unit has
        for i, v in enumerate(starts):
            aggs[f"n_{i}"] = s.count(where=s.key == v)
            aggs[f"bd_{i}"] = s.bd.argmin(s.step_index, where=s.key == v)
    st = s.group_by(unit).agg(**aggs)
    st = st.filter(st.n_start > 0)
    if bd is not None:
        cases = [(st[f"n_{i}"] > 0, st[f"bd_{i}"]) for i in range(len(starts))]
        st = st.mutate(breakdown=ibis.cases(*cases, else_=ibis.null("string")))
        st = st.drop(*(f"{p}_{i}" for i in range(len(starts)) for p in ("n", "bd")))
    no_int = ibis.null("int64")
    a0 = arr[steps[0]]
    first_only = last_use[steps[0]] == 0
    m0, used = ev.first(st, a0, first_only=first_only)
    q0 = {"q": ibis.literal(-1, "int64")} if ev.packed else {}  # before every event
    st = st.mutate(p=ibis.literal(0, "int64"), **q0, anchor_us=no_int, m=m0)
    st = st.drop("n_start", *used)
    window_us = None if window_seconds is None else window_seconds * _US
    # One stage (CTE) per step: from the previous position ``p`` (``q``: the same event as
    # the arrays hold it) and the step's candidate ``m`` (the earliest step event after it)
    # it decides the step and finds the next step's candidate. Every value is a column of the
    # stage below, so no expression is inlined twice. (Carrying ``seq_k``/``ts_k`` as plain
    # columns is cheaper to run than appending them to one array column, and the stages
    # compile in linear time.)
    for k in range(1, len(steps) + 1):
        st = _stage(st, "funnel")
        m_s, m_t = ev.position(st.m), ev.time(st.m)
        ok = m_s.notnull()
        if window_us is not None:
            ok = ok & (st.anchor_us.isnull() | (m_t <= st.anchor_us + window_us))
        excluded: ir.BooleanValue = ibis.literal(False)
        if exclude and k > 1:
            # the first exclusion event after the previous step comes before this step
            first_x = st.x.filter(_greater_than(st.p)).mins()
            excluded = (ok & (st.p > 0) & (first_x < m_s)).fill_null(False)
        hit = ok & ~excluded
        dead = ibis.literal(_DEAD, "int64")
        if skips:
            p_next = ibis.cases((excluded, dead), (hit, m_s), else_=st.p)
        else:
            p_next = ibis.ifelse(hit, m_s, dead)
        p_next = p_next.cast("int64")
        cols: dict[str, ir.Value] = {
            f"seq_{k}": ibis.ifelse(hit, m_s, no_int),
            f"ts_{k}": ibis.ifelse(hit, m_t, no_int),
            "p": p_next,
            "anchor_us": ibis.coalesce(st.anchor_us, ibis.ifelse(hit, m_t, no_int)),
        }
        q_next = None
        if ev.packed:  # the same position as the arrays hold it (_DEAD is above them all)
            if skips:
                q_next = ibis.cases((excluded, dead), (hit, st.m), else_=st.q)
            else:
                q_next = ibis.ifelse(hit, st.m, dead)
            cols["q"] = q_next.cast("int64")
        done = [arr[v] for v in values if last_use[v] == k - 1 and k > 1]
        if k < len(steps) and not exclude:
            cols["m"] = ev.earliest_after(st[arr[steps[k]]], p_next, q_next)
            st = st.mutate(**cols).drop(*done)
        else:
            st = st.mutate(**cols).drop("m", *done)
            if k < len(steps):
                # with exclusions ``p_next`` holds a lambda: give it its own stage rather
                # than nesting it in the next one
                st = _stage(st, "funnel")
                q = st.q if ev.packed else None
                st = st.mutate(m=ev.earliest_after(st[arr[steps[k]]], st.p, q))
    keep = [*unit, *(["breakdown"] if bd is not None else []), "anchor_us"]
    return st.select(*keep, *(c for k in range(1, len(steps) + 1) for c in (f"seq_{k}", f"ts_{k}")))


@dataclass(frozen=True)
class _Events:
    """How the loose funnel holds a unit's step events: as ``{s, t}`` structs (``step_index``,
    ``ts_us``) or, where the data's range allows, packed into one integer,
    ``(ts_us - t0) << bits | step_index``.

    Packed arrays are half the aggregation of struct arrays (5M events, 12 steps: 0.18 s
    instead of 0.38 s) and their filters compare integers. Within a unit the packed values
    are ordered as the step indexes are (``step_index`` follows ``ts_us``), so the earliest
    event after a position is the smallest packed value above that event's own packed value.
    Bit shifts and masks are exact on every engine (an integer division is not on Spark).
    """

    t0: int | None = None  # None: structs
    bits: int = 0

    @classmethod
    def of(cls, journey: ir.Table) -> _Events:
        """Packed where the journey's time range and step indexes fit (the whole table's
        bounds: DuckDB answers them from the Parquet statistics, in ms)."""
        j = journey
        row = to_arrow(
            j.aggregate(t0=j.ts_us.min(), t1=j.ts_us.max(), smax=j.step_index.max())
        ).to_pylist()[0]
        t0, t1, smax = row["t0"], row["t1"], row["smax"]
        if t0 is None or t1 is None or smax is None or smax < 0 or t0 < 0:
            return cls()
        bits = max(int(smax).bit_length(), 1)
        if (int(t1) - int(t0) + 1) >= 2 ** (62 - bits):  # keeps clear of _DEAD (2**62)
            return cls()
        return cls(int(t0), bits)

    @property
    def packed(self) -> bool:
        return self.t0 is not None

    def _value(self, s: ir.Table) -> ir.Value:
        if self.t0 is None:
            return ibis.struct({"s": s.step_index, "t": s.ts_us})
        return ((s.ts_us - self.t0) << self.bits) | s.step_index

    def aggregate(
        self, s: ir.Table, name: str, where: ir.BooleanValue, *, first_only: bool
    ) -> dict[str, Any]:
        """The aggregates that hold the events of ``where`` (a step value) per unit."""
        if first_only:
            if self.packed:
                return {name: self._value(s).min(where=where)}
            return {
                f"{name}_s": s.step_index.min(where=where),
                f"{name}_t": s.ts_us.argmin(s.step_index, where=where),
            }
        return {name: self._value(s).collect(where=where)}

    def first(self, st: ir.Table, name: str, *, first_only: bool) -> tuple[ir.Value, list[str]]:
        """The first candidate ``m`` and the columns it used up."""
        if not first_only:
            return st[name].mins(), []
        if self.packed:
            return st[name], [name]
        return ibis.struct({"s": st[f"{name}_s"], "t": st[f"{name}_t"]}), [
            f"{name}_s",
            f"{name}_t",
        ]

    def position(self, m: ir.Value) -> ir.IntegerValue:
        if self.packed:
            return m & ((1 << self.bits) - 1)
        return m.s

    def time(self, m: ir.Value) -> ir.IntegerValue:
        if self.packed:
            return (m >> self.bits) + self.t0
        return m.t

    def earliest_after(self, events: ir.ArrayValue, p: Any, q: Any) -> ir.Value:
        """The earliest of ``events`` after the event at position ``p`` (packed: ``q``)."""
        if self.packed:
            return events.filter(lambda x: x > q).mins()
        return events.filter(lambda x: x.s > p).mins()


def _greater_than(p: ir.IntegerValue) -> Any:
    return lambda x: x > p


def _strict_units(
    journey: ir.Table,
    steps: Sequence[str],
    level: str,
    window_seconds: int | None,
    per: str,
    bd: ir.StringValue | None,
    positions: bool,
) -> ir.Table:
    unit = _unit_keys(per)
    key = journey[level]
    n = len(steps)
    values = list(dict.fromkeys(steps))
    code_of = {v: i for i, v in enumerate(values, start=1)}
    extra = {"bd": bd} if bd is not None else {}
    # every event of the level takes part (it breaks a run unless it is the next step);
    # step values become small integers, cheaper to carry through the window than text
    rows = journey.filter(key.notnull()).select(
        *unit,
        "step_index",
        "ts_us",
        code=key.cases(*code_of.items(), else_=0).cast("int64"),
        **extra,
    )
    w = ibis.window(group_by=[rows[c] for c in unit], order_by=rows.step_index)
    leads: dict[str, ir.Value] = {}
    for j in range(1, n):
        leads[f"k_{j}"] = rows.code.lead(j).over(w)
        leads[f"t_{j}"] = rows.ts_us.lead(j).over(w)
        if positions:
            leads[f"q_{j}"] = rows.step_index.lead(j).over(w)
    x = rows.mutate(**leads)
    x = x.filter(x.code == code_of[steps[0]])  # every step-1 event starts an attempt
    no_int = ibis.null("int64")
    # the attempt's length: the first following step that does not match (n: none)
    matches = {}
    for j in range(1, n):
        m = x[f"k_{j}"] == code_of[steps[j]]
        if window_seconds is not None:
            m = m & (x[f"t_{j}"] <= x.ts_us + window_seconds * _US)
        matches[f"_m{j}"] = m.fill_null(False)
    x = _stage(x.mutate(**matches), "strict")
    fails = [ibis.ifelse(x[f"_m{j}"], n, j) for j in range(1, n)]
    run = ibis.least(*fails) if len(fails) > 1 else fails[0] if fails else ibis.literal(1)
    x = _stage(x.mutate(_run=run.cast("int64")), "strict")
    # the attempt that gets furthest, then the earliest one (step_index is unique per unit)
    x = x.mutate(_rank=x._run * (2**40) - x.step_index)
    aggs: dict[str, ir.Value] = {
        "anchor_us": x.ts_us.argmax(x._rank),
        "seq_1": x.step_index.argmax(x._rank),
        "ts_1": x.ts_us.argmax(x._rank),
    }
    if bd is not None:
        aggs["breakdown"] = x.bd.argmax(x._rank)
    for j in range(1, n):
        reached = x._run > j
        if positions:
            aggs[f"seq_{j + 1}"] = ibis.ifelse(reached, x[f"q_{j}"], no_int).argmax(x._rank)
        else:
            # reached or not is all the counts need
            aggs[f"seq_{j + 1}"] = ibis.ifelse(reached, x.step_index, no_int).argmax(x._rank)
        aggs[f"ts_{j + 1}"] = ibis.ifelse(reached, x[f"t_{j}"], no_int).argmax(x._rank)
    units = x.group_by(unit).agg(**aggs)
    keep = [*unit, *(["breakdown"] if bd is not None else []), "anchor_us"]
    return units.select(*keep, *(c for k in range(1, n + 1) for c in (f"seq_{k}", f"ts_{k}")))


def funnel_expr(
    journey: ir.Table,
    steps: Sequence[str],
    *,
    level: StepLevel = "phase",
    skips: bool = True,
    window_seconds: int | None = None,
    order: FunnelOrder = "loose",
    exclude: Sequence[str] = (),
    per: FunnelUnit = "customer",
    breakdown: str | None = None,
    personas: ir.Table | None = None,
) -> ir.Table:
    """The funnel's counts: one row (or, with a breakdown, one row per ``segment`` plus the
    overall row, ``is_total``). Columns: ``entered``, per step k ``customers_k``, ``both_k``,
    ``median_us_k``, ``median_start_us_k``; time to convert ``ttc_n``, ``ttc_q25`` ..
    ``ttc_q90`` (microseconds) and the histogram ``ttc_b0`` .. ``ttc_b10``. Portable Ibis
    (runs on DuckDB and PySpark alike)."""
    u = _units(
        journey,
        steps,
        level,
        skips,
        window_seconds,
        order,
        exclude,
        per,
        breakdown,
        personas,
        positions=False,
    )
    if breakdown is None:
        return u.aggregate(**_funnel_aggs(u, len(steps)))
    # the overall funnel and the segments from one pass: every unit counts twice
    u = u.mutate(is_total=ibis.array([True, False]).unnest())
    u = u.mutate(segment=ibis.ifelse(u.is_total, ibis.null("string"), u.breakdown))
    return u.group_by(["is_total", "segment"]).aggregate(**_funnel_aggs(u, len(steps)))


def _funnel_aggs(u: ir.Table, n: int) -> dict[str, ir.Value]:
    aggs: dict[str, ir.Value] = {"entered": u.count()}
    for k in range(1, n + 1):
        ts_k = u[f"ts_{k}"]
        aggs[f"customers_{k}"] = ts_k.count()
        aggs[f"median_start_us_{k}"] = (ts_k - u.anchor_us).median()
        if k > 1:
            both = ts_k.notnull() & u[f"ts_{k - 1}"].notnull()
            aggs[f"both_{k}"] = both.sum()
            delta = ts_k - u[f"ts_{k - 1}"]
            # nulls are ignored by median on every engine; median(where=...) is not portable
            # (Spark wants a constant percentage in percentile())
            aggs[f"median_us_{k}"] = ibis.ifelse(both, delta, ibis.null("int64")).median()
    ttc = u[f"ts_{n}"] - u.anchor_us
    aggs["ttc_n"] = ttc.count()
    for q in TTC_QUANTILES:
        pct = round(q * 100)
        # a float literal breaks ibis.to_sql(dialect="pyspark") until the PySpark backend is
        # loaded (engine.md P11); an integer division folds to the same constant everywhere
        aggs[f"ttc_q{pct}"] = ttc.quantile(ibis.literal(pct) / 100)
    lower = -1
    for i, upper in enumerate((*TTC_BOUNDS, None)):
        cond = ttc > lower * _US
        if upper is not None:
            cond = cond & (ttc <= upper * _US)
            lower = upper
        aggs[f"ttc_b{i}"] = cond.fill_null(False).cast("int64").sum()
    return aggs


def funnel(
    journey: ir.Table,
    steps: Sequence[str],
    *,
    level: StepLevel = "phase",
    skips: bool = True,
    window_seconds: int | None = None,
    labels: Sequence[str] | None = None,
    order: FunnelOrder = "loose",
    exclude: Sequence[str] = (),
    per: FunnelUnit = "customer",
    breakdown: str | None = None,
    personas: ir.Table | None = None,
) -> FunnelResult:
    """Run the funnel and return a typed result (see the module docstring for semantics)."""
    table = to_arrow(
        funnel_expr(
            journey,
            steps,
            level=level,
            skips=skips,
            window_seconds=window_seconds,
            order=order,
            exclude=exclude,
            per=per,
            breakdown=breakdown,
            personas=personas,
        )
    )
    rows = table.to_pylist()
    if breakdown is None:
        total = rows[0]
        segments: list[FunnelSegment] = []
    else:
        total = next((r for r in rows if r["is_total"]), None) or {}
        parts = sorted(
            (r for r in rows if not r["is_total"]),
            key=lambda r: (-int(r["entered"] or 0), r["segment"] is None, r["segment"] or ""),
        )
        segments = [
            FunnelSegment(
                r["segment"],
                int(r["entered"] or 0),
                _steps(r, steps, labels),
                _time_to_convert(r),
            )
            for r in parts
        ]
    return FunnelResult(
        level=level,
        steps=_steps(total, steps, labels),
        entered=int(total.get("entered") or 0),
        skips=skips,
        window_seconds=window_seconds,
        order=order,
        per=per,
        exclude=tuple(exclude),
        time_to_convert=_time_to_convert(total),
        breakdown=breakdown,
        segments=segments,
    )


def _steps(
    row: dict[str, Any], steps: Sequence[str], labels: Sequence[str] | None
) -> list[FunnelStep]:
    entered = int(row.get("entered") or 0)
    out: list[FunnelStep] = []
    for k, name in enumerate(steps, start=1):
        customers = int(row.get(f"customers_{k}") or 0)
        prev_customers = int(row.get(f"customers_{k - 1}") or 0) if k > 1 else None
        both = int(row.get(f"both_{k}") or 0) if k > 1 else customers
        out.append(
            FunnelStep(
                index=k,
                step=name,
                label=labels[k - 1] if labels else name,
                customers=customers,
                from_previous=both,
                skipped_previous=customers - both,
                conversion_from_previous=_ratio(both, prev_customers) if k > 1 else None,
                conversion_from_start=_ratio(customers, entered),
                dropped=(prev_customers - both) if prev_customers is not None else 0,
                median_seconds_from_previous=_seconds(row.get(f"median_us_{k}")),
                median_seconds_from_start=_seconds(row.get(f"median_start_us_{k}")),
            )
        )
    return out


def _time_to_convert(row: dict[str, Any]) -> TimeToConvert:
    buckets = []
    lower = 0
    for i, upper in enumerate((*TTC_BOUNDS, None)):
        buckets.append(TimeBucket(_TTC_LABELS[i], lower, upper, int(row.get(f"ttc_b{i}") or 0)))
        lower = upper if upper is not None else lower
    q = {p: _seconds(row.get(f"ttc_q{round(p * 100)}")) for p in TTC_QUANTILES}
    return TimeToConvert(
        customers=int(row.get("ttc_n") or 0),
        p25_seconds=q[0.25],
        p50_seconds=q[0.5],
        p75_seconds=q[0.75],
        p90_seconds=q[0.9],
        buckets=buckets,
    )


def _ratio(a: int, b: int | None) -> float | None:
    return a / b if b else None


def _seconds(us: Any) -> float | None:
    if us is None or (isinstance(us, float) and math.isnan(us)):
        return None
    return float(us) / _US


# -- drop-offs -------------------------------------------------------------------------------
def funnel_dropoffs_expr(
    journey: ir.Table,
    steps: Sequence[str],
    at_step: int,
    *,
    level: StepLevel = "phase",
    skips: bool = True,
    window_seconds: int | None = None,
    order: FunnelOrder = "loose",
    exclude: Sequence[str] = (),
    per: FunnelUnit = "customer",
) -> ir.Table:
    """One row per unit that reached step ``at_step - 1`` (1-based) but not ``at_step``, with
    the event that followed its step ``at_step - 1`` event (see ``FunnelDropoffs``)."""
    if not 2 <= at_step <= len(steps):
        raise FunnelError(
            f"at_step must name a step after the first: 2..{len(steps)} (got {at_step})"
        )
    u = funnel_units_expr(
        journey,
        steps,
        level=level,
        skips=skips,
        window_seconds=window_seconds,
        order=order,
        exclude=exclude,
        per=per,
    )
    prev_seq, prev_ts = u[f"seq_{at_step - 1}"], u[f"ts_{at_step - 1}"]
    unit = _unit_keys(per)
    d = u.filter(prev_seq.notnull() & u[f"seq_{at_step}"].isnull()).select(
        *unit, _prev_seq=prev_seq, previous_ts_us=prev_ts
    )
    nxt = journey.select(
        _n_customer=journey.customer_id,
        _n_session=journey.session_index,
        _n_seq=journey.step_index,
        _n_ts=journey.ts_us,
        _n_event=journey.event,
        _n_touchpoint=journey.touchpoint,
    )
    preds = [d.customer_id == nxt._n_customer, nxt._n_seq == d._prev_seq + 1]
    if per == "session":
        preds.append(nxt._n_session == d.session_index)
    j = d.left_join(nxt, preds)
    found = j._n_seq.notnull()
    return j.select(
        *unit,
        "previous_ts_us",
        next_event=ibis.ifelse(found, j._n_event, ibis.literal(EXIT)),
        next_touchpoint=ibis.ifelse(
            found, j._n_touchpoint.fill_null(NO_TOUCHPOINT), ibis.literal(EXIT)
        ),
        seconds_to_next=ibis.ifelse(found, j._n_ts - j.previous_ts_us, ibis.null("int64")),
    )


def funnel_dropoffs(
    journey: ir.Table,
    steps: Sequence[str],
    at_step: int,
    *,
    level: StepLevel = "phase",
    skips: bool = True,
    window_seconds: int | None = None,
    order: FunnelOrder = "loose",
    exclude: Sequence[str] = (),
    per: FunnelUnit = "customer",
    top: int = 10,
) -> FunnelDropoffs:
    """Who left the funnel at ``at_step`` (1-based: reached the step before, not this one),
    and the ``top`` next events and touchpoints after their previous step (incl. "(exit)").

    The units are exactly those counted in ``FunnelStep.dropped`` of the same funnel."""
    table = to_arrow(
        funnel_dropoffs_expr(
            journey,
            steps,
            at_step,
            level=level,
            skips=skips,
            window_seconds=window_seconds,
            order=order,
            exclude=exclude,
            per=per,
        )
    )
    table = table.sort_by([(c, "ascending") for c in _unit_keys(per)])
    micros = pc.cast(table["seconds_to_next"], pa.float64())  # microseconds so far
    table = table.set_column(
        table.schema.get_field_index("seconds_to_next"),
        "seconds_to_next",
        pc.divide(micros, float(_US)),
    )
    return FunnelDropoffs(
        level=level,
        per=per,
        at_step=at_step,
        step=steps[at_step - 1],
        previous_step=steps[at_step - 2],
        dropped=table.num_rows,
        next_events=_top_values(table["next_event"], top),
        next_touchpoints=_top_values(table["next_touchpoint"], top),
        customers=table,
    )


def _top_values(column: pa.ChunkedArray, top: int) -> list[NextStep]:
    total = len(column)
    if not total:
        return []
    counts = pc.value_counts(column).to_pylist()
    ranked = sorted(counts, key=lambda c: (-c["counts"], str(c["values"])))
    return [NextStep(str(c["values"]), int(c["counts"]), c["counts"] / total) for c in ranked[:top]]


# -- touchpoint reach ------------------------------------------------------------------------
@dataclass(frozen=True)
class TouchpointReach:
    touchpoint: str
    label: str
    phase: str
    channel: str | None
    customers: int
    events: int
    share_of_customers: float
    converted_customers: int
    conversion_rate: float


@dataclass(frozen=True)
class ReachResult(TableResult):
    customers: int
    touchpoints: list[TouchpointReach]

    def to_records(self) -> list[dict[str, Any]]:
        return [asdict(t) for t in self.touchpoints]

    def to_dict(self) -> dict[str, Any]:
        return {"customers": self.customers, "touchpoints": self.to_records()}


def reach_expr(journey: ir.Table) -> ir.Table:
    """Per touchpoint: customers reached, events, customers of those who converted."""
    converters = (
        journey.filter(journey.is_conversion)
        .select("customer_id")
        .distinct()
        .mutate(converted=ibis.literal(1, "int64"))
    )
    tp = journey.filter(journey.touchpoint.notnull())
    per_customer = tp.group_by(["touchpoint", "customer_id"]).agg(events=tp.count())
    j = per_customer.left_join(converters, "customer_id")
    j = j.drop(*[c for c in j.columns if c.endswith("_right")])
    return j.group_by("touchpoint").agg(
        customers=j.customer_id.count(),
        events=j.events.sum(),
        converted_customers=j.converted.fill_null(0).sum(),
    )


def touchpoint_reach(
    journey: ir.Table,
    touchpoints: Sequence[tuple[str, str, str, str | None]],
) -> ReachResult:
    """Reach per touchpoint, in spec order; ``touchpoints`` is (id, label, phase, channel)."""
    total = int(to_arrow(journey.customer_id.nunique()).as_py() or 0)
    rows = {r["touchpoint"]: r for r in to_arrow(reach_expr(journey)).to_pylist()}
    out = []
    for tp_id, label, phase, channel in touchpoints:
        r = rows.get(tp_id, {})
        customers = int(r.get("customers") or 0)
        converted = int(r.get("converted_customers") or 0)
        out.append(
            TouchpointReach(
                touchpoint=tp_id,
                label=label,
                phase=phase,
                channel=channel,
                customers=customers,
                events=int(r.get("events") or 0),
                share_of_customers=customers / total if total else 0.0,
                converted_customers=converted,
                conversion_rate=converted / customers if customers else 0.0,
            )
        )
    return ReachResult(total, out)
