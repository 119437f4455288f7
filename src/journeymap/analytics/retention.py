"""Retention and loyalty: cohort retention, repeat purchases, RFM segments, lapsed customers.

A *purchase* is a conversion of the spec's goal (``is_conversion``); its value is the
event's ``revenue``. Periods are UTC calendar days, ISO weeks (Monday to Sunday) or
calendar months, computed on integers (``ts_us``) so that every engine agrees; for the
shop's local calendar convert the timestamps first (shared/research/engine.md P5).

**Cohort retention.** A customer's cohort is the period of their first event
(``cohort="first_event"``) or first conversion (``"first_conversion"``). They are retained
in period offset k when they are active (any event; ``activity="conversion"``: a conversion)
in the k-th period after their cohort's. Cells after the last observed period (``as_of``,
default the latest event) are ``None``, not 0. A breakdown splits cohorts by a journey
column's value at the customer's cohort-defining event (e.g. ``channel``, ``device``) or by a
customer -> segment table.

**RFM.** Among customers with a purchase up to ``as_of``: recency = days since the last
purchase, frequency = purchases, monetary = their revenue (DECIMAL). Each is scored 1-5 by
quintile with ``ntile(5)`` in the engine, ordered by (value, customer_id): customer_id breaks
ties, so equal values on a quintile boundary may get neighbouring scores, but every engine
gives the same scores (recency: the most recent get 5). Segments from the (R, F) grid:

=============== ======================== ============ =================================
R \\ F           1-2                      3            4-5
=============== ======================== ============ =================================
1-2             hibernating              at_risk      at_risk (F 4), cant_lose (F 5)
3               about_to_sleep           need_attention loyal
4               promising (F 1),         potential_loyalist  loyal
                potential_loyalist (F 2)
5               new_customer (F 1),      potential_loyalist  champion
                potential_loyalist (F 2)
=============== ======================== ============ =================================

(the widely used RF segmentation map; pass ``segments`` to use your own).

**Lapsed customers** have at least ``min_purchases`` (2) purchases and no purchase for longer
than ``k`` (2) times their own median gap between purchases, as of ``as_of``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any, Literal

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from journeymap.analytics.engine import to_arrow
from journeymap.analytics.results import TableResult
from journeymap.errors import JourneymapError

Period = Literal["day", "week", "month"]
CohortBy = Literal["first_event", "first_conversion"]
Activity = Literal["any", "conversion"]
_US_PER_DAY = 86_400 * 1_000_000
_EPOCH = dt.date(1970, 1, 1)


class RetentionError(JourneymapError, ValueError):
    """Invalid retention arguments."""


# -- periods -------------------------------------------------------------------------------
def period_index(journey: ir.Table, period: Period) -> ir.IntegerValue:
    """The UTC period of each event as an integer: days or ISO weeks since 1970, or
    months since year 0 (year * 12 + month - 1)."""
    day = journey.ts_us // _US_PER_DAY
    if period == "day":
        return day.cast("int64")
    if period == "week":
        # 1970-01-01 was a Thursday: +3 days puts week boundaries on Mondays
        return ((day + 3) // 7).cast("int64")
    if period == "month":
        return (journey.ts.year().cast("int64") * 12 + journey.ts.month().cast("int64") - 1).cast(
            "int64"
        )
    raise RetentionError(f"unknown period {period!r}; allowed: day, week, month")


def period_start(index: int, period: Period) -> dt.date:
    """The first day of a period index."""
    if period == "day":
        return _EPOCH + dt.timedelta(days=index)
    if period == "week":
        return _EPOCH + dt.timedelta(days=7 * index - 3)
    return dt.date(index // 12, index % 12 + 1, 1)


def _as_of_us(journey: ir.Table, as_of: dt.datetime | None) -> int:
    if as_of is not None:
        if as_of.tzinfo is None:
            raise RetentionError(f"as_of must be timezone-aware (UTC), got {as_of!r}")
        delta = as_of.astimezone(dt.UTC) - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    latest = to_arrow(journey.ts_us.max()).as_py()
    if latest is None:
        raise RetentionError("the journey table is empty; import events first")
    return int(latest)


def _segments_table(segments: Mapping[str, str] | pa.Table | ir.Table) -> ir.Table:
    if isinstance(segments, ir.Table):
        table = segments
    elif isinstance(segments, pa.Table):
        table = ibis.memtable(segments)
    else:
        table = ibis.memtable(
            pa.table(
                {
                    "customer_id": pa.array(list(segments), pa.string()),
                    "segment": pa.array([str(v) for v in segments.values()], pa.string()),
                }
            )
        )
    missing = {"customer_id", "segment"} - set(table.columns)
    if missing:
        raise RetentionError(
            f"the segments table needs columns customer_id and segment; it has "
            f"{', '.join(table.columns)}"
        )
    return table.select(_seg_customer="customer_id", breakdown=table.segment.cast("string"))


# -- cohort retention ------------------------------------------------------------------------
@dataclass(frozen=True)
class Cohort:
    breakdown: str | None
    #: first day of the cohort's period
    start: dt.date
    period_index: int
    size: int
    #: customers retained per offset (0, 1, ...); None where not observed yet
    retained: list[int | None]
    rates: list[float | None]


@dataclass(frozen=True)
class RetentionResult(TableResult):
    period: str
    cohort_by: str
    activity: str
    breakdown: str | None
    cohorts: list[Cohort]
    #: per breakdown value: retained / size over cohorts observed at each offset
    average: dict[str, list[float | None]]
    last_period: int

    def to_records(self) -> list[dict[str, Any]]:
        return [
            {
                "breakdown": c.breakdown,
                "cohort": c.start.isoformat(),
                "size": c.size,
                "offset": k,
                "customers": n,
                "rate": r,
            }
            for c in self.cohorts
            for k, (n, r) in enumerate(zip(c.retained, c.rates, strict=True))
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "cohort_by": self.cohort_by,
            "activity": self.activity,
            "breakdown": self.breakdown,
            "last_period": period_start(self.last_period, self.period).isoformat(),  # type: ignore[arg-type]
            "average": self.average,
            "rows": self.to_records(),
        }


def retention_expr(
    journey: ir.Table,
    *,
    period: Period = "week",
    cohort: CohortBy = "first_event",
    activity: Activity = "any",
    breakdown: str | None = None,
    segments: ir.Table | None = None,
) -> ir.Table:
    """Rows (``breakdown``, ``cohort_period``, ``offset``, ``customers``); offset -1 carries
    the cohort's size."""
    if cohort not in ("first_event", "first_conversion"):
        raise RetentionError(f"unknown cohort {cohort!r}; allowed: first_event, first_conversion")
    if activity not in ("any", "conversion"):
        raise RetentionError(f"unknown activity {activity!r}; allowed: any, conversion")
    t = journey.mutate(_period=period_index(journey, period))
    starts = t.filter(t.is_conversion) if cohort == "first_conversion" else t
    if breakdown is not None:
        if breakdown not in journey.columns:
            raise RetentionError(
                f"unknown breakdown column {breakdown!r}; allowed: {', '.join(journey.columns)}"
            )
        cohorts = starts.group_by("customer_id").agg(
            cohort_period=starts._period.min(),
            breakdown=starts[breakdown].cast("string").argmin(starts.step_index),
        )
    else:
        cohorts = starts.group_by("customer_id").agg(cohort_period=starts._period.min())
        cohorts = cohorts.mutate(breakdown=ibis.null("string"))
    if segments is not None:
        cohorts = cohorts.drop("breakdown")
        cohorts = cohorts.left_join(segments, cohorts.customer_id == segments._seg_customer)
        cohorts = cohorts.drop("_seg_customer")
    active = t.filter(t.is_conversion) if activity == "conversion" else t
    periods = active.select("customer_id", active_period=active._period).distinct()
    j = periods.join(cohorts, "customer_id")
    j = j.mutate(offset=(j.active_period - j.cohort_period).cast("int64"))
    j = j.filter(j.offset >= 0)
    cells = j.group_by(["breakdown", "cohort_period", "offset"]).agg(customers=j.count())
    sizes = cohorts.group_by(["breakdown", "cohort_period"]).agg(
        offset=ibis.literal(-1, "int64"), customers=cohorts.count()
    )
    return cells.union(sizes.select(*cells.columns))


