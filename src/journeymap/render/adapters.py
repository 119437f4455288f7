"""From analysis results to the renderer's optional inputs (the view-model boundary).

Each function takes what an analysis returns and gives what ``render.build`` consumes, so the
facade only chains calls and the renderer never depends on how an analysis is computed.
"""

from __future__ import annotations

from collections.abc import Sequence

from journeymap.analytics.attribution import AttributionResult
from journeymap.analytics.breaks import BreaksResult
from journeymap.analytics.experience import ExperienceResult
from journeymap.analytics.paths import StepSankey, TransitionGraph
from journeymap.analytics.personas import PersonasResult
from journeymap.analytics.retention import RetentionResult
from journeymap.model.spec import JourneySpec
from journeymap.render.build import (
    DetectedBreak,
    PathTransition,
    PersonaProfile,
    PhaseExperience,
)


def phase_experience(
    current: ExperienceResult, previous: ExperienceResult | None = None
) -> list[PhaseExperience]:
    """Mean feeling per phase (−2…+2, n-weighted over its surveys) with its sample size."""
    prev = previous.feelings() if previous else {}
    out = []
    for phase, acc in current.feelings().items():
        p = prev.get(phase)
        out.append(
            PhaseExperience(
                phase=phase,
                score=float(acc["feeling"]),
                n=int(acc["n"]),
                previous_score=float(p["feeling"]) if p else None,
            )
        )
    return out


def attribution_credits(result: AttributionResult) -> dict[str, dict[str, float]]:
    """``credits[model][channel]`` = credited conversions, models in the result's order."""
    credits: dict[str, dict[str, float]] = {m: {} for m in result.models}
    for c in result.credits:
        credits.setdefault(c.model, {})[c.channel] = float(c.conversions)
    return credits


def retention_cohorts(
    result: RetentionResult, *, limit: int | None = 12
) -> list[tuple[str, int, Sequence[float | None]]]:
    """(label, size, rates by offset) per cohort, the latest ``limit`` cohorts."""
    cohorts = [c for c in result.cohorts if c.breakdown is None] or list(result.cohorts)
    rows: list[tuple[str, int, Sequence[float | None]]] = [
        (c.start.isoformat(), c.size, list(c.rates)) for c in cohorts
    ]
    return rows[-limit:] if limit else rows


def survey_count(result: ExperienceResult) -> int:
    return sum(int(acc["n"]) for acc in result.feelings().values())


def detected_breaks(result: BreaksResult, spec: JourneySpec) -> list[DetectedBreak]:
    """Breaks on the map: in the phase of their touchpoint (campaign bounces: first phase)."""
    phase_of = {t.id: t.phase for t in spec.touchpoints}
    first_phase = spec.phase_ids()[0]
    out = []
    for b in result.breaks:
        phase = phase_of.get(b.touchpoint or "", first_phase)
        window = (
            (b.window_start.date(), b.window_end.date())
            if b.window_start is not None and b.window_end is not None
            else None
        )
        out.append(
            DetectedBreak(
                id=b.id,
                phase=phase,
                label=b.label,
                rate=b.rate,
                baseline_rate=b.expected_rate,
                affected_customers=b.affected_customers,
                lost_revenue=float(b.lost_revenue),
                p_value=b.p_value,
                touchpoint=b.touchpoint,
                series=b.series,
                window=window,
            )
        )
    return out


def persona_profiles(result: PersonasResult) -> list[PersonaProfile]:
    """What the data says about each persona, named by its matching spec narrative."""
    return [
        PersonaProfile(
            id=p.narrative_id or p.persona,
            customers=p.customers,
            share=p.share,
            conversion_rate=p.conversion_rate,
            channels=tuple(c for c, _ in p.top_channels[:3]),
            active_hours=p.peak_hours,
            typical_path=tuple(p.typical_path[:4]),
        )
        for p in result.personas
    ]


def path_transitions(sankey: StepSankey) -> list[PathTransition]:
    """Flows between consecutive steps; a journey that exits ends its path (target None)."""
    return [
        PathTransition(
            step=f.step,
            source=f.source,
            target=None if f.target == "(exit)" else f.target,
            customers=f.units,
        )
        for f in sankey.flows
    ]


def touchpoint_transitions(graph: TransitionGraph) -> dict[tuple[str, str], int]:
    """Transitions between touchpoints (the synthetic start/exit/conversion nodes dropped)."""
    return {
        (e.source, e.target): e.count
        for e in graph.edges
        if not (e.source.startswith("(") or e.target.startswith("("))
    }
