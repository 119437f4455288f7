"""Attribution of conversions and their value to channels or touchpoints.

The journeys (what a touch, a conversion and a null journey are, the lookback, collapsing
repeats) are defined and built in the engine by ``attribution_journeys``; the models run on
the aggregates that come out of it, or on a path file in ChannelAttribution's format
(``path;total_conversions;total_conversion_value;total_null``, paths like ``a > b > c``).

**Models** (one implementation each, in ``attribution_models``, shared by both inputs):

=================== =========================================================================
``first``/``last``  all credit to the journey's first (last) touch
``linear``          1/n to each of the n touches
``time_decay``      touch weight 2^(-age / half-life), age = time from the touch to the
                    conversion, normalised per journey (events only: a path file has no times)
``position_based``  40 % first, 40 % last, 20 % shared by the middle touches (configurable)
``markov``          removal effects of a k-order Markov chain (k = 1..4) solved exactly
``shapley``         Shapley values of the channels (see ``attribution_models.shapley``)
=================== =========================================================================

First, last, linear and position-based are exact (integer sums and one rational division
per group); their credited value is rounded half-even to the input's precision (cents) at
the end. Markov credits conversions and value by removal-effect share (the classic global
allocation of Anderl et al. and ChannelAttribution; ``mam``'s per-journey variant with
``markov_allocation="per_journey"``). Time decay weighs touches in the engine in floating
point and sums the per-journey credits as DECIMAL (rounded to 1e-18): independent of row
order, and equal between engines unless their ``pow`` differs in the last bit (then by about
1e-18 per journey). Every model reports every channel; rows are sorted per model by
credited conversions, then by name.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from journeymap.analytics.attribution_journeys import (
    AttributionError,
    JourneyTotals,
    Level,
    Touch,
    check_level,
    check_order,
    conversions_expr,
    decimal_units,
    paths_expr,
    paths_from_codes,
    time_decay_expr,
    touch_names,
    transitions_expr,
    transitions_from_arrow,
)
from journeymap.analytics.attribution_models import (
    Credit,
    IntArray,
    MarkovSolution,
    PathSet,
    ShapleyValue,
    Transitions,
    heuristic_credit,
    markov_credit_global,
    markov_credit_per_journey,
    shapley,
    solve_markov,
    to_decimal,
    transitions_from_paths,
)
from journeymap.analytics.engine import to_arrow
from journeymap.analytics.results import TableResult
from journeymap.errors import InputDataError

if TYPE_CHECKING:
    import ibis.expr.types as ir

Model = Literal["first", "last", "linear", "time_decay", "position_based", "markov", "shapley"]
MarkovAllocation = Literal["global", "per_journey"]
MODELS: tuple[Model, ...] = get_args(Model)
PATH_MODELS: tuple[Model, ...] = tuple(m for m in MODELS if m != "time_decay")
PATH_SEPARATOR = " > "
PATH_COLUMNS = ("path", "total_conversions", "total_conversion_value", "total_null")


# -- results -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChannelCredit:
    model: str
    channel: str
    #: conversions credited to the channel
    conversions: float
    #: conversion value credited, rounded half-even to the input's precision (cents)
    value: Decimal
    #: conversions / all attributed conversions
    share: float


@dataclass(frozen=True)
class RemovalEffect:
    channel: str
    #: 1 - P(conversion without the channel) / P(conversion)
    removal_effect: float
    #: P(conversion) of the chain with every state containing the channel removed
    conversion_probability_without: float


@dataclass(frozen=True)
class AttributionResult(TableResult):
    level: str
    models: tuple[str, ...]
    #: one row per model and channel; per model sorted by credited conversions, then name
    credits: list[ChannelCredit]
    #: Markov removal effects, sorted by effect (descending), then name
    removal_effects: list[RemovalEffect]
    #: converting journeys with at least one touch, and their value
    conversions: int
    value: Decimal
    #: journeys (with touches) that did not convert
    null_journeys: int
    #: converting journeys without any touch (left out of every model)
    unattributed_conversions: int
    unattributed_value: Decimal
    distinct_paths: int
    lookback_days: float | None
    collapse_repeats: bool
    markov_order: int | None = None
    markov_allocation: str | None = None
    markov_states: int | None = None
    #: P(conversion) of the Markov chain (equals conversions / journeys for these chains)
    conversion_probability: float | None = None
    shapley_value: str | None = None
    shapley_method: str | None = None
    shapley_permutations: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def to_records(self) -> list[dict[str, Any]]:
        return [asdict(c) for c in self.credits]

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k not in ("credits", "removal_effects")}
        out["credits"] = self.to_records()
        out["removal_effects"] = [asdict(r) for r in self.removal_effects]
        return out

    def credit(self, model: str) -> dict[str, ChannelCredit]:
        """The rows of one model by channel."""
        return {c.channel: c for c in self.credits if c.model == model}

    def removal_effect(self) -> dict[str, float]:
        return {r.channel: r.removal_effect for r in self.removal_effects}


# -- inputs to aggregates --------------------------------------------------------------------------
def paths_from_arrow(
    table: pa.Table, *, sep: str = PATH_SEPARATOR, value_scale: int | None = None
) -> PathSet:
    """A ``PathSet`` from a path table (columns as ``PATH_COLUMNS``; value and null optional).

    Path tokens are trimmed; empty tokens are dropped. Conversions and nulls must be whole
    numbers; values are read exactly as decimals.
    """
    names = table.column_names
    numbers = _path_numbers(names, table.num_rows, table.column, value_scale)
    paths = table.column("path").cast(pa.string())
    if paths.null_count:  # (pa.scalar, behind fill_null, imports pandas: only when needed)
        paths = pc.fill_null(paths, "")
    lists = pc.split_pattern(paths, pattern=sep.strip() or sep).combine_chunks()
    tokens = pc.utf8_trim_whitespace(pc.list_flatten(lists))
    parents = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False).astype(np.int64)
    keep = pc.not_equal(tokens, "").to_numpy(zero_copy_only=False)
    tokens = pc.filter(tokens, pa.array(keep))
    parents = parents[keep]
    channels = sorted(set(pc.unique(tokens).to_pylist()))
    codes = pc.index_in(tokens, value_set=pa.array(channels, pa.string()))
    code_arr = codes.to_numpy(zero_copy_only=False).astype(np.int64)
    # tokens of one path are contiguous and in order: sort by path index (stable) for safety
    order = np.argsort(parents, kind="stable")
    lengths = np.bincount(parents, minlength=table.num_rows).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return PathSet(tuple(channels), offsets, code_arr[order], *numbers)


def paths_from_text(
    columns: dict[str, list[str]], *, sep: str = PATH_SEPARATOR, value_scale: int | None = None
) -> PathSet:
    """``paths_from_arrow`` for text columns (a parsed path file), in plain Python: a path
    file of 25k paths reads in a few ms, and without Arrow's conversions, which import pandas
    (0.2 s, more than the Markov model itself)."""
    n = len(next(iter(columns.values()), []))
    numbers = _path_numbers(list(columns), n, columns.__getitem__, value_scale)
    token_sep = sep.strip() or sep
    split = [
        [t for t in (tok.strip() for tok in (path or "").split(token_sep)) if t]
        for path in columns["path"]
    ]
    channels = sorted({t for tokens in split for t in tokens})
    code_of = {c: i for i, c in enumerate(channels)}
    codes = np.fromiter((code_of[t] for tokens in split for t in tokens), np.int64)
    lengths = np.fromiter((len(tokens) for tokens in split), np.int64, count=n)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return PathSet(tuple(channels), offsets, codes, *numbers)


def _path_numbers(
    names: Sequence[str], n: int, column: Any, value_scale: int | None
) -> tuple[IntArray, IntArray, IntArray, int]:
    """Conversions, value units, nulls and the value scale of a path table's columns."""
    missing = [c for c in ("path", "total_conversions") if c not in names]
    if missing:
        raise AttributionError(
            f"the path table lacks {', '.join(missing)}; it has "
            f"{', '.join(names) or 'no columns'}; expected "
            f"{';'.join(PATH_COLUMNS)} (value and null optional)"
        )
    conversions = _whole(column("total_conversions"), "total_conversions")
    nulls = (
        _whole(column("total_null"), "total_null")
        if "total_null" in names
        else np.zeros(n, np.int64)
    )
    if "total_conversion_value" in names:
        value, scale = decimal_units(column("total_conversion_value"), value_scale)
    else:
        value, scale = np.zeros(n, np.int64), 2 if value_scale is None else value_scale
    return conversions, value, nulls, scale


