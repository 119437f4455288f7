"""Step Sankey: columns are steps, ribbons are customers moving on, red ribbons leave.

Crossings are reduced by barycentre sweeps (Sugiyama-style layered ordering: each node moves
to the weighted mean position of its neighbours in the previous, then the next column,
alternating). Exit nodes stay at the bottom of their column and "other" just above them.
Every node gets a slot at least as tall as its label, so labels never overlap; ribbons are
ordered at both ends by the position of the other end, which removes the crossings inside a
node's bundle.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from journeymap.render.i18n import Formatter
from journeymap.render.layout.common import MARGIN, footer_block, footer_text, title_block
from journeymap.render.scene import Group, Path, Rect, Scene, Text, text_block
from journeymap.render.text import metrics
from journeymap.render.theme import DEFAULT, Theme, Type
from journeymap.render.views import SankeyData, SankeyNode

NODE_W = 12.0
NODE_GAP = 10.0
LABEL = Type(11.5, 400, 1.25)
CAPTION = Type(10.5, 600, 1.2, 0.6)


@dataclass(frozen=True)
class SankeyOptions:
    width: float = 1500.0
    plot_height: float = 640.0
    sweeps: int = 8


def order_columns(data: SankeyData, sweeps: int = 8) -> list[list[SankeyNode]]:
    """Nodes per column, ordered to reduce crossings (exits last, "other" before them)."""
    n_cols = max((n.column for n in data.nodes), default=-1) + 1
    cols: list[list[SankeyNode]] = [[] for _ in range(n_cols)]
    for node in data.nodes:
        cols[node.column].append(node)
    for col in cols:
        col.sort(key=lambda n: (n.is_exit, -n.count, n.id))
    by_id = {n.id: n for n in data.nodes}
    ins: dict[str, list[tuple[str, int]]] = defaultdict(list)
    outs: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for link in data.links:
        if link.source in by_id and link.target in by_id:
            outs[link.source].append((link.target, link.count))
            ins[link.target].append((link.source, link.count))

    def positions() -> dict[str, float]:
        pos: dict[str, float] = {}
        for col in cols:
            total = sum(n.count for n in col) or 1
            acc = 0.0
            for n in col:
                pos[n.id] = (acc + n.count / 2) / total
                acc += n.count
        return pos

    col_of = {n.id: n.column for n in data.nodes}

    def crossings() -> int:
        """Crossing weight between ribbons of the same pair of columns."""
        pos = positions()
        groups: dict[int, list[tuple[float, float, int]]] = defaultdict(list)
        for lk in data.links:
            if lk.source in pos and lk.target in pos:
                groups[col_of[lk.source]].append((pos[lk.source], pos[lk.target], lk.count))
        total = 0
        for edges in groups.values():
            for i, (a0, a1, wa) in enumerate(edges):
                for b0, b1, wb in edges[i + 1 :]:
                    if (a0 - b0) * (a1 - b1) < 0:
                        total += min(wa, wb)
        return total

    best = [list(c) for c in cols]
    best_cost = crossings()
    for sweep in range(sweeps):
        forward = sweep % 2 == 0
        order = range(1, n_cols) if forward else range(n_cols - 2, -1, -1)
        for k in order:
            pos = positions()
            neigh = ins if forward else outs

            def bary(
                n: SankeyNode,
                pos: dict[str, float] = pos,
                neigh: dict[str, list[tuple[str, int]]] = neigh,
            ) -> float:
                links = neigh.get(n.id, [])
                weight = sum(w for _, w in links)
                if not weight:
                    return pos.get(n.id, 0.5)
                return sum(pos[o] * w for o, w in links) / weight

            movable = [n for n in cols[k] if not n.is_exit and not n.id.endswith("__other__")]
            fixed_tail = [n for n in cols[k] if n.id.endswith("__other__")] + [
                n for n in cols[k] if n.is_exit
            ]
            movable.sort(key=lambda n: (bary(n), -n.count))
            cols[k] = movable + fixed_tail
        cost = crossings()
        if cost < best_cost:
            best, best_cost = [list(c) for c in cols], cost
    return best


def layout_sankey(
    data: SankeyData, theme: Theme = DEFAULT, options: SankeyOptions | None = None
) -> Scene:
    opts = options or SankeyOptions()
    t, fmt, m = theme, Formatter(data.lang), metrics()
    cols = order_columns(data, opts.sweeps)
    n_cols = len(cols)
    width = opts.width
    n_nodes, n_links = len(data.nodes), len(data.links)
    title = data.title
    subtitle = fmt.t("sankey.subtitle") + (
        f" · {n_nodes} nodes, {n_links} links"
        if data.lang == "en"
        else f" · {n_nodes} Knoten, {n_links} Verbindungen"
    )
    header = title_block(title, subtitle, width, t)
    top = header.height + 34
    col_gap = (width - 2 * MARGIN - NODE_W - 150) / max(1, n_cols - 1)
    label_room = col_gap - NODE_W - 14

    def col_x(k: int) -> float:
        return MARGIN + k * col_gap

    # scale: the fullest column fills the plot height
    totals = [sum(n.count for n in col) for col in cols]
    max_total = max(totals, default=1) or 1
    max_nodes = max((len(c) for c in cols), default=1)
    scale = (opts.plot_height - NODE_GAP * (max_nodes - 1)) / max_total
    y0: dict[str, float] = {}
    h: dict[str, float] = {}
    bottom = top
    for col in cols:
        y = top
        for n in col:
            nh = max(2.0, n.count * scale)
            slot = max(nh, LABEL.leading)
            y0[n.id] = y + (slot - nh) / 2
            h[n.id] = nh
            y += slot + NODE_GAP
        bottom = max(bottom, y - NODE_GAP)

    col_of = {n.id: n.column for n in data.nodes}
    by_id = {n.id: n for n in data.nodes}
    outs: dict[str, list[tuple[str, int]]] = defaultdict(list)
    ins: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for lk in data.links:
        if lk.source in y0 and lk.target in y0:
            outs[lk.source].append((lk.target, lk.count))
            ins[lk.target].append((lk.source, lk.count))
    # ribbon offsets at each end, ordered by the other end's position
    src_off: dict[tuple[str, str], float] = {}
    dst_off: dict[tuple[str, str], float] = {}
    for nid, links in outs.items():
        acc = 0.0
        total = sum(c for _, c in links)
        k = h[nid] / total if total else 0
        for tgt, c in sorted(links, key=lambda lc: y0[lc[0]]):
            src_off[(nid, tgt)] = acc
            acc += c * k
    for nid, links in ins.items():
        acc = 0.0
        total = sum(c for _, c in links)
        k = h[nid] / total if total else 0
        for src, c in sorted(links, key=lambda lc: y0[lc[0]]):
            dst_off[(src, nid)] = acc
            acc += c * k

    ribbons: list[Path | Group] = []
    for lk in sorted(data.links, key=lambda lk: (by_id[lk.target].is_exit, -lk.count)):
        if lk.source not in y0 or lk.target not in y0:
            continue
        out_total = sum(c for _, c in outs[lk.source])
        in_total = sum(c for _, c in ins[lk.target])
        thick_s = h[lk.source] * lk.count / out_total
        thick_t = h[lk.target] * lk.count / in_total
        x0 = col_x(col_of[lk.source]) + NODE_W
        x1 = col_x(col_of[lk.target])
        sy = y0[lk.source] + src_off[(lk.source, lk.target)]
        ty = y0[lk.target] + dst_off[(lk.source, lk.target)]
        xm = (x0 + x1) / 2
        d = (
            f"M{x0:.1f},{sy:.1f}C{xm:.1f},{sy:.1f} {xm:.1f},{ty:.1f} {x1:.1f},{ty:.1f}"
            f"L{x1:.1f},{ty + thick_t:.1f}"
            f"C{xm:.1f},{ty + thick_t:.1f} {xm:.1f},{sy + thick_s:.1f} {x0:.1f},{sy + thick_s:.1f}Z"
        )
        is_exit = by_id[lk.target].is_exit
        src_node = by_id[lk.source]
        share = lk.count / src_node.count if src_node.count else 0.0
        tip = (
            fmt.t(
                "sankey.link", a=src_node.label, b=by_id[lk.target].label, n=fmt.integer(lk.count)
            )
            + f" ({fmt.percent(share)})"
        )
        ribbons.append(
            Group(
                (Path(d, fill=t.exit if is_exit else t.flow, opacity=0.30 if is_exit else 0.2),),
                cls="jm-link jm-exit" if is_exit else "jm-link",
                tip=tip,
            )
        )

    nodes: list[Rect | Text | Group] = []
    for k, col in enumerate(cols):
        x = col_x(k)
        cap = fmt.t("sankey.step", n=k + 1)
        if data.columns and k < len(data.columns):
            cap = data.columns[k]
        nodes.append(
            text_block(
                x,
                top - 26,
                [m.ellipsize(cap, label_room, CAPTION.size, CAPTION.weight, CAPTION.spacing)],
                CAPTION,
                t.muted,
            )
        )
        for n in col:
            color = t.exit if n.is_exit else t.flow_node
            count = fmt.integer(n.count)
            count_w = m.width(" " + count, LABEL.size)
            label = m.ellipsize(n.label, label_room - count_w, LABEL.size, 500)
            ly = y0[n.id] + h[n.id] / 2 - LABEL.leading / 2
            lw = m.width(label, LABEL.size, 500)
            exits = sum(c for tgt, c in outs.get(n.id, []) if by_id[tgt].is_exit)
            tip = f"{n.label}: " + fmt.t("customers_n", n=count)
            if exits:
                tip += f"\n{fmt.t('sankey.exit')}: {fmt.integer(exits)} " + (
                    f"({fmt.percent(exits / n.count)})" if n.count else ""
                )
            nodes.append(
                Group(
                    (
                        Rect(x, y0[n.id], NODE_W, h[n.id], fill=color, rx=2),
                        text_block(
                            x + NODE_W + 6,
                            ly,
                            [label],
                            Type(LABEL.size, 500, LABEL.line),
                            t.ink if not n.is_exit else t.exit,
                        ),
                        text_block(
                            x + NODE_W + 6 + lw + m.width(" ", LABEL.size),
                            ly,
                            [count],
                            LABEL,
                            t.muted,
                        ),
                    ),
                    cls="jm-node jm-exit" if n.is_exit else "jm-node",
                    tip=tip,
                    data=(("step", str(k)),),
                )
            )
    foot = footer_block(footer_text(data.footer, fmt), bottom + 24, width, t)
    height = bottom + 24 + foot.height + MARGIN - 8
    return Scene(
        width,
        round(height),
        title,
        f"{title}: {n_nodes} nodes, {n_links} links over {n_cols} steps",
        (header.node, Group(tuple(ribbons), cls="jm-links"), *nodes, foot.node),
        background=t.canvas,
        cls="jm-figure jm-sankey",
    )
