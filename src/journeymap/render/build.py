"""Fill the view model from the spec and the analysis results.

What exists today: the spec, the phase ``FunnelResult`` and the touchpoint ``ReachResult``
(current and, optionally, previous period). The analyses being written feed in through the
small input dataclasses below (marked **optional input**); the facade maps each analysis
result onto them when it lands, so the renderer never imports analytics internals beyond
the two results above.

Rules decided here:

* a feeling point is *from data* when survey responses for the phase reach ``min_n``
  (default 30); otherwise the spec's ``feeling.expected`` is drawn as *from spec*;
* a step is a *journey break* when the breaks analysis reports one in that phase; without
  that analysis, when conversion to the next phase fell by ``break_drop`` (default 20 %,
  relative) against the previous period;
* KPIs per phase default to customers reached (first phase) and the share of all customers
  reaching the phase; ``kpis`` overrides them per phase (CSAT, NPS, revenue …).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from journeymap.analytics.funnels import FunnelResult, ReachResult
from journeymap.model.spec import JourneySpec, PersonaNarrative, text_in
from journeymap.render.i18n import Formatter, Lang, emotion_word
from journeymap.render.views import (
    AttributionData,
    BreakData,
    FeelingPoint,
    Footer,
    FunnelData,
    FunnelStepView,
    GraphData,
    GraphEdge,
    GraphNode,
    Item,
    JourneyMapData,
    KpiCard,
    PersonaCardData,
    PhaseColumn,
    ReportData,
    RetentionData,
    SankeyData,
    SankeyLink,
    SankeyNode,
    Severity,
    TouchpointView,
)


# -- optional inputs: what the analyses being written will provide ---------------------------
@dataclass(frozen=True)
class Period:
    """The reporting period and the one it is compared with (dates inclusive)."""

    start: dt.date
    end: dt.date
    previous_start: dt.date | None = None
    previous_end: dt.date | None = None
    label: str = ""


@dataclass(frozen=True)
class PhaseExperience:
    """**Optional input** (experience / NPS analysis): mean feeling per phase on -2…+2.

    CSAT 1–5 maps to -2…+2 linearly; NPS answers 0–6 / 7–8 / 9–10 map to -2 / 0 / +2 before
    averaging. ``n`` is the number of responses behind the mean.
    """

    phase: str
    score: float
    n: int
    previous_score: float | None = None


@dataclass(frozen=True)
class DetectedBreak:
    """**Optional input** (breaks analysis): a step where significantly more journeys end."""

    id: str
    phase: str
    #: what broke, in words the reader knows, e.g. "Size selection on mobile"
    label: str
    rate: float
    baseline_rate: float
    affected_customers: int
    lost_revenue: float | None = None
    p_value: float | None = None
    touchpoint: str | None = None
    series: tuple[tuple[dt.date, float], ...] = ()
    window: tuple[dt.date, dt.date] | None = None
    #: a suggested fix; a generic one is written when empty
    suggestion: str = ""


@dataclass(frozen=True)
class ActiveCampaign:
    """**Optional input** (orchestration): a campaign that was active in a phase."""

    phase: str
    name: str
    sent: int | None = None
    conversions: int | None = None


@dataclass(frozen=True)
class PersonaProfile:
    """**Optional input** (persona analysis): what the data says about one persona."""

    id: str
    customers: int
    share: float
    conversion_rate: float | None = None
    channels: tuple[str, ...] = ()
    active_hours: str = ""
    typical_path: tuple[str, ...] = ()
    #: mean feeling per phase id
    feelings: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PathTransition:
    """**Optional input** (paths analysis): customers going from one step's node to the next.

    ``step`` is 1-based; ``target`` ``None`` means the journey ended after ``source``.
    """

    step: int
    source: str
    target: str | None
    customers: int


# -- journey map ------------------------------------------------------------------------------
def build_journey_map(
    spec: JourneySpec,
    funnel: FunnelResult | None,
    reach: ReachResult | None = None,
    *,
    lang: Lang | None = None,
    previous: FunnelResult | None = None,
    period: Period | None = None,
    spec_file: str | Path = "",
    persona: str | None = None,
    persona_profile: PersonaProfile | None = None,
    experience: Sequence[PhaseExperience] = (),
    breaks: Sequence[DetectedBreak] = (),
    campaigns: Sequence[ActiveCampaign] = (),
    kpis: Mapping[str, KpiCard] | None = None,
    moments_of_truth: Sequence[str] = (),
    survey_n: int | None = None,
    min_n: int = 30,
    break_drop: float = 0.2,
    title: str | None = None,
    sources: Sequence[str] | None = None,
    currency: str = "EUR",
) -> JourneyMapData:
    """The journey map for all customers (or one ``persona``) from what is known today."""
    language: Lang = lang or spec.language
    fmt = Formatter(language)
    steps = {s.step: s for s in funnel.steps} if funnel else {}
    prev_steps = {s.step: s for s in previous.steps} if previous else {}
    reach_by_tp = {r.touchpoint: r for r in reach.touchpoints} if reach else {}
    exp = {e.phase: e for e in experience}
    breaks_by_phase: dict[str, list[DetectedBreak]] = defaultdict(list)
    for b in breaks:
        breaks_by_phase[b.phase].append(b)
    camps: dict[str, list[ActiveCampaign]] = defaultdict(list)
    for c in campaigns:
        camps[c.phase].append(c)
    ids = spec.phase_ids()
    columns = []
    for i, phase in enumerate(spec.phases):
        step = steps.get(phase.id)
        nxt = steps.get(ids[i + 1]) if i + 1 < len(ids) else None
        pstep = prev_steps.get(phase.id)
        pnxt = prev_steps.get(ids[i + 1]) if i + 1 < len(ids) else None
        conv = nxt.conversion_from_previous if nxt else None
        prev_conv = pnxt.conversion_from_previous if pnxt else None
        phase_breaks = sorted(
            breaks_by_phase.get(phase.id, []),
            key=lambda b: -(b.lost_revenue or b.affected_customers),
        )
        is_break = bool(phase_breaks) or (
            not breaks
            and conv is not None
            and prev_conv is not None
            and prev_conv > 0
            and (prev_conv - conv) / prev_conv >= break_drop
        )
        feeling = _feeling(phase.feeling, exp.get(phase.id), language, fmt, min_n)
        if persona_profile is not None and phase.id in persona_profile.feelings:
            v = persona_profile.feelings[phase.id]
            feeling = FeelingPoint(v, "data", emotion_word(v, fmt))
        tps = tuple(
            TouchpointView(
                id=t.id,
                label=t.label_in(language),
                channel=t.channel,
                kind=t.kind,
                reach=reach_by_tp[t.id].share_of_customers if t.id in reach_by_tp else None,
                customers=reach_by_tp[t.id].customers if t.id in reach_by_tp else None,
            )
            for t in spec.touchpoints_in(phase.id)
        )
        pains = tuple(_break_item(b, fmt, currency) for b in phase_breaks) + tuple(
            Item(text_in(p, language), "spec") for p in phase.pain_points
        )
        opps = tuple(
            Item(
                b.suggestion or _suggestion(b, fmt),
                "data",
                detail=fmt.t("legend.break") + f": {b.label}",
            )
            for b in phase_breaks
        ) + tuple(Item(text_in(o, language), "spec") for o in phase.opportunities)
        measures = tuple(Item(text_in(m, language), "spec") for m in phase.measures) + tuple(
            _campaign_item(c, fmt) for c in camps.get(phase.id, [])
        )
        kpi = (kpis or {}).get(phase.id) or _default_kpi(i, step, pstep, fmt)
        columns.append(
            PhaseColumn(
                id=phase.id,
                label=phase.label_in(language),
                customers=step.customers if step else None,
                previous_customers=pstep.customers if pstep else None,
                conversion_to_next=conv,
                previous_conversion_to_next=prev_conv,
                is_break=is_break,
                moment_of_truth=phase.id in moments_of_truth,
                goals=tuple(Item(text_in(g, language), "spec") for g in phase.goals),
                questions=tuple(Item(text_in(q, language), "spec") for q in phase.questions),
                feeling=feeling,
                touchpoints=tps,
                measures=measures,
                pain_points=pains,
                opportunities=opps,
                kpi=kpi,
            )
        )
    narrative = _narrative(spec, persona)
    card = (
        persona_card(narrative, persona_profile, language, spec=spec)
        if narrative is not None or persona_profile is not None
        else None
    )
    src = list(sources) if sources is not None else _sources(fmt, funnel, experience, spec_file)
    return JourneyMapData(
        title=title or spec.name,
        lang=language,
        phases=tuple(columns),
        persona=card,
        footer=Footer(
            spec_file=Path(spec_file).name if spec_file else "",
            period_start=period.start if period else None,
            period_end=period.end if period else None,
            previous_start=period.previous_start if period else None,
            previous_end=period.previous_end if period else None,
            customers=funnel.entered if funnel else None,
            survey_n=survey_n if survey_n is not None else (sum(e.n for e in experience) or None),
            sources=tuple(src),
        ),
        period_label=period.label if period else "",
    )


def _sources(
    fmt: Formatter,
    funnel: FunnelResult | None,
    experience: Sequence[PhaseExperience],
    spec_file: str | Path,
) -> list[str]:
    en = fmt.lang == "en"
    out = []
    if funnel is not None:
        out.append("event log" if en else "Ereignisdaten")
    if experience:
        out.append("surveys" if en else "Umfragen")
    out.append(Path(spec_file).name if spec_file else ("the spec" if en else "der Spec"))
    return out


def _feeling(
    expected: object, data: PhaseExperience | None, lang: Lang, fmt: Formatter, min_n: int
) -> FeelingPoint | None:
    from journeymap.model.spec import Feeling

    spec_feeling = expected if isinstance(expected, Feeling) else None
    if data is not None and data.n >= min_n:
        return FeelingPoint(
            value=max(-2.0, min(2.0, data.score)),
            source="data",
            word=emotion_word(data.score, fmt),
            n=data.n,
            previous=data.previous_score,
        )
    if spec_feeling is None:
        return None
    word = text_in(spec_feeling.note, lang) if spec_feeling.note else ""
    return FeelingPoint(
        value=spec_feeling.expected,
        source="spec",
        word=word or emotion_word(spec_feeling.expected, fmt),
        previous=data.previous_score if data is not None else None,
    )


def break_severity(b: DetectedBreak) -> Severity:
    """High: clearly significant and at least doubling the baseline rate (or costly)."""
    lift = b.rate - b.baseline_rate
    p = b.p_value if b.p_value is not None else 1.0
    if p < 0.001 and (lift >= 0.15 or b.rate >= 2 * b.baseline_rate):
        return "high"
    if p < 0.01:
        return "medium"
    return "low"


def _break_item(b: DetectedBreak, fmt: Formatter, currency: str) -> Item:
    text = (
        f"{b.label}: {fmt.percent(b.rate, 0)} "
        + ("exit" if fmt.lang == "en" else "Ausstieg")
        + f" ({fmt.points(b.rate - b.baseline_rate, 0)})"
    )
    detail = [fmt.t("break.affected", n=fmt.integer(b.affected_customers))]
    if b.lost_revenue is not None:
        detail.append(fmt.t("break.lost", v=fmt.money(b.lost_revenue, currency)))
    if b.p_value is not None:
        detail.append(fmt.t("break.significance", p=_p_text(b.p_value, fmt)))
    if b.window is not None:
        detail.append(f"{fmt.t('break.window')}: {fmt.period(*b.window)}")
    en = fmt.lang == "en"
    note = fmt.integer(b.affected_customers) + (" affected" if en else " betroffen")
    if b.lost_revenue is not None:
        note += " · ≈" + fmt.money(b.lost_revenue, currency)
    return Item(text, "data", detail="\n".join(detail), severity=break_severity(b), note=note)


def _p_text(p: float, fmt: Formatter) -> str:
    if p < 0.001:
        return "< " + fmt.number(0.001, 3)
    return "= " + fmt.number(p, 3)


def _suggestion(b: DetectedBreak, fmt: Formatter) -> str:
    if fmt.lang == "de":
        return f"{b.label} beheben: {fmt.integer(b.affected_customers)} Kunden zurückgewinnen"
    first = b.label.split(" ", 1)[0]
    # lower-case the first word unless it is a name (TikTok, iOS) or an acronym
    label = b.label[:1].lower() + b.label[1:] if first[1:].islower() else b.label
    return f"Fix {label}: win back {fmt.integer(b.affected_customers)} customers"


def _campaign_item(c: ActiveCampaign, fmt: Formatter) -> Item:
    parts = []
    if c.sent is not None:
        parts.append(
            ("{n} sent" if fmt.lang == "en" else "{n} gesendet").format(n=fmt.integer(c.sent))
        )
    if c.conversions is not None:
        parts.append(
            ("{n} conversions" if fmt.lang == "en" else "{n} Conversions").format(
                n=fmt.integer(c.conversions)
            )
        )
    campaign = "campaign" if fmt.lang == "en" else "Kampagne"
    return Item(
        f"▶ {c.name}",
        "data",
        detail=f"{campaign}: " + (", ".join(parts) or c.name),
        note=" · ".join(parts),
    )


def _default_kpi(i: int, step: object, pstep: object, fmt: Formatter) -> KpiCard | None:
    from journeymap.analytics.funnels import FunnelStep

    if not isinstance(step, FunnelStep):
        return None
    prev = pstep if isinstance(pstep, FunnelStep) else None
    if i == 0:
        return KpiCard(
            label="customers" if fmt.lang == "en" else "Kunden",
            value=float(step.customers),
            unit="count",
            source="data",
            previous=float(prev.customers) if prev else None,
        )
    return KpiCard(
        label="share of all customers" if fmt.lang == "en" else "Anteil aller Kunden",
        value=step.conversion_from_start,
        unit="percent",
        source="data",
        previous=prev.conversion_from_start if prev else None,
    )


def _narrative(spec: JourneySpec, persona: str | None) -> PersonaNarrative | None:
    if persona is None:
        return None
    for p in spec.personas:
        if p.id == persona:
            return p
    from journeymap.errors import ConfigError

    allowed = ", ".join(p.id for p in spec.personas) or "(none in the spec)"
    raise ConfigError(f"unknown persona {persona!r}; allowed: {allowed}")


def persona_card(
    narrative: PersonaNarrative | None,
    profile: PersonaProfile | None,
    lang: Lang,
    *,
    spec: JourneySpec | None = None,
) -> PersonaCardData:
    """The persona's narrative (spec) joined with its profile (data)."""
    pid = narrative.id if narrative else (profile.id if profile else "persona")
    feelings: tuple[float | None, ...] = ()
    if profile is not None and spec is not None and profile.feelings:
        feelings = tuple(profile.feelings.get(p) for p in spec.phase_ids())
    return PersonaCardData(
        id=pid,
        name=text_in(narrative.name, lang) if narrative else pid.replace("_", " ").title(),
        description=text_in(narrative.description, lang) if narrative else "",
        quote=text_in(narrative.quote, lang) if narrative and narrative.quote else "",
        goals=tuple(text_in(g, lang) for g in narrative.goals) if narrative else (),
        questions=tuple(text_in(q, lang) for q in narrative.questions) if narrative else (),
        fears=tuple(text_in(f, lang) for f in narrative.fears) if narrative else (),
        channels=(
            profile.channels
            if profile and profile.channels
            else tuple(narrative.channels)
            if narrative
            else ()
        ),
        customers=profile.customers if profile else None,
        share=profile.share if profile else None,
        conversion_rate=profile.conversion_rate if profile else None,
        active_hours=profile.active_hours if profile else "",
        typical_path=profile.typical_path if profile else (),
        feelings=feelings,
        source="data" if profile is not None else "spec",
    )


