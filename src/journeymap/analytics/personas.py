"""Personas: customer groups found by clustering behaviour and interests, described in words.

1. **Features** (analytics/features.py): one engine query, one row per customer: phase
   reached, sessions, events, conversions, revenue, recency, entry channels, devices, active
   hours in the shop's time zone, discount use, category interests, touchpoints.
2. **Feature matrix and clustering** (analytics/clustering.py): shares and logs in groups,
   scaled; k-means with k by silhouette (default) or a Gaussian mixture with k by BIC,
   seeded and deterministic; clusters are numbered by decreasing size.
3. **Description** per persona (size, conversion, revenue, AOV, top channels and touchpoints,
   typical path, peak hours, what sets it apart: the features whose standardised mean differs
   most from the other customers', in words) and the assignment table ``customer_id,
   persona, persona_label``, written as Parquet so every analysis can break down by persona.
4. **Narratives**: the spec's personas attach to clusters by their ``channels``: the score of
   narrative n for cluster c is the mean over n's channels of ``log((share_c + 0.01) /
   (share_all + 0.01))`` (how much more the cluster enters through them than everybody);
   the Hungarian assignment (``scipy.optimize.linear_sum_assignment``) maximises the total
   score, and a narrative attaches only where its score is positive. Ties break by order.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import ibis.expr.types as ir
import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.optimize import linear_sum_assignment  # type: ignore[import-untyped]

from journeymap.analytics.clustering import (
    DEFAULT_GROUPS,
    FEATURE_GROUPS,
    FeatureMatrix,
    FloatArray,
    Method,
    Scaling,
    cluster,
    count_columns,
    feature_matrix,
    scale,
)
from journeymap.analytics.engine import to_arrow
from journeymap.analytics.features import (
    FeatureVocabulary,
    customer_features_expr,
    feature_vocabulary,
)
from journeymap.analytics.results import TableResult
from journeymap.model.spec import JourneySpec, PersonaNarrative, text_in
from journeymap.storage.files import atomic_target

ASSIGNMENT_SCHEMA = pa.schema(
    [
        pa.field("customer_id", pa.string(), nullable=False),
        pa.field("persona", pa.string(), nullable=False),
        pa.field("persona_label", pa.string(), nullable=False),
    ]
)
_NARRATIVE_EPS = 0.01
#: smallest standardised difference worth a word in "what sets it apart"
_MIN_DIFFERENCE = 0.3


# -- narratives --------------------------------------------------------------------------------
def match_narratives(
    channel_shares: FloatArray,
    overall: FloatArray,
    channels: Sequence[str],
    narratives: Sequence[PersonaNarrative],
) -> dict[int, tuple[PersonaNarrative, float]]:
    """Cluster index → (narrative, score) by the channel-profile rule (module docstring).

    ``channel_shares``: clusters × channels (mean entry-channel shares); ``overall``: the
    same for all customers.
    """
    if not narratives or len(channel_shares) == 0:
        return {}
    lift = np.log((channel_shares + _NARRATIVE_EPS) / (overall + _NARRATIVE_EPS))
    index = {c: i for i, c in enumerate(channels)}
    score = np.zeros((len(channel_shares), len(narratives)))
    for j, nar in enumerate(narratives):
        cols = [index[c] for c in nar.channels if c in index]
        if cols:
            score[:, j] = lift[:, cols].mean(axis=1)
    rows, cols = linear_sum_assignment(score, maximize=True)
    return {
        int(r): (narratives[c], float(score[r, c]))
        for r, c in zip(rows, cols, strict=True)
        if score[r, c] > 0
    }


# -- results -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Persona:
    """One persona: who they are, what they bring, how they move, what sets them apart."""

    persona: str
    label: str
    index: int
    customers: int
    share: float
    #: share of the persona's customers with at least one conversion
    conversion_rate: float
    conversions: int
    revenue: Decimal
    #: revenue per conversion (average order value)
    aov: Decimal | None
    revenue_per_customer: Decimal
    #: (channel, share of the persona's sessions entered through it), top 3
    top_channels: list[tuple[str, float]]
    #: (touchpoint, share of the persona's customers reaching it), most over-represented first
    top_touchpoints: list[tuple[str, float]]
    #: touchpoints most of the persona reaches, in the order they typically reach them
    typical_path: list[str]
    #: the most common order in which the persona's customers first reach the phases
    phase_path: list[str]
    #: share of device events per local hour 0..23
    active_hours: list[float]
    peak_hours: str
    #: what sets the persona apart, in words (strongest first)
    distinctive: list[str]
    description: str
    narrative_id: str | None = None
    narrative: str = ""
    narrative_score: float | None = None


@dataclass(frozen=True)
class PersonasResult(TableResult):
    personas: list[Persona]
    #: ``customer_id, persona, persona_label`` for every customer
    assignments: pa.Table = field(repr=False)
    k: int
    method: Method
    scores: dict[int, float]
    features: list[str]
    seed: int
    timezone: str
    path: Path | None = None

    def to_records(self) -> list[dict[str, Any]]:
        out = []
        for p in self.personas:
            d = asdict(p)
            d["top_channels"] = [{"channel": c, "share": s} for c, s in p.top_channels]
            d["top_touchpoints"] = [{"touchpoint": t, "reach": s} for t, s in p.top_touchpoints]
            out.append(d)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "method": self.method,
            "scores": {str(k): v for k, v in self.scores.items()},
            "features": self.features,
            "seed": self.seed,
            "timezone": self.timezone,
            "personas": self.to_records(),
        }

    def persona_of(self) -> dict[str, str]:
        """``customer_id`` → persona id."""
        a = self.assignments
        return dict(zip(a["customer_id"].to_pylist(), a["persona"].to_pylist(), strict=True))


def write_assignments(table: pa.Table, path: str | Path) -> Path:
    """Write the assignment table atomically (temporary file, then rename)."""
    p = Path(path)
    with atomic_target(p) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return p


# -- the analysis ------------------------------------------------------------------------------
def customer_features(
    journey: ir.Table, spec: JourneySpec, *, timezone: str = "UTC"
) -> tuple[pd.DataFrame, FeatureVocabulary]:
    """The per-customer aggregate (sorted by ``customer_id``) and its vocabulary."""
    vocab = feature_vocabulary(journey, spec.phase_ids())
    table = to_arrow(customer_features_expr(journey, vocab, timezone=timezone))
    df = table.to_pandas()
    revenue = table.column("revenue").cast(pa.float64()).to_numpy(zero_copy_only=False)
    df["revenue_cents"] = np.rint(np.nan_to_num(revenue) * 100).astype(np.int64)
    return df.sort_values("customer_id", kind="stable").reset_index(drop=True), vocab


def find_personas(
    journey: ir.Table,
    spec: JourneySpec,
    *,
    timezone: str = "UTC",
    method: Method = "kmeans",
    k: int | Sequence[int] = range(2, 9),
    groups: Sequence[str] = DEFAULT_GROUPS,
    scaling: Scaling = "standard",
    seed: int = 0,
    fit_sample: int = 50_000,
    as_of: dt.datetime | None = None,
    path: str | Path | None = None,
    lang: str | None = None,
) -> PersonasResult:
    """Cluster the customers of ``journey`` into personas (see the module docstring).

    ``timezone``: the shop's IANA zone for active hours (``Europe/Berlin`` for the demo).
    ``method``, ``k`` (a number or the range to choose from), ``seed``, ``fit_sample``: the
    clustering; ``groups`` and ``scaling``: the features it sees (analytics/clustering.py).
    ``as_of``: the reference time of recency (default: the last event).
    ``path``: where to write the assignment table (the facade passes
    ``<cache_dir>/personas-<key>.parquet``). ``lang``: of the narrative names and texts.
    """
    unknown = [g for g in groups if g not in FEATURE_GROUPS]
    if unknown or not groups:
        raise ValueError(
            f"unknown feature group(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(FEATURE_GROUPS)}"
        )
    if method not in ("kmeans", "gmm"):
        raise ValueError(f"unknown clustering method {method!r}; use 'kmeans' or 'gmm'")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {timezone!r}; give an IANA name such as Europe/Berlin or UTC"
        ) from None
    features, vocab = customer_features(journey, spec, timezone=timezone)
    if as_of is not None and as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=dt.UTC)  # naive times are UTC, like every event time
    as_of_us = vocab.last_us if as_of is None else int(as_of.timestamp() * 1_000_000)
    fm = feature_matrix(features, vocab, as_of_us)
    use = [i for i, g in enumerate(fm.groups) if g in groups]
    x = scale(fm.values[:, use], scaling)
    result = cluster(x, method=method, k=k, seed=seed, fit_sample=fit_sample)
    personas, ids, labels = describe(fm, vocab, result.labels, spec, lang or spec.language)
    assignments = pa.table(
        {
            "customer_id": pa.array(fm.customer_ids.tolist(), pa.string()),
            "persona": pa.array(np.array(ids, dtype=object)[result.labels], pa.string()),
            "persona_label": pa.array(np.array(labels, dtype=object)[result.labels], pa.string()),
        },
        schema=ASSIGNMENT_SCHEMA,
    )
    written = write_assignments(assignments, path) if path is not None else None
    return PersonasResult(
        personas=personas,
        assignments=assignments,
        k=result.k,
        method=method,
        scores=result.scores,
        features=[fm.names[i] for i in use],
        seed=seed,
        timezone=timezone,
        path=written,
    )


# -- description -------------------------------------------------------------------------------
def describe(
    fm: FeatureMatrix,
    vocab: FeatureVocabulary,
    labels: npt.NDArray[np.int64],
    spec: JourneySpec,
    lang: str,
) -> tuple[list[Persona], list[str], list[str]]:
    """Personas in cluster order, their ids and labels."""
    df = fm.raw
    k = int(labels.max()) + 1 if len(labels) else 0
    ch = count_columns(df, "ch", len(vocab.channels))
    ch_shares = np.vstack([_mean_shares(ch[labels == c]) for c in range(k)])
    narratives = match_narratives(ch_shares, _mean_shares(ch), vocab.channels, spec.personas)
    z = scale(fm.values, "standard")
    out: list[Persona] = []
    ids: list[str] = []
    names: list[str] = []
    for c in range(k):
        mask = labels == c
        distinctive = _distinctive(fm, z, mask)
        nar = narratives.get(c)
        pid = nar[0].id if nar else f"persona_{c + 1}"
        label = text_in(nar[0].name, lang) if nar else _auto_label(c, distinctive)
        ids.append(pid)
        names.append(label)
        out.append(_persona(fm, vocab, mask, c, pid, label, distinctive, ch_shares[c], nar, lang))
    return out, ids, names


def _mean_shares(counts: FloatArray) -> FloatArray:
    """Mean over customers of their shares (customers without counts left out)."""
    total = counts.sum(axis=1, keepdims=True)
    has = total[:, 0] > 0
    if not has.any():
        return np.zeros(counts.shape[1])
    return np.asarray((counts[has] / total[has]).mean(axis=0), dtype=np.float64)


def _distinctive(fm: FeatureMatrix, z: FloatArray, mask: npt.NDArray[np.bool_]) -> list[str]:
    """The five features whose standardised mean differs most from the other customers'."""
    if mask.all() or not mask.any():
        return []
    diff = z[mask].mean(axis=0) - z[~mask].mean(axis=0)
    # the circular mean of the hours only serves the clustering; the 4-hour blocks speak
    diff[[i for i, name in enumerate(fm.names) if name in ("hours:sin", "hours:cos")]] = 0.0
    order = np.argsort(-np.abs(diff), kind="stable")
    out = []
    for i in order[:5]:
        if abs(diff[i]) < _MIN_DIFFERENCE:
            break
        out.append(_phrase(fm.names[i], fm.values[mask, i], fm.values[~mask, i], diff[i] > 0))
    return out


