"""Detecting journey breaks: the tests on aggregated trial counts, and merging the findings.

Input: the engine's aggregate of trials (``trials.break_rates_expr``) per kind, subject, UTC
day and segment, as a DataFrame with ``revenue_cents``. Three families of tests, all in
NumPy / SciPy:

``segment``       for each step exit / process and each value of a ``segment_by`` column
                  (device by default): its rate over the whole period against the rate of the
                  other values (one-sided two-proportion z-test);
``change_point``  for each step exit / process, overall and per segment value: the window of
                  days whose rate is most significantly above the days outside it (binomial
                  likelihood ratio, corrected for over-dispersion and for the windows scanned,
                  see ``stats.window_scan``), the signature of a technical fault;
``campaign``      for each campaign: its arrivals' bounce rate against the arrivals of every
                  other campaign (the site baseline; two-proportion z-test).

All tests together form one family: q-values by Benjamini–Hochberg. A test passes
(``significant``) when ``q <= alpha`` **and** its effect is large enough: rate at least
``min_lift`` times the expected rate, at least ``min_excess`` above it, and at least
``min_excess_exits`` exits more than expected. ``merge_findings`` groups passing tests about
the same subject whose segments and windows overlap: the most significant one stands for the
break, the others are its related findings.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import pandas as pd

from journeymap.analytics.stats import benjamini_hochberg, proportion_excess_test, window_scan
from journeymap.analytics.trials import NONE, BreakKind

Detection = Literal["segment", "change_point", "campaign"]
#: Most bins a change-point series is scanned in: days up to two years, then wider bins.
MAX_SCAN_BINS = 730
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class BreakTest:
    """One hypothesis tested: a cell (kind, subject, segment, window) against its baseline."""

    kind: BreakKind
    subject: str
    detection: Detection
    segment: dict[str, str]
    #: UTC day numbers (days since 1970-01-01), end exclusive; None: the whole period
    start_day: int | None
    end_day: int | None
    trials: int
    exits: int
    rate: float
    expected_rate: float
    baseline_trials: int
    conversions: int
    baseline_conversions: int
    #: revenue of the baseline's conversions, in cents
    baseline_revenue_cents: int
    statistic: float
    p_value: float
    q_value: float = 1.0
    significant: bool = False

    @property
    def lift(self) -> float:
        return self.rate / self.expected_rate if self.expected_rate > 0 else float("inf")

    @property
    def excess_exits(self) -> float:
        return self.exits - self.trials * self.expected_rate


# -- the tests -------------------------------------------------------------------------------
def _sums(g: pd.DataFrame) -> tuple[int, int, int, int]:
    return (
        int(g["n"].sum()),
        int(g["exits"].sum()),
        int(g["conversions"].sum()),
        int(g["revenue_cents"].sum()),
    )


def _test(
    kind: BreakKind,
    subject: str,
    detection: Detection,
    segment: dict[str, str],
    days: tuple[int | None, int | None],
    cell: tuple[int, int, int, int],
    base: tuple[int, int, int, int],
    statistic: float,
    p_value: float,
) -> BreakTest:
    n1, x1, c1, _ = cell
    n0, x0, c0, r0 = base
    return BreakTest(
        kind=kind,
        subject=subject,
        detection=detection,
        segment=segment,
        start_day=days[0],
        end_day=days[1],
        trials=n1,
        exits=x1,
        rate=x1 / n1 if n1 else 0.0,
        expected_rate=x0 / n0 if n0 else 0.0,
        baseline_trials=n0,
        conversions=c1,
        baseline_conversions=c0,
        baseline_revenue_cents=r0,
        statistic=statistic,
        p_value=p_value,
    )


def _segment_tests(
    kind: BreakKind, subject: str, g: pd.DataFrame, segment_by: Sequence[str], min_trials: int
) -> list[BreakTest]:
    out = []
    total = _sums(g)
    for col in segment_by:
        for value, gv in sorted(g.groupby(col), key=lambda kv: str(kv[0])):
            if value == NONE:
                continue
            cell = _sums(gv)
            base = tuple(a - b for a, b in zip(total, cell, strict=True))
            if cell[0] < min_trials or base[0] < min_trials:
                continue
            z, p = proportion_excess_test(cell[1], cell[0], base[1], base[0])
            stat = float(z) ** 2 if float(z) > 0 else 0.0
            out.append(
                _test(
                    kind,
                    subject,
                    "segment",
                    {col: str(value)},
                    (None, None),
                    cell,
                    base,  # type: ignore[arg-type]
                    stat,
                    float(p),
                )
            )
    return out


def _change_point_tests(
    kind: BreakKind,
    subject: str,
    g: pd.DataFrame,
    segment_by: Sequence[str],
    day_range: tuple[int, int],
    min_trials: int,
) -> list[BreakTest]:
    out = []
    series: list[tuple[dict[str, str], pd.DataFrame]] = [({}, g)]
    for col in segment_by:
        for value, gv in sorted(g.groupby(col), key=lambda kv: str(kv[0])):
            if value != NONE:
                series.append(({col: str(value)}, gv))
    d0, d1 = day_range
    # long histories are scanned in bins of several days (the scan is quadratic in bins)
    width = -(-(d1 - d0 + 1) // MAX_SCAN_BINS)
    for segment, gs in series:
        daily = (
            gs.groupby("day")[["n", "exits", "conversions", "revenue_cents"]]
            .sum()
            .reindex(range(d0, d1 + 1), fill_value=0)
        )
        binned = daily.groupby((daily.index - d0) // width).sum()
        scan = window_scan(binned["exits"].to_numpy(), binned["n"].to_numpy(), min_n=min_trials)
        if scan is None:
            continue
        start, end = d0 + scan.start * width, min(d1 + 1, d0 + scan.end * width)
        inside = (daily.index >= start) & (daily.index < end)
        cell = _sums(daily[inside])
        base = _sums(daily[~inside])
        out.append(
            _test(
                kind,
                subject,
                "change_point",
                segment,
                (start, end),
                cell,
                base,
                scan.statistic,
                scan.p_value,
            )
        )
    return out


def _campaign_tests(g: pd.DataFrame, min_trials: int) -> list[BreakTest]:
    by = g.groupby("subject")
    total = _sums(g)
    out = []
    for campaign, gc in sorted(by, key=lambda kv: str(kv[0])):
        cell = _sums(gc)
        base = tuple(a - b for a, b in zip(total, cell, strict=True))
        if cell[0] < min_trials or base[0] < min_trials:
            continue
        z, p = proportion_excess_test(cell[1], cell[0], base[1], base[0])
        out.append(
            _test(
                "campaign_bounce",
                str(campaign),
                "campaign",
                {"campaign": str(campaign)},
                (None, None),
                cell,
                base,  # type: ignore[arg-type]
                float(z) ** 2 if float(z) > 0 else 0.0,
                float(p),
            )
        )
    return out


def run_break_tests(
    rates: pd.DataFrame,
    *,
    segment_by: Sequence[str] = ("device",),
    alpha: float = 0.01,
    min_lift: float = 1.5,
    min_excess: float = 0.03,
    min_excess_exits: float = 10.0,
    min_trials: int = 20,
) -> list[BreakTest]:
    """Every test on the aggregate ``rates`` (``break_rates_expr`` as a DataFrame with
    ``revenue_cents``), with BH q-values and whether it passes significance and effect size."""
    if rates.empty:
        return []
    day_range = (int(rates["day"].min()), int(rates["day"].max()))
    tests: list[BreakTest] = []
    for key, g in sorted(rates.groupby(["kind", "subject"]), key=lambda kv: str(kv[0])):
        kind, subject = cast(tuple[BreakKind, str], key)
        if kind == "campaign_bounce":
            continue
        tests += _segment_tests(kind, str(subject), g, segment_by, min_trials)
        tests += _change_point_tests(kind, str(subject), g, segment_by, day_range, min_trials)
    campaigns = rates[rates["kind"] == "campaign_bounce"]
    if not campaigns.empty:
        tests += _campaign_tests(campaigns, min_trials)
    q = benjamini_hochberg([t.p_value for t in tests])
    out = []
    for t, qv in zip(tests, q, strict=True):
        significant = bool(
            qv <= alpha
            and t.lift >= min_lift
            and t.rate - t.expected_rate >= min_excess
            and t.excess_exits >= min_excess_exits
        )
        out.append(_replace(t, q_value=float(qv), significant=significant))
    return out


def _replace(t: BreakTest, **changes: Any) -> BreakTest:
    d = {**t.__dict__, **changes}
    return BreakTest(**d)


def _overlaps(a: BreakTest, b: BreakTest) -> bool:
    """Whether two findings about one subject can describe the same break."""
    seg_ok = not a.segment or not b.segment or a.segment == b.segment
    if not seg_ok:
        return False
    if a.start_day is None or b.start_day is None:
        return True
    assert a.end_day is not None
    assert b.end_day is not None
    return a.start_day < b.end_day and b.start_day < a.end_day


def merge_findings(tests: Sequence[BreakTest]) -> list[tuple[BreakTest, list[BreakTest]]]:
    """Significant tests grouped into breaks: the strongest of overlapping findings per subject
    stands for the break, the others are its related findings. Strongest first."""
    sig = [t for t in tests if t.significant]
    sig.sort(key=lambda t: (-t.statistic, t.kind, t.subject, finding_id(t)))
    kept: list[tuple[BreakTest, list[BreakTest]]] = []
    for t in sig:
        for head, related in kept:
            if head.kind == t.kind and head.subject == t.subject and _overlaps(head, t):
                related.append(t)
                break
        else:
            kept.append((t, []))
    return kept


def utc_day(day: int | None) -> dt.datetime | None:
    return None if day is None else _EPOCH + dt.timedelta(days=day)


def finding_id(t: BreakTest) -> str:
    seg = ",".join(f"{k}={v}" for k, v in sorted(t.segment.items())) or "all"
    parts = [t.kind, t.subject, seg]
    if t.start_day is not None:
        start, end = utc_day(t.start_day), utc_day(t.end_day)
        assert start is not None
        assert end is not None
        parts.append(f"{start.date()}..{end.date()}")
    return ":".join(parts)
