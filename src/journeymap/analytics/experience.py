"""Experience: NPS, CSAT and CES per touchpoint and phase, from survey answers.

**Survey answers** are journey events with a ``score`` and a ``survey`` property (``nps``,
``csat`` or ``ces``, case-insensitive). The rated touchpoint is the ``touchpoint`` property
when present, else the event's own touchpoint; its phase comes from the spec's touchpoints
(a rated touchpoint the spec does not know keeps its row, with no phase). The engine only
counts answers per (survey, touchpoint, score); the statistics are computed exactly from
those counts. Scores outside a survey's scale are counted as ``invalid`` and left out.

=========== ======== ================================================== ======================
survey      scale    value                                              interval
=========== ======== ================================================== ======================
``nps``     0-10     % promoters (9-10) - % detractors (0-6), -100..100 adjusted Wald (below)
``csat``    1-5      % satisfied (4-5)                                  Wilson score
``ces``     1-7      mean effort score (7 = "very easy")                Student t
=========== ======== ================================================== ======================

The NPS interval is the adjusted Wald interval that Rocks (2016, *The American
Statistician* 70(4), "Interval estimation for the net promoter score") found best among
six methods: add 3/4 to promoters and to detractors and 3 to n, then use the variance of a
difference of trinomial proportions, (p + d - (p - d)^2) / n. Every row carries ``n`` and
``small_sample`` (n below 30, by default): read those intervals with care.

``feeling`` maps each value onto the journey map's -2..+2 feelings scale: NPS / 50,
(CSAT % - 50) / 25, (CES - 4) / 1.5; a phase's feeling is the n-weighted mean over its
surveys (``ExperienceResult.feelings``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import ibis
import ibis.expr.types as ir
from scipy import stats  # type: ignore[import-untyped]

from journeymap.analytics.engine import to_arrow
from journeymap.analytics.journey import property_value
from journeymap.analytics.results import TableResult
from journeymap.model.spec import JourneySpec

Survey = Literal["nps", "csat", "ces"]
SURVEYS: tuple[Survey, ...] = ("nps", "csat", "ces")
SCALES: dict[str, tuple[int, int]] = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}
SMALL_SAMPLE = 30
Level = Literal["touchpoint", "phase", "overall"]


@dataclass(frozen=True)
class ExperienceRow:
    level: Level
    #: touchpoint id, phase id, or "all"
    key: str
    label: str
    #: the phase of a touchpoint row (None for an unknown touchpoint, and phase/overall rows)
    phase: str | None
    survey: str
    #: valid answers
    n: int
    #: answers outside the survey's scale (left out)
    invalid: int
    #: NPS points, CSAT %, or CES mean
    value: float | None
    ci_low: float | None
    ci_high: float | None
    small_sample: bool
    #: NPS: promoters / passives / detractors; CSAT: satisfied / - / unsatisfied
    positive: int
    neutral: int
    negative: int
    mean: float | None
    sd: float | None
    #: the value on the map's -2..+2 feelings scale
    feeling: float | None


@dataclass(frozen=True)
class ExperienceResult(TableResult):
    rows: list[ExperienceRow]
    confidence: float
    small_sample_n: int

    def to_records(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.rows]

    def to_dict(self) -> dict[str, Any]:
        return {
            "confidence": self.confidence,
            "small_sample_n": self.small_sample_n,
            "feelings": self.feelings(),
            "rows": self.to_records(),
        }

    def select(self, level: Level, survey: str | None = None) -> list[ExperienceRow]:
        return [r for r in self.rows if r.level == level and survey in (None, r.survey)]

    def get(self, level: Level, key: str, survey: str) -> ExperienceRow | None:
        for r in self.rows:
            if (r.level, r.key, r.survey) == (level, key, survey):
                return r
        return None

    def feelings(self) -> dict[str, dict[str, float | int]]:
        """Per phase: the n-weighted mean feeling over its surveys, and n."""
        out: dict[str, dict[str, float | int]] = {}
        for r in self.select("phase"):
            if r.feeling is None or r.n == 0:
                continue
            acc = out.setdefault(r.key, {"feeling": 0.0, "n": 0})
            acc["feeling"] = float(acc["feeling"]) + r.feeling * r.n
            acc["n"] = int(acc["n"]) + r.n
        for acc in out.values():
            acc["feeling"] = float(acc["feeling"]) / int(acc["n"])
        return out


def survey_counts_expr(journey: ir.Table) -> ir.Table:
    """Answers per ``survey``, rated ``touchpoint`` and ``score``: column ``n``."""
    props = journey.properties.fill_null("")
    survey = property_value(props, "survey").lower()
    rated = property_value(props, "touchpoint")
    touchpoint = ibis.ifelse(rated.fill_null("") == "", journey.touchpoint, rated)
    s = journey.filter(journey.score.notnull()).select(
        survey=survey, touchpoint=touchpoint, score=journey.score.cast("int64")
    )
    s = s.filter(s.survey.isin(list(SURVEYS)))
    return s.group_by(["survey", "touchpoint", "score"]).agg(n=s.count())


def experience(
    journey: ir.Table,
    spec: JourneySpec,
    *,
    confidence: float = 0.95,
    small_sample_n: int = SMALL_SAMPLE,
    lang: str | None = None,
) -> ExperienceResult:
    """NPS, CSAT and CES per touchpoint, per phase and overall (see the module docstring)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence!r}")
    counts = to_arrow(survey_counts_expr(journey)).to_pylist()
    return experience_from_counts(
        counts, spec, confidence=confidence, small_sample_n=small_sample_n, lang=lang
    )