def _phrase(name: str, inside: FloatArray, outside: FloatArray, more: bool) -> str:
    kind, _, value = name.partition(":")
    a, b = float(np.mean(inside)), float(np.mean(outside))
    word = "more" if more else "less"
    if kind in ("channel", "device", "category", "touchpoint", "hours"):
        what = {
            "channel": f"sessions from {value}",
            "device": f"events on {value}",
            "category": f"interest in {value}",
            "touchpoint": f"events at {value}",
            "hours": f"activity at {value}",
        }[kind]
        return f"{word} {what} ({a:.0%} vs {b:.0%})"
    raw = {
        "sessions": ("sessions", np.expm1(a), np.expm1(b), ".1f"),
        "events_per_session": ("events per session", np.expm1(a), np.expm1(b), ".1f"),
        "phase_reached": ("progress through the phases", a, b, ".0%"),
        "conversions": ("conversions", np.expm1(a), np.expm1(b), ".2f"),
        "revenue": ("revenue", np.expm1(a), np.expm1(b), ".0f"),
        "recency_days": ("days since the last visit", np.expm1(a), np.expm1(b), ".0f"),
        "discount_share": ("orders with a discount code", a, b, ".0%"),
    }.get(name)
    if raw is None:
        return f"{word} {name}"
    label, x, y, fmt = raw
    more_less = ("more" if more else "fewer") if label in ("sessions", "conversions") else word
    return f"{more_less} {label} ({x:{fmt}} vs {y:{fmt}})"


