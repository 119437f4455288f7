"""Card grids: persona cards (narrative + data profile) and journey breaks with sparklines."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from journeymap.render.i18n import Formatter, Lang
from journeymap.render.layout.common import (
    MARGIN,
    provenance_dot,
    source_label,
    title_block,
)
from journeymap.render.layout.curve import smooth_path
from journeymap.render.scene import Circle, Group, Path, Rect, Scene, Text, text_block
from journeymap.render.text import metrics
from journeymap.render.theme import DEFAULT, Theme, Type
from journeymap.render.views import BreakData, PersonaCardData

Node = Text | Rect | Circle | Path | Group
NAME = Type(14, 700, 1.25)
BODY = Type(11.5, 400, 1.3)
META = Type(10.5, 400, 1.3)
CAP = Type(9.5, 600, 1.3, 0.5)
BIG = Type(22, 700, 1.15)
PAD = 16.0


class _Stack:
    """Text blocks stacked inside a card of fixed width; measures as it goes."""

    def __init__(self, x: float, y: float, width: float) -> None:
        self.x, self.y, self.width = x, y, width
        self.nodes: list[Node] = []
        self.m = metrics()

    def text(
        self,
        text: str,
        style: Type,
        fill: str,
        lines: int = 3,
        gap: float = 4.0,
        indent: float = 0.0,
    ) -> None:
        if not text:
            return
        wrapped = self.m.wrap(
            text, self.width - indent, style.size, style.weight, lines, style.spacing
        )
        self.nodes.append(text_block(self.x + indent, self.y, wrapped.lines, style, fill))
        self.y += len(wrapped.lines) * style.leading + gap

    def caption(self, text: str, fill: str) -> None:
        self.text(text.upper(), CAP, fill, 1, 2)


def layout_personas(
    personas: Sequence[PersonaCardData],
    phases: Sequence[str],
    lang: Lang,
    theme: Theme = DEFAULT,
    width: float = 1600.0,
    per_row: int = 4,
) -> Scene:
    t, fmt = theme, Formatter(lang)
    header = title_block(fmt.t("personas.title"), fmt.t("personas.subtitle"), width, t)
    top = header.height + 22
    gap = 16.0
    per_row = max(1, min(per_row, len(personas) or 1))
    card_w = (width - 2 * MARGIN - gap * (per_row - 1)) / per_row
    drafts = [_persona_card(p, phases, fmt, t, card_w) for p in personas]
    nodes: list[Node] = []
    y = top
    for row_start in range(0, len(drafts), per_row):
        row = drafts[row_start : row_start + per_row]
        h = max(d[1] for d in row)
        for k, (draw, _) in enumerate(row):
            nodes.append(draw(MARGIN + k * (card_w + gap), y, h))
        y += h + gap
    height = y - gap + MARGIN
    title = fmt.t("personas.title")
    return Scene(
        width,
        round(height),
        title,
        f"{title}: {len(personas)}",
        (header.node, *nodes),
        background=t.canvas,
        shadow=True,
        cls="jm-figure jm-personas",
    )


def _persona_card(
    p: PersonaCardData, phases: Sequence[str], fmt: Formatter, t: Theme, w: float
) -> tuple[Callable[[float, float, float], Group], float]:
    # measure once at the origin, then translate by drawing again at the real position
    def build(x: float, y: float, h: float | None) -> tuple[list[Node], float]:
        s = _Stack(x + PAD, y + PAD, w - 2 * PAD)
        av_r = 20.0
        initials = "".join(part[0] for part in p.name.replace(",", " ").split()[:2]).upper()
        head: list[Node] = [
            Circle(x + PAD + av_r, y + PAD + av_r, av_r, fill=t.phase_ramp[0]),
            text_block(
                x + PAD + av_r,
                y + PAD + av_r - 9,
                [initials],
                Type(14, 700, 1.3),
                "#FFFFFF",
                "middle",
            ),
        ]
        name = _Stack(x + PAD + 2 * av_r + 12, y + PAD, w - 2 * PAD - 2 * av_r - 12 - 10)
        name.text(p.name, NAME, t.ink, 2, 2)
        if p.customers is not None:
            stat = fmt.t(
                "persona.size", n=fmt.integer(p.customers), pct=fmt.percent(p.share or 0.0)
            )
            name.text(stat, META, t.muted, 1, 0)
        s.y = max(name.y, y + PAD + 2 * av_r) + 10
        s.nodes = head + name.nodes
        s.text(p.description, BODY, t.ink2, 3, 8)
        if p.conversion_rate is not None or p.active_hours:
            stats = []
            if p.conversion_rate is not None:
                stats.append(f"{fmt.t('persona.conversion')} {fmt.percent(p.conversion_rate)}")
            if p.active_hours:
                stats.append(f"{fmt.t('persona.hours')} {p.active_hours}")
            s.text(" · ".join(stats), Type(11.5, 600, 1.3), t.ink, 1, 8)
        if p.goals:
            s.caption(fmt.t("persona.goals"), t.muted)
            s.text(" · ".join(p.goals), BODY, t.ink, 2, 8)
        if p.fears:
            s.caption(fmt.t("persona.fears"), t.muted)
            s.text(" · ".join(p.fears), BODY, t.pain, 2, 8)
        if p.channels:
            s.caption(fmt.t("persona.channels"), t.muted)
            s.text(" · ".join(p.channels), BODY, t.chip, 2, 8)
        if p.typical_path:
            s.caption(fmt.t("persona.path"), t.muted)
            s.text(" → ".join(p.typical_path), BODY, t.ink2, 2, 8)
        if any(v is not None for v in p.feelings):
            s.caption(fmt.t("persona.feelings"), t.muted)
            spark_h = 40.0
            s.nodes.extend(_sparkline(p.feelings, s.x, s.y, s.width, spark_h, t, phases, fmt))
            s.y += spark_h + 8
        if p.quote:
            q = f"„{p.quote}“" if fmt.lang == "de" else f"“{p.quote}”"
            s.text(q, Type(12, 500, 1.3), t.ink2, 2, 4)
        height = s.y - y + PAD - 4
        return s.nodes, height if h is None else h

    _, natural = build(0.0, 0.0, None)

    def draw(x: float, y: float, h: float) -> Group:
        nodes, _ = build(x, y, h)
        bg: list[Node] = [
            Rect(x, y, w, h, fill=t.canvas, stroke=t.hairline, rx=t.radius, filter="shadow")
        ]
        tip = "\n".join(filter(None, [p.name, p.description, source_label(p.source, fmt)]))
        return Group(
            (*bg, *nodes, provenance_dot(x + w - 10, y + 10, p.source, t)),
            cls="jm-card jm-persona-card",
            tip=tip,
            frame=(x, y, w, h),
            data=(("persona", p.id),),
        )

    return draw, natural


def _sparkline(
    values: Sequence[float | None],
    x: float,
    y: float,
    w: float,
    h: float,
    t: Theme,
    phases: Sequence[str],
    fmt: Formatter,
) -> list[Node]:
    n = len(values)
    if n == 0:
        return []
    step = w / max(1, n - 1) if n > 1 else 0.0

    def vy(v: float) -> float:
        return y + (2 - max(-2.0, min(2.0, v))) / 4 * h

    nodes: list[Node] = [
        Path(f"M{x:.1f},{vy(0):.1f}H{x + w:.1f}", stroke="#ADB5BD", dash="3 3"),
    ]
    pts = [(x + i * step, vy(v)) for i, v in enumerate(values) if v is not None]
    if len(pts) > 1:
        nodes.append(Path(smooth_path(pts), stroke=t.curve, stroke_width=1.8))
    for i, v in enumerate(values):
        if v is None:
            continue
        label = phases[i] if i < len(phases) else str(i + 1)
        nodes.append(
            Group(
                (
                    Circle(
                        x + i * step,
                        vy(v),
                        3.5,
                        fill=t.emotion_color(v),
                        stroke="#FFFFFF",
                        stroke_width=1.2,
                    ),
                ),
                tip=f"{label}: {fmt.score(v)}",
            )
        )
    return nodes


def layout_breaks(
    breaks: Sequence[BreakData],
    lang: Lang,
    theme: Theme = DEFAULT,
    width: float = 1600.0,
    per_row: int = 3,
) -> Scene:
    t, fmt = theme, Formatter(lang)
    header = title_block(fmt.t("breaks.title"), fmt.t("breaks.subtitle"), width, t)
    top = header.height + 22
    gap = 16.0
    per_row = max(1, min(per_row, len(breaks) or 1))
    card_w = (width - 2 * MARGIN - gap * (per_row - 1)) / per_row
    drafts = [_break_card(b, card_w, t, fmt) for b in breaks]
    card_h = max((d[1] for d in drafts), default=0.0)
    nodes: list[Node] = []
    y = top
    for i, (draw, _) in enumerate(drafts):
        col, row = i % per_row, i // per_row
        nodes.append(draw(MARGIN + col * (card_w + gap), y + row * (card_h + gap), card_h))
    rows = (len(breaks) + per_row - 1) // per_row
    height = y + rows * (card_h + gap) - gap + MARGIN
    title = fmt.t("breaks.title")
    return Scene(
        width,
        round(height),
        title,
        f"{title}: {len(breaks)}",
        (header.node, *nodes),
        background=t.canvas,
        cls="jm-figure jm-breaks",
    )


def _break_card(
    b: BreakData, card_w: float, t: Theme, fmt: Formatter
) -> tuple[Callable[[float, float, float], Group], float]:
    m = metrics()

    def build(x: float, cy: float) -> tuple[list[Node], float, list[str]]:
        s = _Stack(x + PAD + 8, cy + PAD, card_w - 2 * PAD - 8 - 10)
        s.text(b.title, Type(14, 700, 1.25), t.pain, 2, 2)
        s.text(b.where, META, t.muted, 1, 10)
        big = fmt.percent(b.rate, 0)
        base = fmt.t("break.rate", rate=big, base=fmt.percent(b.baseline_rate, 0))
        big_w = m.width(big, BIG.size, BIG.weight)
        s.nodes.append(text_block(s.x, s.y, [big], BIG, t.pain))
        s.nodes.append(
            text_block(
                s.x + big_w + 10,
                s.y + (BIG.leading - META.leading) / 2 + 2,
                [m.ellipsize(base, s.width - big_w - 10, META.size)],
                META,
                t.ink2,
            )
        )
        s.y += BIG.leading + 6
        facts = [fmt.t("break.affected", n=fmt.integer(b.affected_customers))]
        if b.lost_revenue is not None:
            facts.append(fmt.t("break.lost", v=fmt.money(b.lost_revenue, b.currency)))
        if b.p_value is not None:
            p = (
                ("< " + fmt.number(0.001, 3))
                if b.p_value < 0.001
                else ("= " + fmt.number(b.p_value, 3))
            )
            facts.append(fmt.t("break.significance", p=p))
        s.text(" · ".join(facts), META, t.ink2, 2, 10)
        spark_h = 54.0
        s.nodes.extend(_rate_sparkline(b, s.x, s.y, s.width, spark_h, t, fmt))
        s.y += spark_h + 10
        if b.suggestion:
            s.text("→ " + b.suggestion, Type(11.5, 500, 1.3), t.opportunity, 2, 0)
        return s.nodes, s.y - cy + PAD - 4, facts

    _, natural, _ = build(0.0, 0.0)

    def draw(x: float, cy: float, card_h: float) -> Group:
        inner, _, facts = build(x, cy)
        tip = [b.title, b.where, *facts, source_label(b.source, fmt)]
        opacity = {"high": 1.0, "medium": 0.6, "low": 0.3}[b.severity]
        return Group(
            (
                Rect(x, cy, card_w, card_h, fill=t.canvas, stroke=t.pain_line, rx=t.radius),
                Rect(x + 4, cy + 8, 3.5, card_h - 16, fill=t.pain, rx=1.75, opacity=opacity),
                *inner,
                provenance_dot(x + card_w - 10, cy + 10, b.source, t),
            ),
            cls="jm-card jm-break-card",
            tip="\n".join(tip),
            frame=(x, cy, card_w, card_h),
            data=(("phase-id", b.phase),),
        )

    return draw, natural


def _rate_sparkline(
    b: BreakData, x: float, y: float, w: float, h: float, t: Theme, fmt: Formatter
) -> list[Node]:
    """The rate over time; the break window shaded; the baseline dashed."""
    if not b.series:
        return []
    d0, d1 = b.series[0][0], b.series[-1][0]
    span = max(1, (d1 - d0).days)
    hi = max(max(v for _, v in b.series), b.baseline_rate) * 1.15 or 1.0

    def px(d: object) -> float:
        import datetime as dt

        assert isinstance(d, dt.date)
        return x + (d - d0).days / span * w

    def py(v: float) -> float:
        return y + h - v / hi * h

    nodes: list[Node] = [Rect(x, y, w, h, fill=t.panel, rx=4)]
    if b.window is not None:
        wx0, wx1 = px(max(b.window[0], d0)), px(min(b.window[1], d1))
        nodes.append(
            Rect(
                wx0, y, max(2.0, wx1 - wx0), h, fill=t.pain_bg, stroke=t.pain_line, stroke_width=0.8
            )
        )
    nodes.append(
        Path(f"M{x:.1f},{py(b.baseline_rate):.1f}H{x + w:.1f}", stroke=t.muted, dash="3 3")
    )
    pts = " ".join(
        f"{'M' if i == 0 else 'L'}{px(d):.1f},{py(v):.1f}" for i, (d, v) in enumerate(b.series)
    )
    nodes.append(Path(pts, stroke=t.pain, stroke_width=1.8, linecap="round"))
    for d, v in b.series:
        nodes.append(
            Group((Circle(px(d), py(v), 2.2, fill=t.pain),), tip=f"{fmt.date(d)}: {fmt.percent(v)}")
        )
    return nodes
