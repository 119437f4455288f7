"""From per-customer features to clusters: the feature matrix, scaling and clustering.

**Feature matrix** (NumPy, customers sorted by id), in groups: ``channels`` (shares of the
customer's sessions by entry channel), ``devices`` (shares of events), ``hours`` (events on a
device by local hour: shares of six 4-hour blocks plus the circular mean as sine and cosine),
``categories`` (shares of events with a product category), ``activity`` (log sessions, log
events per session, furthest phase reached), ``monetary`` (log conversions, log revenue),
``recency`` (log days from the last event to ``as_of``), ``discount`` (share of orders with a
``discount_code``); optional ``touchpoints`` (shares of events, off by default: it blurs the
groups on the simulator's data). Shares of customers without any such event are set to the
population's share. Every column is scaled (``standard`` or ``robust``), with equal weight.

**Clustering** (scikit-learn, seeded, deterministic): ``kmeans`` with k chosen by the
silhouette, or ``gmm`` (Gaussian mixture, diagonal covariances) with k chosen by BIC; k is
chosen on a seeded sample of at most 5,000 customers, the chosen model fitted on at most
``fit_sample`` customers and every customer assigned to the nearest cluster (most likely
component). Clusters are numbered by decreasing size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from journeymap.analytics.features import DAY_US, FeatureVocabulary

Method = Literal["kmeans", "gmm"]
Scaling = Literal["standard", "robust"]
FloatArray = npt.NDArray[np.float64]
FEATURE_GROUPS = (
    "channels",
    "devices",
    "hours",
    "categories",
    "activity",
    "monetary",
    "recency",
    "discount",
    "touchpoints",
)
DEFAULT_GROUPS = FEATURE_GROUPS[:-1]
_SILHOUETTE_SAMPLE = 5000
#: k-means starts per fit: with 4, one sample of the simulator's data settled in a poor k=4
#: solution (silhouette 0.160 instead of 0.179) and k=3 won
_STARTS = 10
BLOCK_NAMES = ("0–4 h", "4–8 h", "8–12 h", "12–16 h", "16–20 h", "20–24 h")


# -- the feature matrix ------------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureMatrix:
    """Customers (sorted by id) × named features, before scaling, with their groups."""

    customer_ids: npt.NDArray[np.object_]
    values: FloatArray
    names: list[str]
    groups: list[str]
    #: per customer: 24 local-hour shares, entry channel shares, touchpoint counts etc.
    raw: pd.DataFrame = field(repr=False)


def _shares(m: FloatArray) -> FloatArray:
    """Row shares; rows without any count get the population's shares."""
    total = m.sum(axis=1, keepdims=True)
    pop = m.sum(axis=0) / max(float(m.sum()), 1.0)
    out = np.where(total > 0, m / np.where(total > 0, total, 1.0), pop)
    return np.asarray(out, dtype=np.float64)


def count_columns(df: pd.DataFrame, prefix: str, n: int) -> FloatArray:
    if n == 0:
        return np.zeros((len(df), 0))
    return df[[f"{prefix}_{i}" for i in range(n)]].to_numpy(dtype=np.float64)


def feature_matrix(
    features: pd.DataFrame, vocab: FeatureVocabulary, as_of_us: int
) -> FeatureMatrix:
    """The named feature columns (all groups) from the per-customer aggregate."""
    df = features.sort_values("customer_id", kind="stable").reset_index(drop=True)
    n = len(df)
    sessions = df["n_sessions"].to_numpy(np.float64).clip(min=1)
    conversions = df["n_conversions"].to_numpy(np.float64)
    revenue = df["revenue_cents"].to_numpy(np.float64) / 100
    hours = _shares(count_columns(df, "hour", 24))
    angle = 2 * np.pi * np.arange(24) / 24
    blocks: list[tuple[str, str, FloatArray]] = []

    def add(group: str, names: Sequence[str], m: FloatArray) -> None:
        for i, name in enumerate(names):
            blocks.append((group, name, m[:, i]))

    add(
        "channels",
        [f"channel:{c}" for c in vocab.channels],
        _shares(count_columns(df, "ch", len(vocab.channels))),
    )
    add(
        "devices",
        [f"device:{d}" for d in vocab.devices],
        _shares(count_columns(df, "dev", len(vocab.devices))),
    )
    add(
        "hours",
        [*(f"hours:{b}" for b in BLOCK_NAMES), "hours:sin", "hours:cos"],
        np.column_stack(
            [hours.reshape(n, 6, 4).sum(axis=2), hours @ np.sin(angle), hours @ np.cos(angle)]
        ),
    )
    add(
        "categories",
        [f"category:{c}" for c in vocab.categories],
        _shares(count_columns(df, "cat", len(vocab.categories))),
    )
    add(
        "activity",
        ["sessions", "events_per_session", "phase_reached"],
        np.column_stack(
            [
                np.log1p(sessions),
                np.log1p(df["n_events"].to_numpy(np.float64) / sessions),
                df["max_phase"].to_numpy(np.float64) / max(len(vocab.phases), 1),
            ]
        ),
    )
    add(
        "monetary",
        ["conversions", "revenue"],
        np.column_stack([np.log1p(conversions), np.log1p(revenue)]),
    )
    recency = (as_of_us - df["last_us"].to_numpy(np.float64)).clip(min=0) / DAY_US
    add("recency", ["recency_days"], np.log1p(recency)[:, None])
    discount = np.where(
        conversions > 0, df["discount_orders"].to_numpy(np.float64) / conversions.clip(min=1), 0.0
    )
    add("discount", ["discount_share"], discount[:, None])
    add(
        "touchpoints",
        [f"touchpoint:{t}" for t in vocab.touchpoints],
        _shares(count_columns(df, "tp", len(vocab.touchpoints))),
    )
    return FeatureMatrix(
        customer_ids=df["customer_id"].astype(str).to_numpy(dtype=object),
        values=np.column_stack([b[2] for b in blocks]).astype(np.float64),
        names=[b[1] for b in blocks],
        groups=[b[0] for b in blocks],
        raw=df,
    )