def retention(
    journey: ir.Table,
    *,
    period: Period = "week",
    cohort: CohortBy = "first_event",
    activity: Activity = "any",
    breakdown: str | None = None,
    segments: Mapping[str, str] | pa.Table | ir.Table | None = None,
    max_offset: int | None = None,
    as_of: dt.datetime | None = None,
) -> RetentionResult:
    """The cohort retention matrix (see the module docstring)."""
    if period not in ("day", "week", "month"):
        raise RetentionError(f"unknown period {period!r}; allowed: day, week, month")
    if breakdown is not None and segments is not None:
        raise RetentionError("give either a breakdown column or a segments table, not both")
    seg = _segments_table(segments) if segments is not None else None
    rows = to_arrow(
        retention_expr(
            journey,
            period=period,
            cohort=cohort,
            activity=activity,
            breakdown=breakdown,
            segments=seg,
        )
    ).to_pylist()
    last_us = _as_of_us(journey, as_of)
    last = _period_of_us(last_us, period)
    sizes: dict[tuple[str | None, int], int] = {}
    cells: dict[tuple[str | None, int], dict[int, int]] = {}
    for r in rows:
        key = (r["breakdown"], int(r["cohort_period"]))
        if int(r["offset"]) < 0:
            sizes[key] = int(r["customers"])
        else:
            cells.setdefault(key, {})[int(r["offset"])] = int(r["customers"])
    cohorts: list[Cohort] = []
    for key in sorted(sizes, key=lambda k: ("" if k[0] is None else k[0], k[0] is None, k[1])):
        b, start = key
        if start > last:
            continue
        width = last - start + 1
        if max_offset is not None:
            width = min(width, max_offset + 1)
        got = cells.get(key, {})
        retained: list[int | None] = [got.get(k, 0) for k in range(width)]
        if max_offset is not None:
            retained += [None] * (max_offset + 1 - width)
        size = sizes[key]
        rates: list[float | None] = [None if n is None else n / size for n in retained]
        cohorts.append(Cohort(b, period_start(start, period), start, size, retained, rates))
    average: dict[str, list[float | None]] = {}
    for b in sorted({c.breakdown for c in cohorts}, key=lambda v: "" if v is None else v):
        group = [c for c in cohorts if c.breakdown == b]
        width = max(len(c.retained) for c in group)
        curve: list[float | None] = []
        for k in range(width):
            obs = [c for c in group if k < len(c.retained) and c.retained[k] is not None]
            total = sum(c.size for c in obs)
            curve.append(sum(c.retained[k] or 0 for c in obs) / total if total else None)
        average["(all)" if b is None else b] = curve
    return RetentionResult(
        period,
        cohort,
        activity,
        breakdown or ("segment" if seg is not None else None),
        cohorts,
        average,
        last,
    )


