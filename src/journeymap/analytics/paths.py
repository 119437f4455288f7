"""Paths through the journey: the transition graph, the top paths and step-Sankey data.

**The path of a unit.** A unit is a customer (``per="customer"``) or a session
(``per="session"``: ``(customer_id, session_index)``). Its path at a level (``event``,
``touchpoint``, ``phase`` or ``channel``) is the sequence of its events' values at that level,
in ``(ts, event_id)`` order (the journey table's ``step_index``, which numbers exactly that
order). Events whose value is NULL at the level (an event of no touchpoint, an event without
channel) are skipped. Every path runs from ``(start)`` to one end node:

* ``until="conversion"`` (the default): a unit with a conversion event (``is_conversion``)
  ends at ``(conversion)`` right after its **last** conversion event; what it did afterwards
  is not part of the path. A unit without conversion ends at ``(exit)`` after its last event.
* ``until="end"``: every path runs to the unit's last event and ends at ``(exit)``; conversion
  events are nodes like any other (``(conversion)`` does not appear).

A unit with no event at the level before its end still has a path: ``(start)`` straight to
its end node, so the graph accounts for every unit of the journey table. ``collapse_repeats``
merges consecutive equal values into one node (``a > a > b`` becomes ``a > b``); the time of a
transition is then measured from the last event of one run to the first of the next. The
names ``(start)``, ``(exit)``, ``(conversion)`` and ``(other)`` are reserved.

**Transition graph** (``transitions``): the directly-follows graph of the paths, with the
synthetic nodes. Per edge: ``count`` (transitions), ``customers`` (distinct customers making
it), ``probability`` (its share of the source's outgoing transitions) and the median time of
the transition (between the two events; None on edges from ``(start)`` or into an end).
Every inner node's incoming count equals its outgoing count, and the ``(start)`` edges sum to
the number of units.

**Top paths** (``top_paths``): the most frequent (collapsed) paths that end at
``(conversion)`` or at ``(exit)``, with units, share and conversion revenue; paths longer than
``max_length`` keep their last ``max_length`` nodes (the ones closest to the end) after a
``…`` node. An ``other`` row holds the rest, so the rows add up to every unit ending there.

**Step Sankey** (``step_sankey``): column k holds the k-th node of every path that is still
going (k = 1..``steps``): the ``top_n`` values of that column, ``(other)`` for the rest, and
the end nodes of the paths that ended right before it (a path of m nodes puts its end node in
column m + 1). With ``anchor``, paths start at the unit's first event with that value (units
without it are left out). Flows connect column k to column k + 1. What reconciles (and is
tested):

1. every column's nodes add up to the units still going there: column 1 holds every unit,
   and column k + 1 holds exactly the units on the non-end nodes of column k;
2. the flows out of each non-end node of column k add up to the node's units, so the flows
   out of column k add up to column k + 1's total;
3. with ``until="end"``, ``per="customer"`` and no anchor, the non-end nodes of column 1 add
   up to the ``entered`` of ``funnel(level=..., steps=<every value of the level>,
   skips=True)`` (the customers with any event at the level), and the end nodes of column 1
   are the customers with none;
4. with ``anchor=a`` and ``until="end"``, column 1 is the node ``a`` with exactly the
   ``entered`` of ``funnel([a, ...], level=..., skips=False)``;
5. with ``steps`` larger than the longest path, the end nodes of all columns count every
   unit once, and the ``(conversion)`` nodes count the units that converted.

How it runs: one aggregation per unit (its last conversion, first event at the level, anchor,
revenue) and one ordered window over the unit's events at the level (two for collapsed
Sankey/paths: the run starts, then their positions); everything is aggregated in the engine
and only edges, nodes or paths come back. Portable Ibis (DuckDB and PySpark agree exactly).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

import ibis
import ibis.expr.types as ir

from journeymap.analytics.engine import to_arrow
from journeymap.analytics.results import TableResult
from journeymap.errors import JourneymapError

if TYPE_CHECKING:
    import pandas as pd

PathLevel = Literal["event", "touchpoint", "phase", "channel"]
PathUnit = Literal["customer", "session"]
Until = Literal["conversion", "end"]
LEVELS: tuple[PathLevel, ...] = ("event", "touchpoint", "phase", "channel")
UNITS: tuple[PathUnit, ...] = ("customer", "session")
UNTILS: tuple[Until, ...] = ("conversion", "end")

START = "(start)"
EXIT = "(exit)"
CONVERSION = "(conversion)"
OTHER = "(other)"
ELLIPSIS = "…"
END_NODES = (EXIT, CONVERSION)
PATH_SEPARATOR = " > "
#: joins nodes inside the engine; no value contains it, so paths split back exactly
_JOIN = "\x1f"
_US = 1_000_000


class PathError(JourneymapError, ValueError):
    """Invalid path-analysis arguments."""


# -- results ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class TransitionEdge:
    source: str
    target: str
    #: transitions from source to target
    count: int
    #: distinct customers who made the transition
    customers: int
    #: count / all transitions out of source
    probability: float
    #: median seconds between the two events (None for (start) and end edges, and when the
    #: graph was built with ``times=False``)
    median_seconds: float | None


@dataclass(frozen=True)
class TransitionNode:
    node: str
    #: times paths pass through the node (for (start): the number of paths)
    count: int


@dataclass(frozen=True)
class TransitionGraph(TableResult):
    level: PathLevel
    per: PathUnit
    collapse_repeats: bool
    until: Until
    #: paths (units): the transitions out of (start)
    units: int
    nodes: list[TransitionNode]
    edges: list[TransitionEdge]

    def to_records(self) -> list[dict[str, Any]]:
        return [asdict(e) for e in self.edges]

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "per": self.per,
            "collapse_repeats": self.collapse_repeats,
            "until": self.until,
            "units": self.units,
            "nodes": [asdict(n) for n in self.nodes],
            "edges": self.to_records(),
        }

    def matrix(
        self, weight: Literal["count", "probability", "customers"] = "count"
    ) -> pd.DataFrame:
        """The transition matrix: sources as rows, targets as columns (0 where no edge)."""
        import pandas as pd

        names = [n.node for n in self.nodes]
        sources = [n for n in names if n not in END_NODES]
        targets = [n for n in names if n != START]
        m = pd.DataFrame(0.0 if weight == "probability" else 0, index=sources, columns=targets)
        for e in self.edges:
            m.loc[e.source, e.target] = getattr(e, weight)
        return m


@dataclass(frozen=True)
class TopPath:
    #: 1-based rank; 0 for the "other" row
    rank: int
    #: the nodes joined with " > " ("" for a path without nodes; "(other)" for the rest)
    path: str
    nodes: list[str]
    #: nodes in the full path (before keeping the last max_length)
    length: int
    truncated: bool
    customers: int
    share: float
    revenue: Decimal


@dataclass(frozen=True)
class TopPaths(TableResult):
    level: PathLevel
    per: PathUnit
    to: Literal["conversion", "exit"]
    collapse_repeats: bool
    max_length: int
    #: units whose path ends at `to`, and their revenue (conversion revenue)
    units: int
    revenue: Decimal
    paths: list[TopPath]
    other: TopPath

    def to_records(self) -> list[dict[str, Any]]:
        rows = [*self.paths, *([self.other] if self.other.customers else [])]
        return [{**asdict(p), "nodes": list(p.nodes)} for p in rows]

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "per": self.per,
            "to": self.to,
            "collapse_repeats": self.collapse_repeats,
            "max_length": self.max_length,
            "units": self.units,
            "revenue": self.revenue,
            "paths": self.to_records(),
        }


@dataclass(frozen=True)
class SankeyNode:
    #: 1-based column
    step: int
    node: str
    units: int
    #: units / units in the column
    share_of_step: float
    #: units / units in column 1
    share_of_start: float


@dataclass(frozen=True)
class SankeyFlow:
    #: the source column (the target is in step + 1)
    step: int
    source: str
    target: str
    units: int


@dataclass(frozen=True)
class SankeyStep:
    step: int
    #: units in the column (ended right before it included)
    units: int
    #: units whose path ended right before this column (its end nodes)
    ended: int
    #: units on a value node (going on)
    going: int


@dataclass(frozen=True)
class StepSankey(TableResult):
    level: PathLevel
    per: PathUnit
    steps: int
    top_n: int
    anchor: str | None
    collapse_repeats: bool
    until: Until
    units: int
    columns: list[SankeyStep]
    nodes: list[SankeyNode]
    flows: list[SankeyFlow]

    def to_records(self) -> list[dict[str, Any]]:
        return [asdict(f) for f in self.flows]

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "per": self.per,
            "steps": self.steps,
            "top_n": self.top_n,
            "anchor": self.anchor,
            "collapse_repeats": self.collapse_repeats,
            "until": self.until,
            "units": self.units,
            "columns": [asdict(c) for c in self.columns],
            "nodes": [asdict(n) for n in self.nodes],
            "flows": self.to_records(),
        }

    def step_matrix(self) -> pd.DataFrame:
        """Share of the starting units on each node (rows) at each step (columns)."""
        import pandas as pd

        names = list(dict.fromkeys(n.node for n in self.nodes))
        m = pd.DataFrame(0.0, index=names, columns=range(1, self.steps + 1))
        for n in self.nodes:
            m.loc[n.node, n.step] = n.share_of_start
        return m


# -- shared expressions ----------------------------------------------------------------------
def _unit_keys(per: str) -> list[str]:
    return ["customer_id"] if per == "customer" else ["customer_id", "session_index"]


def _check(level: str, per: str, until: str) -> None:
    if level not in LEVELS:
        raise PathError(f"unknown path level {level!r}; allowed: {', '.join(LEVELS)}")
    if per not in UNITS:
        raise PathError(f"unknown path unit per={per!r}; allowed: {', '.join(UNITS)}")
    if until not in UNTILS:
        raise PathError(f"unknown until={until!r}; allowed: {', '.join(UNTILS)}")


def units_expr(
    journey: ir.Table,
    level: PathLevel = "event",
    *,
    per: PathUnit = "customer",
    until: Until = "conversion",
    anchor: str | None = None,
    first_value: bool = False,
) -> ir.Table:
    """One row per unit of the journey table: its keys, ``cut`` (the ``step_index`` its path
    stops at: the last conversion for ``until="conversion"``, else NULL = no cut), ``end``
    (``(conversion)`` or ``(exit)``), ``start`` (the ``step_index`` its path starts at: its
    first event at the level, or the anchor's first event; NULL: no node before the cut),
    ``revenue`` (the sum over its conversion events) and, with ``first_value``, ``first_v``
    (the value of its first node; without an anchor)."""
    unit = _unit_keys(per)
    key = journey[level]
    j = journey
    aggs: dict[str, ir.Value] = {
        "cut": j.step_index.max(where=j.is_conversion)
        if until == "conversion"
        else ibis.null("int64"),
        "first": j.step_index.min(where=key.notnull() if anchor is None else key == anchor),
        "revenue": j.revenue.sum(where=j.is_conversion),
    }
    if first_value:
        aggs["first_v"] = key.argmin(j.step_index, where=key.notnull())
    u = j.group_by(unit).agg(**aggs)
    in_path = u["first"].notnull() & (u.cut.isnull() | (u["first"] <= u.cut))
    return u.select(
        *unit,
        "cut",
        "revenue",
        *(["first_v"] if first_value else []),
        start=ibis.ifelse(in_path, u["first"], ibis.null("int64")),
        end=ibis.ifelse(u.cut.notnull(), ibis.literal(CONVERSION), ibis.literal(EXIT)),
    )


def _path_rows(
    journey: ir.Table, units: ir.Table, level: str, per: str, *, need_join: bool
) -> ir.Table:
    """The unit's events at the level that belong to its path, with ``conv``: whether the
    path ends at (conversion) (a boolean, lighter than the end node's name on every row)."""
    unit = _unit_keys(per)
    key = journey[level]
    if not need_join:
        rows = journey.filter(key.notnull()).select(*unit, "step_index", "ts_us", v=key)
        return rows.mutate(conv=ibis.literal(False))
    rows = journey.select(*unit, "step_index", "ts_us", v=key)
    u = units.filter(units.start.notnull()).select(
        **{f"_u_{c}": units[c] for c in unit}, _cut=units.cut, _start=units.start
    )
    j = rows.join(u, [rows[c] == u[f"_u_{c}"] for c in unit])
    # The NULL test names both sides (``_start`` is never NULL here) so that DuckDB cannot
    # push it into the scan: with it there, the scan's estimate drops below the (over-)
    # estimated units and DuckDB builds the hash table on the events instead of the units
    # (measured at 5M events: 950 MB instead of 560 MB, and a 3x slower join).
    j = j.filter(
        j.v.notnull() | j._start.isnull(),
        j.step_index >= j._start,
        j._cut.isnull() | (j.step_index <= j._cut),
    )
    return j.select(*unit, "step_index", "ts_us", "v", conv=j._cut.notnull())


def _end(conv: ir.BooleanValue) -> ir.StringValue:
    return ibis.ifelse(conv, ibis.literal(CONVERSION), ibis.literal(EXIT))


def _window(rows: ir.Table, unit: Sequence[str], **frame: Any) -> Any:
    return ibis.window(group_by=[rows[c] for c in unit], order_by=rows.step_index, **frame)


def _positions(rows: ir.Table, unit: Sequence[str], collapse: bool) -> ir.Table:
    """``rows`` (collapsed to run starts) with ``pos`` (1-based), ``nxt`` (the next node's
    value, NULL at the path's last node) and ``n_nodes``."""
    if collapse:
        w = _window(rows, unit)
        rows = rows.mutate(_prev=rows.v.lag().over(w))
        rows = rows.filter(rows._prev.isnull() | (rows._prev != rows.v)).drop("_prev")
    w = _window(rows, unit)
    whole = _window(rows, unit, preceding=None, following=None)
    return rows.mutate(
        pos=(ibis.row_number().over(w) + 1).cast("int64"),  # row_number() is 0-based
        nxt=rows.v.lead().over(w),
        n_nodes=rows.v.count().over(whole).cast("int64"),
    )


# -- transitions -----------------------------------------------------------------------------
def transitions_expr(
    journey: ir.Table,
    level: PathLevel = "event",
    *,
    collapse_repeats: bool = False,
    per: PathUnit = "customer",
    until: Until = "conversion",
    times: bool = True,
) -> ir.Table:
    """Edges of the transition graph: ``source``, ``target``, ``count``, ``customers``,
    ``median_us`` (NULL on (start) and end edges, and everywhere without ``times``: the
    exact median per edge is about half the graph's cost at the event level, 0.7 s of
    1.4 s at 5M events)."""
    _check(level, per, until)
    unit = _unit_keys(per)
    units = units_expr(journey, level, per=per, until=until, first_value=True)
    rows = _path_rows(journey, units, level, per, need_join=until == "conversion")
    # Every node brings the edge out of it: to the next node, or to the path's end node;
    # (start) edges come from the units. One row per edge, no arrays: building the edges
    # as [incoming, to-end] lists and unnesting them cost 0.3 s more at 5M events.
    w = _window(rows, unit)
    nxt = {"_next": rows.v.lead().over(w)}
    if times:
        nxt["_next_ts"] = rows.ts_us.lead().over(w)
    x = rows.mutate(**nxt)
    if collapse_repeats:
        # a run's last node carries its edge out: the time is counted from the end of the run
        x = x.filter(x._next.isnull() | (x._next != x.v))
    no_int = ibis.null("int64")
    e = x.select(
        "customer_id",
        source=x.v,
        target=x._next.fill_null(_end(x.conv)),
        dt=x._next_ts - x.ts_us if times else no_int,
    )
    first = units.filter(units.start.notnull())
    starts = first.select(
        "customer_id", source=ibis.literal(START), target=first.first_v, dt=no_int
    )
    empty = units.filter(units.start.isnull())
    direct = empty.select("customer_id", source=ibis.literal(START), target=empty.end, dt=no_int)
    edges = e.union(starts).union(direct)
    aggs: dict[str, ir.Value] = {"count": edges.count(), "customers": edges.customer_id.nunique()}
    if not times:
        g = edges.group_by(["source", "target"]).agg(**aggs)
        return g.mutate(median_us=ibis.null("float64"))
    g = edges.group_by(["source", "target"]).agg(
        **aggs,
        _dts=edges.dt.collect().sort(),  # collect() leaves out the NULLs
    )
    return g.select("source", "target", "count", "customers", median_us=_median(g._dts))


def _median(sorted_values: ir.ArrayValue) -> ir.FloatingValue:
    """The median of a sorted integer array, interpolated as ``quantile_cont(x, 0.5)`` does
    (exact for values below 2**53); NULL for an empty array.

    Not ``median()`` itself: DuckDB's grouped ``quantile_cont`` over a few hundred groups of
    millions of values blows up at ~20M events (the event-level graph took 217 s and 7.9 GB;
    with the sorted lists 14 s CPU and 1.9 GB). At 5M events the lists cost ~0.3 s CPU more.
    The same numbers either way (checked on every level and option at 5M events)."""
    n = sorted_values.length()
    # Spark's element_at wants an INT position
    lo = sorted_values[((n - 1) // 2).cast("int32")]
    hi = sorted_values[(n // 2).cast("int32")]
    # "/ 2", not "* 0.5": the same (exact) number, and a float literal breaks
    # ibis.to_sql(dialect="pyspark") until the PySpark backend is loaded (engine.md P11)
    mid = lo.cast("float64") + (hi - lo).cast("float64") / 2
    return ibis.ifelse(n > 0, mid, ibis.null("float64"))


def transitions(
    journey: ir.Table,
    level: PathLevel = "event",
    *,
    collapse_repeats: bool = False,
    per: PathUnit = "customer",
    until: Until = "conversion",
    times: bool = True,
) -> TransitionGraph:
    """The transition graph (directly-follows graph) of the paths at ``level``; without
    ``times`` the edges carry no median time (cheaper on large event-level graphs)."""
    expr = transitions_expr(
        journey, level, collapse_repeats=collapse_repeats, per=per, until=until, times=times
    )
    rows = to_arrow(expr).to_pylist()
    out_total: dict[str, int] = defaultdict(int)
    visits: dict[str, int] = defaultdict(int)
    for r in rows:
        out_total[r["source"]] += int(r["count"])
        visits[r["target"]] += int(r["count"])
    visits[START] = out_total[START]
    edges = [
        TransitionEdge(
            source=r["source"],
            target=r["target"],
            count=int(r["count"]),
            customers=int(r["customers"]),
            probability=int(r["count"]) / out_total[r["source"]],
            median_seconds=_seconds(r["median_us"]),
        )
        for r in rows
    ]
    edges.sort(key=lambda e: (_node_order(e.source), -e.count, _node_order(e.target)))
    nodes = sorted(
        (TransitionNode(n, c) for n, c in visits.items()), key=lambda n: _node_order(n.node)
    )
    return TransitionGraph(
        level=level,
        per=per,
        collapse_repeats=collapse_repeats,
        until=until,
        units=out_total[START],
        nodes=nodes,
        edges=edges,
    )


def _node_order(node: str) -> tuple[int, str]:
    """(start) first, values by name, then (conversion), (exit)."""
    rank = {START: 0, CONVERSION: 2, EXIT: 3, OTHER: 1}
    return (rank.get(node, 1), "~" if node == OTHER else node)


# -- top paths -------------------------------------------------------------------------------
def top_paths_expr(
    journey: ir.Table,
    level: PathLevel = "channel",
    *,
    to: Literal["conversion", "exit"] = "conversion",
    max_length: int = 10,
    limit: int = 20,
    collapse_repeats: bool = True,
    per: PathUnit = "customer",
) -> ir.Table:
    """The ``limit`` most frequent paths ending at ``to``: ``path`` (nodes joined by
    ``"\\x1f"``), ``length`` (nodes of the full path), ``customers``, ``revenue``, plus the
    totals over every path ending there (``total_customers``, ``total_revenue``)."""
    _check(level, per, "conversion")
    if to not in ("conversion", "exit"):
        raise PathError(f"unknown to={to!r}; allowed: conversion, exit")
    if max_length < 1 or limit < 1:
        raise PathError(f"max_length and limit must be >= 1 (got {max_length}, {limit})")
    unit = _unit_keys(per)
    units = units_expr(journey, level, per=per, until="conversion")
    end = CONVERSION if to == "conversion" else EXIT
    rows = _path_rows(journey, units, level, per, need_join=True)
    rows = _positions(rows.filter(rows.conv == (to == "conversion")), unit, collapse_repeats)
    kept = rows.filter(rows.pos > rows.n_nodes - max_length)
    node = ibis.struct({"pos": kept.pos, "v": kept.v})
    per_unit = kept.group_by(unit).agg(nodes=node.collect(), length=kept.n_nodes.max())
    per_unit = per_unit.select(
        *unit,
        "length",
        path=per_unit.nodes.sort().map(lambda n: n.v).join(_JOIN),
    )
    # every unit ending there, with or without nodes
    ending = units.filter(units.end == end).select(
        *(units[c].name(f"_u_{c}") for c in unit), "revenue"
    )
    j = ending.left_join(per_unit, [ending[f"_u_{c}"] == per_unit[c] for c in unit])
    j = j.select(
        path=j.path.fill_null(""),
        length=j.length.fill_null(0),
        revenue=j.revenue,
    )
    g = j.group_by(["path", "length"]).agg(customers=j.count(), revenue=j.revenue.sum())
    everything = ibis.window()
    g = g.mutate(
        total_customers=g.customers.sum().over(everything),
        total_revenue=g.revenue.sum().over(everything),
    )
    return g.order_by([ibis.desc("customers"), "path"]).limit(limit)


def top_paths(
    journey: ir.Table,
    level: PathLevel = "channel",
    *,
    to: Literal["conversion", "exit"] = "conversion",
    max_length: int = 10,
    limit: int = 20,
    collapse_repeats: bool = True,
    per: PathUnit = "customer",
) -> TopPaths:
    """The most frequent paths to conversion (or to exit), with an "other" row for the rest."""
    rows = to_arrow(
        top_paths_expr(
            journey,
            level,
            to=to,
            max_length=max_length,
            limit=limit,
            collapse_repeats=collapse_repeats,
            per=per,
        )
    ).to_pylist()
    total = int(rows[0]["total_customers"]) if rows else 0
    total_rev = _money(rows[0]["total_revenue"]) if rows else Decimal("0.00")
    paths = []
    for i, r in enumerate(rows, start=1):
        nodes = r["path"].split(_JOIN) if r["path"] else []
        truncated = int(r["length"]) > len(nodes)
        shown = [ELLIPSIS, *nodes] if truncated else nodes
        paths.append(
            TopPath(
                rank=i,
                path=PATH_SEPARATOR.join(shown),
                nodes=shown,
                length=int(r["length"]),
                truncated=truncated,
                customers=int(r["customers"]),
                share=int(r["customers"]) / total if total else 0.0,
                revenue=_money(r["revenue"]),
            )
        )
    rest = total - sum(p.customers for p in paths)
    other = TopPath(
        rank=0,
        path=OTHER,
        nodes=[OTHER],
        length=0,
        truncated=False,
        customers=rest,
        share=rest / total if total else 0.0,
        revenue=total_rev - sum((p.revenue for p in paths), Decimal("0.00")),
    )
    return TopPaths(
        level=level,
        per=per,
        to=to,
        collapse_repeats=collapse_repeats,
        max_length=max_length,
        units=total,
        revenue=total_rev,
        paths=paths,
        other=other,
    )


# -- step Sankey -----------------------------------------------------------------------------
def step_sankey_expr(
    journey: ir.Table,
    level: PathLevel = "phase",
    *,
    steps: int = 5,
    anchor: str | None = None,
    collapse_repeats: bool = True,
    per: PathUnit = "customer",
    until: Until = "conversion",
) -> ir.Table:
    """Counts of ``(pos, v, nxt)`` for the first ``steps`` nodes of every path: ``nxt`` is the
    next node's value or the path's end node. Paths without nodes come as ``pos = 0``, ``v =
    NULL``, ``nxt = <end node>``."""
    _check(level, per, until)
    if steps < 1:
        raise PathError(f"steps must be >= 1 (got {steps})")
    unit = _unit_keys(per)
    units = units_expr(journey, level, per=per, until=until, anchor=anchor)
    source = journey
    if level == "event" and per == "customer" and anchor is None and not collapse_repeats:
        # Every row is an event-level node and ``step_index`` is its 1-based position (the
        # journey table's contract), so node k is the row with step_index k: the first
        # steps + 1 rows (the last one for ``nxt``) are all the window needs. 5M events, 10
        # steps: the window sorts 1.1M rows instead of 5.5M.
        source = journey.filter(journey.step_index <= steps + 1)
    rows = _path_rows(
        source, units, level, per, need_join=until == "conversion" or anchor is not None
    )
    rows = _positions(rows, unit, collapse_repeats)
    rows = rows.filter(rows.pos <= steps)
    flows = rows.select(pos=rows.pos, v=rows.v, nxt=rows.nxt.fill_null(_end(rows.conv)))
    # units without a node: straight from (start) to their end (with an anchor, units
    # without it are not part of the Sankey at all)
    empty = units.filter(units.start.isnull())
    if anchor is None:
        direct = empty.select(pos=ibis.literal(0, "int64"), v=ibis.null("string"), nxt=empty.end)
        flows = flows.union(direct)
    return flows.group_by(["pos", "v", "nxt"]).agg(units=flows.count())


def step_sankey(
    journey: ir.Table,
    level: PathLevel = "phase",
    *,
    steps: int = 5,
    top_n: int = 8,
    anchor: str | None = None,
    collapse_repeats: bool = True,
    per: PathUnit = "customer",
    until: Until = "conversion",
) -> StepSankey:
    """Step-by-step Sankey data: per column the ``top_n`` values, ``(other)`` and end nodes."""
    if top_n < 1:
        raise PathError(f"top_n must be >= 1 (got {top_n})")
    rows = to_arrow(
        step_sankey_expr(
            journey,
            level,
            steps=steps,
            anchor=anchor,
            collapse_repeats=collapse_repeats,
            per=per,
            until=until,
        )
    ).to_pylist()
    # value counts per column, then the top_n of each column
    at: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    ends_at: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        pos, n, nxt = int(r["pos"]), int(r["units"]), r["nxt"]
        if pos == 0:
            ends_at[1][nxt] += n
            continue
        at[pos][r["v"]] += n
        if nxt in END_NODES and pos < steps:
            ends_at[pos + 1][nxt] += n
    keep = {k: set(sorted(vals, key=lambda v: (-vals[v], v))[:top_n]) for k, vals in at.items()}

    def name(k: int, v: str) -> str:
        return v if v in END_NODES or v in keep.get(k, ()) else OTHER

    node_units: dict[tuple[int, str], int] = defaultdict(int)
    flow_units: dict[tuple[int, str, str], int] = defaultdict(int)
    for k, vals in at.items():
        for v, n in vals.items():
            node_units[(k, name(k, v))] += n
    for k, vals in ends_at.items():
        for v, n in vals.items():
            node_units[(k, v)] += n
    for r in rows:
        pos = int(r["pos"])
        if 1 <= pos < steps:
            flow_units[(pos, name(pos, r["v"]), name(pos + 1, r["nxt"]))] += int(r["units"])
    totals = dict.fromkeys(range(1, steps + 1), 0)
    for (k, _), n in node_units.items():
        totals[k] += n
    start_units = totals[1]
    columns = []
    for k in range(1, steps + 1):
        ended = sum(ends_at.get(k, {}).values())
        columns.append(SankeyStep(k, totals[k], ended, totals[k] - ended))
    nodes = [
        SankeyNode(
            step=k,
            node=v,
            units=n,
            share_of_step=n / totals[k] if totals[k] else 0.0,
            share_of_start=n / start_units if start_units else 0.0,
        )
        for (k, v), n in sorted(node_units.items(), key=lambda kv: (kv[0][0], *_sankey_order(kv)))
    ]
    flows = [
        SankeyFlow(k, s, t, n)
        for (k, s, t), n in sorted(
            flow_units.items(), key=lambda kv: (kv[0][0], -kv[1], kv[0][1], kv[0][2])
        )
    ]
    return StepSankey(
        level=level,
        per=per,
        steps=steps,
        top_n=top_n,
        anchor=anchor,
        collapse_repeats=collapse_repeats,
        until=until,
        units=start_units,
        columns=columns,
        nodes=nodes,
        flows=flows,
    )


def _sankey_order(item: tuple[tuple[int, str], int]) -> tuple[int, int, str]:
    """Within a column: values by size, then (other), then the end nodes."""
    (_, v), n = item
    group = 2 if v in END_NODES else 1 if v == OTHER else 0
    return (group, -n, v)


# -- helpers ---------------------------------------------------------------------------------
def _seconds(us: Any) -> float | None:
    if us is None or (isinstance(us, float) and math.isnan(us)):
        return None
    return float(us) / _US


def _money(value: Any) -> Decimal:
    if value is None:
        return Decimal("0.00")
    return Decimal(value).quantize(Decimal("0.01"))


__all__ = [
    "CONVERSION",
    "EXIT",
    "OTHER",
    "START",
    "PathError",
    "SankeyFlow",
    "SankeyNode",
    "SankeyStep",
    "StepSankey",
    "TopPath",
    "TopPaths",
    "TransitionEdge",
    "TransitionGraph",
    "TransitionNode",
    "step_sankey",
    "step_sankey_expr",
    "top_paths",
    "top_paths_expr",
    "transitions",
    "transitions_expr",
    "units_expr",
]