def _whole(col: Any, name: str) -> np.ndarray[Any, np.dtype[np.int64]]:
    values = col.to_pylist() if hasattr(col, "to_pylist") else col
    out = np.zeros(len(values), np.int64)
    for i, v in enumerate(values):
        if v is None or v == "":
            continue
        try:
            d = Decimal(str(v).strip())
        except InvalidOperation:
            raise AttributionError(f"{name} row {i + 1}: {v!r} is not a number") from None
        if d != d.to_integral_value() or d < 0:
            raise AttributionError(
                f"{name} row {i + 1}: {v!r} must be a whole number of journeys >= 0"
            )
        out[i] = int(d)
    return out


def read_paths(
    source: str | Path | pa.Table | Any,
    *,
    delimiter: str = ";",
    sep: str = PATH_SEPARATOR,
) -> PathSet:
    """A path set from a ChannelAttribution CSV file (``;``-separated, header
    ``path;total_conversions;total_conversion_value;total_null``), an Arrow table, a pandas
    DataFrame or an Ibis table with those columns."""
    if isinstance(source, (str, Path)):
        p = Path(source)
        try:
            text = p.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise InputDataError(f"{p}: no such path file") from None
        rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
        if not rows:
            raise InputDataError(f"{p}: the path file is empty; expected a header line")
        header = [h.strip() for h in rows[0]]
        body = [r for r in rows[1:] if r]
        bad = [i + 2 for i, r in enumerate(body) if len(r) != len(header)]
        if bad:
            raise InputDataError(
                f"{p}: line {bad[0]} has a different number of fields than the header "
                f"{delimiter.join(header)}; is the delimiter {delimiter!r} right?"
            )
        columns = {h: [r[j] for r in body] for j, h in enumerate(header)}
        try:
            return paths_from_text(columns, sep=sep)
        except AttributionError as exc:
            raise AttributionError(f"{p}: {exc}") from None
    if type(source).__module__.startswith("ibis."):  # an Ibis table
        source = to_arrow(source)
    if not isinstance(source, pa.Table):
        try:
            source = pa.Table.from_pandas(source, preserve_index=False)
        except Exception as exc:
            raise AttributionError(
                f"cannot read paths from {type(source).__name__}: give a CSV path, an Arrow "
                "table, a pandas DataFrame or an Ibis table"
            ) from exc
    return paths_from_arrow(source, sep=sep)