def build_personas(
    spec: JourneySpec, profiles: Sequence[PersonaProfile], lang: Lang | None = None
) -> tuple[PersonaCardData, ...]:
    """A card per persona found in the data (named by the spec where ids match), or per
    narrative in the spec when there is no persona analysis yet."""
    language: Lang = lang or spec.language
    narratives = {p.id: p for p in spec.personas}
    if profiles:
        return tuple(persona_card(narratives.get(p.id), p, language, spec=spec) for p in profiles)
    return tuple(persona_card(n, None, language, spec=spec) for n in spec.personas)


# -- other figures -------------------------------------------------------------------------------
def build_funnel(
    funnel: FunnelResult,
    *,
    lang: Lang = "en",
    previous: FunnelResult | None = None,
    breaks: Sequence[str] = (),
    title: str | None = None,
    footer: Footer | None = None,
) -> FunnelData:
    """Funnel steps; ``breaks`` names steps whose entry is a journey break (default: the
    step with the biggest relative drop)."""
    fmt = Formatter(lang)
    prev = {s.step: s for s in previous.steps} if previous else {}
    flagged = set(breaks)
    if not flagged and len(funnel.steps) > 1:
        worst = min(funnel.steps[1:], key=lambda s: s.conversion_from_previous or 1.0)
        flagged = {worst.step}
    return FunnelData(
        title=title or fmt.t("funnel.title"),
        lang=lang,
        steps=tuple(
            FunnelStepView(
                label=s.label,
                customers=s.customers,
                previous_customers=prev[s.step].customers if s.step in prev else None,
                conversion=s.conversion_from_previous,
                is_break=s.step in flagged,
            )
            for s in funnel.steps
        ),
        footer=footer or Footer(customers=funnel.entered),
    )


