"""Design tokens: colours, type scale and spacing (shared/research/visualization.md §4).

Colour is never the only encoding: emotion is height plus a word plus a number, breaks are
red plus a label. ``CVD_SAFE`` swaps the red–amber–green emotion ramp for red–blue.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Final

FONT_FAMILY: Final = "Inter, 'DejaVu Sans', Arial, sans-serif"


@dataclass(frozen=True)
class Type:
    """One step of the type scale: size in px, weight, line height as a factor."""

    size: float
    weight: int = 400
    line: float = 1.3
    spacing: float = 0.0  # letter spacing in px

    @property
    def leading(self) -> float:
        return round(self.size * self.line, 2)


@dataclass(frozen=True)
class Theme:
    ink: str = "#1B2430"
    ink2: str = "#3D4852"
    muted: str = "#6B7785"
    hairline: str = "#E3E7EC"
    panel: str = "#F5F7FA"
    canvas: str = "#FFFFFF"
    track: str = "#E9ECEF"
    #: sequential for time; stays cool so that red keeps its meaning
    phase_ramp: tuple[str, ...] = (
        "#3B5BDB",
        "#4263EB",
        "#5C7CFA",
        "#1098AD",
        "#0CA678",
        "#37B24D",
    )
    pain: str = "#C92A2A"
    pain_bg: str = "#FFF1F0"
    pain_line: str = "#FFC9C9"
    opportunity: str = "#2B8A3E"
    opportunity_bg: str = "#EBFBEE"
    opportunity_line: str = "#B2F2BB"
    chip: str = "#1C4FBF"
    chip_bg: str = "#E7F0FF"
    chip_indirect_bg: str = "#F1F3F5"
    chip_indirect: str = "#495057"
    break_red: str = "#E03131"
    better: str = "#2B8A3E"
    worse: str = "#C92A2A"
    #: emotion ramp at -2, 0 and +2
    emotion: tuple[str, str, str] = ("#E03131", "#F59F00", "#2B8A3E")
    emotion_tint: str = "#F59F00"
    curve: str = "#343A40"
    flow: str = "#4C6EF5"
    flow_node: str = "#3B5BDB"
    exit: str = "#E03131"
    lanes: dict[str, str] = field(
        default_factory=lambda: {
            "feelings": "#F59F00",
            "goals": "#5C7CFA",
            "touchpoints": "#1C4FBF",
            "measures": "#748FFC",
            "pain": "#C92A2A",
            "opportunities": "#2B8A3E",
            "kpis": "#343A40",
        }
    )
    radius: float = 8.0
    gutter: float = 8.0

    # type scale
    title: Type = Type(24, 700, 1.2)
    subtitle: Type = Type(13, 400)
    phase: Type = Type(14, 700, 1.2)
    phase_meta: Type = Type(11, 400)
    lane: Type = Type(12.5, 700)
    body: Type = Type(12, 400, 1.3)
    body_strong: Type = Type(12, 500, 1.3)
    chip_text: Type = Type(11, 500, 1.2)
    kpi_value: Type = Type(24, 700, 1.1)
    kpi_label: Type = Type(10.5, 500, 1.2, 0.4)
    meta: Type = Type(10, 400, 1.3)
    meta_strong: Type = Type(10.5, 600, 1.3)
    emotion_word: Type = Type(11.5, 600, 1.2)
    emotion_score: Type = Type(9.5, 400, 1.2)

    def phase_color(self, index: int, count: int) -> str:
        """The ramp stretched over ``count`` phases."""
        ramp = self.phase_ramp
        if count <= 1:
            return ramp[0]
        pos = index * (len(ramp) - 1) / (count - 1)
        lo = int(pos)
        hi = min(lo + 1, len(ramp) - 1)
        return mix(ramp[lo], ramp[hi], pos - lo)

    def emotion_color(self, value: float) -> str:
        """Diverging ramp: -2 red, 0 amber, +2 green."""
        v = max(-2.0, min(2.0, value)) / 2
        neg, mid, pos = self.emotion
        return mix(mid, neg, -v) if v < 0 else mix(mid, pos, v)


def mix(a: str, b: str, t: float) -> str:
    """Linear mix of two ``#RRGGBB`` colours."""
    ca = [int(a[i : i + 2], 16) for i in (1, 3, 5)]
    cb = [int(b[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(x + (y - x) * t):02X}" for x, y in zip(ca, cb, strict=True))


DEFAULT: Final = Theme()
#: colour-vision-safe variant: emotion red–grey–blue, pain/opportunity keep labels and icons
CVD_SAFE: Final = replace(
    DEFAULT,
    emotion=("#B2182B", "#9E9E9E", "#2166AC"),
    emotion_tint="#92A8C8",
    opportunity="#1F5FA8",
    opportunity_bg="#EAF2FB",
    opportunity_line="#B9D3EE",
    better="#1F5FA8",
)
