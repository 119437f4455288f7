"""Regenerate the vendored fonts and their metrics (a developer tool, not run at run time).

    apt-get install fonts-inter                  # Inter 4.0, SIL OFL 1.1
    uv pip install fonttools brotli              # dev-time only
    python src/journeymap/render/assets/build_fonts.py [/usr/share/fonts/opentype/inter]

Writes, next to this file:

* ``fonts/Inter-<weight>.otf``: subset CFF fonts that resvg renders the PNGs with;
* ``fonts/Inter-<weight>.woff2``: the same subsets, embedded base64 in the HTML report;
* ``fonts/metrics.json``: advance widths per character and weight, which
  ``journeymap.render.text`` measures and wraps with (no font library at run time).

The subset keeps only the ``kern`` layout feature: contextual alternates (``calt``: ``->``
becoming an arrow) or ligatures would make rendered widths differ from the measured ones.
Kerning only ever tightens Inter's pairs by a fraction of a pixel at our sizes, so measured
widths are an upper bound; ``text.py`` keeps a small slack on top.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

WEIGHTS = {400: "Regular", 500: "Medium", 600: "SemiBold", 700: "Bold"}
#: Latin-1, Latin Extended-A, typographic punctuation, arrows and the few symbols we draw.
RANGES = [(0x20, 0x7E), (0xA0, 0xFF), (0x100, 0x17F)]
EXTRA = "‐‑–—‘’‚“”„†•…‰′″‹›€™−×≤≥≈≠→←↑↓↗↘▲▼▶●○◆■□★✓⚠·\u202f"
OUT = Path(__file__).parent / "fonts"


def codepoints() -> list[int]:
    cps = [c for lo, hi in RANGES for c in range(lo, hi + 1)]
    return sorted(set(cps) | {ord(c) for c in EXTRA})


def main(src_dir: str = "/usr/share/fonts/opentype/inter") -> None:
    # fontTools is a development tool here, untyped: imported as Any
    subset: Any = importlib.import_module("fontTools.subset")
    TTFont: Any = importlib.import_module("fontTools.ttLib").TTFont

    OUT.mkdir(parents=True, exist_ok=True)
    cps = codepoints()
    metrics: dict[str, Any] = {"family": "Inter", "weights": {}}
    for weight, style in WEIGHTS.items():
        src = Path(src_dir) / f"Inter-{style}.otf"
        font = TTFont(str(src))
        opts = subset.Options()
        opts.layout_features = ["kern"]
        opts.name_IDs = ["*"]
        opts.notdef_outline = True
        opts.hinting = False
        opts.desubroutinize = True
        sub = subset.Subsetter(options=opts)
        sub.populate(unicodes=cps)
        sub.subset(font)
        # one family name for every weight, so resvg and browsers match font-weight alone
        name = font["name"]
        for rec in list(name.names):
            if rec.nameID in (1, 16):
                rec.string = "Inter"
            elif rec.nameID in (2, 17):
                rec.string = style
        font.save(str(OUT / f"Inter-{weight}.otf"))
        font.flavor = "woff2"
        font.save(str(OUT / f"Inter-{weight}.woff2"))

        font = TTFont(str(OUT / f"Inter-{weight}.otf"))
        cmap = font.getBestCmap()
        hmtx = font["hmtx"]
        chars = "".join(chr(c) for c in cps if c in cmap)
        widths = [hmtx[cmap[ord(ch)]][0] for ch in chars]
        metrics["weights"][str(weight)] = {"chars": chars, "widths": widths}
        if weight == 400:
            head, os2, hhea = font["head"], font["OS/2"], font["hhea"]
            metrics.update(
                units_per_em=head.unitsPerEm,
                ascender=hhea.ascent,
                descender=hhea.descent,
                cap_height=os2.sCapHeight,
                x_height=os2.sxHeight,
            )
    (OUT / "metrics.json").write_text(
        json.dumps(metrics, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