def _period_of_us(ts_us: int, period: Period) -> int:
    day = ts_us // _US_PER_DAY
    if period == "day":
        return day
    if period == "week":
        return (day + 3) // 7
    d = _EPOCH + dt.timedelta(days=day)
    return d.year * 12 + d.month - 1


# -- repeat purchases ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RepeatPurchaseResult(TableResult):
    #: customers with at least one purchase
    buyers: int
    #: of those, customers with at least two
    repeat_buyers: int
    repeat_rate: float
    within_days: int | None
    #: customers whose second purchase came within ``within_days`` of their first
    repeat_buyers_within: int | None
    repeat_rate_within: float | None
    median_days_to_second: float | None

    def to_records(self) -> list[dict[str, Any]]:
        return [asdict(self)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def repeat_purchase_expr(journey: ir.Table, *, within_days: int | None = None) -> ir.Table:
    """One row: ``buyers``, ``repeat_buyers``, ``repeat_within``, ``median_gap_us``."""
    c = journey.filter(journey.is_conversion)
    w = ibis.window(group_by=c.customer_id, order_by=c.step_index)
    c = c.mutate(rank=ibis.row_number().over(w))
    per = c.group_by("customer_id").agg(
        purchases=c.count(),
        first_us=c.ts_us.min(),
        second_us=ibis.ifelse(c.rank == 1, c.ts_us, ibis.null("int64")).min(),
    )
    gap = per.second_us - per.first_us
    one, zero = ibis.literal(1, "int64"), ibis.literal(0, "int64")
    limit = (within_days or 0) * _US_PER_DAY
    return per.aggregate(
        buyers=per.count(),
        repeat_buyers=ibis.ifelse(per.purchases >= 2, one, zero).sum(),
        repeat_within=ibis.ifelse(gap.notnull() & (gap <= limit), one, zero).sum(),
        median_gap_us=gap.median(),
    )


def repeat_purchase(journey: ir.Table, *, within_days: int | None = None) -> RepeatPurchaseResult:
    """Repeat-purchase rate: customers with >= 2 purchases / customers with >= 1; with
    ``within_days`` also the share whose second purchase came within that many days."""
    if within_days is not None and within_days < 0:
        raise RetentionError(f"within_days must be >= 0, got {within_days!r}")
    row = to_arrow(repeat_purchase_expr(journey, within_days=within_days)).to_pylist()[0]
    buyers = int(row["buyers"] or 0)
    repeat = int(row["repeat_buyers"] or 0)
    within = int(row["repeat_within"] or 0) if within_days is not None else None
    gap = row["median_gap_us"]
    return RepeatPurchaseResult(
        buyers=buyers,
        repeat_buyers=repeat,
        repeat_rate=repeat / buyers if buyers else 0.0,
        within_days=within_days,
        repeat_buyers_within=within,
        repeat_rate_within=(within / buyers if buyers else 0.0) if within is not None else None,
        median_days_to_second=None if gap is None else float(gap) / _US_PER_DAY,
    )


# -- RFM -------------------------------------------------------------------------------------
def rf_segment(r: int, f: int) -> str:
    """The segment of an (R, F) score pair (the grid in the module docstring)."""
    if r <= 2:
        return "hibernating" if f <= 2 else ("cant_lose" if f == 5 else "at_risk")
    if r == 3:
        return "about_to_sleep" if f <= 2 else ("need_attention" if f == 3 else "loyal")
    if f >= 4:
        return "champion" if r == 5 else "loyal"
    if f == 1:
        return "new_customer" if r == 5 else "promising"
    return "potential_loyalist"


SEGMENT_ORDER = (
    "champion",
    "loyal",
    "potential_loyalist",
    "new_customer",
    "promising",
    "need_attention",
    "about_to_sleep",
    "at_risk",
    "cant_lose",
    "hibernating",
)


@dataclass(frozen=True)
class RFMSegment:
    segment: str
    customers: int
    share: float
    mean_recency_days: float
    mean_frequency: float
    monetary: Decimal


@dataclass(frozen=True)
class RFMResult(TableResult):
    as_of_us: int
    segments: list[RFMSegment]
    #: one row per customer: customer_id, recency_days, frequency, monetary, r, f, m, segment
    customers: pa.Table

    def to_records(self) -> list[dict[str, Any]]:
        return [asdict(s) for s in self.segments]

    def to_dict(self) -> dict[str, Any]:
        return {"as_of_us": self.as_of_us, "segments": self.to_records()}


def rfm_expr(journey: ir.Table, *, as_of_us: int) -> ir.Table:
    """Per buyer: ``recency_us``, ``frequency``, ``monetary`` and the scores ``r``, ``f``,
    ``m`` (1-5, ntile ordered by value then customer_id)."""
    c = journey.filter(journey.is_conversion & (journey.ts_us <= as_of_us))
    per = c.group_by("customer_id").agg(
        last_us=c.ts_us.max(),
        frequency=c.count(),
        monetary=c.revenue.fill_null(0).sum(),
    )
    per = per.mutate(recency_us=ibis.literal(as_of_us, "int64") - per.last_us)

    def score(*order: ir.Value) -> ir.IntegerValue:
        return (ibis.ntile(5).over(ibis.window(order_by=[*order, per.customer_id])) + 1).cast(
            "int64"
        )

    return per.mutate(
        r=score(per.last_us),
        f=score(per.frequency),
        m=score(per.monetary),
    ).select("customer_id", "recency_us", "frequency", "monetary", "r", "f", "m")


def rfm(
    journey: ir.Table,
    *,
    as_of: dt.datetime | None = None,
    segments: Callable[[int, int, int], str] | None = None,
) -> RFMResult:
    """RFM scores and segments of every buyer (see the module docstring); ``segments`` maps
    (r, f, m) to a segment name instead of the RF grid."""
    as_of_us = _as_of_us(journey, as_of)
    table = to_arrow(rfm_expr(journey, as_of_us=as_of_us)).sort_by("customer_id")
    rs, fs, ms = (table.column(c).to_pylist() for c in ("r", "f", "m"))
    name = segments or (lambda r, f, m: rf_segment(r, f))
    seg = [name(int(r), int(f), int(m)) for r, f, m in zip(rs, fs, ms, strict=True)]
    rec = [int(v) / _US_PER_DAY for v in table.column("recency_us").to_pylist()]
    table = table.append_column("segment", pa.array(seg, pa.string()))
    table = table.append_column("recency_days", pa.array(rec, pa.float64()))
    freq = table.column("frequency").to_pylist()
    money = table.column("monetary").to_pylist()
    total = len(seg)
    acc: dict[str, list[Any]] = {}
    for s, rd, fq, mo in zip(seg, rec, freq, money, strict=True):
        a = acc.setdefault(s, [0, 0.0, 0, Decimal(0)])
        a[0] += 1
        a[1] += rd
        a[2] += int(fq)
        a[3] += Decimal(mo or 0)
    order = {s: i for i, s in enumerate(SEGMENT_ORDER)}
    out = [
        RFMSegment(s, a[0], a[0] / total, a[1] / a[0], a[2] / a[0], a[3])
        for s, a in sorted(acc.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))
    ]
    return RFMResult(as_of_us, out, table)


