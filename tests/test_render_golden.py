"""Golden images: the demo map (en, de) and the step Sankey rendered to PNG match the
committed references in tests/golden/ within a small tolerance.

The fonts ship with the package and resvg may use no others, so renders are the same on
every machine; the tolerance absorbs anti-aliasing changes between resvg releases. After an
intended visual change, regenerate with ``JOURNEYMAP_UPDATE_GOLDEN=1 pytest
tests/test_render_golden.py`` and look at the new PNGs before committing them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import test_render_fixtures as fx
from journeymap.render.export import to_png, to_svg
from journeymap.render.layout.journey import layout_journey_map
from journeymap.render.layout.sankey import layout_sankey
from journeymap.render.raster import compare_png, decode_png
from journeymap.render.scene import Scene

GOLDEN = Path(__file__).parent / "golden"
#: share of pixels allowed to differ by more than 24/255 in a channel
MAX_SHARE = 0.002

CASES = {
    "journey_map_en": lambda: layout_journey_map(fx.journey_map("en")),
    "journey_map_de": lambda: layout_journey_map(fx.journey_map("de")),
    "sankey_en": lambda: layout_sankey(fx.sankey("en")),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_image(name: str, tmp_path: Path) -> None:
    scene: Scene = CASES[name]()
    png = to_png(to_svg(scene, uid="golden"))
    ref = GOLDEN / f"{name}.png"
    if os.environ.get("JOURNEYMAP_UPDATE_GOLDEN") == "1":
        ref.write_bytes(png)
    assert ref.exists(), f"missing {ref}: run with JOURNEYMAP_UPDATE_GOLDEN=1 to create it"
    diff = compare_png(png, ref.read_bytes())
    if not diff.within(MAX_SHARE):
        actual = tmp_path / f"{name}.png"
        actual.write_bytes(png)
        pytest.fail(
            f"{name} differs from {ref}: {diff.differing_share:.4%} of pixels "
            f"(max {MAX_SHARE:.2%}), size match {diff.same_size}; new render at {actual}"
        )


def test_render_is_deterministic() -> None:
    svg = to_svg(layout_sankey(fx.sankey("de")), uid="d")
    assert to_png(svg) == to_png(svg)


def test_png_decoder_reads_resvg_output() -> None:
    img = decode_png(to_png(to_svg(layout_sankey(fx.sankey("en")), uid="p")))
    assert img.shape[2] == 4
    assert img[0, 0].tolist() == [255, 255, 255, 255]  # the white canvas
    assert (img[:, :, 0] < 100).any()  # dark ink somewhere