def attribution_paths(
    journey: ir.Table,
    *,
    level: Level = "channel",
    lookback_days: float | None = 30,
    collapse_repeats: bool = False,
    touch: Touch = "event",
    sep: str = PATH_SEPARATOR,
) -> pa.Table:
    """The journeys as a ChannelAttribution path table (``path`` with touch names joined by
    ``sep``, ``total_conversions``, ``total_conversion_value``, ``total_null``), sorted by
    path; write it with ``write_paths`` and read it back with ``attribution_from_paths``."""
    names = touch_names(journey, level, touch)
    rows = to_arrow(
        paths_expr(
            journey,
            names,
            level=level,
            lookback_days=lookback_days,
            collapse_repeats=collapse_repeats,
            touch=touch,
        )
    )
    ps = paths_from_codes(rows, names)
    name_arr = np.array(names, dtype=object)
    parts = [
        sep.join(name_arr[ps.codes[ps.offsets[i] : ps.offsets[i + 1]]].tolist())
        for i in range(ps.n_paths)
    ]
    out = pa.table(
        {
            "path": pa.array(parts, pa.string()),
            "total_conversions": pa.array(ps.conversions, pa.int64()),
            "total_conversion_value": pa.array(
                [Decimal(int(v)).scaleb(-ps.value_scale) for v in ps.value.tolist()],
                pa.decimal128(38, ps.value_scale),
            ),
            "total_null": pa.array(ps.nulls, pa.int64()),
        }
    )
    return out.sort_by("path")


