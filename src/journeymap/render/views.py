"""The view model: plain frozen dataclasses that the renderer draws, and nothing else.

This is the boundary between analytics and pictures. ``build.py`` fills these from the spec
and analysis results; layouts read only these. Every text is already in the report's
language, every number is raw (formatting happens in the layout with the locale), and every
statement says where it comes from: ``source="data"`` (computed from events or surveys) or
``source="spec"`` (written in the journey YAML).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

from journeymap.render.i18n import Lang

Source = Literal["data", "spec"]
Severity = Literal["high", "medium", "low"]
#: how a KPI value is formatted: count (1,234), percent (share 0..1), score (3.6/5),
#: nps (+41), money (€1,234), seconds (durations)
Unit = Literal["count", "percent", "score5", "nps", "money", "number"]


@dataclass(frozen=True)
class Item:
    """One statement on a card: a goal, a measure, a pain point, an opportunity."""

    text: str
    source: Source
    #: extra tooltip lines: sample size, how it was computed, dates
    detail: str = ""
    severity: Severity | None = None
    #: a short line of numbers shown under the text (e.g. "1,184 affected · ≈€61,300")
    note: str = ""


@dataclass(frozen=True)
class TouchpointView:
    id: str
    label: str
    channel: str | None
    kind: Literal["direct", "indirect"] = "direct"
    #: share of all customers reached (0..1) and their number; ``None`` without data
    reach: float | None = None
    customers: int | None = None

    @property
    def source(self) -> Source:
        return "data" if self.reach is not None else "spec"


@dataclass(frozen=True)
class FeelingPoint:
    """The feeling in one phase on -2…+2, from surveys (``data``) or the spec's expectation."""

    value: float
    source: Source
    word: str = ""
    #: survey responses behind a data point
    n: int | None = None
    #: the same phase in the previous period (from data), for the comparison line
    previous: float | None = None


@dataclass(frozen=True)
class KpiCard:
    label: str
    value: float | None
    unit: Unit
    source: Source
    previous: float | None = None
    #: which direction is good: colours the delta
    better: Literal["up", "down", "none"] = "up"
    #: a short note under the value when there is no delta (e.g. "n=842")
    note: str = ""
    currency: str = "EUR"

    @property
    def delta(self) -> float | None:
        if self.value is None or self.previous is None:
            return None
        return self.value - self.previous


@dataclass(frozen=True)
class PhaseColumn:
    """One phase of the map with everything the lanes show for it."""

    id: str
    label: str
    #: customers who reached the phase (current and previous period)
    customers: int | None = None
    previous_customers: int | None = None
    #: share of this phase's customers who reached the next one (None for the last phase)
    conversion_to_next: float | None = None
    previous_conversion_to_next: float | None = None
    #: the step from this phase to the next is a journey break
    is_break: bool = False
    moment_of_truth: bool = False
    goals: tuple[Item, ...] = ()
    questions: tuple[Item, ...] = ()
    feeling: FeelingPoint | None = None
    touchpoints: tuple[TouchpointView, ...] = ()
    measures: tuple[Item, ...] = ()
    pain_points: tuple[Item, ...] = ()
    opportunities: tuple[Item, ...] = ()
    kpi: KpiCard | None = None


@dataclass(frozen=True)
class PersonaCardData:
    """A persona: the narrative from the spec and the profile from the data."""

    id: str
    name: str
    description: str = ""
    quote: str = ""
    goals: tuple[str, ...] = ()
    questions: tuple[str, ...] = ()
    fears: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    #: data profile (None until the persona analysis provides it)
    customers: int | None = None
    share: float | None = None
    conversion_rate: float | None = None
    active_hours: str = ""
    typical_path: tuple[str, ...] = ()
    #: mean feeling per phase (-2…+2), for the sparkline
    feelings: tuple[float | None, ...] = ()
    source: Source = "spec"


