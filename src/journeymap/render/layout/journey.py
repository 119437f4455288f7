"""The customer journey map: phases as columns, lanes as rows, every card with its source.

Top to bottom (shared/research/visualization.md §4.2): title and legend; persona card beside
the phase chevrons (customers per phase) and the funnel strip (conversion pills, red at a
break); then the lanes — feelings (a monotone curve, solid where survey data backs a point,
dashed with hollow points where only the spec's expectation exists), goals and questions,
touchpoints (chips with reach), our measures, pain points and breaks, opportunities, KPIs —
and a footer with period, sample sizes and the spec file.

Lane heights follow their content (every text measured with the vendored font); lanes that
are empty in every phase are left out. Texts longer than their card end in an ellipsis and
the card's tooltip carries the full text.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from journeymap.render.i18n import Formatter
from journeymap.render.layout.common import (
    MARGIN,
    footer_block,
    footer_text,
    legend,
    provenance_dot,
    source_label,
    title_block,
)
from journeymap.render.layout.curve import bezier_segments, segment_path, smooth_path
from journeymap.render.scene import Circle, Group, Path, Rect, Scene, Text, text_block
from journeymap.render.text import metrics
from journeymap.render.theme import DEFAULT, Theme, Type
from journeymap.render.views import (
    FeelingPoint,
    Item,
    JourneyMapData,
    KpiCard,
    PhaseColumn,
    Source,
    TouchpointView,
)

Node = Text | Rect | Circle | Path | Group

LABEL_W = 230.0
GUTTER = 8.0
LANE_GAP = 8.0
CARD_PAD_X = 12.0
CARD_PAD_Y = 9.0
DOT_INSET = 9.0
CHEVRON_H = 56.0
NOTCH = 14.0
STRIP_H = 26.0
FEELINGS_H = 196.0
MAX_CARDS = 3


@dataclass(frozen=True)
class MapOptions:
    """Canvas width (px), column limits, and what to show."""

    width: float = 1760.0
    min_column: float = 180.0
    max_column: float = 280.0
    max_lines: int = 4
    max_chips: int = 4
    show_previous: bool = True


@dataclass(frozen=True)
class _Card:
    """A card's content, measured but not yet placed: ``draw(x, y, w, h)`` places it."""

    height: float
    draw: Callable[[float, float, float, float], Group]


