"""Bar and matrix figures: phase funnel, attribution small multiples, retention heatmap."""

from __future__ import annotations

from journeymap.render.i18n import Formatter
from journeymap.render.layout.common import MARGIN, footer_block, footer_text, title_block
from journeymap.render.scene import Circle, Group, Path, Rect, Scene, Text, text_block
from journeymap.render.text import metrics
from journeymap.render.theme import DEFAULT, Theme, Type, mix
from journeymap.render.views import AttributionData, FunnelData, RetentionData

Node = Text | Rect | Circle | Path | Group
ROW_LABEL = Type(12.5, 600, 1.25)
VALUE = Type(12, 600, 1.25)
SMALL = Type(11, 400, 1.25)


def layout_funnel(data: FunnelData, theme: Theme = DEFAULT, width: float = 1100.0) -> Scene:
    """Horizontal bars per phase (linear), conversion pills between them, breaks in red."""
    t, fmt, m = theme, Formatter(data.lang), metrics()
    header = title_block(data.title, fmt.t("funnel.subtitle"), width, t)
    top = header.height + 26
    label_w = 190.0
    right_w = 150.0
    bar_x = MARGIN + label_w + 12
    bar_w = width - bar_x - right_w - MARGIN
    row_h, bar_h, pill_gap = 34.0, 24.0, 30.0
    max_n = max((s.customers for s in data.steps), default=1) or 1
    nodes: list[Node] = []
    y = top
    n = len(data.steps)
    for i, s in enumerate(data.steps):
        color = t.phase_color(i, n)
        w = max(2.0, bar_w * s.customers / max_n)
        label = m.ellipsize(f"{i + 1}. {s.label}", label_w, ROW_LABEL.size, ROW_LABEL.weight)
        value = fmt.integer(s.customers)
        tip = [f"{s.label}: " + fmt.t("customers_n", n=value)]
        parts: list[Node] = [
            text_block(MARGIN, y + (row_h - ROW_LABEL.leading) / 2, [label], ROW_LABEL, t.ink),
            Rect(bar_x, y + (row_h - bar_h) / 2, bar_w, bar_h, fill=t.panel, rx=4),
            Rect(bar_x, y + (row_h - bar_h) / 2, w, bar_h, fill=color, rx=4),
        ]
        vw = m.width(value, VALUE.size, VALUE.weight)
        inside = vw + 16 < w
        parts.append(
            text_block(
                bar_x + w - 8 if inside else bar_x + w + 8,
                y + (row_h - VALUE.leading) / 2,
                [value],
                VALUE,
                "#FFFFFF" if inside else t.ink,
                "end" if inside else "start",
            )
        )
        if s.previous_customers is not None:
            px = bar_x + min(bar_w, bar_w * s.previous_customers / max_n)
            by = y + (row_h - bar_h) / 2
            # previous period: a tick above and below the bar, clear of the value label
            parts.append(
                Path(
                    f"M{px:.1f},{by - 5:.1f}V{by - 1:.1f}M{px:.1f},{by + bar_h + 1:.1f}"
                    f"V{by + bar_h + 5:.1f}",
                    stroke=t.ink,
                    stroke_width=2,
                    cls="jm-previous",
                )
            )
            rel = (
                (s.customers - s.previous_customers) / s.previous_customers
                if s.previous_customers
                else 0.0
            )
            tip.append(
                fmt.t("vs_previous", delta=fmt.percent(rel, sign=True))
                + f" ({fmt.integer(s.previous_customers)})"
            )
        if i > 0:
            prev = data.steps[i - 1]
            dropped = prev.customers - s.customers
            if dropped > 0:
                text = fmt.t("funnel.dropped", n=fmt.integer(dropped))
                parts.append(
                    text_block(
                        width - MARGIN,
                        y + (row_h - SMALL.leading) / 2,
                        [m.ellipsize(text, right_w - 10, SMALL.size)],
                        SMALL,
                        t.pain if s.is_break else t.muted,
                        "end",
                    )
                )
        nodes.append(
            Group(tuple(parts), cls="jm-funnel-row", tip="\n".join(tip), data=(("phase", str(i)),))
        )
        y += row_h
        if i + 1 < n:
            nxt = data.steps[i + 1]
            conv = nxt.conversion
            label = (fmt.percent(conv) if conv is not None else "–") + " ↓"
            pw = m.width(label, 11, 600) + 22
            px = bar_x + 12
            py = y + (pill_gap - 20) / 2
            brk = nxt.is_break
            nodes.append(
                Group(
                    (
                        Rect(
                            px,
                            py,
                            pw,
                            20,
                            fill=t.break_red if brk else t.canvas,
                            stroke="" if brk else t.hairline,
                            stroke_width=1.2,
                            rx=10,
                        ),
                        text_block(
                            px + pw / 2,
                            py + (20 - 13.2) / 2,
                            [label],
                            Type(11, 600, 1.2),
                            "#FFFFFF" if brk else t.ink,
                            "middle",
                        ),
                    ),
                    cls="jm-pill jm-break" if brk else "jm-pill",
                    tip=fmt.t(
                        "conversion_to",
                        a=s.label,
                        b=nxt.label,
                        pct=fmt.percent(conv) if conv is not None else "–",
                    )
                    + (f"\n{fmt.t('legend.break')}" if brk else ""),
                    frame=(px, py, pw, 20),
                )
            )
            y += pill_gap
    foot = footer_block(footer_text(data.footer, fmt), y + 20, width, t)
    height = y + 20 + foot.height + MARGIN - 8
    return Scene(
        width,
        round(height),
        data.title,
        f"{data.title}: {n} steps",
        (header.node, *nodes, foot.node),
        background=t.canvas,
        cls="jm-figure jm-funnel",
    )