def _auto_label(index: int, distinctive: list[str]) -> str:
    if not distinctive:
        return f"Persona {index + 1}"
    return f"Persona {index + 1}: {distinctive[0].split(' (')[0]}"


def _peak(hours: FloatArray) -> str:
    """The 3-hour window (wrapping midnight) with the most activity, e.g. ``21–24 h``."""
    if hours.sum() <= 0:
        return ""
    window = np.array([hours[[(h + i) % 24 for i in range(3)]].sum() for h in range(24)])
    start = int(np.argmax(window))
    end = (start + 3) % 24 or 24
    return f"{start}–{end} h"


def _persona(
    fm: FeatureMatrix,
    vocab: FeatureVocabulary,
    mask: npt.NDArray[np.bool_],
    index: int,
    pid: str,
    label: str,
    distinctive: list[str],
    channel_shares: FloatArray,
    nar: tuple[PersonaNarrative, float] | None,
    lang: str,
) -> Persona:
    df = fm.raw[mask]
    n = int(mask.sum())
    conversions = int(df["n_conversions"].sum())
    cents = int(df["revenue_cents"].sum())
    revenue = Decimal(cents) / 100
    aov = (Decimal(round(cents / conversions)) / 100) if conversions else None
    hours = count_columns(df, "hour", 24).sum(axis=0)
    hours = hours / hours.sum() if hours.sum() > 0 else hours
    top_ch = sorted(
        zip(vocab.channels, channel_shares.tolist(), strict=True), key=lambda t: (-t[1], t[0])
    )[:3]
    reach_all = (count_columns(fm.raw, "tp", len(vocab.touchpoints)) > 0).mean(axis=0)
    reach = (count_columns(df, "tp", len(vocab.touchpoints)) > 0).mean(axis=0)
    over = [
        (tp, float(r), float(r / ra) if ra > 0 else 0.0)
        for tp, r, ra in zip(vocab.touchpoints, reach, reach_all, strict=True)
        if r >= 0.1
    ]
    top_tp = [(tp, r) for tp, r, _ in sorted(over, key=lambda t: (-t[2], t[0]))[:5]]
    first = df[[f"tp_first_{i}" for i in range(len(vocab.touchpoints))]]
    typical = [
        (float(np.nanmedian(first[f"tp_first_{i}"].to_numpy(np.float64))), tp)
        for i, tp in enumerate(vocab.touchpoints)
        if reach[i] >= 0.5
    ]
    path = [tp for _, tp in sorted(typical)]
    phase_path = _phase_path(df, vocab)
    narrative = text_in(nar[0].description, lang) if nar and nar[0].description else ""
    p = Persona(
        persona=pid,
        label=label,
        index=index,
        customers=n,
        share=n / len(mask) if len(mask) else 0.0,
        conversion_rate=float((df["n_conversions"] > 0).mean()) if n else 0.0,
        conversions=conversions,
        revenue=revenue,
        aov=aov,
        revenue_per_customer=(Decimal(round(cents / n)) / 100) if n else Decimal(0),
        top_channels=[(c, float(s)) for c, s in top_ch],
        top_touchpoints=top_tp,
        typical_path=path,
        phase_path=phase_path,
        active_hours=[float(h) for h in hours],
        peak_hours=_peak(hours),
        distinctive=distinctive,
        description="",
        narrative_id=nar[0].id if nar else None,
        narrative=narrative,
        narrative_score=nar[1] if nar else None,
    )
    return Persona(**{**p.__dict__, "description": _words(p)})


