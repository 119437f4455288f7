"""The report: every figure laid out, written as SVG/PNG files or one self-contained HTML.

    scenes = figures(report_data)                 # name -> Scene
    html = render_html(report_data)               # one file: fonts, CSS, JS and SVG inline
    write_report(report_data, "report.html", png_dir="figures/")

The HTML needs nothing from the network: fonts are embedded as WOFF2 (base64), the CSS and
the few KB of script are inline, and the test suite opens it in headless Chromium with the
network off.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from markupsafe import Markup

from journeymap import __version__
from journeymap.render.export import environment, font_css, to_png, to_svg
from journeymap.render.i18n import Formatter
from journeymap.render.layout.cards import layout_breaks, layout_personas
from journeymap.render.layout.charts import layout_attribution, layout_funnel, layout_retention
from journeymap.render.layout.graph import layout_graph
from journeymap.render.layout.journey import MapOptions, layout_journey_map
from journeymap.render.layout.sankey import layout_sankey
from journeymap.render.scene import Scene
from journeymap.render.theme import DEFAULT, Theme
from journeymap.render.views import JourneyMapData, ReportData

LANES = ("feelings", "goals", "touchpoints", "measures", "pain", "opportunities", "kpis")


@dataclass(frozen=True)
class Figure:
    """One laid-out figure of the report: ``section`` groups maps of several personas."""

    name: str
    section: str
    view: str
    label: str
    scene: Scene


def map_view_id(data: JourneyMapData) -> str:
    return data.persona.id if data.persona is not None else "all"


def figures(
    report: ReportData, theme: Theme = DEFAULT, map_options: MapOptions | None = None
) -> list[Figure]:
    """Every figure of the report, laid out, in report order."""
    fmt = Formatter(report.lang)
    out = []
    for data in report.maps:
        view = map_view_id(data)
        label = data.persona.name if data.persona is not None else fmt.t("all_customers")
        name = "journey_map" if view == "all" else f"journey_map_{view}"
        out.append(Figure(name, "map", view, label, layout_journey_map(data, theme, map_options)))
    if report.sankey is not None:
        out.append(Figure("sankey", "paths", "", "", layout_sankey(report.sankey, theme)))
    if report.funnel is not None:
        out.append(Figure("funnel", "funnel", "", "", layout_funnel(report.funnel, theme)))
    if report.breaks:
        out.append(
            Figure("breaks", "breaks", "", "", layout_breaks(report.breaks, report.lang, theme))
        )
    if report.attribution is not None:
        out.append(
            Figure(
                "attribution", "attribution", "", "", layout_attribution(report.attribution, theme)
            )
        )
    if report.personas:
        out.append(
            Figure(
                "personas",
                "personas",
                "",
                "",
                layout_personas(report.personas, report.phases, report.lang, theme),
            )
        )
    if report.retention is not None:
        out.append(
            Figure("retention", "retention", "", "", layout_retention(report.retention, theme))
        )
    if report.graph is not None:
        out.append(Figure("graph", "graph", "", "", layout_graph(report.graph, theme)))
    return out


_NAV = {
    "map": "fig.map",
    "paths": "fig.sankey",
    "funnel": "fig.funnel",
    "breaks": "fig.breaks",
    "attribution": "fig.attribution",
    "personas": "fig.personas",
    "retention": "fig.retention",
    "graph": "fig.graph",
}


def _asset(name: str) -> str:
    return (
        resources.files("journeymap.render")
        .joinpath(f"templates/{name}")
        .read_text(encoding="utf-8")
    )


def render_html(
    report: ReportData,
    theme: Theme = DEFAULT,
    map_options: MapOptions | None = None,
    figs: list[Figure] | None = None,
) -> str:
    """The whole report as one self-contained HTML document."""
    fmt = Formatter(report.lang)
    figs = figs if figs is not None else figures(report, theme, map_options)
    sections: list[dict[str, object]] = []
    by_section: dict[str, list[dict[str, object]]] = {}
    for i, f in enumerate(figs):
        svg = to_svg(f.scene, uid=f"f{i}")
        if f.section not in by_section:
            by_section[f.section] = []
            sections.append(
                {"id": f.section, "nav": fmt.t(_NAV[f.section]), "figures": by_section[f.section]}
            )
        by_section[f.section].append(
            # the SVG is the renderer's own autoescaped output, not user text
            {"svg": Markup(svg), "view": f.view, "hidden": bool(by_section[f.section])}
        )
    views = [{"id": f.view, "label": f.label} for f in figs if f.section == "map"]
    has_previous = any(
        p.feeling is not None and p.feeling.previous is not None
        for m in report.maps
        for p in m.phases
    )
    template = environment().get_template("report.html.j2")
    return template.render(
        lang=report.lang,
        title=report.title,
        version=__version__,
        t=fmt.t,
        sections=sections,
        views=views,
        lanes=[(lane, fmt.t(f"lane.{lane}")) for lane in LANES],
        has_previous=has_previous,
        # shipped static files (fonts, stylesheet, script), never user text
        font_css=Markup(font_css()),
        css=Markup(_asset("report.css")),
        js=Markup(_asset("report.js")),
    )


def write_report(
    report: ReportData,
    html: str | Path | None = None,
    *,
    png_dir: str | Path | None = None,
    svg_dir: str | Path | None = None,
    zoom: float = 1.0,
    theme: Theme = DEFAULT,
    map_options: MapOptions | None = None,
) -> list[Path]:
    """Write the HTML report and/or a PNG and SVG per figure; returns the files written."""
    figs = figures(report, theme, map_options)
    written: list[Path] = []
    if html is not None:
        p = Path(html)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(render_html(report, theme, map_options, figs), encoding="utf-8")
        written.append(p)
    for folder, kind in ((svg_dir, "svg"), (png_dir, "png")):
        if folder is None:
            continue
        d = Path(folder)
        d.mkdir(parents=True, exist_ok=True)
        for f in figs:
            target = d / f"{f.name}.{kind}"
            if kind == "svg":
                target.write_text(to_svg(f.scene, embed_fonts=True, uid=f.name), encoding="utf-8")
            else:
                target.write_bytes(to_png(to_svg(f.scene, uid=f.name), zoom=zoom))
            written.append(target)
    return written


def render_map_png(data: JourneyMapData, *, zoom: float = 1.0, theme: Theme = DEFAULT) -> bytes:
    """One journey map as PNG (for slides)."""
    return to_png(to_svg(layout_journey_map(data, theme), uid="map"), zoom=zoom)


def render_map_pdf(data: JourneyMapData, *, theme: Theme = DEFAULT) -> bytes:
    """One journey map as a vector PDF (for print; needs the ``pdf`` extra)."""
    from journeymap.render.export import to_pdf

    return to_pdf(to_svg(layout_journey_map(data, theme), uid="map"))