# -- lapsed customers ----------------------------------------------------------------------
@dataclass(frozen=True)
class LapsedCustomer:
    customer_id: str
    purchases: int
    last_purchase_us: int
    median_gap_days: float
    days_since_last: float
    #: days since the last purchase / median gap
    ratio: float


@dataclass(frozen=True)
class LapsedResult(TableResult):
    as_of_us: int
    k: float
    min_purchases: int
    #: customers with at least ``min_purchases`` purchases (their cadence is known)
    eligible: int
    #: lapsed customers, the longest overdue first
    customers: list[LapsedCustomer]

    @property
    def lapsed(self) -> int:
        return len(self.customers)

    def to_records(self) -> list[dict[str, Any]]:
        return [asdict(c) for c in self.customers]

    def to_dict(self) -> dict[str, Any]:
        return {
            "as_of_us": self.as_of_us,
            "k": self.k,
            "min_purchases": self.min_purchases,
            "eligible": self.eligible,
            "lapsed": self.lapsed,
            "customers": self.to_records(),
        }


def cadence_expr(journey: ir.Table, *, as_of_us: int) -> ir.Table:
    """Per buyer up to ``as_of_us``: ``purchases``, ``last_us``, ``median_gap_us``."""
    c = journey.filter(journey.is_conversion & (journey.ts_us <= as_of_us))
    w = ibis.window(group_by=c.customer_id, order_by=c.step_index)
    c = c.mutate(gap=c.ts_us - c.ts_us.lag().over(w))
    return c.group_by("customer_id").agg(
        purchases=c.count(), last_us=c.ts_us.max(), median_gap_us=c.gap.median()
    )