def experience_from_counts(
    counts: list[dict[str, Any]],
    spec: JourneySpec,
    *,
    confidence: float = 0.95,
    small_sample_n: int = SMALL_SAMPLE,
    lang: str | None = None,
) -> ExperienceResult:
    """The statistics from ``survey_counts_expr`` rows."""
    language = lang or spec.language
    phase_of = {t.id: t.phase for t in spec.touchpoints}
    tp_label = {t.id: t.label_in(language) for t in spec.touchpoints}
    ph_label = {p.id: p.label_in(language) for p in spec.phases}
    phase_order = {p: i for i, p in enumerate(spec.phase_ids())}
    tp_order = {t.id: i for i, t in enumerate(spec.touchpoints)}

    hist: dict[tuple[str, str, str], dict[int, int]] = {}
    for row in counts:
        survey, tp = str(row["survey"]), row["touchpoint"]
        tp_key = str(tp) if tp not in (None, "") else "(none)"
        score, n = int(row["score"]), int(row["n"])
        keys = [("touchpoint", tp_key, survey), ("overall", "all", survey)]
        if tp_key in phase_of:
            keys.append(("phase", phase_of[tp_key], survey))
        for k in keys:
            h = hist.setdefault(k, {})
            h[score] = h.get(score, 0) + n

    rows: list[ExperienceRow] = []
    level: Level
    for (lvl, key, survey), h in hist.items():
        level = "touchpoint" if lvl == "touchpoint" else ("phase" if lvl == "phase" else "overall")
        if level == "touchpoint":
            label, phase = tp_label.get(key, key), phase_of.get(key)
        elif level == "phase":
            label, phase = ph_label.get(key, key), None
        else:
            label, phase = "All", None
        rows.append(_row(level, key, label, phase, survey, h, confidence, small_sample_n))

    def sort_key(r: ExperienceRow) -> tuple[int, int, str, int]:
        level_rank = {"overall": 0, "phase": 1, "touchpoint": 2}[r.level]
        if r.level == "phase":
            pos = phase_order.get(r.key, 10**6)
        elif r.level == "touchpoint":
            pos = tp_order.get(r.key, 10**6)
        else:
            pos = 0
        return (level_rank, pos, r.key, SURVEYS.index(r.survey))

    rows.sort(key=sort_key)
    return ExperienceResult(rows, confidence, small_sample_n)


def _row(
    level: Level,
    key: str,
    label: str,
    phase: str | None,
    survey: str,
    hist: Mapping[int, int],
    confidence: float,
    small_n: int,
) -> ExperienceRow:
    lo_s, hi_s = SCALES[survey]
    # sorted by score: float sums below must not depend on the engine's row order
    valid = {s: c for s, c in sorted(hist.items()) if lo_s <= s <= hi_s}
    invalid = sum(c for s, c in hist.items() if not lo_s <= s <= hi_s)
    n = sum(valid.values())
    mean = sum(s * c for s, c in valid.items()) / n if n else None
    sd = (
        math.sqrt(sum(c * (s - mean) ** 2 for s, c in valid.items()) / (n - 1))
        if n > 1 and mean is not None
        else None
    )
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    value = lo = hi = feeling = None
    pos = neu = neg = 0
    if survey == "nps":
        pos = sum(c for s, c in valid.items() if s >= 9)
        neg = sum(c for s, c in valid.items() if s <= 6)
        neu = n - pos - neg
        if n:
            value = 100.0 * (pos - neg) / n
            lo, hi = nps_interval(pos, neg, n, z)
            feeling = value / 50.0
    elif survey == "csat":
        pos = sum(c for s, c in valid.items() if s >= 4)
        neg = n - pos
        if n:
            value = 100.0 * pos / n
            lo, hi = wilson_interval(pos, n, z)
            feeling = (value - 50.0) / 25.0
    else:  # ces
        if n and mean is not None:
            value = mean
            if sd is not None:
                t = float(stats.t.ppf(0.5 + confidence / 2, n - 1))
                half = t * sd / math.sqrt(n)
                lo, hi = mean - half, mean + half
            feeling = (mean - 4.0) / 1.5
    return ExperienceRow(
        level=level,
        key=key,
        label=label,
        phase=phase,
        survey=survey,
        n=n,
        invalid=invalid,
        value=value,
        ci_low=lo,
        ci_high=hi,
        small_sample=n < small_n,
        positive=pos,
        neutral=neu,
        negative=neg,
        mean=mean,
        sd=sd,
        feeling=feeling,
    )


def nps_interval(promoters: int, detractors: int, n: int, z: float) -> tuple[float, float]:
    """Adjusted Wald interval of the NPS in points (Rocks 2016), clipped to -100..100."""
    n_adj = n + 3
    p = (promoters + 0.75) / n_adj
    d = (detractors + 0.75) / n_adj
    diff = p - d
    half = z * math.sqrt(max(p + d - diff * diff, 0.0) / n_adj)
    return max(-100.0, 100.0 * (diff - half)), min(100.0, 100.0 * (diff + half))


def wilson_interval(successes: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval of a proportion, in percent."""
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return 100.0 * max(0.0, centre - half), 100.0 * min(1.0, centre + half)