def build_sankey(
    transitions: Sequence[PathTransition],
    *,
    lang: Lang = "en",
    top_n: int = 8,
    title: str | None = None,
    labels: Mapping[str, str] | None = None,
    footer: Footer | None = None,
) -> SankeyData:
    """A step Sankey: per step the ``top_n`` nodes, the rest merged into "other", and the
    journeys that end after a step into that step's exit node."""
    fmt = Formatter(lang)
    other, exit_label = fmt.t("sankey.other"), fmt.t("sankey.exit")
    names = labels or {}
    # customers per (step, node) from the outgoing side, then keep the top_n per step
    totals: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    incoming: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for t in transitions:
        totals[t.step][t.source] += t.customers
        if t.target is not None:
            incoming[t.step + 1][t.target] += t.customers
    for step, nodes in incoming.items():
        for node, n in nodes.items():
            totals[step][node] = max(totals[step][node], n)
    keep = {
        step: {n for n, _ in sorted(nodes.items(), key=lambda kv: -kv[1])[:top_n]}
        for step, nodes in totals.items()
    }

    def node_id(step: int, name: str | None) -> str:
        if name is None:
            return f"{step}:__exit__"
        return f"{step}:{name if name in keep.get(step, set()) else '__other__'}"

    links: dict[tuple[str, str], int] = defaultdict(int)
    for t in transitions:
        src = node_id(t.step, t.source)
        dst = node_id(t.step, None) if t.target is None else node_id(t.step + 1, t.target)
        links[(src, dst)] += t.customers
    counts: dict[str, int] = defaultdict(int)
    inflow: dict[str, int] = defaultdict(int)
    for (src, dst), n in links.items():
        counts[src] += n
        inflow[dst] += n
    for node, n in inflow.items():
        counts[node] = max(counts[node], n)
    steps_sorted = sorted({int(k.split(":", 1)[0]) for k in counts})
    sankey_nodes: list[SankeyNode] = []
    for node, n in counts.items():
        step_text, name = node.split(":", 1)
        is_exit = name == "__exit__"
        label = exit_label if is_exit else other if name == "__other__" else names.get(name, name)
        # exits sit in the column after their step (journeys end "after" a step)
        column = steps_sorted.index(int(step_text)) + (1 if is_exit else 0)
        sankey_nodes.append(SankeyNode(node, column, label, n, is_exit))
    sankey_nodes.sort(key=lambda n: (n.column, n.is_exit, -n.count, n.id))
    n_cols = max((n.column for n in sankey_nodes), default=0) + 1
    return SankeyData(
        title=title or fmt.t("sankey.title"),
        lang=lang,
        nodes=tuple(sankey_nodes),
        links=tuple(SankeyLink(s, d, n) for (s, d), n in sorted(links.items())),
        columns=tuple(fmt.t("sankey.step", n=k + 1) for k in range(n_cols)),
        footer=footer or Footer(),
    )