def layout_attribution(
    data: AttributionData, theme: Theme = DEFAULT, width: float = 1300.0
) -> Scene:
    """One small multiple per model, channels in the same order in every panel."""
    t, fmt, m = theme, Formatter(data.lang), metrics()
    sub = fmt.t("attribution.subtitle")
    if data.conversions is not None:
        sub += f" · n={fmt.integer(data.conversions)}"
    header = title_block(data.title, sub, width, t)
    top = header.height + 26
    label_w = 150.0
    n_models = max(1, len(data.models))
    gap = 22.0
    panel_w = (width - 2 * MARGIN - label_w - gap * (n_models - 1)) / n_models
    row_h, bar_h = 28.0, 16.0
    max_v = max((v for row in data.values for v in row), default=1.0) or 1.0
    nodes: list[Node] = []
    for r, ch in enumerate(data.channels):
        y = top + 26 + r * row_h
        nodes.append(
            text_block(
                MARGIN,
                y + (row_h - ROW_LABEL.leading) / 2,
                [m.ellipsize(ch, label_w - 10, 12, 500)],
                Type(12, 500, 1.25),
                t.ink,
            )
        )
    for k, model in enumerate(data.models):
        x = MARGIN + label_w + k * (panel_w + gap)
        cap = m.ellipsize(model.upper(), panel_w, 10.5, 600, 0.6)
        parts: list[Node] = [
            text_block(x, top, [cap], Type(10.5, 600, 1.2, 0.6), t.muted),
            Rect(x, top + 20, panel_w, len(data.channels) * row_h + 10, fill=t.panel, rx=6),
        ]
        best = max(range(len(data.channels)), key=lambda i: data.values[k][i], default=0)
        for r, ch in enumerate(data.channels):
            v = data.values[k][r]
            y = top + 26 + r * row_h
            label = fmt.percent(v)
            lw = m.width(label, 11, 600) + 8
            bw = max(1.0, (panel_w - 16 - lw) * v / max_v)
            color = t.flow_node if r == best else mix(t.flow_node, "#FFFFFF", 0.35)
            parts.append(
                Group(
                    (
                        Rect(x + 8, y + (row_h - bar_h) / 2, bw, bar_h, fill=color, rx=3),
                        text_block(
                            x + 8 + bw + 6,
                            y + (row_h - 13.75) / 2,
                            [label],
                            Type(11, 600, 1.25),
                            t.ink2,
                        ),
                    ),
                    cls="jm-bar",
                    tip=f"{model} · {ch}: {fmt.percent(v)}",
                )
            )
        nodes.append(Group(tuple(parts), cls="jm-panel"))
    bottom = top + 26 + len(data.channels) * row_h + 10
    foot = footer_block(footer_text(data.footer, fmt), bottom + 22, width, t)
    height = bottom + 22 + foot.height + MARGIN - 8
    return Scene(
        width,
        round(height),
        data.title,
        f"{data.title}: {', '.join(data.models)}",
        (header.node, *nodes, foot.node),
        background=t.canvas,
        cls="jm-figure jm-attribution",
    )


