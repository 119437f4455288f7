"""Render timings: the journey map SVG (bar: ≤ 0.2 s) and the full demo report (bar: ≤ 3 s).

    .venv/bin/python bench/bench_render.py [--repeat 5]

Uses the deterministic demo view model from tests/test_render_fixtures.py (the same one the
golden images use): 5 journey maps (all customers + 4 personas), the step Sankey, funnel,
breaks, attribution, personas, retention and transition graph. Times are medians of
``--repeat`` runs in this process after one warm-up (template compilation, font metrics).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

import test_render_fixtures as fx
from journeymap.render.export import to_png, to_svg
from journeymap.render.layout.journey import layout_journey_map
from journeymap.render.report import figures, render_html

BARS = {"map_svg": 0.2, "report_html": 3.0}


def timed(fn: Callable[[], object], repeat: int) -> float:
    fn()
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    data = fx.journey_map("de")
    report = fx.report("de")
    results = {
        "map_svg": timed(lambda: to_svg(layout_journey_map(data)), args.repeat),
        "map_png": timed(lambda: to_png(to_svg(layout_journey_map(data))), args.repeat),
        "report_layout": timed(lambda: figures(report), args.repeat),
        "report_html": timed(lambda: render_html(report), args.repeat),
        "report_html_with_build": timed(lambda: render_html(fx.report("de")), args.repeat),
    }
    size = len(render_html(report).encode())
    print(f"{'what':<24}{'median s':>10}{'bar s':>8}")
    failed = False
    for name, secs in results.items():
        bar = BARS.get(name)
        mark = "" if bar is None else ("  ok" if secs <= bar else "  OVER")
        failed |= bar is not None and secs > bar
        print(f"{name:<24}{secs:>10.3f}{bar if bar is not None else '':>8}{mark}")
    print(f"report size: {size / 1024:.0f} KB ({len(report.maps)} maps, bar 1024 KB)")
    sys.exit(1 if failed or size > 1_048_576 else 0)


if __name__ == "__main__":
    main()