def build_attribution(
    credits: Mapping[str, Mapping[str, float]],
    *,
    lang: Lang = "en",
    conversions: int | None = None,
    title: str | None = None,
    footer: Footer | None = None,
) -> AttributionData:
    """``credits[model][channel]``: credited conversions (normalised to shares here)."""
    fmt = Formatter(lang)
    models = tuple(credits)
    channels: list[str] = []
    for m in models:
        for c in credits[m]:
            if c not in channels:
                channels.append(c)
    shares = []
    for m in models:
        total = sum(credits[m].values()) or 1.0
        shares.append(tuple(credits[m].get(c, 0.0) / total for c in channels))
    # channels ordered by their mean share, biggest first
    order = sorted(range(len(channels)), key=lambda i: -sum(s[i] for s in shares))
    return AttributionData(
        title=title or fmt.t("attribution.title"),
        lang=lang,
        models=models,
        channels=tuple(channels[i] for i in order),
        values=tuple(tuple(s[i] for i in order) for s in shares),
        conversions=conversions,
        footer=footer or Footer(),
    )


def build_break(
    b: DetectedBreak, spec: JourneySpec, lang: Lang | None = None, currency: str = "EUR"
) -> BreakData:
    language: Lang = lang or spec.language
    fmt = Formatter(language)
    try:
        phase = spec.phase(b.phase).label_in(language)
    except KeyError:
        phase = b.phase
    where = phase
    if b.touchpoint:
        try:
            where = f"{phase} · {spec.touchpoint(b.touchpoint).label_in(language)}"
        except KeyError:
            where = f"{phase} · {b.touchpoint}"
    return BreakData(
        title=b.label,
        where=where,
        phase=b.phase,
        affected_customers=b.affected_customers,
        rate=b.rate,
        baseline_rate=b.baseline_rate,
        lost_revenue=b.lost_revenue,
        currency=currency,
        p_value=b.p_value,
        series=b.series,
        window=b.window,
        severity=break_severity(b),
        suggestion=b.suggestion or _suggestion(b, fmt),
    )