def scale(values: FloatArray, scaling: Scaling) -> FloatArray:
    """Column-wise scaling; constant columns become 0."""
    if scaling == "robust":
        center = np.median(values, axis=0)
        q75, q25 = np.percentile(values, [75, 25], axis=0)
        spread = q75 - q25
        fallback = values.std(axis=0)
        spread = np.where(spread > 0, spread, np.where(fallback > 0, fallback, 1.0))
    else:
        center = values.mean(axis=0)
        spread = values.std(axis=0)
        spread = np.where(spread > 0, spread, 1.0)
    return np.asarray((values - center) / spread, dtype=np.float64)


# -- clustering --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Clustering:
    labels: npt.NDArray[np.int64]
    k: int
    #: silhouette (kmeans) or BIC (gmm) per k tried
    scores: dict[int, float]


def cluster(
    x: FloatArray,
    *,
    method: Method = "kmeans",
    k: int | Sequence[int] = range(2, 9),
    seed: int = 0,
    fit_sample: int = 50_000,
) -> Clustering:
    """Cluster the rows of ``x``; ``k`` fixed or chosen from a range (module docstring).

    k is chosen on a seeded sample of at most 5,000 rows (silhouette of k-means with 10
    starts, or BIC of the mixture); the chosen model is then fitted on at most
    ``fit_sample`` rows and every row assigned.
    """
    # scikit-learn requires threadpoolctl. One thread: these fits are small (<= fit_sample rows)
    # and OpenMP's spinning threads made k-means ~40x slower on a busy 2-core machine.
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    with threadpool_limits(1):
        return _cluster(x, method=method, k=k, seed=seed, fit_sample=fit_sample)


def _cluster(
    x: FloatArray, *, method: Method, k: int | Sequence[int], seed: int, fit_sample: int
) -> Clustering:
    from sklearn.cluster import KMeans  # type: ignore[import-untyped]
    from sklearn.metrics import silhouette_score  # type: ignore[import-untyped]
    from sklearn.mixture import GaussianMixture  # type: ignore[import-untyped]

    n = len(x)
    ks = [k] if isinstance(k, int) else sorted(set(k))
    ks = [c for c in ks if 1 <= c <= n]
    if not ks:
        raise ValueError(f"cannot cluster {n} customers into k={k} groups")
    rng = np.random.default_rng(seed)
    fit_idx = np.sort(rng.choice(n, fit_sample, replace=False)) if n > fit_sample else np.arange(n)
    sel_idx = (
        np.sort(rng.choice(n, _SILHOUETTE_SAMPLE, replace=False))
        if n > _SILHOUETTE_SAMPLE
        else np.arange(n)
    )

    def model(c: int) -> Any:
        if method == "gmm":
            return GaussianMixture(c, covariance_type="diag", random_state=seed, n_init=2)
        return KMeans(c, n_init=_STARTS, random_state=seed)

    scores: dict[int, float] = {}
    if len(ks) > 1:
        xs = x[sel_idx]
        for c in ks:
            m = model(c).fit(xs)
            if method == "gmm":
                scores[c] = float(m.bic(xs))
            else:
                labels = m.labels_
                ok = 1 < len(set(labels.tolist())) < len(xs)
                scores[c] = float(silhouette_score(xs, labels)) if ok else -1.0
        if method == "gmm":
            best = min(ks, key=lambda c: (scores[c], c))
        else:
            best = max(ks, key=lambda c: (scores[c], -c))
    else:
        best = ks[0]
    final = model(best).fit(x[fit_idx])
    labels = np.asarray(final.predict(x), dtype=np.int64)
    return Clustering(_by_size(labels), best, scores)


def _by_size(labels: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Relabel clusters 0..k-1 by decreasing size (ties: by first customer)."""
    values, first, counts = np.unique(labels, return_index=True, return_counts=True)
    order = sorted(range(len(values)), key=lambda i: (-counts[i], first[i]))
    mapping = {int(values[i]): rank for rank, i in enumerate(order)}
    return np.array([mapping[int(v)] for v in labels], dtype=np.int64)