@dataclass(frozen=True)
class Footer:
    spec_file: str = ""
    period_start: dt.date | None = None
    period_end: dt.date | None = None
    previous_start: dt.date | None = None
    previous_end: dt.date | None = None
    customers: int | None = None
    survey_n: int | None = None
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class JourneyMapData:
    title: str
    lang: Lang
    phases: tuple[PhaseColumn, ...]
    persona: PersonaCardData | None = None
    footer: Footer = field(default_factory=Footer)
    #: shown next to the title, e.g. "Q1 2026"
    period_label: str = ""


@dataclass(frozen=True)
class SankeyNode:
    id: str
    column: int
    label: str
    count: int
    is_exit: bool = False


@dataclass(frozen=True)
class SankeyLink:
    source: str
    target: str
    count: int


@dataclass(frozen=True)
class SankeyData:
    title: str
    lang: Lang
    nodes: tuple[SankeyNode, ...]
    links: tuple[SankeyLink, ...]
    #: caption per column; defaults to "STEP k"
    columns: tuple[str, ...] = ()
    footer: Footer = field(default_factory=Footer)


@dataclass(frozen=True)
class FunnelStepView:
    label: str
    customers: int
    previous_customers: int | None = None
    #: share of the previous step's customers who reached this one
    conversion: float | None = None
    is_break: bool = False


@dataclass(frozen=True)
class FunnelData:
    title: str
    lang: Lang
    steps: tuple[FunnelStepView, ...]
    footer: Footer = field(default_factory=Footer)


@dataclass(frozen=True)
class AttributionData:
    """Credit per channel (rows) under several models (columns), as shares 0..1."""

    title: str
    lang: Lang
    models: tuple[str, ...]
    channels: tuple[str, ...]
    #: values[m][c]: share of conversions model m credits to channel c
    values: tuple[tuple[float, ...], ...]
    conversions: int | None = None
    footer: Footer = field(default_factory=Footer)


@dataclass(frozen=True)
class BreakData:
    """One detected journey break with the rate over time for a sparkline."""

    title: str
    where: str
    phase: str
    affected_customers: int
    rate: float
    baseline_rate: float
    lost_revenue: float | None = None
    currency: str = "EUR"
    p_value: float | None = None
    #: (date, rate) over the period; the break window is shaded
    series: tuple[tuple[dt.date, float], ...] = ()
    window: tuple[dt.date, dt.date] | None = None
    severity: Severity = "high"
    suggestion: str = ""
    source: Source = "data"


@dataclass(frozen=True)
class RetentionData:
    title: str
    lang: Lang
    cohorts: tuple[str, ...]
    cohort_sizes: tuple[int, ...]
    #: matrix[i][k]: share of cohort i active in period k (k=0 is the cohort's own period)
    matrix: tuple[tuple[float | None, ...], ...]
    period_unit: str = "week"
    footer: Footer = field(default_factory=Footer)


@dataclass(frozen=True)
class GraphNode:
    id: str
    label: str
    phase: int
    count: int


@dataclass(frozen=True)
class GraphEdge:
    source: str
    target: str
    count: int


@dataclass(frozen=True)
class GraphData:
    title: str
    lang: Lang
    phases: tuple[str, ...]
    nodes: tuple[GraphNode, ...]
    edges: tuple[GraphEdge, ...]
    #: keep the top k outgoing edges of each node
    top_k: int = 3
    footer: Footer = field(default_factory=Footer)


@dataclass(frozen=True)
class ReportData:
    """Everything one HTML report shows; figures that are ``None`` are left out."""

    title: str
    lang: Lang
    maps: tuple[JourneyMapData, ...]
    sankey: SankeyData | None = None
    funnel: FunnelData | None = None
    attribution: AttributionData | None = None
    personas: tuple[PersonaCardData, ...] = ()
    phases: tuple[str, ...] = ()
    breaks: tuple[BreakData, ...] = ()
    retention: RetentionData | None = None
    graph: GraphData | None = None
