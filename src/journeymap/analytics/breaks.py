"""Journey breaks: where significantly more journeys end or stall than expected, and the cost.

Three kinds of trials (analytics/trials.py) are measured: **step exits** (a visit ends at a
touchpoint without converting), **campaign bounces** (an arrival from a campaign leaves at
once) and **unfinished processes** (a payment started and no order within an hour). The engine
aggregates them per kind, subject, UTC day and segment (one query); the tests run on those
counts (analytics/break_detection.py): each step exit and process against its other segments
(``segment``) and against its own other days (``change_point``: the window whose rate jumps),
each campaign against the other campaigns (``campaign``). All tests form one family for the
Benjamini–Hochberg q-values; a finding is reported when ``q <= alpha`` and its effect is large
enough (``min_lift``, ``min_excess``, ``min_excess_exits``). Findings about the same subject
whose segments and windows overlap describe one break: the most significant one is kept and the
others are listed in ``related``; a step exit or process break whose excess exits come mostly
from sessions of a campaign that has a bounce break is folded into that one (the same visitors
leaving).

Each break is measured on its *cell* (subject, detection segment, window) against its
baseline (the other segment values, the days outside the window, or the other campaigns):

* **rate** vs. **expected rate** (the baseline's), lift, excess exits, p- and q-value;
* **lost conversions** = trials in the cell × (the baseline's conversion rate − the cell's),
  a conversion being one that follows the trial in its session (for a process: finishing it),
  and **lost revenue** = lost conversions × the baseline's revenue per conversion (AOV);
* from three more queries (analytics/concentration.py): the **traits** every trial of the cell
  shares (``error = size_unavailable``), the **segment where it concentrates** (device,
  channel, campaign, persona and low-cardinality properties of the subject's events: the
  narrowest value or pair holding ``concentration_share`` of the excess exits with a
  significantly higher rate) and the **customers affected**: those with an exited trial in
  that segment (the cell when there is none), ids in ``customer_ids``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

import ibis.expr.types as ir
import numpy as np
import pandas as pd

from journeymap.analytics.break_detection import (
    BreakTest,
    Detection,
    finding_id,
    merge_findings,
    run_break_tests,
    utc_day,
)
from journeymap.analytics.concentration import Concentration, locate, subject_trials
from journeymap.analytics.engine import to_arrow
from journeymap.analytics.results import TableResult
from journeymap.analytics.trials import (
    NONE,
    SEGMENT_COLUMNS,
    BreakKind,
    Process,
    break_rates_expr,
    default_exit_touchpoints,
    default_processes,
    trials_expr,
)
from journeymap.model.spec import JourneySpec

__all__ = [
    "BreakTest",
    "BreaksResult",
    "JourneyBreak",
    "Process",
    "find_breaks",
    "merge_findings",
    "run_break_tests",
]


@dataclass(frozen=True)
class JourneyBreak:
    """A place where significantly more journeys end or stall than expected."""

    id: str
    kind: BreakKind
    #: touchpoint (step exit), campaign (bounce) or process id ``start->end``
    subject: str
    #: the touchpoint where journeys end (the process's start; None for a campaign bounce)
    touchpoint: str | None
    #: the campaign (of a bounce; else the one the break concentrates in, if any)
    campaign: str | None
    label: str
    detection: Detection
    #: where it was detected, e.g. ``{"device": "mobile"}`` (``{}``: every segment)
    segment: dict[str, str]
    #: the window of a change point (UTC, end exclusive); None: the whole period
    window_start: dt.datetime | None
    window_end: dt.datetime | None
    trials: int
    exits: int
    rate: float
    expected_rate: float
    lift: float
    excess_exits: float
    affected_customers: int
    conversion_rate: float
    expected_conversion_rate: float
    lost_conversions: float
    lost_revenue: Decimal
    statistic: float
    p_value: float
    q_value: float
    #: values every trial of the break shares and most others do not (an error code, say)
    traits: dict[str, str]
    #: where it concentrates: ``segment`` + ``traits`` + the narrowest segment holding most
    #: of the excess exits (``concentration_rate`` and ``concentration_share`` are that
    #: segment's; without one, the break's own)
    concentration: dict[str, str]
    concentration_rate: float
    concentration_share: float
    #: ids of other significant findings that describe the same break
    related: tuple[str, ...]
    description: str
    #: the affected customers (not in ``to_records``; see ``BreaksResult.customers``)
    customer_ids: tuple[str, ...] = field(repr=False, default=())
    #: the rate per week (UTC, from the week's first day) in the break's subject and segment
    series: tuple[tuple[dt.date, float], ...] = field(repr=False, default=())

    def record(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("customer_ids")
        return d


@dataclass(frozen=True)
class BreaksResult(TableResult):
    breaks: list[JourneyBreak]
    tests: list[BreakTest]
    alpha: float
    settings: dict[str, Any]

    def to_records(self) -> list[dict[str, Any]]:
        return [b.record() for b in self.breaks]

    def to_dict(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "tests": len(self.tests),
            "settings": self.settings,
            "breaks": self.to_records(),
        }

    def customers(self, break_id: str) -> tuple[str, ...]:
        """The affected customers of break ``break_id``."""
        for b in self.breaks:
            if b.id == break_id:
                return b.customer_ids
        known = ", ".join(b.id for b in self.breaks) or "none"
        raise KeyError(f"no break {break_id!r}; breaks found: {known}")


# -- the aggregate -----------------------------------------------------------------------------
def _decimal_cents(values: pd.Series) -> np.ndarray:
    return np.array(
        [0 if v is None or v != v else int(Decimal(v) * 100) for v in values], dtype=np.int64
    )


def _rates_frame(table: Any, segment_by: Sequence[str]) -> pd.DataFrame:
    df: pd.DataFrame = table.to_pandas()
    df["revenue_cents"] = _decimal_cents(df["revenue"])
    df = df.drop(columns=["revenue"])
    for col in segment_by:
        df[col] = df[col].fillna(NONE).astype(str)
    for col in ("n", "exits", "conversions", "day"):
        df[col] = df[col].astype(np.int64)
    return df


# -- the analysis ------------------------------------------------------------------------------
def find_breaks(
    journey: ir.Table,
    spec: JourneySpec,
    *,
    personas: ir.Table | None = None,
    touchpoints: Sequence[str] | None = None,
    processes: Sequence[Process] | None = None,
    campaigns: bool = True,
    segment_by: Sequence[str] = ("device",),
    alpha: float = 0.01,
    min_lift: float = 1.5,
    min_excess: float = 0.03,
    min_excess_exits: float = 10.0,
    min_trials: int = 20,
    bounce_events: int = 1,
    arrival_phase: str | None = None,
    limit_minutes: int = 60,
    concentration_share: float = 0.8,
    lang: str | None = None,
) -> BreaksResult:
    """Find the journey breaks of ``journey`` (see the module docstring for the method).

    ``personas``: a table with ``customer_id`` and ``persona`` on the same backend as the
    journey (e.g. the Parquet file ``find_personas`` wrote); adds the persona to the segments
    searched for concentration, and may be named in ``segment_by``.
    ``touchpoints`` / ``processes``: what to measure; by default ``default_exit_touchpoints``
    and ``default_processes`` of the spec (``limit_minutes`` for the default process).
    ``campaigns``: measure campaign bounces (arrivals: sessions whose first event is in
    ``arrival_phase``, the spec's first phase by default, and carries a campaign; a bounce has
    at most ``bounce_events`` further events).
    ``segment_by``: session columns whose values are tested against each other and scanned for
    change points (device, channel, campaign, persona).
    ``alpha`` (BH false discovery rate), ``min_lift``, ``min_excess``, ``min_excess_exits``:
    what is reported; ``min_trials``: the fewest trials a tested cell and its baseline need.
    ``concentration_share``: the share of excess exits a concentration segment must hold.
    """
    seg_cols = [*SEGMENT_COLUMNS, *(["persona"] if personas is not None else [])]
    for col in segment_by:
        if col not in seg_cols:
            raise ValueError(
                f"cannot segment breaks by {col!r}; allowed: {', '.join(seg_cols)}"
                + ("" if personas is not None else " (persona needs persona assignments)")
            )
    procs = list(processes) if processes is not None else default_processes(spec, limit_minutes)
    known = {tp.id for tp in spec.touchpoints}
    for p in procs:
        for tp_id in (p.start, p.end):
            if tp_id is not None and tp_id not in known:
                raise ValueError(f"process {p.id}: unknown touchpoint {tp_id!r}")
    tps = list(touchpoints) if touchpoints is not None else default_exit_touchpoints(spec, procs)
    unknown = [tp for tp in tps if tp not in known]
    if unknown:
        raise ValueError(
            f"unknown touchpoint(s) {', '.join(unknown)}; the spec has {', '.join(sorted(known))}"
        )
    phases = spec.phase_ids()
    if arrival_phase is not None and arrival_phase not in phases:
        raise ValueError(
            f"unknown arrival phase {arrival_phase!r}; the spec has {', '.join(phases)}"
        )
    arrival = phases.index(arrival_phase) + 1 if arrival_phase is not None else 1
    trials = trials_expr(
        journey,
        touchpoints=tps,
        processes=procs,
        campaigns=campaigns,
        arrival_phase_index=arrival,
        bounce_events=bounce_events,
        personas=personas if "persona" in segment_by else None,
    )
    rates = _rates_frame(to_arrow(break_rates_expr(trials, segment_by)), segment_by)
    settings = {
        "touchpoints": tps,
        "processes": [p.id for p in procs],
        "campaigns": campaigns,
        "segment_by": list(segment_by),
        "min_lift": min_lift,
        "min_excess": min_excess,
        "min_excess_exits": min_excess_exits,
        "min_trials": min_trials,
        "bounce_events": bounce_events,
        "arrival_phase": phases[arrival - 1] if phases else None,
        "limit_minutes": limit_minutes,
        "concentration_share": concentration_share,
    }
    tests = run_break_tests(
        rates,
        segment_by=segment_by,
        alpha=alpha,
        min_lift=min_lift,
        min_excess=min_excess,
        min_excess_exits=min_excess_exits,
        min_trials=min_trials,
    )
    language = lang or spec.language
    found: list[tuple[JourneyBreak, Concentration]] = []
    for head, related in merge_findings(tests):
        trials_of = subject_trials(
            journey,
            head.kind,
            head.subject,
            processes=procs,
            personas=personas,
            arrival_phase_index=arrival,
            bounce_events=bounce_events,
        )
        found.append(
            _describe(trials_of, head, related, spec, language, concentration_share, min_trials)
        )
    breaks = [_with_series(b, rates) for b in _fold_into_campaigns(found, 0.5)]
    breaks.sort(key=lambda b: (-b.lost_revenue, -b.excess_exits, b.id))
    return BreaksResult(breaks, tests, alpha, settings)


def _with_series(b: JourneyBreak, rates: pd.DataFrame) -> JourneyBreak:
    """The break with its weekly rate (exits / trials) in its subject and segment: daily
    counts are too small to read as a sparkline."""
    rows = rates[(rates["kind"] == b.kind) & (rates["subject"] == b.subject)]
    for col, value in b.segment.items():
        if col in rows.columns:
            rows = rows[rows[col] == value]
    weeks = rows.assign(week=(rows["day"] // 7) * 7)
    daily = weeks.groupby("week")[["n", "exits"]].sum().sort_index()
    epoch = dt.date(1970, 1, 1)
    days, n, exits = (daily.index.to_numpy(), daily["n"].to_numpy(), daily["exits"].to_numpy())
    series = tuple(
        (epoch + dt.timedelta(days=int(d)), float(e) / float(k))
        for d, k, e in zip(days, n, exits, strict=True)
        if k > 0
    )
    return dataclasses.replace(b, series=series)


def _fold_into_campaigns(
    found: list[tuple[JourneyBreak, Concentration]], fold_share: float
) -> list[JourneyBreak]:
    """Step exits and processes whose excess exits come mostly (``fold_share``) from sessions
    of a campaign with a bounce break are that break seen at a later touchpoint: listed as
    its related findings instead."""
    bounce = {b.subject for b, _ in found if b.kind == "campaign_bounce"}
    kept: list[JourneyBreak] = []
    folded: dict[str, list[str]] = {}
    for b, conc in found:
        if b.kind != "campaign_bounce":
            into = [c for c in sorted(bounce) if conc.campaign_shares.get(c, 0.0) >= fold_share]
            if into:
                folded.setdefault(into[0], []).append(b.id)
                continue
        kept.append(b)
    return [
        JourneyBreak(**{**b.__dict__, "related": (*b.related, *folded[b.subject])})
        if b.kind == "campaign_bounce" and b.subject in folded
        else b
        for b in kept
    ]


def _describe(
    trials: ir.Table,
    t: BreakTest,
    related: list[BreakTest],
    spec: JourneySpec,
    lang: str,
    share: float,
    min_trials: int,
) -> tuple[JourneyBreak, Concentration]:
    conc = locate(
        trials,
        t.segment,
        t.start_day,
        t.end_day,
        t.expected_rate,
        share=share,
        min_trials=max(5, min_trials // 4),
    )
    conv = t.conversions / t.trials if t.trials else 0.0
    exp_conv = t.baseline_conversions / t.baseline_trials if t.baseline_trials else 0.0
    lost = max(0.0, t.trials * (exp_conv - conv))
    aov_cents = t.baseline_revenue_cents / t.baseline_conversions if t.baseline_conversions else 0
    lost_revenue = (Decimal(round(lost * aov_cents)) / 100).quantize(Decimal("0.01"))
    b = JourneyBreak(
        id=finding_id(t),
        kind=t.kind,
        subject=t.subject,
        touchpoint=None if t.kind == "campaign_bounce" else t.subject.split("->")[0],
        campaign=t.subject if t.kind == "campaign_bounce" else conc.segment.get("campaign"),
        label=_label(spec, t, lang),
        detection=t.detection,
        segment=dict(t.segment),
        window_start=utc_day(t.start_day),
        window_end=utc_day(t.end_day),
        trials=t.trials,
        exits=t.exits,
        rate=t.rate,
        expected_rate=t.expected_rate,
        lift=t.lift,
        excess_exits=t.excess_exits,
        affected_customers=len(conc.customer_ids),
        conversion_rate=conv,
        expected_conversion_rate=exp_conv,
        lost_conversions=lost,
        lost_revenue=lost_revenue,
        statistic=t.statistic,
        p_value=t.p_value,
        q_value=t.q_value,
        traits=dict(conc.constants),
        concentration={**t.segment, **conc.constants, **conc.segment},
        concentration_rate=conc.rate,
        concentration_share=conc.share,
        related=tuple(finding_id(r) for r in related),
        description="",
        customer_ids=conc.customer_ids,
    )
    return JourneyBreak(**{**b.__dict__, "description": _words(b)}), conc


def _label(spec: JourneySpec, t: BreakTest, lang: str) -> str:
    if t.kind == "campaign_bounce":
        return t.subject
    tp_id = t.subject.split("->")[0] if t.kind == "process_abandon" else t.subject
    try:
        return spec.touchpoint(tp_id).label_in(lang)
    except KeyError:
        return tp_id


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%" if x >= 0.1 else f"{100 * x:.1f}%"


def _words(b: JourneyBreak) -> str:
    what = {
        "step_exit": f"of visits reaching {b.label} ended there",
        "campaign_bounce": f"of arrivals from campaign {b.subject} left at once",
        "process_abandon": f"of processes started at {b.label} were not finished",
    }[b.kind]
    where = ", ".join(f"{k} = {v}" for k, v in b.segment.items() if b.kind != "campaign_bounce")
    when = ""
    if b.window_start is not None and b.window_end is not None:
        last = (b.window_end - dt.timedelta(days=1)).date()
        when = f" from {b.window_start.date()} to {last}"
    text = (
        f"{_pct(b.rate)} {what}{' (' + where + ')' if where else ''}{when}, "
        f"{b.lift:.1f}× the expected {_pct(b.expected_rate)}: {b.trials} trials, "
        f"{b.affected_customers} customers affected, about {b.lost_conversions:.0f} conversions "
        f"and {b.lost_revenue} in revenue lost"
    )
    if b.traits:
        text += "; all with " + ", ".join(f"{k} = {v}" for k, v in b.traits.items())
    narrower = {
        k: v for k, v in b.concentration.items() if k not in b.segment and k not in b.traits
    }
    if narrower:
        text += "; concentrated in " + ", ".join(f"{k} = {v}" for k, v in narrower.items())
        text += f" ({_pct(b.concentration_rate)})"
    return text + "."