def _phase_path(df: pd.DataFrame, vocab: FeatureVocabulary) -> list[str]:
    """The most common order of first reaching the phases (ties: the earlier sequence)."""
    cols = [f"phase_first_{k}" for k in range(1, len(vocab.phases) + 1)]
    if not cols or df.empty:
        return []
    first = df[cols].to_numpy(dtype=np.float64)  # NULL -> NaN
    order = np.argsort(np.where(np.isnan(first), np.inf, first), axis=1, kind="stable")
    reached = np.take_along_axis(~np.isnan(first), order, axis=1)
    seqs = Counter(
        tuple(vocab.phases[i] for i, ok in zip(row, keep, strict=True) if ok)
        for row, keep in zip(order.tolist(), reached.tolist(), strict=True)
    )
    best = max(seqs.items(), key=lambda kv: (kv[1], kv[0]))
    return list(best[0])


def _words(p: Persona) -> str:
    channels = ", ".join(c for c, _ in p.top_channels[:2])
    parts = [
        f"{p.customers} customers ({p.share:.0%})",
        f"{p.conversion_rate:.0%} converted",
        f"{p.revenue} revenue" + (f", {p.aov} per order" if p.aov is not None else ""),
        f"mostly via {channels}" if channels else "",
        f"most active {p.peak_hours}" if p.peak_hours else "",
    ]
    text = f"{p.label}: " + "; ".join(x for x in parts if x) + "."
    if p.distinctive:
        text += " Sets them apart: " + "; ".join(p.distinctive[:3]) + "."
    return text