class _MapLayout:
    def __init__(self, data: JourneyMapData, theme: Theme, opts: MapOptions) -> None:
        self.data = data
        self.theme = theme
        self.opts = opts
        self.fmt = Formatter(data.lang)
        self.m = metrics()
        n = max(1, len(data.phases))
        avail = opts.width - 2 * MARGIN - LABEL_W - 12 - (n - 1) * GUTTER
        self.col_w = max(opts.min_column, min(opts.max_column, avail / n))
        self.x0 = MARGIN + LABEL_W + 12
        self.width = self.x0 + n * self.col_w + (n - 1) * GUTTER + MARGIN
        self.n = n

    # -- geometry -------------------------------------------------------------------------
    def col_x(self, i: int) -> float:
        return self.x0 + i * (self.col_w + GUTTER)

    def col_cx(self, i: int) -> float:
        return self.col_x(i) + self.col_w / 2

    def right(self) -> float:
        return self.col_x(self.n - 1) + self.col_w

    # -- whole figure -------------------------------------------------------------------------
    def scene(self) -> Scene:
        t, fmt = self.theme, self.fmt
        phases = self.data.phases
        has_prev = self.opts.show_previous and any(
            p.feeling is not None and p.feeling.previous is not None for p in phases
        )
        items = [
            ("data", fmt.t("legend.data")),
            ("spec", fmt.t("legend.spec")),
            ("break", fmt.t("legend.break")),
            ("emotion", fmt.t("legend.emotion")),
        ]
        if has_prev:
            items.append(("previous", fmt.t("legend.previous")))
        leg, leg_w = legend(items, self.width - MARGIN, MARGIN - 2, t)
        header = title_block(self.data.title, self.subtitle(), self.width, t, leg, leg_w)
        children: list[Node] = [header.node]
        y = header.height + 18

        top_block, y = self.phase_block(y)
        children += top_block
        y += 14
        for lane in self.lanes(has_prev):
            node, h = lane(y)
            children.append(node)
            y += h + LANE_GAP
        foot = footer_block(self.footer(), y + 8, self.width, t)
        children.append(foot.node)
        height = y + 8 + foot.height + MARGIN - 8
        persona = self.data.persona.name if self.data.persona else fmt.t("all_customers")
        desc = f"{self.data.title}: {persona}; " + ", ".join(
            f"{p.label} ({fmt.t('customers_n', n=fmt.integer(p.customers))})"
            if p.customers is not None
            else p.label
            for p in phases
        )
        return Scene(
            round(self.width),
            math.ceil(height),
            self.data.title,
            desc,
            tuple(children),
            background=t.canvas,
            shadow=True,
            cls="jm-figure jm-map",
            data=(("phases", str(self.n)), ("lang", self.data.lang)),
        )

    def subtitle(self) -> str:
        fmt, d = self.fmt, self.data
        parts = []
        if d.persona is not None:
            parts.append(fmt.t("subtitle.persona", name=d.persona.name))
        else:
            parts.append(fmt.t("all_customers"))
        parts.append(fmt.t("subtitle.phases", n=len(d.phases)))
        f = d.footer
        if d.period_label:
            parts.append(d.period_label)
        elif f.period_start and f.period_end:
            parts.append(fmt.period(f.period_start, f.period_end))
        if f.sources:
            sources = ", ".join(f.sources[:-1]) + (" & " if len(f.sources) > 1 else "")
            parts.append(fmt.t("subtitle.sources", sources=sources + f.sources[-1]))
        return " · ".join(parts)

    def footer(self) -> str:
        return footer_text(self.data.footer, self.fmt)

    # -- persona card, chevrons, funnel strip --------------------------------------------------
    def phase_block(self, top: float) -> tuple[list[Node], float]:
        t, fmt, m = self.theme, self.fmt, self.m
        phases = self.data.phases
        badge_h = 26.0 if any(p.moment_of_truth for p in phases) else 0.0
        chev_y = top + badge_h
        strip_y = chev_y + CHEVRON_H + 10
        region_bottom = strip_y + STRIP_H
        nodes: list[Node] = []
        max_customers = max((p.customers or 0 for p in phases), default=0)

        for i, p in enumerate(phases):
            x, w = self.col_x(i), self.col_w
            color = t.phase_color(i, self.n)
            first, _last = i == 0, i == self.n - 1
            a = NOTCH
            pts = [
                (x, chev_y),
                (x + w - a, chev_y),
                (x + w, chev_y + CHEVRON_H / 2),
                (x + w - a, chev_y + CHEVRON_H),
                (x, chev_y + CHEVRON_H),
            ]
            if not first:
                pts.append((x + a, chev_y + CHEVRON_H / 2))
            d = "M" + "L".join(f"{px:.1f},{py:.1f}" for px, py in pts) + "Z"
            inner = w - 2 * a - 10 - (0 if not first else -a / 2)
            cx = x + (a / 2 if first else a) + (w - a - (a / 2 if first else a)) / 2
            name = f"{i + 1}. {p.label}"
            name_fit = m.ellipsize(name, inner, t.phase.size, t.phase.weight)
            meta = (
                fmt.t("customers_n", n=fmt.integer(p.customers))
                if p.customers is not None
                else fmt.t("no_data")
            )
            meta_fit = m.ellipsize(meta, inner, t.phase_meta.size)
            text_top = chev_y + (CHEVRON_H - t.phase.leading - t.phase_meta.leading - 2) / 2
            tip = [name]
            if p.customers is not None:
                tip.append(meta)
                if p.previous_customers:
                    rel = (p.customers - p.previous_customers) / p.previous_customers
                    tip.append(
                        fmt.t("vs_previous", delta=fmt.percent(rel, sign=True))
                        + f" ({fmt.integer(p.previous_customers)})"
                    )
            frame = (x + (0 if first else a), chev_y, w - a - (0 if first else a), CHEVRON_H)
            chev_children: list[Node] = [
                Path(d, fill=color, cls="jm-chevron"),
                text_block(cx, text_top, [name_fit], t.phase, "#FFFFFF", "middle"),
                text_block(
                    cx,
                    text_top + t.phase.leading + 2,
                    [meta_fit],
                    t.phase_meta,
                    "#FFFFFF",
                    "middle",
                    opacity=0.88,
                ),
            ]
            nodes.append(
                Group(
                    tuple(chev_children),
                    cls="jm-phase",
                    tip="\n".join(tip),
                    frame=frame,
                    data=(("phase", str(i)), ("phase-id", p.id)),
                )
            )
            if p.moment_of_truth:
                label = fmt.t("moment_of_truth")
                bw = m.width(label, 10.5, 600) + 20
                bx = cx - bw / 2
                by = chev_y - badge_h + 2
                nodes.append(
                    Group(
                        (
                            Rect(bx, by, bw, 20, fill=t.ink, rx=10),
                            text_block(
                                cx,
                                by + (20 - 13) / 2,
                                [label],
                                Type(10.5, 600, 1.24),
                                "#FFFFFF",
                                "middle",
                            ),
                        ),
                        cls="jm-badge",
                        frame=(bx, by, bw, 20),
                        data=(("phase", str(i)),),
                    )
                )

        # funnel strip: bars per phase, conversion pills between phases
        pill_h = 22.0
        pills: list[tuple[float, float]] = []  # (centre x, width)
        for i, p in enumerate(phases[:-1]):
            conv = p.conversion_to_next
            label = (fmt.percent(conv) if conv is not None else "–") + " →"
            pw = m.width(label, 11, 600) + 22
            pills.append((self.col_x(i) + self.col_w + GUTTER / 2, pw))
        for i, p in enumerate(phases):
            left = self.col_x(i) + 10 if i == 0 else pills[i - 1][0] + pills[i - 1][1] / 2 + 6
            right = (
                self.col_x(i) + self.col_w - 10
                if i == self.n - 1
                else pills[i][0] - pills[i][1] / 2 - 6
            )
            track_w = max(8.0, right - left)
            by = strip_y + STRIP_H / 2 - 3.5
            share = math.sqrt((p.customers or 0) / max_customers) if max_customers else 0.0
            bar: list[Node] = [Rect(left, by, track_w, 7, fill=t.track, rx=3.5)]
            if share > 0:
                bar.append(
                    Rect(
                        left,
                        by,
                        max(7.0, track_w * share),
                        7,
                        fill=t.phase_color(i, self.n),
                        rx=3.5,
                    )
                )
            reached = (
                fmt.t("customers_n", n=fmt.integer(p.customers))
                if p.customers is not None
                else fmt.t("no_data")
            )
            nodes.append(
                Group(
                    tuple(bar),
                    cls="jm-strip",
                    tip=f"{p.label}: {reached}",
                    data=(("phase", str(i)),),
                )
            )
        for i, p in enumerate(phases[:-1]):
            pcx, pw = pills[i]
            conv = p.conversion_to_next
            label = (fmt.percent(conv) if conv is not None else "–") + " →"
            py = strip_y + (STRIP_H - pill_h) / 2
            nxt = phases[i + 1]
            pill_tip = fmt.t(
                "conversion_to",
                a=p.label,
                b=nxt.label,
                pct=fmt.percent(conv) if conv is not None else "–",
            )
            prev = p.previous_conversion_to_next
            if prev is not None and conv is not None:
                pill_tip += "\n" + fmt.t("vs_previous", delta=fmt.points(conv - prev))
            if p.is_break:
                pill_tip += "\n" + fmt.t("legend.break")
            fill, ink, stroke = (
                (t.break_red, "#FFFFFF", "") if p.is_break else (t.canvas, t.ink, t.hairline)
            )
            nodes.append(
                Group(
                    (
                        Rect(
                            pcx - pw / 2,
                            py,
                            pw,
                            pill_h,
                            fill=fill,
                            stroke=stroke,
                            stroke_width=1.2,
                            rx=pill_h / 2,
                        ),
                        text_block(
                            pcx,
                            py + (pill_h - 13.2) / 2,
                            [label],
                            Type(11, 600, 1.2),
                            ink,
                            "middle",
                        ),
                    ),
                    cls="jm-pill jm-break" if p.is_break else "jm-pill",
                    tip=pill_tip,
                    frame=(pcx - pw / 2, py, pw, pill_h),
                    data=(("phase", str(i)),),
                )
            )

        persona, persona_h = self.persona_card(top, region_bottom - top)
        nodes.insert(0, persona)
        return nodes, max(region_bottom, top + persona_h)

    def persona_card(self, top: float, min_h: float) -> tuple[Group, float]:
        t, fmt, m = self.theme, self.fmt, self.m
        p = self.data.persona
        name = p.name if p else fmt.t("all_customers")
        desc = (p.description if p else "") or ("" if p else fmt.t("persona_all_desc"))
        quote = p.quote if p else ""
        source: Source = p.source if p else "data"
        x, w = MARGIN, LABEL_W
        pad = 14.0
        av_r = 17.0
        text_x = x + pad + 2 * av_r + 10
        text_w = x + w - pad - 10 - text_x  # room for the provenance dot
        name_style = Type(13.5, 700, 1.25)
        name_lines = m.wrap(name, text_w, name_style.size, name_style.weight, 2)
        desc_style = Type(11, 400, 1.3)
        desc_lines = m.wrap(desc, text_w, desc_style.size, max_lines=3) if desc else None
        head_h = max(
            2 * av_r,
            len(name_lines.lines) * name_style.leading
            + (len(desc_lines.lines) * desc_style.leading if desc_lines else 0),
        )
        y = top + pad
        nodes: list[Node] = [
            Rect(x, top, w, 0, fill=t.panel, rx=t.radius),  # placeholder, replaced below
        ]
        initials = "".join(part[0] for part in name.replace(",", " ").split()[:2]).upper()
        nodes.append(Circle(x + pad + av_r, y + av_r, av_r, fill=t.phase_ramp[0]))
        nodes.append(
            text_block(
                x + pad + av_r,
                y + av_r - 8.5,
                [initials or "·"],
                Type(13, 700, 1.3),
                "#FFFFFF",
                "middle",
            )
        )
        nodes.append(text_block(text_x, y, name_lines.lines, name_style, t.ink))
        yy = y + len(name_lines.lines) * name_style.leading
        if desc_lines:
            nodes.append(text_block(text_x, yy, desc_lines.lines, desc_style, t.muted))
        y += head_h + 8
        tip = [name, desc] if desc else [name]
        stats: list[str] = []
        if p is not None and p.customers is not None:
            share = f" · {fmt.percent(p.share)}" if p.share is not None else ""
            stats.append(fmt.t("customers_n", n=fmt.integer(p.customers)) + share)
        if p is not None and p.conversion_rate is not None:
            stats.append(f"{fmt.t('persona.conversion')} {fmt.percent(p.conversion_rate)}")
        if p is None and self.data.footer.customers is not None:
            stats.append(fmt.t("customers_n", n=fmt.integer(self.data.footer.customers)))
        full_w = w - 2 * pad
        if quote:
            q = _quoted(quote, self.data.lang)
            ql = m.wrap(q, full_w, 11.5, 400, 3)
            nodes.append(text_block(x + pad, y, ql.lines, Type(11.5, 400, 1.3), t.ink2))
            y += len(ql.lines) * 11.5 * 1.3 + 6
            tip.append(q)
        if stats:
            line = " · ".join(stats)
            nodes.append(text_block(x + pad, y, [m.ellipsize(line, full_w, 10)], t.meta, t.muted))
            y += t.meta.leading + 2
            tip.append(line)
        h = max(min_h, y + pad - 6 - top)
        nodes[0] = Rect(x, top, w, h, fill=t.panel, rx=t.radius, filter="shadow")
        nodes.append(provenance_dot(x + w - DOT_INSET, top + DOT_INSET, source, t))
        tip.append(source_label(source, fmt))
        return Group(tuple(nodes), cls="jm-persona", tip="\n".join(tip), frame=(x, top, w, h)), h

    # -- lanes -------------------------------------------------------------------------------
    def lanes(self, has_prev: bool) -> list[Callable[[float], tuple[Group, float]]]:
        out: list[Callable[[float], tuple[Group, float]]] = []
        ph = self.data.phases
        if any(p.feeling is not None for p in ph):
            out.append(lambda y: self.feelings_lane(y, has_prev))
        specs: list[tuple[str, Callable[[PhaseColumn], list[_Card]]]] = [
            ("goals", self.goal_cards),
            ("touchpoints", self.touchpoint_cards),
            ("measures", lambda p: self.item_cards(p.measures, "measure")),
            ("pain", lambda p: self.item_cards(p.pain_points, "pain")),
            ("opportunities", lambda p: self.item_cards(p.opportunities, "opportunity")),
            ("kpis", self.kpi_cards),
        ]
        for lane_id, make in specs:
            cells = [make(p) for p in ph]
            if any(cells):
                out.append(
                    lambda y, lane_id=lane_id, cells=cells: self.card_lane(  # type: ignore[misc]
                        y, lane_id, cells
                    )
                )
        return out

    def lane_label(self, lane_id: str, y: float, h: float, extra: Sequence[Node] = ()) -> Group:
        t, m = self.theme, self.m
        label = self.fmt.t(f"lane.{lane_id}")
        lines = m.wrap(label, LABEL_W - 34, t.lane.size, t.lane.weight, 2).lines
        ty = y + (h - len(lines) * t.lane.leading) / 2
        nodes: list[Node] = [
            Rect(MARGIN, y, LABEL_W, h, fill=t.panel, rx=t.radius),
            Rect(MARGIN, y, 4, h, fill=t.lanes[lane_id], rx=2),
            text_block(MARGIN + 16, ty, lines, t.lane, t.ink),
            *extra,
        ]
        return Group(tuple(nodes), cls="jm-lane-label", tip=label, frame=(MARGIN, y, LABEL_W, h))

    def card_lane(self, y: float, lane_id: str, cells: list[list[_Card]]) -> tuple[Group, float]:
        t = self.theme
        need = [sum(c.height for c in cards) + GUTTER * max(0, len(cards) - 1) for cards in cells]
        h = max(max(need), 44.0)
        nodes: list[Node] = [self.lane_label(lane_id, y, h)]
        for i, cards in enumerate(cells):
            x = self.col_x(i)
            if not cards:
                nodes.append(
                    Group(
                        (
                            Rect(
                                x + 0.5,
                                y + 0.5,
                                self.col_w - 1,
                                h - 1,
                                stroke=t.hairline,
                                dash="3 3",
                                rx=t.radius,
                            ),
                        ),
                        cls="jm-empty",
                        data=(("phase", str(i)),),
                    )
                )
                continue
            extra = (h - need[i]) / len(cards)
            cy = y
            for card in cards:
                ch = card.height + extra
                g = card.draw(x, cy, self.col_w, ch)
                nodes.append(Group((g,), data=(("phase", str(i)),)))
                cy += ch + GUTTER
        return Group(tuple(nodes), cls="jm-lane", data=(("lane", lane_id),)), h

    # cards ----------------------------------------------------------------------------------
    def _text_card(
        self,
        blocks: Sequence[tuple[str, Type, str]],
        source: Source,
        *,
        fill: str,
        stroke: str,
        tip_extra: str = "",
        stripe: tuple[str, float] | None = None,
        cls: str = "jm-card",
    ) -> _Card:
        """A card of centred text blocks (text, style, colour), each wrapped and measured."""
        t, m = self.theme, self.m
        inner = self.col_w - 2 * CARD_PAD_X - 2 * 6
        wrapped = [
            (m.wrap(text, inner, st.size, st.weight, self.opts.max_lines), st, col)
            for text, st, col in blocks
        ]
        gap = 5.0
        text_h = sum(len(w.lines) * st.leading for w, st, _ in wrapped) + gap * (len(wrapped) - 1)
        height = text_h + 2 * CARD_PAD_Y
        full = [text for text, _, _ in blocks]
        truncated = any(w.truncated for w, _, _ in wrapped)
        tip_lines = [*full, *([tip_extra] if tip_extra else []), source_label(source, self.fmt)]
        tip = "\n".join(tip_lines)

        def draw(x: float, y: float, w: float, h: float) -> Group:
            nodes: list[Node] = [Rect(x, y, w, h, fill=fill, stroke=stroke, rx=t.radius)]
            if stripe is not None:
                color, opacity = stripe
                nodes.append(Rect(x + 3, y + 6, 3, h - 12, fill=color, rx=1.5, opacity=opacity))
            ty = y + (h - text_h) / 2
            for wr, st, col in wrapped:
                nodes.append(text_block(x + w / 2, ty, wr.lines, st, col, "middle"))
                ty += len(wr.lines) * st.leading + gap
            nodes.append(provenance_dot(x + w - DOT_INSET, y + DOT_INSET, source, t))
            return Group(
                tuple(nodes),
                cls=cls + (" jm-truncated" if truncated else ""),
                tip=tip,
                frame=(x, y, w, h),
            )

        return _Card(height, draw)

    def goal_cards(self, p: PhaseColumn) -> list[_Card]:
        t = self.theme
        blocks: list[tuple[str, Type, str]] = [(g.text, t.body, t.ink) for g in p.goals]
        blocks += [(_quoted(q.text, self.data.lang), t.body, t.ink2) for q in p.questions]
        if not blocks:
            return []
        items = [*p.goals, *p.questions]
        source: Source = "data" if any(i.source == "data" for i in items) else "spec"
        detail = "\n".join(i.detail for i in items if i.detail)
        return [self._text_card(blocks, source, fill=t.canvas, stroke=t.hairline, tip_extra=detail)]

    def item_cards(self, items: Sequence[Item], kind: str) -> list[_Card]:
        t = self.theme
        if not items:
            return []
        shown = list(items[:MAX_CARDS])
        rest = list(items[MAX_CARDS:])
        cards = []
        for k, item in enumerate(shown):
            if kind == "pain":
                fill, stroke, style, ink = t.pain_bg, t.pain_line, t.body_strong, t.pain
                cls = "jm-card jm-pain"
            elif kind == "opportunity":
                fill, stroke, style, ink = (
                    t.opportunity_bg,
                    t.opportunity_line,
                    t.body_strong,
                    t.opportunity,
                )
                cls = "jm-card jm-opportunity"
            else:
                fill, stroke, style, ink = t.canvas, t.hairline, t.body, t.ink
                cls = "jm-card"
            blocks: list[tuple[str, Type, str]] = [(item.text, style, ink)]
            if item.note:
                blocks.append((item.note, t.meta, ink if kind != "measure" else t.muted))
            detail = item.detail
            if item.severity is not None:
                detail = (detail + "\n" if detail else "") + self.fmt.t(f"severity.{item.severity}")
            if k == len(shown) - 1 and rest:
                more = self.fmt.t("more", n=len(rest))
                blocks.append((more, t.meta, t.muted))
                detail = "\n".join([detail, *(r.text for r in rest)]).strip()
            stripe = None
            if item.severity is not None:
                opacity = {"high": 1.0, "medium": 0.6, "low": 0.3}[item.severity]
                stripe = (t.pain if kind == "pain" else ink, opacity)
            cards.append(
                self._text_card(
                    blocks,
                    item.source,
                    fill=fill,
                    stroke=stroke,
                    tip_extra=detail,
                    stripe=stripe,
                    cls=cls,
                )
            )
        return cards

    def touchpoint_cards(self, p: PhaseColumn) -> list[_Card]:
        t, fmt, m = self.theme, self.fmt, self.m
        tps = list(p.touchpoints)
        if not tps:
            return []
        if any(tp.reach is not None for tp in tps):
            tps.sort(key=lambda tp: -(tp.reach or 0.0))
        max_chips = self.opts.max_chips
        shown = tps if len(tps) <= max_chips + 1 else tps[:max_chips]
        rest = tps[len(shown) :]
        inner = self.col_w - 2 * CARD_PAD_X - 10  # room for the dot on the first row
        chip_h, chip_gap = 22.0, 6.0
        style = t.chip_text
        # (label, reach text, width, touchpoint or None for "+n")
        chips: list[tuple[str, str, float, TouchpointView | None]] = []
        for tp in shown:
            reach = (
                fmt.percent(tp.reach, 0 if tp.reach >= 0.095 else 1) if tp.reach is not None else ""
            )
            reach_w = m.width(" " + reach, style.size, 400) if reach else 0.0
            label = m.ellipsize(tp.label, inner - 18 - reach_w, style.size, style.weight)
            w = m.width(label, style.size, style.weight) + reach_w + 18
            chips.append((label, reach, w, tp))
        if rest:
            label = fmt.t("more_chips", n=len(rest))
            chips.append((label, "", m.width(label, style.size, style.weight) + 18, None))
        # flow into rows
        rows: list[list[int]] = [[]]
        row_w = 0.0
        for k, (_, _, w, _) in enumerate(chips):
            if rows[-1] and row_w + chip_gap + w > inner:
                rows.append([])
                row_w = 0.0
            row_w += (chip_gap if rows[-1] else 0) + w
            rows[-1].append(k)
        content_h = len(rows) * chip_h + (len(rows) - 1) * chip_gap
        height = content_h + 2 * 10
        source: Source = "data" if any(tp.reach is not None for tp in tps) else "spec"
        rest_tip = "\n".join(self._tp_tip(tp) for tp in rest)
        card_tip = (
            "\n".join(self._tp_tip(tp) for tp in tps)
            + "\n"
            + (
                source_label(source, fmt)
                + (" (reach)" if source == "data" and fmt.lang == "en" else "")
            )
        )

        def draw(x: float, y: float, w: float, h: float) -> Group:
            nodes: list[Node] = [Rect(x, y, w, h, fill=t.canvas, stroke=t.hairline, rx=t.radius)]
            cy = y + (h - content_h) / 2
            for row in rows:
                cx = x + CARD_PAD_X
                for k in row:
                    label, reach, cw, tp = chips[k]
                    indirect = tp is not None and tp.kind == "indirect"
                    bg = t.chip_indirect_bg if indirect or tp is None else t.chip_bg
                    ink = t.chip_indirect if indirect or tp is None else t.chip
                    parts: list[Node] = [
                        Rect(
                            cx,
                            cy,
                            cw,
                            chip_h,
                            fill=bg,
                            rx=chip_h / 2,
                            stroke=t.muted if indirect else "",
                            stroke_width=0.8,
                            dash="2 2" if indirect else "",
                        ),
                        text_block(cx + 9, cy + (chip_h - style.leading) / 2, [label], style, ink),
                    ]
                    if reach:
                        lw = m.width(label, style.size, style.weight)
                        parts.append(
                            text_block(
                                cx + 9 + lw + m.width(" ", style.size),
                                cy + (chip_h - style.leading) / 2,
                                [reach],
                                Type(style.size, 400, style.line),
                                t.muted,
                            )
                        )
                    tip = self._tp_tip(tp) if tp is not None else rest_tip
                    nodes.append(
                        Group(tuple(parts), cls="jm-chip", tip=tip, frame=(cx, cy, cw, chip_h))
                    )
                    cx += cw + chip_gap
                cy += chip_h + chip_gap
            nodes.append(provenance_dot(x + w - DOT_INSET, y + DOT_INSET, source, t))
            return Group(
                tuple(nodes), cls="jm-card jm-touchpoints", tip=card_tip, frame=(x, y, w, h)
            )

        return [_Card(height, draw)]

    def _tp_tip(self, tp: TouchpointView) -> str:
        fmt = self.fmt
        kind = fmt.t(f"kind.{tp.kind}")
        channel = tp.channel or "–"
        if tp.reach is None or tp.customers is None:
            return f"{tp.label} ({channel}, {kind})"
        return fmt.t(
            "reach_tip",
            label=tp.label,
            channel=channel,
            kind=kind,
            n=fmt.integer(tp.customers),
            pct=fmt.percent(tp.reach),
        )

    def kpi_cards(self, p: PhaseColumn) -> list[_Card]:
        if p.kpi is None:
            return []
        k = p.kpi
        t, fmt, m = self.theme, self.fmt, self.m
        inner = self.col_w - 2 * CARD_PAD_X - 2 * 6
        label = m.ellipsize(
            k.label.upper(), inner, t.kpi_label.size, t.kpi_label.weight, t.kpi_label.spacing
        )
        value = kpi_value(k, fmt)
        value = m.ellipsize(value, inner, t.kpi_value.size, t.kpi_value.weight)
        delta_text, delta_color = kpi_delta(k, fmt, t)
        sub = delta_text or k.note
        sub_color = delta_color if delta_text else t.muted
        sub_style = t.meta_strong if delta_text else t.meta
        sub = m.ellipsize(sub, inner, sub_style.size, sub_style.weight) if sub else ""
        height = (
            t.kpi_label.leading
            + 4
            + t.kpi_value.leading
            + (4 + sub_style.leading if sub else 0)
            + 2 * 10
        )
        tip = [k.label, value]
        if k.previous is not None:
            tip.append(fmt.t("previous", value=kpi_value(k, fmt, k.previous)))
        if k.note:
            tip.append(k.note)
        tip.append(source_label(k.source, fmt))

        def draw(x: float, y: float, w: float, h: float) -> Group:
            cx = x + w / 2
            ty = y + (h - (height - 20)) / 2
            nodes: list[Node] = [
                Rect(x, y, w, h, fill=t.canvas, stroke=t.hairline, rx=t.radius),
                text_block(cx, ty, [label], t.kpi_label, t.muted, "middle"),
            ]
            ty += t.kpi_label.leading + 4
            nodes.append(
                text_block(cx, ty, [value], t.kpi_value, t.ink, "middle", cls="jm-kpi-value")
            )
            ty += t.kpi_value.leading + 4
            if sub:
                nodes.append(text_block(cx, ty, [sub], sub_style, sub_color, "middle"))
            nodes.append(provenance_dot(x + w - DOT_INSET, y + DOT_INSET, k.source, t))
            return Group(tuple(nodes), cls="jm-card jm-kpi", tip="\n".join(tip), frame=(x, y, w, h))

        return [_Card(height, draw)]

    # -- feelings ----------------------------------------------------------------------------
    def feelings_lane(self, y: float, has_prev: bool) -> tuple[Group, float]:
        t, fmt, m = self.theme, self.fmt, self.m
        phases = self.data.phases
        h = FEELINGS_H
        word_style, _score_style = t.emotion_word, t.emotion_score
        # room for the labels above the highest and below the lowest point
        words = [
            len(
                m.wrap(p.feeling.word, self.col_w - 20, word_style.size, word_style.weight, 2).lines
            )
            for p in phases
            if p.feeling is not None and p.feeling.word
        ]
        pad_top = max(words, default=1) * word_style.leading + 16
        pad_bottom = pad_top
        top, bottom = y + pad_top, y + h - pad_bottom

        def vy(v: float) -> float:
            return top + (2 - max(-2.0, min(2.0, v))) / 4 * (bottom - top)

        zero = vy(0)
        hint_style = Type(10, 400, 1.2)
        hints = [
            text_block(
                MARGIN + LABEL_W - 12,
                vy(2) - hint_style.leading / 2,
                ["+2 " + fmt.t("feel.high")],
                hint_style,
                t.muted,
                "end",
            ),
            text_block(
                MARGIN + LABEL_W - 12,
                vy(-2) - hint_style.leading / 2,
                [f"−2 {fmt.t('feel.low')}"],
                hint_style,
                t.muted,
                "end",
            ),
        ]
        nodes: list[Node] = [self.lane_label("feelings", y, h, hints)]
        # the plot background: one panel per phase so that columns read as columns
        for i in range(self.n):
            nodes.append(
                Group(
                    (
                        Rect(
                            self.col_x(i),
                            y,
                            self.col_w,
                            h,
                            fill="#FBFCFD",
                            stroke=t.hairline,
                            rx=t.radius,
                        ),
                    ),
                    data=(("phase", str(i)),),
                    cls="jm-feel-bg",
                )
            )
        x_left, x_right = self.col_x(0), self.right()
        for v in (2, -2):
            nodes.append(
                Path(
                    f"M{x_left + 8:.1f},{vy(v):.1f}H{x_right - 8:.1f}",
                    stroke=t.hairline,
                    stroke_width=1,
                )
            )
        nodes.append(
            Path(
                f"M{x_left + 8:.1f},{zero:.1f}H{x_right - 8:.1f}",
                stroke="#ADB5BD",
                stroke_width=1,
                dash="4 4",
            )
        )

        pts = [(i, p.feeling) for i, p in enumerate(phases) if p.feeling is not None]
        xy = [(self.col_cx(i), vy(f.value)) for i, f in pts]
        if has_prev:
            prev = [(self.col_cx(i), vy(f.previous)) for i, f in pts if f.previous is not None]
            if len(prev) > 1:
                nodes.append(
                    Path(smooth_path(prev), stroke="#ADB5BD", stroke_width=1.6, cls="jm-previous")
                )
            for px, py in prev:
                nodes.append(Circle(px, py, 3, fill="#ADB5BD", cls="jm-previous"))
        if len(xy) > 1:
            area = smooth_path(xy) + f"L{xy[-1][0]:.1f},{zero:.1f}L{xy[0][0]:.1f},{zero:.1f}Z"
            nodes.append(Path(area, fill=t.emotion_tint, opacity=0.10))
            for k, seg in enumerate(bezier_segments(xy)):
                solid = pts[k][1].source == "data" and pts[k + 1][1].source == "data"
                nodes.append(
                    Path(
                        segment_path(seg),
                        stroke=t.curve,
                        stroke_width=2.4,
                        dash="" if solid else "6 5",
                        linecap="round",
                        cls="jm-curve" if solid else "jm-curve jm-curve-spec",
                    )
                )
        for k, (i, f) in enumerate(pts):
            px, py = xy[k]
            nodes.append(self.feeling_point(i, f, px, py, k, pts, y, h))
        return Group(tuple(nodes), cls="jm-lane", data=(("lane", "feelings"),)), h

    def feeling_point(
        self,
        i: int,
        f: FeelingPoint,
        px: float,
        py: float,
        k: int,
        pts: Sequence[tuple[int, FeelingPoint]],
        lane_y: float,
        lane_h: float,
    ) -> Group:
        t, fmt, m = self.theme, self.fmt, self.m
        word_style, score_style = t.emotion_word, t.emotion_score
        neighbours = [pts[j][1].value for j in (k - 1, k + 1) if 0 <= j < len(pts)]
        valley = bool(neighbours) and f.value < sum(neighbours) / len(neighbours) - 0.15
        word = f.word or ""
        lines = (
            m.wrap(word, self.col_w - 20, word_style.size, word_style.weight, 2).lines
            if word
            else ()
        )
        score = fmt.score(f.value)
        score_line = (
            f"{score} · n={fmt.integer(f.n)}"
            if f.source == "data" and f.n is not None
            else (f"{score} · {fmt.t('source.spec')}" if f.source == "spec" else score)
        )
        color = t.emotion_color(f.value)
        word_h = len(lines) * word_style.leading
        if valley:  # label below a valley so the rising curve does not run through it
            word_top = py + 11
            score_top = py - 11 - score_style.leading
        else:
            word_top = py - 11 - word_h
            score_top = py + 11
        nodes: list[Node] = []
        halo = "#FBFCFD"  # the lane's background: curves and grid lines pass behind labels
        if lines:
            nodes.append(text_block(px, word_top, lines, word_style, t.ink, "middle", halo=halo))
        nodes.append(
            text_block(px, score_top, [score_line], score_style, t.muted, "middle", halo=halo)
        )
        if f.source == "data":
            nodes.append(
                Circle(
                    px,
                    py,
                    7,
                    fill=color,
                    stroke="#FFFFFF",
                    stroke_width=2.2,
                    cls="jm-point jm-src-data",
                )
            )
        else:
            nodes.append(
                Circle(
                    px,
                    py,
                    6.2,
                    fill="#FFFFFF",
                    stroke=color,
                    stroke_width=2.6,
                    cls="jm-point jm-src-spec",
                )
            )
        if f.source == "data":
            tip = fmt.t(
                "feeling_tip_data", word=word or score, score=score, n=fmt.integer(f.n or 0)
            )
        else:
            tip = fmt.t("feeling_tip_spec", word=word or score, score=score)
        if f.previous is not None:
            tip += "\n" + fmt.t("feeling_prev", score=fmt.score(f.previous))
        frame = (self.col_x(i), lane_y, self.col_w, lane_h)
        return Group(
            tuple(nodes), cls="jm-feeling", tip=tip, frame=frame, data=(("phase", str(i)),)
        )


