"""Reports: the customer journey map and its companion figures as SVG, PNG and HTML.

Layers inside (each imports only the ones above it)::

    views     plain frozen dataclasses: the view model the renderer draws (the boundary)
    build     fill the view model from the spec and analysis results
    theme, i18n, text      tokens, en/de labels and formats, font metrics and wrapping
    layout/   view model -> positioned Scene (one module per figure)
    export    Scene -> SVG (Jinja2, autoescaped) -> PNG (resvg) / PDF (optional)
    report    all figures -> one self-contained HTML file, or SVG/PNG files

    from journeymap.render import build_journey_map, render_map_png
    png = render_map_png(build_journey_map(spec, funnel_result, reach_result, lang="de"))
"""

from journeymap.render.build import (
    ActiveCampaign,
    DetectedBreak,
    PathTransition,
    Period,
    PersonaProfile,
    PhaseExperience,
    build_attribution,
    build_break,
    build_funnel,
    build_graph,
    build_journey_map,
    build_personas,
    build_report,
    build_retention,
    build_sankey,
)
from journeymap.render.export import to_pdf, to_png, to_svg
from journeymap.render.report import figures, render_html, render_map_png, write_report
from journeymap.render.views import (
    AttributionData,
    BreakData,
    FunnelData,
    GraphData,
    JourneyMapData,
    PersonaCardData,
    ReportData,
    RetentionData,
    SankeyData,
)

__all__ = [
    "ActiveCampaign",
    "AttributionData",
    "BreakData",
    "DetectedBreak",
    "FunnelData",
    "GraphData",
    "JourneyMapData",
    "PathTransition",
    "Period",
    "PersonaCardData",
    "PersonaProfile",
    "PhaseExperience",
    "ReportData",
    "RetentionData",
    "SankeyData",
    "build_attribution",
    "build_break",
    "build_funnel",
    "build_graph",
    "build_journey_map",
    "build_personas",
    "build_report",
    "build_retention",
    "build_sankey",
    "figures",
    "render_html",
    "render_map_png",
    "to_pdf",
    "to_png",
    "to_svg",
    "write_report",
]