def build_retention(
    cohorts: Sequence[tuple[str, int, Sequence[float | None]]],
    *,
    lang: Lang = "en",
    period_unit: str = "week",
    title: str | None = None,
    footer: Footer | None = None,
) -> RetentionData:
    """``cohorts``: (label, size, share active in period 0, 1, 2 …)."""
    fmt = Formatter(lang)
    return RetentionData(
        title=title or fmt.t("retention.title"),
        lang=lang,
        cohorts=tuple(c[0] for c in cohorts),
        cohort_sizes=tuple(c[1] for c in cohorts),
        matrix=tuple(tuple(c[2]) for c in cohorts),
        period_unit=period_unit,
        footer=footer or Footer(),
    )


def build_graph(
    spec: JourneySpec,
    transitions: Mapping[tuple[str, str], int],
    *,
    lang: Lang | None = None,
    top_k: int = 3,
    footer: Footer | None = None,
) -> GraphData:
    """Touchpoint transition graph; ``transitions[(a, b)]`` counts a → b steps."""
    language: Lang = lang or spec.language
    fmt = Formatter(language)
    phase_index = {p: i for i, p in enumerate(spec.phase_ids())}
    outgoing: dict[str, int] = defaultdict(int)
    incoming: dict[str, int] = defaultdict(int)
    for (a, b), n in transitions.items():
        outgoing[a] += n
        incoming[b] += n
    # a node's size: the transitions through it (the larger of in and out)
    counts = {k: max(outgoing[k], incoming[k]) for k in {*outgoing, *incoming}}
    nodes = []
    for tp in spec.touchpoints:
        if tp.id in counts:
            nodes.append(
                GraphNode(tp.id, tp.label_in(language), phase_index[tp.phase], counts[tp.id])
            )
    known = {n.id for n in nodes}
    edges = tuple(
        GraphEdge(a, b, n) for (a, b), n in sorted(transitions.items()) if a in known and b in known
    )
    return GraphData(
        title=fmt.t("graph.title"),
        lang=language,
        phases=tuple(p.label_in(language) for p in spec.phases),
        nodes=tuple(nodes),
        edges=edges,
        top_k=top_k,
        footer=footer or Footer(),
    )


def build_report(
    maps: Sequence[JourneyMapData],
    *,
    title: str | None = None,
    sankey: SankeyData | None = None,
    funnel: FunnelData | None = None,
    attribution: AttributionData | None = None,
    personas: Sequence[PersonaCardData] = (),
    breaks: Sequence[BreakData] = (),
    retention: RetentionData | None = None,
    graph: GraphData | None = None,
) -> ReportData:
    if not maps:
        raise ValueError("a report needs at least one journey map")
    lang = maps[0].lang
    return ReportData(
        title=title or maps[0].title,
        lang=lang,
        maps=tuple(maps),
        sankey=sankey,
        funnel=funnel,
        attribution=attribution,
        personas=tuple(personas),
        phases=tuple(p.label for p in maps[0].phases),
        breaks=tuple(breaks),
        retention=retention,
        graph=graph,
    )
