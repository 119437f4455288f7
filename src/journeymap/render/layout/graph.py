"""Transition graph: touchpoints placed in phase columns (x = phase, y = frequency rank),
edges as curves whose width is the share of the source's transitions, top k per node,
self-loops as small arcs."""

from __future__ import annotations

from collections import defaultdict

from journeymap.render.i18n import Formatter
from journeymap.render.layout.common import MARGIN, footer_block, footer_text, title_block
from journeymap.render.scene import Circle, Group, Path, Rect, Scene, Text, text_block
from journeymap.render.text import metrics
from journeymap.render.theme import DEFAULT, Theme, Type
from journeymap.render.views import GraphData

Node = Text | Rect | Circle | Path | Group
LABEL = Type(11, 500, 1.2)
PILL_H = 24.0
ROW = 40.0


def layout_graph(data: GraphData, theme: Theme = DEFAULT, width: float = 1600.0) -> Scene:
    t, fmt, m = theme, Formatter(data.lang), metrics()
    header = title_block(data.title, fmt.t("graph.subtitle", k=data.top_k), width, t)
    top = header.height + 40
    n_ph = max(1, len(data.phases))
    col_w = (width - 2 * MARGIN) / n_ph
    pill_w = col_w - 56
    by_phase: dict[int, list[str]] = defaultdict(list)
    node_by_id = {n.id: n for n in data.nodes}
    for n in sorted(data.nodes, key=lambda n: (n.phase, -n.count, n.id)):
        by_phase[n.phase].append(n.id)
    pos: dict[str, tuple[float, float]] = {}
    rows = max((len(v) for v in by_phase.values()), default=0)
    for ph, ids in by_phase.items():
        for r, nid in enumerate(ids):
            pos[nid] = (MARGIN + ph * col_w + 8, top + r * ROW)
    # top k outgoing edges per node
    out: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for e in data.edges:
        out[e.source].append((e.target, e.count))
    kept = []
    for src, targets in out.items():
        total = sum(c for _, c in targets) or 1
        for tgt, c in sorted(targets, key=lambda tc: -tc[1])[: data.top_k]:
            kept.append((src, tgt, c, c / total))
    nodes: list[Node] = []
    for ph, label in enumerate(data.phases):
        x = MARGIN + ph * col_w
        nodes.append(Rect(x + 2, top - 30, col_w - 4, rows * ROW + 34, fill=t.panel, rx=t.radius))
        nodes.append(
            text_block(
                x + 10,
                top - 26,
                [m.ellipsize(label.upper(), col_w - 20, 10.5, 600, 0.5)],
                Type(10.5, 600, 1.2, 0.5),
                t.phase_color(ph, n_ph),
            )
        )
    edges: list[Node] = []
    for src, tgt, c, share in sorted(kept, key=lambda e: e[2]):
        x0, y0 = pos[src]
        x1, y1 = pos[tgt]
        sw = 1 + 9 * share
        tip = fmt.t(
            "graph.edge",
            a=node_by_id[src].label,
            b=node_by_id[tgt].label,
            n=fmt.integer(c),
            pct=fmt.percent(share),
        )
        if src == tgt:  # self-loop: an arc on the pill's right end
            ax, ay = x0 + pill_w, y0 + PILL_H / 2
            d = (
                f"M{ax:.1f},{ay - 6:.1f}C{ax + 26:.1f},{ay - 20:.1f} {ax + 26:.1f},{ay + 20:.1f}"
                f" {ax:.1f},{ay + 6:.1f}"
            )
        elif x1 > x0:
            sx, sy = x0 + pill_w, y0 + PILL_H / 2
            ex, ey = x1, y1 + PILL_H / 2
            xm = (sx + ex) / 2
            d = f"M{sx:.1f},{sy:.1f}C{xm:.1f},{sy:.1f} {xm:.1f},{ey:.1f} {ex:.1f},{ey:.1f}"
        else:  # same column (or backwards): bulge to the right of the column
            sx, sy = x0 + pill_w, y0 + PILL_H / 2
            ex, ey = x1 + pill_w, y1 + PILL_H / 2
            bulge = 18 + 6 * abs(ey - sy) / ROW
            d = (
                f"M{sx:.1f},{sy:.1f}C{sx + bulge:.1f},{sy:.1f} {ex + bulge:.1f},{ey:.1f}"
                f" {ex:.1f},{ey:.1f}"
            )
        edges.append(
            Group(
                (Path(d, stroke=t.flow, stroke_width=round(sw, 1), opacity=0.35, linecap="round"),),
                cls="jm-edge",
                tip=tip,
            )
        )
    for nid, (x, y) in pos.items():
        n = node_by_id[nid]
        count = fmt.compact(n.count)
        cw = m.width(count, LABEL.size, 400)
        label = m.ellipsize(n.label, pill_w - 22 - cw - 6, LABEL.size, LABEL.weight)
        nodes_g = (
            Rect(
                x,
                y,
                pill_w,
                PILL_H,
                fill=t.canvas,
                stroke=t.phase_color(n.phase, n_ph),
                stroke_width=1.4,
                rx=PILL_H / 2,
            ),
            text_block(x + 11, y + (PILL_H - LABEL.leading) / 2, [label], LABEL, t.ink),
            text_block(
                x + pill_w - 11,
                y + (PILL_H - LABEL.leading) / 2,
                [count],
                Type(11, 400, 1.2),
                t.muted,
                "end",
            ),
        )
        edges.append(
            Group(
                nodes_g,
                cls="jm-gnode",
                tip=f"{n.label}: {fmt.integer(n.count)}",
                frame=(x, y, pill_w, PILL_H),
            )
        )
    bottom = top + rows * ROW + 4
    foot = footer_block(footer_text(data.footer, fmt), bottom + 16, width, t)
    height = bottom + 16 + foot.height + MARGIN - 8
    return Scene(
        width,
        round(height),
        data.title,
        f"{data.title}: {len(data.nodes)} touchpoints, {len(kept)} transitions",
        (header.node, *nodes, *edges, foot.node),
        background=t.canvas,
        cls="jm-figure jm-graph",
    )
