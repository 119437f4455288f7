"""Where a journey break concentrates, and whom it hit.

A break is found for a *cell*: the trials of one subject (touchpoint, campaign or process) in a
segment and a window of days. ``locate`` looks inside the cell for the narrowest segment that
explains it, from one engine query that counts the subject's trials by ``in_cell`` and every
segment column: device, channel, campaign, persona (when assigned) and up to five
low-cardinality properties of the subject's events (keys found in a sample of the cell, read
with the portable ``property_value`` regex).

The rule, in order:

1. *Constant traits*: a value shared by (nearly) every trial of the cell but by less than half
   of the trials outside it, e.g. ``error = size_unavailable`` on a broken step. They describe
   the whole cell and are always reported.
2. *Concentration*: among single values and pairs of values, those holding at least ``share``
   (80 %) of the cell's excess exits (exits above the expected rate) and whose rate is
   significantly above the rest of the cell (one-sided z-test, p < 0.001); the one with the
   highest rate wins (ties: more trials, then fewer conditions, then by name). Without one,
   the break is spread over its cell.

The customers affected are those with an exited trial in the concentration (the cell when
there is none): exits in the rest of the cell happen at about the expected rate.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import ibis
import ibis.expr.types as ir
import pandas as pd

from journeymap.analytics.engine import to_arrow
from journeymap.analytics.journey import property_value
from journeymap.analytics.stats import proportion_excess_test
from journeymap.analytics.trials import (
    NONE,
    SEGMENT_COLUMNS,
    BreakKind,
    Process,
    campaign_arrivals_expr,
    process_trials_expr,
    sessions_expr,
    step_exit_trials_expr,
    with_persona,
)

#: Property keys considered per break, distinct values per key, events sampled to find them.
MAX_PROPERTY_KEYS = 5
MAX_PROPERTY_VALUES = 12
PROPERTY_SAMPLE = 2000
#: A constant trait covers this share of the cell and less than half of the rest.
CONSTANT_SHARE = 0.95
SIGNIFICANCE = 0.001
PROPERTY_PREFIX = "property:"


@dataclass(frozen=True)
class Concentration:
    """The traits and the narrowest segment of a break's cell, and its affected customers."""

    #: values every trial of the cell shares (and most others do not), e.g. an error code
    constants: dict[str, str]
    #: the narrowing segment (empty: the break is spread over its cell)
    segment: dict[str, str]
    trials: int
    exits: int
    #: share of the cell's excess exits the segment holds (1.0 without a segment)
    share: float
    customer_ids: tuple[str, ...]
    #: share of the cell's excess exits per campaign of the session (to fold a step exit
    #: into the campaign bounce that causes it)
    campaign_shares: dict[str, float]

    @property
    def rate(self) -> float:
        return self.exits / self.trials if self.trials else 0.0


def subject_trials(
    journey: ir.Table,
    kind: BreakKind,
    subject: str,
    *,
    processes: Sequence[Process] = (),
    personas: ir.Table | None = None,
    arrival_phase_index: int = 1,
    bounce_events: int = 1,
) -> ir.Table:
    """Every trial of one subject, with the ``properties`` of its event (and ``persona``)."""
    s = sessions_expr(journey)
    if kind == "step_exit":
        tr = step_exit_trials_expr(journey, [subject], sessions=s, with_properties=True)
    elif kind == "process_abandon":
        procs = [p for p in processes if p.id == subject]
        if not procs:
            raise ValueError(f"unknown process {subject!r}")
        tr = process_trials_expr(journey, procs, sessions=s, with_properties=True)
    else:
        tr = campaign_arrivals_expr(
            journey,
            arrival_phase_index=arrival_phase_index,
            bounce_events=bounce_events,
            sessions=s,
            with_properties=True,
        )
        tr = tr.filter(tr.subject == subject)
    return with_persona(tr, personas) if personas is not None else tr


def cell_condition(
    trials: ir.Table, segment: dict[str, str], start_day: int | None, end_day: int | None
) -> ir.BooleanValue:
    """Whether a trial is in the cell: the segment's values, inside the window."""
    cond: ir.BooleanValue = ibis.literal(True)
    for col, value in segment.items():
        if col in trials.columns:
            cond = cond & (trials[col] == value)
    if start_day is not None and end_day is not None:
        cond = cond & (trials.day >= start_day) & (trials.day < end_day)
    return cond


def property_keys(cell: ir.Table) -> list[str]:
    """Low-cardinality scalar property keys of a cell's events, from its first events."""
    sample = (
        to_arrow(
            cell.order_by(["ts_us", "customer_id", "step_index"])
            .limit(PROPERTY_SAMPLE)
            .select("properties")
        )
        .column(0)
        .to_pylist()
    )
    values: dict[str, set[str]] = {}
    for text in sample:
        try:
            obj = json.loads(text or "{}")
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        for k, v in obj.items():
            if isinstance(v, str | bool | int) and str(k).replace("_", "").isalnum():
                values.setdefault(str(k), set()).add(str(v))
    keys = [k for k, vs in sorted(values.items()) if len(vs) <= MAX_PROPERTY_VALUES]
    return keys[:MAX_PROPERTY_KEYS]


def _dims(trials: ir.Table, exclude: Sequence[str]) -> list[str]:
    return [c for c in (*SEGMENT_COLUMNS, "persona") if c in trials.columns and c not in exclude]


