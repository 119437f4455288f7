"""Statistics on aggregated counts: proportion tests, change-point scans, multiple testing.

Everything here works on small NumPy arrays that the engine already aggregated (counts per
day, per segment); nothing touches events. The tests are the textbook ones, so results can be
checked against SciPy:

* ``proportion_excess_test``: one-sided two-proportion z-test (pooled), which equals the
  one-sided version of Pearson's chi-square test on the 2×2 table (``chi2_contingency`` with
  ``correction=False`` gives twice this p-value when the rate is higher);
* ``window_scan``: the binomial "epidemic" change-point model. A rate that jumps up at one day
  and (possibly) back down at a later one: every window ``[a, b)`` of days is compared with the
  days outside it by a likelihood-ratio test; the best window's statistic is divided by the
  series' over-dispersion (quasi-binomial), so that day-to-day noise larger than binomial does
  not pass for a break, and its p-value is Bonferroni-corrected for the number of windows
  scanned (conservative: a real jump has a statistic far beyond the correction);
* ``benjamini_hochberg``: q-values controlling the false discovery rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special, stats  # type: ignore[import-untyped]

FloatArray = npt.NDArray[np.float64]


def benjamini_hochberg(p_values: npt.ArrayLike) -> FloatArray:
    """BH q-values (adjusted p-values) of ``p_values``, in the input order.

    ``q_(i) = min_{j >= i} (m / j) p_(j)`` over the ascending p-values, capped at 1; rejecting
    every hypothesis with ``q <= alpha`` controls the false discovery rate at ``alpha``.
    NaN p-values are ignored (their q-value is NaN) and do not count in ``m``.
    """
    p = np.asarray(p_values, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m == 0:
        return q
    idx = np.flatnonzero(ok)
    order = idx[np.argsort(p[idx], kind="stable")]
    ranked = p[order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    q[order] = np.minimum(ranked, 1.0)
    return q


def proportion_excess_test(
    x1: npt.ArrayLike, n1: npt.ArrayLike, x0: npt.ArrayLike, n0: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """One-sided test that rate ``x1/n1`` exceeds ``x0/n0``: (z, p-value) per element.

    The pooled two-proportion z-test. ``p = 1`` where a group is empty or nothing varies.
    """
    x1a, n1a = np.asarray(x1, np.float64), np.asarray(n1, np.float64)
    x0a, n0a = np.asarray(x0, np.float64), np.asarray(n0, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        pooled = (x1a + x0a) / (n1a + n0a)
        se = np.sqrt(pooled * (1.0 - pooled) * (1.0 / n1a + 1.0 / n0a))
        z = (x1a / n1a - x0a / n0a) / se
    valid = (n1a > 0) & (n0a > 0) & (se > 0) & np.isfinite(z)
    z = np.where(valid, z, 0.0)
    p = np.where(valid, stats.norm.sf(z), 1.0)
    return z.astype(np.float64), p.astype(np.float64)


def binomial_loglik(x: npt.ArrayLike, n: npt.ArrayLike) -> FloatArray:
    """Maximised binomial log-likelihood ``x log p + (n - x) log(1 - p)`` at ``p = x / n``
    (without the binomial coefficient, which cancels in likelihood ratios)."""
    xa, na = np.asarray(x, np.float64), np.asarray(n, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(na > 0, xa / na, 0.0)
    out: FloatArray = special.xlogy(xa, p) + special.xlogy(na - xa, 1.0 - p)
    return out


def overdispersion(x: npt.ArrayLike, n: npt.ArrayLike, expected: npt.ArrayLike) -> float:
    """Over-dispersion factor (>= 1) of daily counts around their fitted rates ``expected``.

    Pearson's chi-square divided by its degrees of freedom (days with trials minus the two
    fitted rates), the quasi-binomial estimate: about 1 for binomial noise, larger when days
    vary more than sampling explains (a changing mix of customers, say). Never below 1.
    """
    xa, na = np.asarray(x, np.float64), np.asarray(n, np.float64)
    pa = np.asarray(expected, np.float64)
    keep = (na > 0) & (pa > 0.0) & (pa < 1.0)
    df = int(keep.sum()) - 2
    if df < 3:
        return 1.0
    r2 = (xa[keep] - na[keep] * pa[keep]) ** 2 / (na[keep] * pa[keep] * (1.0 - pa[keep]))
    return max(1.0, float(r2.sum()) / df)


@dataclass(frozen=True)
class WindowScan:
    """The best window of a daily series: days ``[start, end)`` (indices into the series)."""

    start: int
    end: int
    n_in: int
    x_in: int
    n_out: int
    x_out: int
    #: likelihood-ratio statistic, already divided by ``dispersion``
    statistic: float
    dispersion: float
    windows_scanned: int
    #: Bonferroni-corrected p-value over ``windows_scanned``
    p_value: float

    @property
    def rate_in(self) -> float:
        return self.x_in / self.n_in if self.n_in else 0.0

    @property
    def rate_out(self) -> float:
        return self.x_out / self.n_out if self.n_out else 0.0


def window_scan(
    x: npt.ArrayLike, n: npt.ArrayLike, *, min_n: int = 20, min_days: int = 1
) -> WindowScan | None:
    """The window of consecutive days whose rate is most significantly *above* the rest.

    ``x[d]`` events out of ``n[d]`` trials on day ``d`` (days without trials have ``n = 0``).
    Every window ``[a, b)`` with at least ``min_days`` days and ``min_n`` trials inside and
    outside is scored by the binomial likelihood ratio (rate inside vs. outside); windows
    touching the first or last day model a shift that starts at the beginning or lasts to the
    end. ``None`` when no window qualifies or none has a higher rate inside.
    """
    xa = np.asarray(x, np.float64)
    na = np.asarray(n, np.float64)
    days = len(na)
    if days < 2 or xa.shape != na.shape:
        return None
    cx = np.concatenate([[0.0], np.cumsum(xa)])
    cn = np.concatenate([[0.0], np.cumsum(na)])
    a, b = np.triu_indices(days + 1, k=1)  # all 0 <= a < b <= days
    full = (a == 0) & (b == days)
    keep = ~full & (b - a >= min_days)
    a, b = a[keep], b[keep]
    n_in = cn[b] - cn[a]
    x_in = cx[b] - cx[a]
    n_out = cn[-1] - n_in
    x_out = cx[-1] - x_in
    valid = (n_in >= min_n) & (n_out >= min_n)
    if not valid.any():
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        higher = x_in / n_in > x_out / n_out
    valid &= higher
    scanned = int(((n_in >= min_n) & (n_out >= min_n)).sum())
    if not valid.any():
        return None
    ll_all = binomial_loglik(cx[-1], cn[-1])
    lr = 2.0 * (binomial_loglik(x_in, n_in) + binomial_loglik(x_out, n_out) - ll_all)
    lr = np.where(valid, lr, -np.inf)
    best = int(np.argmax(lr))  # first maximum: the earliest, shortest window on ties
    inside = np.zeros(days, dtype=bool)
    inside[a[best] : b[best]] = True
    rates = np.where(inside, x_in[best] / n_in[best], x_out[best] / n_out[best])
    phi = overdispersion(xa, na, rates)
    stat = max(0.0, float(lr[best]) / phi)
    p = min(1.0, scanned * float(stats.chi2.sf(stat, 1)))
    return WindowScan(
        start=int(a[best]),
        end=int(b[best]),
        n_in=int(n_in[best]),
        x_in=int(x_in[best]),
        n_out=int(n_out[best]),
        x_out=int(x_out[best]),
        statistic=stat,
        dispersion=phi,
        windows_scanned=scanned,
        p_value=p,
    )
