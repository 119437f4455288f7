"""Ordered funnels over the journey table, and touchpoint reach.

A funnel is a list of steps (phases, touchpoints or event names). Each customer is walked
greedily in ``(ts, event_id)`` order: step k is the customer's earliest step-k event after
the event that matched the previous step. For a fixed start this greedy match is exact.

* ``skips=True`` (the phase funnel's default): a customer who never shows step k keeps
  going from where they were, so someone who goes from awareness straight to purchase counts
  in both; ``entered`` is every customer with any step.
* ``skips=False`` (a classic conversion funnel): a customer stops at the first missing step;
  ``entered`` is every customer with step 1.

``window`` limits the funnel to events within that time after the customer's first matched
step. Times between steps are integer microseconds, reported as seconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import ibis
import ibis.expr.types as ir

from journeymap.analytics.results import TableResult

StepLevel = Literal["phase", "touchpoint", "event", "channel"]
_US = 1_000_000


@dataclass(frozen=True)
class FunnelStep:
    index: int
    step: str
    label: str
    #: customers who reached this step (in order)
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
class FunnelResult(TableResult):
    level: StepLevel
    steps: list[FunnelStep]
    entered: int
    skips: bool
    window_seconds: int | None

    def to_records(self) -> list[dict[str, Any]]:
        return [asdict(s) for s in self.steps]

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "entered": self.entered,
            "skips": self.skips,
            "window_seconds": self.window_seconds,
            "steps": self.to_records(),
        }


def funnel_expr(
    journey: ir.Table,
    steps: Sequence[str],
    *,
    level: StepLevel = "phase",
    skips: bool = True,
    window_seconds: int | None = None,
) -> ir.Table:
    """One row: ``entered``, and per step k ``customers_k``, ``both_k``, ``median_us_k``,
    ``median_start_us_k``. Portable Ibis (runs on DuckDB and PySpark alike)."""
    if not steps:
        raise ValueError("a funnel needs at least one step")
    key = journey[level]
    s = journey.filter(key.isin(list(steps))).select("customer_id", "step_index", "ts_us", key=key)
    starters = s if skips else s.filter(s.key == steps[0])
    reached = (
        starters.select("customer_id")
        .distinct()
        .mutate(pos_0=ibis.literal(0, "int64"), anchor_us=ibis.null("int64"))
    )

    # Each step consumes the previous step's table exactly once (a left join with the step's
    # candidate events, then one row per customer again). Consuming it twice, e.g. a join to
    # find the next match and a join back, makes Ibis inline the chain twice per step: the
    # SQL then doubles with every step (12 steps gave 430,000 lines).
    for k, name in enumerate(steps, start=1):
        cand = s.filter(s.key == name).select(
            c_customer="customer_id", c_seq="step_index", c_ts="ts_us"
        )
        prev_pos = reached[f"pos_{k - 1}"]
        preds = [reached.customer_id == cand.c_customer, cand.c_seq > prev_pos]
        if not skips and k > 1:
            preds.append(reached[f"seq_{k - 1}"].notnull())
        if window_seconds is not None:
            preds.append(
                reached.anchor_us.isnull() | (cand.c_ts <= reached.anchor_us + window_seconds * _US)
            )
        j = reached.left_join(cand, preds)
        carried = [c for c in reached.columns if c != "customer_id"]
        step = j.group_by("customer_id").agg(
            **{c: j[c].max() for c in carried},
            **{f"seq_{k}": j.c_seq.min(), f"ts_{k}": j.c_ts.argmin(j.c_seq)},
        )
        reached = step.mutate(
            **{
                f"pos_{k}": ibis.coalesce(step[f"seq_{k}"], step[f"pos_{k - 1}"]),
                "anchor_us": ibis.coalesce(step.anchor_us, step[f"ts_{k}"]),
            }
        )

    aggs: dict[str, ir.Value] = {"entered": reached.customer_id.count()}
    for k in range(1, len(steps) + 1):
        seq = reached[f"seq_{k}"]
        aggs[f"customers_{k}"] = seq.count()
        aggs[f"median_start_us_{k}"] = (reached[f"ts_{k}"] - reached.anchor_us).median()
        if k > 1:
            both = seq.notnull() & reached[f"seq_{k - 1}"].notnull()
            aggs[f"both_{k}"] = both.sum()
            delta = reached[f"ts_{k}"] - reached[f"ts_{k - 1}"]
            # nulls are ignored by median on every engine; median(where=...) is not portable
            # (Spark wants a constant percentage in percentile())
            aggs[f"median_us_{k}"] = ibis.ifelse(both, delta, ibis.null("int64")).median()
    return reached.aggregate(**aggs)


def funnel(
    journey: ir.Table,
    steps: Sequence[str],
    *,
    level: StepLevel = "phase",
    skips: bool = True,
    window_seconds: int | None = None,
    labels: Sequence[str] | None = None,
) -> FunnelResult:
    """Run the funnel and return a typed result."""
    row = (
        funnel_expr(journey, steps, level=level, skips=skips, window_seconds=window_seconds)
        .to_pyarrow()
        .to_pylist()[0]
    )
    entered = int(row["entered"] or 0)
    out: list[FunnelStep] = []
    for k, name in enumerate(steps, start=1):
        customers = int(row[f"customers_{k}"] or 0)
        prev_customers = int(row[f"customers_{k - 1}"] or 0) if k > 1 else None
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
    return FunnelResult(level, out, entered, skips, window_seconds)


def _ratio(a: int, b: int | None) -> float | None:
    return a / b if b else None


def _seconds(us: Any) -> float | None:
    if us is None or (isinstance(us, float) and math.isnan(us)):
        return None
    return float(us) / _US


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
    total = int(journey.customer_id.nunique().to_pyarrow().as_py() or 0)
    rows = {r["touchpoint"]: r for r in reach_expr(journey).to_pyarrow().to_pylist()}
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
