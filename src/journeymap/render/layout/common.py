"""Pieces every figure shares: title block, legend, provenance dot, text cards, footer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from journeymap.render.i18n import Formatter
from journeymap.render.scene import Circle, Group, Path, Rect, Text, text_block
from journeymap.render.text import metrics
from journeymap.render.theme import Theme, Type
from journeymap.render.views import Footer, Source

MARGIN = 28.0


@dataclass(frozen=True)
class Placed:
    """A laid-out piece and the height it takes."""

    node: Group
    height: float


def provenance_dot(cx: float, cy: float, source: Source, theme: Theme) -> Circle:
    """● computed from data, ○ written in the spec."""
    if source == "data":
        return Circle(cx, cy, 3.5, fill=theme.curve, cls="jm-src jm-src-data")
    return Circle(
        cx,
        cy,
        3.2,
        fill=theme.canvas,
        stroke=theme.muted,
        stroke_width=1.3,
        cls="jm-src jm-src-spec",
    )


def source_label(source: Source, fmt: Formatter) -> str:
    return fmt.t(f"source.{source}")


def title_block(
    title: str,
    subtitle: str,
    width: float,
    theme: Theme,
    legend: Group | None = None,
    legend_width: float = 0.0,
) -> Placed:
    """Title (24/700) and muted subtitle at the top left, the legend at the top right."""
    m = metrics()
    avail = width - 2 * MARGIN - (legend_width + 24 if legend else 0)
    t = m.ellipsize(title, avail, theme.title.size, theme.title.weight)
    s_lines = m.wrap(subtitle, width - 2 * MARGIN, theme.subtitle.size, max_lines=2).lines
    top = MARGIN - 8
    children: list[Text | Group] = [
        text_block(MARGIN, top, [t], theme.title, theme.ink, cls="jm-title")
    ]
    sub_top = top + theme.title.leading + 4
    if subtitle:
        children.append(text_block(MARGIN, sub_top, s_lines, theme.subtitle, theme.muted))
    if legend is not None:
        children.append(legend)
    height = sub_top + (len(s_lines) * theme.subtitle.leading if subtitle else 0) - top
    tip = title if t != title else ""
    return Placed(Group(tuple(children), cls="jm-header", tip=tip), top + height)


def legend(
    items: Sequence[tuple[str, str]], right: float, top: float, theme: Theme
) -> tuple[Group, float]:
    """Legend items (symbol kind, label) laid out right-aligned ending at ``right``."""
    m = metrics()
    style = Type(11.5, 400, 1.2)
    sym_w = {"data": 10.0, "spec": 10.0, "break": 14.0, "emotion": 30.0, "previous": 18.0}
    widths = [sym_w[k] + 6 + m.width(label, style.size) for k, label in items]
    total = sum(widths) + 18 * (len(items) - 1)
    x = right - total
    cy = top + style.leading / 2
    nodes: list[Text | Circle | Rect | Path | Group] = []
    for (kind, label), w in zip(items, widths, strict=True):
        if kind == "data":
            nodes.append(Circle(x + 5, cy, 4.5, fill=theme.curve))
        elif kind == "spec":
            nodes.append(
                Circle(x + 5, cy, 4, fill=theme.canvas, stroke=theme.muted, stroke_width=1.5)
            )
        elif kind == "break":
            nodes.append(
                Rect(
                    x,
                    cy - 6,
                    14,
                    12,
                    fill=theme.pain_bg,
                    stroke=theme.break_red,
                    stroke_width=1.2,
                    rx=2.5,
                )
            )
        elif kind == "emotion":
            for i, c in enumerate(theme.emotion):
                nodes.append(Circle(x + 5 + i * 10, cy, 4.5, fill=c))
        elif kind == "previous":
            nodes.append(Path(f"M{x:.1f},{cy:.1f}h18", stroke="#ADB5BD", stroke_width=2))
        tx = x + sym_w[kind] + 6
        nodes.append(text_block(tx, top, [label], style, theme.ink2))
        x += w + 18
    return Group(tuple(nodes), cls="jm-legend"), total


def footer_text(footer: Footer, fmt: Formatter, extra: Sequence[str] = ()) -> str:
    parts = [fmt.t("footer.generated")]
    if footer.period_start and footer.period_end:
        n = fmt.integer(footer.customers) if footer.customers is not None else "–"
        period = fmt.period(footer.period_start, footer.period_end)
        parts.append(f"{fmt.t('footer.data')}: " + fmt.t("footer.events", period=period, n=n))
    if footer.previous_start and footer.previous_end:
        parts.append(
            fmt.t("footer.previous", period=fmt.period(footer.previous_start, footer.previous_end))
        )
    if footer.survey_n:
        parts.append(fmt.t("footer.surveys", n=fmt.integer(footer.survey_n)))
    parts.extend(extra)
    if footer.spec_file:
        parts.append(fmt.t("footer.spec", file=footer.spec_file))
    return " · ".join(parts)


def footer_block(text: str, top: float, width: float, theme: Theme) -> Placed:
    m = metrics()
    wrapped = m.wrap(text, width - 2 * MARGIN, theme.meta.size, max_lines=3)
    node = text_block(MARGIN, top, wrapped.lines, theme.meta, theme.muted, cls="jm-footer")
    return Placed(
        Group((node,), cls="jm-footer", tip=text if wrapped.truncated else ""),
        len(wrapped.lines) * theme.meta.leading,
    )


def centered_lines(lines: Sequence[str], cx: float, top: float, style: Type, fill: str) -> Text:
    return text_block(cx, top, list(lines), style, fill, "middle")