def layout_retention(data: RetentionData, theme: Theme = DEFAULT, width: float = 1100.0) -> Scene:
    """Cohort × period heatmap; shares printed in every cell."""
    t, fmt, m = theme, Formatter(data.lang), metrics()
    header = title_block(data.title, fmt.t("retention.subtitle"), width, t)
    top = header.height + 26
    periods = max((len(r) for r in data.matrix), default=0)
    label_w, size_w = 120.0, 80.0
    grid_x = MARGIN + label_w + size_w
    cell_w = min(96.0, (width - grid_x - MARGIN) / max(1, periods))
    cell_h = 30.0
    cap = Type(10.5, 600, 1.2, 0.4)
    nodes: list[Node] = [
        text_block(MARGIN, top, [fmt.t("retention.cohort").upper()], cap, t.muted),
        text_block(
            MARGIN + label_w + size_w - 12,
            top,
            [fmt.t("retention.size").upper()],
            cap,
            t.muted,
            "end",
        ),
    ]
    for k in range(periods):
        nodes.append(
            text_block(
                grid_x + k * cell_w + cell_w / 2,
                top,
                [fmt.t("retention.period", n=k)],
                cap,
                t.muted,
                "middle",
            )
        )
    y = top + 22
    for i, cohort in enumerate(data.cohorts):
        nodes.append(
            text_block(
                MARGIN,
                y + (cell_h - 15.6) / 2,
                [m.ellipsize(cohort, label_w - 8, 12)],
                Type(12, 500, 1.3),
                t.ink,
            )
        )
        nodes.append(
            text_block(
                MARGIN + label_w + size_w - 12,
                y + (cell_h - 15.6) / 2,
                [fmt.integer(data.cohort_sizes[i])],
                Type(12, 400, 1.3),
                t.muted,
                "end",
            )
        )
        for k, v in enumerate(data.matrix[i]):
            x = grid_x + k * cell_w
            if v is None:
                continue
            # k = 0 is the cohort's own period (100 %): drawn neutral so it does not dominate
            shade = 0.0 if k == 0 else min(1.0, v / 0.5)
            fill = t.panel if k == 0 else mix("#EDF2FF", t.flow_node, shade)
            ink = "#FFFFFF" if shade > 0.55 else t.ink
            nodes.append(
                Group(
                    (
                        Rect(x + 1, y + 1, cell_w - 2, cell_h - 2, fill=fill, rx=3),
                        text_block(
                            x + cell_w / 2,
                            y + (cell_h - 14.3) / 2,
                            [fmt.percent(v, 0)],
                            Type(11, 500, 1.3),
                            ink,
                            "middle",
                        ),
                    ),
                    cls="jm-cell",
                    tip=f"{cohort} +{k}: {fmt.percent(v)} "
                    + f"({fmt.integer(round(v * data.cohort_sizes[i]))})",
                    frame=(x + 1, y + 1, cell_w - 2, cell_h - 2),
                )
            )
        y += cell_h
    foot = footer_block(footer_text(data.footer, fmt), y + 20, width, t)
    height = y + 20 + foot.height + MARGIN - 8
    return Scene(
        width,
        round(height),
        data.title,
        f"{data.title}: {len(data.cohorts)} cohorts",
        (header.node, *nodes, foot.node),
        background=t.canvas,
        cls="jm-figure jm-retention",
    )
