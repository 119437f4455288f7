"""Text measurement and wrapping with the vendored font's advance widths.

The widths come from ``assets/fonts/metrics.json`` (generated once by
``assets/build_fonts.py`` with fontTools), so measuring needs no font library at run time and
gives the same answer on every machine. A line's width is the sum of its characters' advances
plus letter spacing; kerning (the only layout feature the subset fonts keep) can only tighten
Inter at these sizes, so a measured width is an upper bound on what resvg or a browser draws.

``wrap`` breaks at spaces (and after ``-`` or ``/`` in long words), breaks words that are
wider than a line on their own, and ends the last allowed line with an ellipsis when the
text does not fit; the full text then belongs in the tooltip.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Final

ELLIPSIS: Final = "…"
WEIGHTS: Final = (400, 500, 600, 700)
_BREAK_AFTER = re.compile(r"(?<=[-/])(?=\S)")


@dataclass(frozen=True)
class Wrapped:
    """Lines of a wrapped text; ``truncated`` when an ellipsis replaced the rest."""

    lines: tuple[str, ...]
    truncated: bool

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


class FontMetrics:
    """Advance widths of the vendored Inter subset, per weight, in font units."""

    def __init__(self, data: dict[str, object]) -> None:
        self.units_per_em = int(data["units_per_em"])  # type: ignore[call-overload]
        self.ascender = int(data["ascender"]) / self.units_per_em  # type: ignore[call-overload]
        self.descender = -int(data["descender"]) / self.units_per_em  # type: ignore[call-overload]
        self.cap_height = int(data["cap_height"]) / self.units_per_em  # type: ignore[call-overload]
        weights = data["weights"]
        assert isinstance(weights, dict)
        self._widths: dict[int, dict[str, float]] = {}
        self._fallback: dict[int, float] = {}
        for weight, table in weights.items():
            chars, widths = table["chars"], table["widths"]
            per_char = {c: w / self.units_per_em for c, w in zip(chars, widths, strict=True)}
            self._widths[int(weight)] = per_char
            # a character the subset lacks is drawn as .notdef by resvg: count it as wide
            self._fallback[int(weight)] = per_char["M"]

    @staticmethod
    def nearest_weight(weight: int) -> int:
        return min(WEIGHTS, key=lambda w: abs(w - weight))

    def covers(self, text: str) -> bool:
        """Whether every character has a glyph in the vendored fonts."""
        table = self._widths[400]
        return all(c in table for c in text)

    def width(self, text: str, size: float, weight: int = 400, spacing: float = 0.0) -> float:
        """Width in px of ``text`` on one line at ``size`` px (``spacing``: letter spacing)."""
        w = self.nearest_weight(weight)
        table, fallback = self._widths[w], self._fallback[w]
        em = sum(table.get(c, fallback) for c in text)
        return em * size + spacing * len(text)

    def wrap(
        self,
        text: str,
        width: float,
        size: float,
        weight: int = 400,
        max_lines: int = 4,
        spacing: float = 0.0,
    ) -> Wrapped:
        """Greedy wrap into at most ``max_lines`` lines no wider than ``width`` px."""
        # (piece, glue): glue is " " before a new word, "" inside a word split across lines
        pieces: list[tuple[str, str]] = []
        for word in " ".join(text.split()).split(" "):
            if self.width(word, size, weight, spacing) <= width:
                pieces.append((word, " "))
            else:
                split = self._split_word(word, width, size, weight, spacing)
                pieces += [(p, " " if i == 0 else "") for i, p in enumerate(split)]
        lines: list[str] = []
        current = ""
        for piece, glue in pieces:
            candidate = f"{current}{glue}{piece}" if current else piece
            if self.width(candidate, size, weight, spacing) <= width:
                current = candidate
            else:
                lines.append(current)
                current = piece
        if current or not lines:
            lines.append(current)
        if len(lines) <= max_lines:
            return Wrapped(tuple(lines), False)
        kept = lines[:max_lines]
        kept[-1] = self.ellipsize(kept[-1] + " " + lines[max_lines], width, size, weight, spacing)
        return Wrapped(tuple(kept), True)

    def ellipsize(
        self, text: str, width: float, size: float, weight: int = 400, spacing: float = 0.0
    ) -> str:
        """``text`` if it fits on one line, else its longest prefix that fits plus ``…``."""
        if self.width(text, size, weight, spacing) <= width:
            return text
        lo, hi = 0, len(text)
        while lo < hi:  # longest prefix whose ellipsized form fits
            mid = (lo + hi + 1) // 2
            if self.width(text[:mid].rstrip() + ELLIPSIS, size, weight, spacing) <= width:
                lo = mid
            else:
                hi = mid - 1
        return text[:lo].rstrip(" ,;:-/") + ELLIPSIS

    def _split_word(
        self, word: str, width: float, size: float, weight: int, spacing: float
    ) -> list[str]:
        parts = [p for p in _BREAK_AFTER.split(word) if p]
        out: list[str] = []
        for part in parts:
            while self.width(part, size, weight, spacing) > width and len(part) > 1:
                cut = len(part) - 1
                while cut > 1 and self.width(part[:cut], size, weight, spacing) > width:
                    cut -= 1
                out.append(part[:cut])
                part = part[cut:]
            out.append(part)
        return out


@lru_cache(maxsize=1)
def metrics() -> FontMetrics:
    """The vendored font's metrics (loaded once)."""
    raw = (
        resources.files("journeymap.render")
        .joinpath("assets/fonts/metrics.json")
        .read_text(encoding="utf-8")
    )
    return FontMetrics(json.loads(raw))