def lapsed(
    journey: ir.Table,
    *,
    k: float = 2.0,
    as_of: dt.datetime | None = None,
    min_purchases: int = 2,
) -> LapsedResult:
    """Customers inactive for longer than ``k`` times their own median purchase gap."""
    if k <= 0:
        raise RetentionError(f"k must be > 0, got {k!r}")
    if min_purchases < 2:
        raise RetentionError(f"min_purchases must be >= 2 (a gap needs two), got {min_purchases}")
    as_of_us = _as_of_us(journey, as_of)
    c = cadence_expr(journey, as_of_us=as_of_us)
    c = c.filter(c.purchases >= min_purchases)
    eligible = int(to_arrow(c.count()).as_py() or 0)
    since = ibis.literal(as_of_us, "int64") - c.last_us
    overdue = c.filter(since.cast("float64") > c.median_gap_us.cast("float64") * k)
    rows = to_arrow(overdue).to_pylist()
    out = []
    for r in rows:
        gap = float(r["median_gap_us"])
        days = (as_of_us - int(r["last_us"])) / _US_PER_DAY
        out.append(
            LapsedCustomer(
                customer_id=str(r["customer_id"]),
                purchases=int(r["purchases"]),
                last_purchase_us=int(r["last_us"]),
                median_gap_days=gap / _US_PER_DAY,
                days_since_last=days,
                ratio=(days * _US_PER_DAY / gap) if gap > 0 else float("inf"),
            )
        )
    out.sort(key=lambda x: (-x.ratio, x.customer_id))
    return LapsedResult(as_of_us, k, min_purchases, eligible, out)