def write_paths(table: pa.Table, path: str | Path, *, delimiter: str = ";") -> Path:
    """Write a path table as ChannelAttribution's ``;``-separated CSV."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow(PATH_COLUMNS)
        for r in table.select(list(PATH_COLUMNS)).to_pylist():
            w.writerow([r[c] if r[c] is not None else "" for c in PATH_COLUMNS])
    return p


# -- the analyses --------------------------------------------------------------------------------
def attribution(
    journey: ir.Table,
    *,
    level: Level = "channel",
    models: Sequence[Model] = MODELS,
    lookback_days: float | None = 30,
    collapse_repeats: bool = False,
    touch: Touch = "event",
    markov_order: int = 1,
    markov_allocation: MarkovAllocation = "global",
    half_life_days: float = 7.0,
    position_weights: tuple[float, float, float] = (0.4, 0.2, 0.4),
    shapley_value: ShapleyValue = "conversions",
    shapley_max_exact: int = 12,
    shapley_permutations: int = 2000,
    seed: int = 0,
) -> AttributionResult:
    """Attribute the journey table's conversions to channels or touchpoints.

    ``touch="event"`` counts every event with a value of ``level`` as a touch;
    ``"session"`` only each session's entry event (its channel is how the customer came in),
    the usual unit of marketing attribution. See ``attribution_journeys`` for the journeys
    and the module docstring for the models."""
    check_level(level)
    models = _check_models(models, allowed=MODELS)
    check_order(markov_order)
    scope: dict[str, Any] = {
        "level": level,
        "lookback_days": lookback_days,
        "collapse_repeats": collapse_repeats,
        "touch": touch,
    }
    needs_paths = any(m in models for m in ("first", "last", "linear", "position_based", "shapley"))
    needs_paths |= "markov" in models and markov_allocation == "per_journey"
    names = touch_names(journey, level, touch)
    paths = transitions = decay = totals = None
    if needs_paths:
        paths = paths_from_codes(to_arrow(paths_expr(journey, names, **scope)), names)
        totals = JourneyTotals(
            int(paths.conversions.sum()),
            int(paths.value.sum()),
            int(paths.nulls.sum()),
            paths.n_paths,
        )
    if "markov" in models:
        rows = to_arrow(transitions_expr(journey, names, order=markov_order, **scope))
        transitions, chain_totals = transitions_from_arrow(rows, names, markov_order)
        totals = totals or chain_totals
    if "time_decay" in models:
        rows = time_decay_expr(journey, names, half_life_days=half_life_days, **scope)
        decay = {
            names[r["code"]]: (r["conversions"], r["value"]) for r in to_arrow(rows).to_pylist()
        }
    if totals is None:
        rows = to_arrow(transitions_expr(journey, names, order=1, **scope))
        totals = transitions_from_arrow(rows, names, 1)[1]
    everything = to_arrow(conversions_expr(journey)).to_pylist()[0]
    return _attribute(
        paths,
        transitions,
        decay,
        totals,
        all_conversions=int(everything["conversions"] or 0),
        all_value=Decimal(everything["value"] or 0).quantize(Decimal("0.01")),
        level=level,
        models=models,
        lookback_days=lookback_days,
        collapse_repeats=collapse_repeats,
        markov_order=markov_order,
        markov_allocation=markov_allocation,
        position_weights=position_weights,
        shapley_value=shapley_value,
        shapley_max_exact=shapley_max_exact,
        shapley_permutations=shapley_permutations,
        seed=seed,
        settings={
            "touch": touch,
            "half_life_days": half_life_days,
            "position_weights": position_weights,
        },
    )


def attribution_from_paths(
    source: str | Path | pa.Table | Any,
    *,
    models: Sequence[Model] = PATH_MODELS,
    collapse_repeats: bool = False,
    markov_order: int = 1,
    markov_allocation: MarkovAllocation = "global",
    position_weights: tuple[float, float, float] = (0.4, 0.2, 0.4),
    shapley_value: ShapleyValue = "conversions",
    shapley_max_exact: int = 12,
    shapley_permutations: int = 2000,
    seed: int = 0,
    delimiter: str = ";",
    sep: str = PATH_SEPARATOR,
    level: str = "channel",
) -> AttributionResult:
    """Attribution over aggregated paths in the ChannelAttribution format (a ``;``-separated
    CSV ``path;total_conversions;total_conversion_value;total_null`` with paths like
    ``a > b > c``, or a table with those columns). Rows with an empty path count as
    unattributed conversions. Time decay needs touch times, which paths do not carry."""
    if "time_decay" in models:
        raise AttributionError(
            "time_decay needs the time of each touch, which a path table does not have; "
            f"drop it (models: {', '.join(PATH_MODELS)}) or attribute events instead"
        )
    models = _check_models(models, allowed=PATH_MODELS)
    check_order(markov_order)
    raw = read_paths(source, delimiter=delimiter, sep=sep)
    empty = raw.lengths == 0
    unattributed = int(raw.conversions[empty].sum())
    unattributed_value = int(raw.value[empty].sum())
    paths = raw.non_empty()
    if collapse_repeats:
        paths = paths.collapsed()
    transitions = transitions_from_paths(paths, markov_order) if "markov" in models else None
    totals = JourneyTotals(
        int(paths.conversions.sum()),
        int(paths.value.sum()),
        int(paths.nulls.sum()),
        paths.n_paths,
        paths.value_scale,
    )
    return _attribute(
        paths,
        transitions,
        None,
        totals,
        all_conversions=int(paths.conversions.sum()) + unattributed,
        all_value=paths.value_of(int(paths.value.sum()) + unattributed_value),
        level=level,
        models=models,
        lookback_days=None,
        collapse_repeats=collapse_repeats,
        markov_order=markov_order,
        markov_allocation=markov_allocation,
        position_weights=position_weights,
        shapley_value=shapley_value,
        shapley_max_exact=shapley_max_exact,
        shapley_permutations=shapley_permutations,
        seed=seed,
        settings={"position_weights": position_weights},
    )


def _attribute(
    paths: PathSet | None,
    transitions: Transitions | None,
    decay: dict[str, tuple[Decimal, Decimal]] | None,
    totals: JourneyTotals,
    *,
    all_conversions: int,
    all_value: Decimal,
    level: str,
    models: tuple[Model, ...],
    lookback_days: float | None,
    collapse_repeats: bool,
    markov_order: int,
    markov_allocation: MarkovAllocation,
    position_weights: tuple[float, float, float],
    shapley_value: ShapleyValue,
    shapley_max_exact: int,
    shapley_permutations: int,
    seed: int,
    settings: dict[str, Any],
) -> AttributionResult:
    """Run the models on the aggregates; every model reports every channel."""
    scale = totals.scale
    conversions, value_units = totals.conversions, totals.value_units
    channels: set[str] = set()
    if paths is not None:
        channels |= set(paths.channels)
    if transitions is not None:
        channels |= set(transitions.channels)
    if decay is not None:
        channels |= {str(c) for c in decay}
    total_value = to_decimal(Fraction(value_units, 10**scale), scale)
    unattributed = all_conversions - conversions
    unattributed_value = all_value - total_value

    credits: list[ChannelCredit] = []
    removal: list[RemovalEffect] = []
    extra: dict[str, Any] = {}
    weights = tuple(Fraction(str(w)) for w in position_weights)
    if len(weights) != 3 or any(w < 0 for w in weights):
        raise AttributionError(
            f"position_weights must be three weights >= 0 (first, middle, last), "
            f"got {position_weights!r}"
        )
    for model in models:
        rows: dict[str, tuple[float, Decimal]] = {}
        if model in ("first", "last", "linear", "position_based"):
            assert paths is not None
            cr: Credit = heuristic_credit(paths, model, (weights[0], weights[1], weights[2]))
            for code, name in enumerate(paths.channels):
                rows[name] = (
                    float(cr.conversions.get(code, Fraction(0))),
                    to_decimal(cr.value.get(code, Fraction(0)) / 10**scale, scale),
                )
        elif model == "time_decay":
            assert decay is not None
            for name, (c, v) in decay.items():
                rows[str(name)] = (
                    float(c or 0),
                    to_decimal(Fraction(Decimal(v or 0)), scale),
                )
        elif model == "markov":
            assert transitions is not None
            sol = solve_markov(transitions)
            if markov_allocation == "global":
                mc, mv = markov_credit_global(sol, conversions, value_units)
            elif markov_allocation == "per_journey":
                assert paths is not None
                mc, mv = markov_credit_per_journey(_recode(paths, sol), paths)
            else:
                raise AttributionError(
                    f"unknown markov_allocation {markov_allocation!r}; allowed: global, per_journey"
                )
            for code, name in enumerate(sol.channels):
                rows[name] = (float(mc[code]), _float_decimal(float(mv[code]) / 10**scale, scale))
            removal = _removal_rows(sol)
            extra.update(
                markov_order=markov_order,
                markov_allocation=markov_allocation,
                markov_states=sol.n_states,
                conversion_probability=sol.conversion_probability,
            )
        elif model == "shapley":
            assert paths is not None
            sh = shapley(
                paths,
                value=shapley_value,
                max_exact=shapley_max_exact,
                permutations=shapley_permutations,
                seed=seed,
            )
            for code, name in enumerate(paths.channels):
                if sh.exact_conversions is not None and sh.exact_value is not None:
                    rows[name] = (
                        float(sh.exact_conversions[code]),
                        to_decimal(sh.exact_value[code] / 10**scale, scale),
                    )
                else:
                    rows[name] = (
                        float(sh.conversions[code]),
                        _float_decimal(float(sh.value[code]) / 10**scale, scale),
                    )
            extra.update(
                shapley_value=shapley_value,
                shapley_method=sh.method,
                shapley_permutations=sh.permutations,
            )
        for name in channels:
            rows.setdefault(name, (0.0, Decimal(0).scaleb(-scale)))
        ordered = sorted(rows.items(), key=lambda kv: (-kv[1][0], kv[0]))
        credits += [
            ChannelCredit(model, name, c, v, c / conversions if conversions else 0.0)
            for name, (c, v) in ordered
        ]
    return AttributionResult(
        level=level,
        models=tuple(models),
        credits=credits,
        removal_effects=removal,
        conversions=conversions,
        value=total_value,
        null_journeys=totals.nulls,
        unattributed_conversions=unattributed,
        unattributed_value=unattributed_value,
        distinct_paths=totals.distinct_paths,
        lookback_days=lookback_days,
        collapse_repeats=collapse_repeats,
        settings=settings,
        **extra,
    )


def _recode(paths: PathSet, sol: MarkovSolution) -> MarkovSolution:
    """The solution with removal effects indexed like ``paths.channels``."""
    if sol.channels == paths.channels:
        return sol
    pos = {c: i for i, c in enumerate(sol.channels)}
    idx = np.array([pos[c] for c in paths.channels], dtype=np.int64)
    return MarkovSolution(
        paths.channels,
        sol.order,
        sol.n_states,
        sol.conversion_probability,
        sol.without[idx],
        sol.removal_effects[idx],
    )


def _removal_rows(sol: MarkovSolution) -> list[RemovalEffect]:
    rows = [
        RemovalEffect(name, float(sol.removal_effects[i]), float(sol.without[i]))
        for i, name in enumerate(sol.channels)
    ]
    return sorted(rows, key=lambda r: (-r.removal_effect, r.channel))


def _float_decimal(x: float, scale: int) -> Decimal:
    return to_decimal(Fraction(x), scale)


def _check_models(models: Sequence[str], allowed: Sequence[str]) -> tuple[Model, ...]:
    if isinstance(models, str):
        models = [models]
    unknown = [m for m in models if m not in allowed]
    if unknown or not models:
        raise AttributionError(
            f"unknown model(s) {', '.join(map(repr, unknown)) or '(none given)'}; allowed: "
            f"{', '.join(allowed)}"
        )
    out: list[Model] = []
    for m in models:
        if m not in out:
            out.append(m)  # type: ignore[arg-type]
    return tuple(out)