def cube_expr(trials: ir.Table, in_cell: ir.BooleanValue, keys: Sequence[str]) -> ir.Table:
    """Trials and exits by ``in_cell`` and every segment column (properties as
    ``property:<key>``, absent ones as ``(none)``)."""
    props = {PROPERTY_PREFIX + k: property_value(trials.properties, k) for k in keys}
    m = trials.mutate(
        in_cell=in_cell,
        **{name: ibis.ifelse(v.fill_null("") == "", NONE, v) for name, v in props.items()},
    )
    dims = [*_dims(trials, ()), *props]
    return m.group_by(["in_cell", *dims]).agg(n=m.count(), exits=m.exited.cast("int64").sum())


def constant_traits(cube: pd.DataFrame, dims: Sequence[str]) -> dict[str, str]:
    """Values nearly every in-cell trial shares and fewer than half of the others do."""
    cell, rest = cube[cube["in_cell"]], cube[~cube["in_cell"]]
    n_cell, n_rest = float(cell["n"].sum()), float(rest["n"].sum())
    out: dict[str, str] = {}
    if n_cell == 0:
        return out
    for d in dims:
        top = cell.groupby(d)["n"].sum().sort_values(ascending=False, kind="stable")
        value, n = str(top.index[0]), float(top.iloc[0])
        if value == NONE or n < CONSTANT_SHARE * n_cell:
            continue
        outside = float(rest.loc[rest[d] == value, "n"].sum())
        if n_rest == 0 or outside < 0.5 * n_rest:
            out[d] = value
    return out


def best_segment(
    cell: pd.DataFrame,
    dims: Sequence[str],
    expected_rate: float,
    *,
    share: float = 0.8,
    min_trials: int = 5,
) -> tuple[dict[str, str], int, int, float]:
    """The concentration rule (module docstring) on the in-cell cube ``cell``.

    Returns (segment, trials, exits, share of the excess); an empty segment when no value or
    pair qualifies.
    """
    n_all, x_all = int(cell["n"].sum()), int(cell["exits"].sum())
    total = x_all - n_all * expected_rate
    if total <= 0:
        return {}, n_all, x_all, 1.0
    usable = [d for d in dims if cell.loc[cell[d] != NONE, d].nunique() >= 2]
    best: tuple[tuple[float, int, int, str], dict[str, str], int, int, float] | None = None
    for size in (1, 2):
        for combo in combinations(usable, size):
            g = cell.groupby(list(combo))[["n", "exits"]].sum().reset_index()
            for row in g.itertuples(index=False):
                values = [str(v) for v in row[: len(combo)]]
                n, x = int(row[len(combo)]), int(row[len(combo) + 1])
                excess = x - n * expected_rate
                if NONE in values or n < min_trials or n >= n_all or excess < share * total:
                    continue
                _, p = proportion_excess_test(x, n, x_all - x, n_all - n)
                if float(p) >= SIGNIFICANCE:
                    continue
                seg = dict(zip(combo, values, strict=True))
                name = ";".join(f"{k}={v}" for k, v in seg.items())
                key = (x / n, n, -len(seg), name)
                if best is None or key > best[0]:
                    best = (key, seg, n, x, excess / total)
    if best is None:
        return {}, n_all, x_all, 1.0
    return best[1], best[2], best[3], best[4]


def excess_shares(cell: pd.DataFrame, dim: str, expected_rate: float) -> dict[str, float]:
    """Each value's share of the cell's excess exits (exits above ``expected_rate``)."""
    total = float(cell["exits"].sum()) - float(cell["n"].sum()) * expected_rate
    if total <= 0 or dim not in cell.columns:
        return {}
    g = cell.groupby(dim)[["n", "exits"]].sum()
    excess = g["exits"] - g["n"] * expected_rate
    return {str(k): float(v) / total for k, v in excess.items() if str(k) != NONE}


def _plain(segment: dict[str, str]) -> dict[str, str]:
    return {k.removeprefix(PROPERTY_PREFIX): v for k, v in segment.items()}


def locate(
    trials: ir.Table,
    segment: dict[str, str],
    start_day: int | None,
    end_day: int | None,
    expected_rate: float,
    *,
    share: float = 0.8,
    min_trials: int = 5,
) -> Concentration:
    """Constant traits, concentration and affected customers of a break's cell (3 queries)."""
    in_cell = cell_condition(trials, segment, start_day, end_day)
    keys = property_keys(trials.filter(in_cell))
    cube = to_arrow(cube_expr(trials, in_cell, keys)).to_pandas()
    dims = [*_dims(trials, ()), *(PROPERTY_PREFIX + k for k in keys)]
    for d in dims:
        cube[d] = cube[d].fillna(NONE).astype(str)
    cube["in_cell"] = cube["in_cell"].astype(bool)
    free = [d for d in dims if d not in segment]
    constants = constant_traits(cube, free)
    seg, n, x, held = best_segment(
        cube[cube["in_cell"]],
        [d for d in free if d not in constants],
        expected_rate,
        share=share,
        min_trials=min_trials,
    )
    cond = in_cell & trials.exited
    for col, value in seg.items():
        if col.startswith(PROPERTY_PREFIX):
            cond = cond & (property_value(trials.properties, col[len(PROPERTY_PREFIX) :]) == value)
        else:
            cond = cond & (trials[col] == value)
    ids = to_arrow(trials.filter(cond).select("customer_id").distinct()).column(0).to_pylist()
    return Concentration(
        campaign_shares=excess_shares(cube[cube["in_cell"]], "campaign", expected_rate),
        constants=_plain(constants),
        segment=_plain(seg),
        trials=n,
        exits=x,
        share=held,
        customer_ids=tuple(sorted(str(i) for i in ids)),
    )
