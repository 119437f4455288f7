"""Trials: the yes/no outcomes journey breaks are measured on, one row per chance to fail.

Every break kind is a rate of failed trials, built here as portable Ibis over the journey table
(analytics/journey.py) and then aggregated by the engine; ``breaks.py`` tests the aggregates.

=================== =========================================================================
``step_exit``       one trial per session and touchpoint the session reached (first
                    occurrence); **exited** = the session's last touchpoint is this one and no
                    conversion follows it in the session (the visit ended there)
``campaign_bounce`` one trial per *arrival*: a session whose first event is a touchpoint of the
                    arrival phase (the spec's first phase) and carries a campaign; **exited**
                    (bounced) = the session has at most ``bounce_events`` further events
``process_abandon`` one trial per session and process (start touchpoint → end touchpoint or
                    the goal), from the session's first start event; **exited** (unfinished) =
                    no end event follows within ``limit_minutes``, in any session
=================== =========================================================================

Columns of a trial: ``kind``, ``subject`` (touchpoint, campaign or process id),
``customer_id``, ``session_index``, ``step_index`` and ``ts_us`` of the trial's event, ``day``
(UTC days since the epoch), the session's ``device`` (first event with a device), ``channel``
(its first event's channel), ``campaign`` (its first campaign), ``persona`` when persona
assignments are given, ``exited``, ``converted`` (a conversion follows the trial event in the
session; for a process: it was finished) and ``revenue`` (of those conversions, DECIMAL).
Missing segment values read ``(none)``.

Portability (shared/research/engine.md): every "first"/"last" is ``argmin``/``argmax`` over the
unique ``step_index`` of non-null sentinel-filled values; running minima use ``cummin`` with an
explicit order; durations are integer microseconds; properties are read with ``re_extract``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import ibis
import ibis.expr.types as ir

from journeymap.model.spec import JourneySpec

BreakKind = Literal["step_exit", "campaign_bounce", "process_abandon"]
DAY_US = 86_400_000_000
MINUTE_US = 60_000_000
NONE = "(none)"
#: Session attributes a trial can be segmented by (besides ``persona``).
SEGMENT_COLUMNS = ("device", "channel", "campaign")
_BIG = 2**62
_MONEY = "decimal(18, 2)"


@dataclass(frozen=True)
class Process:
    """A process that should finish: from touchpoint ``start`` to touchpoint ``end`` (the goal
    when ``None``) within ``limit_minutes``."""

    start: str
    end: str | None = None
    limit_minutes: int = 60

    @property
    def id(self) -> str:
        return f"{self.start}->{self.end or 'goal'}"


def goal_touchpoints(spec: JourneySpec) -> list[str]:
    """Touchpoints whose rule names an event of the goal (the conversion's touchpoints)."""
    goal_events = set(spec.goal.match.event)
    return [tp.id for tp in spec.touchpoints if goal_events & set(tp.rule().event)]


def goal_phase_index(spec: JourneySpec) -> int:
    """1-based index of the phase holding the goal's touchpoint (the last phase if none)."""
    phases = spec.phase_ids()
    goals = goal_touchpoints(spec)
    if not goals:
        return len(phases)
    return phases.index(spec.touchpoint(goals[0]).phase) + 1


def default_processes(spec: JourneySpec, limit_minutes: int = 60) -> list[Process]:
    """The goal phase's final step: its last touchpoint before the goal, ending in the goal.

    For the demo spec (purchase phase: checkout_start, checkout_size_select, checkout_address,
    payment, order) that is ``payment -> goal``: a payment started and no order within the
    limit. Only the last step, because earlier starts ("checkout started, no order") would
    count the same lost sessions again that the step exits of the touchpoints in between
    already report, each at the step where the visit ended.
    """
    goals = goal_touchpoints(spec)
    if not goals:
        return []
    phase = spec.touchpoint(goals[0]).phase
    before = [tp.id for tp in spec.touchpoints_in(phase) if tp.id not in goals]
    return [Process(before[-1], None, limit_minutes)] if before else []


def default_exit_touchpoints(spec: JourneySpec, processes: Sequence[Process] = ()) -> list[str]:
    """Direct touchpoints up to the goal's phase, except the goal's own and process starts.

    Exits after the goal (a delivery e-mail, a review) end a journey that already converted;
    indirect touchpoints (word of mouth, social mentions) are not visits that can break; a
    process start's failure is measured by its process with a time limit instead.
    """
    last = goal_phase_index(spec)
    phases = spec.phase_ids()
    skip = set(goal_touchpoints(spec)) | {p.start for p in processes}
    return [
        tp.id
        for tp in spec.touchpoints
        if tp.kind == "direct" and phases.index(tp.phase) + 1 <= last and tp.id not in skip
    ]


def _filled(value: ir.Value) -> ir.Value:
    return value.fill_null(NONE)


def sessions_expr(journey: ir.Table) -> ir.Table:
    """One row per session: its segments, entry, last touchpoint, conversions and size."""
    j = journey
    step = j.step_index
    big = ibis.literal(_BIG, "int64")
    last_conv = ibis.ifelse(j.is_conversion, step, ibis.null("int64"))
    return j.group_by(["customer_id", "session_index"]).agg(
        start_us=j.ts_us.min(),
        first_step=step.min(),
        n_events=j.count(),
        device=_filled(j.device).argmin(ibis.ifelse(j.device.notnull(), step, big)),
        channel=_filled(j.channel).argmin(step),
        campaign=_filled(j.campaign).argmin(ibis.ifelse(j.campaign.notnull(), step, big)),
        entry_phase_index=j.phase_index.fill_null(0).argmin(step),
        entry_campaign=_filled(j.campaign).argmin(step),
        last_touchpoint=_filled(j.touchpoint).argmax(
            ibis.ifelse(j.touchpoint.notnull(), step, ibis.literal(-1, "int64"))
        ),
        last_conv_step=last_conv.max(),
        conv_revenue=ibis.ifelse(j.is_conversion, j.revenue, ibis.null(_MONEY)).sum().cast(_MONEY),
    )


def _finish(
    t: ir.Table,
    kind: BreakKind,
    subject: ir.Value,
    step: ir.Value,
    ts_us: ir.Value,
    exited: ir.Value,
    converted: ir.Value,
    revenue: ir.Value,
    properties: ir.Value | None,
) -> ir.Table:
    cols: dict[str, ir.Value] = {
        "kind": ibis.literal(kind, "string"),
        "subject": subject.cast("string"),
        "customer_id": t.customer_id,
        "session_index": t.session_index.cast("int64"),
        "step_index": step.cast("int64"),
        "ts_us": ts_us.cast("int64"),
        "day": (ts_us // DAY_US).cast("int64"),
        "device": t.device,
        "channel": t.channel,
        "campaign": t.campaign,
        "exited": exited.fill_null(False),
        "converted": converted.fill_null(False),
        "revenue": ibis.ifelse(converted.fill_null(False), revenue, ibis.null(_MONEY))
        .fill_null(ibis.literal(0, _MONEY))
        .cast(_MONEY),
    }
    if properties is not None:
        cols["properties"] = properties
    return t.select(**cols)


def step_exit_trials_expr(
    journey: ir.Table,
    touchpoints: Sequence[str],
    *,
    sessions: ir.Table | None = None,
    with_properties: bool = False,
) -> ir.Table:
    """Trials of kind ``step_exit`` for ``touchpoints`` (see the module docstring)."""
    j = journey
    s = sessions if sessions is not None else sessions_expr(journey)
    tp = j.filter(j.touchpoint.isin(list(touchpoints)))
    aggs: dict[str, ir.Value] = {"first_step": tp.step_index.min(), "first_us": tp.ts_us.min()}
    if with_properties:
        aggs["props"] = tp.properties.fill_null("{}").argmin(tp.step_index)
    occ = tp.group_by(["customer_id", "session_index", "touchpoint"]).agg(**aggs)
    t = occ.join(s.drop("first_step"), ["customer_id", "session_index"])
    converted = t.last_conv_step.notnull() & (t.last_conv_step >= t.first_step)
    exited = (t.last_touchpoint == t.touchpoint) & ~converted
    return _finish(
        t,
        "step_exit",
        t.touchpoint,
        t.first_step,
        t.first_us,
        exited,
        converted,
        t.conv_revenue,
        t.props if with_properties else None,
    )


def campaign_arrivals_expr(
    journey: ir.Table,
    *,
    arrival_phase_index: int = 1,
    bounce_events: int = 1,
    sessions: ir.Table | None = None,
    with_properties: bool = False,
) -> ir.Table:
    """Trials of kind ``campaign_bounce``: arrivals from a campaign and whether they bounced."""
    s = sessions if sessions is not None else sessions_expr(journey)
    s = s.filter((s.entry_phase_index == arrival_phase_index) & (s.entry_campaign != NONE))
    props = None
    if with_properties:
        first = journey.filter(journey.is_session_start).select(
            "customer_id", "session_index", props=journey.properties.fill_null("{}")
        )
        s = s.join(first, ["customer_id", "session_index"])
        props = s.props
    return _finish(
        s,
        "campaign_bounce",
        s.entry_campaign,
        s.first_step,
        s.start_us,
        (s.n_events - 1) <= bounce_events,
        s.last_conv_step.notnull(),
        s.conv_revenue,
        props,
    )


def process_trials_expr(
    journey: ir.Table,
    processes: Sequence[Process],
    *,
    sessions: ir.Table | None = None,
    with_properties: bool = False,
) -> ir.Table:
    """Trials of kind ``process_abandon``, one table for all ``processes`` (union)."""
    if not processes:
        raise ValueError("give at least one process, e.g. Process('payment')")
    s = sessions if sessions is not None else sessions_expr(journey)
    parts = [_process_trials(journey, p, s, with_properties) for p in processes]
    out = parts[0]
    for part in parts[1:]:
        out = out.union(part)
    return out


def _process_trials(journey: ir.Table, p: Process, s: ir.Table, with_properties: bool) -> ir.Table:
    j = journey
    is_start = j.touchpoint == p.start
    is_end = j.is_conversion if p.end is None else (j.touchpoint == p.end)
    ev = j.filter(is_start.fill_null(False) | is_end.fill_null(False))
    ev = ev.mutate(
        is_start=(ev.touchpoint == p.start).fill_null(False),
        end_us=ibis.ifelse(
            (ev.is_conversion if p.end is None else (ev.touchpoint == p.end)).fill_null(False),
            ev.ts_us,
            ibis.null("int64"),
        ),
    )
    # the time of the next end event at or after each row: a running minimum, latest first
    ev = ev.mutate(
        next_end_us=ev.end_us.cummin(group_by=ev.customer_id, order_by=[ibis.desc(ev.step_index)])
    )
    st = ev.filter(ev.is_start & ~ev.end_us.notnull())
    big = ibis.literal(_BIG, "int64")
    aggs: dict[str, ir.Value] = {
        "first_step": st.step_index.min(),
        "first_us": st.ts_us.min(),
        "next_end_us": st.next_end_us.fill_null(big).argmin(st.step_index),
    }
    if with_properties:
        aggs["props"] = st.properties.fill_null("{}").argmin(st.step_index)
    first = st.group_by(["customer_id", "session_index"]).agg(**aggs)
    t = first.join(s.drop("first_step"), ["customer_id", "session_index"])
    finished = t.next_end_us <= t.first_us + p.limit_minutes * MINUTE_US
    return _finish(
        t,
        "process_abandon",
        ibis.literal(p.id, "string"),
        t.first_step,
        t.first_us,
        ~finished,
        finished,
        t.conv_revenue,
        t.props if with_properties else None,
    )


def trials_expr(
    journey: ir.Table,
    *,
    touchpoints: Sequence[str] = (),
    processes: Sequence[Process] = (),
    campaigns: bool = True,
    arrival_phase_index: int = 1,
    bounce_events: int = 1,
    personas: ir.Table | None = None,
    with_properties: bool = False,
) -> ir.Table:
    """All trials (the union of the three kinds), with ``persona`` if assignments are given."""
    s = sessions_expr(journey)
    parts: list[ir.Table] = []
    if touchpoints:
        parts.append(
            step_exit_trials_expr(journey, touchpoints, sessions=s, with_properties=with_properties)
        )
    if campaigns:
        parts.append(
            campaign_arrivals_expr(
                journey,
                arrival_phase_index=arrival_phase_index,
                bounce_events=bounce_events,
                sessions=s,
                with_properties=with_properties,
            )
        )
    if processes:
        parts.append(
            process_trials_expr(journey, processes, sessions=s, with_properties=with_properties)
        )
    if not parts:
        raise ValueError("nothing to measure: give touchpoints, processes or campaigns=True")
    out = parts[0]
    for part in parts[1:]:
        out = out.union(part)
    if personas is not None:
        out = with_persona(out, personas)
    return out


def with_persona(trials: ir.Table, personas: ir.Table) -> ir.Table:
    """``trials`` with the ``persona`` of each customer (``(none)`` when unassigned)."""
    p = personas.select(p_customer="customer_id", p_persona=personas.persona.cast("string"))
    j = trials.left_join(p, trials.customer_id == p.p_customer)
    return j.mutate(persona=j.p_persona.fill_null(NONE)).drop("p_customer", "p_persona")


def break_rates_expr(trials: ir.Table, segment_by: Sequence[str] = ("device",)) -> ir.Table:
    """Trials, exits, conversions and revenue per kind, subject, UTC day and segment."""
    keys = ["kind", "subject", "day", *segment_by]
    return trials.group_by(keys).agg(
        n=trials.count(),
        exits=trials.exited.cast("int64").sum(),
        conversions=trials.converted.cast("int64").sum(),
        revenue=trials.revenue.sum().cast(_MONEY),
    )