def kpi_value(k: KpiCard, fmt: Formatter, value: float | None = None) -> str:
    v = k.value if value is None else value
    if v is None:
        return "–"
    if k.unit == "percent":
        return fmt.percent(v)
    if k.unit == "score5":
        return fmt.number(v, 1) + "/5"
    if k.unit == "nps":
        return fmt.number(v, 0, sign=True)
    if k.unit == "money":
        return (
            fmt.money(v, k.currency)
            if abs(v) < 1e6
            else fmt.compact(v) + (" €" if fmt.lang == "de" else "")
        )
    if k.unit == "count":
        return fmt.compact(v) if abs(v) >= 1e6 else fmt.integer(round(v))
    return fmt.number(v, 1)


def kpi_delta(k: KpiCard, fmt: Formatter, t: Theme) -> tuple[str, str]:
    """The change against the previous period, coloured by whether it is better."""
    d = k.delta
    if d is None or k.previous is None:
        return "", t.muted
    if k.unit == "percent":
        text = fmt.points(d)
    elif k.unit in ("count", "money"):
        if not k.previous:
            return "", t.muted
        text = fmt.percent(d / abs(k.previous), sign=True)
    elif k.unit == "nps":
        text = fmt.number(d, 0, sign=True)
    else:
        text = fmt.number(d, 1, sign=True)
    if abs(d) < 1e-9 or k.better == "none":
        color = t.muted
    else:
        good = (d > 0) == (k.better == "up")
        color = t.better if good else t.worse
    arrow = "▲ " if d > 0 else ("▼ " if d < 0 else "")
    return arrow + text, color


def _quoted(text: str, lang: str) -> str:
    text = text.strip()
    if text[:1] in "\"“„'‚":
        return text
    return f"„{text}“" if lang == "de" else f"“{text}”"


def layout_journey_map(
    data: JourneyMapData, theme: Theme = DEFAULT, options: MapOptions | None = None
) -> Scene:
    """Lay out the journey map; every coordinate and line break is decided here."""
    return _MapLayout(data, theme, options or MapOptions()).scene()


__all__ = ["MapOptions", "kpi_delta", "kpi_value", "layout_journey_map"]
