"""``simulate_shop``: a fashion web shop's customers, events and ground truth, on disk.

Output layout (``out_dir``)::

    events/part-00000.parquet   25,000 customers per part file, EVENT_SCHEMA, zstd,
    events/part-00001.parquet   one row group per 2,500 customers
    ...
    truth.json                  personas, breaks, campaigns, counts (see truth.py)

A part's events are sorted by customer, then by ``(ts, event_id)``. Each part is generated from
its own NumPy generator seeded with ``(seed, part index)``, so parts are independent and the
same seed gives the same data, byte for byte in the tables.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Final
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq

from journeymap.model.events import EVENT_SCHEMA, TS_TYPE, conform
from journeymap.simulate.breaks import BREAKS, BreakTally, break_window_days
from journeymap.simulate.journey import ChunkStats, JourneyGenerator
from journeymap.simulate.personas import (
    CAMPAIGNS,
    DAY,
    PERSONA_NAMES,
    PERSONAS,
    Catalogue,
    scaled_window,
    utc_offsets_seconds,
)
from journeymap.simulate.truth import (
    BreakTruth,
    CampaignTruth,
    CountsTruth,
    PersonaTruth,
    Truth,
    write_truth,
)

if TYPE_CHECKING:
    from rich.progress import Progress

TIMEZONE: Final = "Europe/Berlin"
CUSTOMERS_PER_PART: Final = 25_000
CUSTOMERS_PER_ROW_GROUP: Final = 2_500
SOURCE: Final = "simulator"


@dataclass(frozen=True)
class SimulationResult:
    """What ``simulate_shop`` wrote.

    ``events_path`` is a directory of Parquet part files (``part-NNNNN.parquet``); read it with
    ``pyarrow.dataset.dataset(events_path)`` or ``pyarrow.parquet.read_table(events_path)``.
    """

    events_path: Path
    truth_path: Path
    events: int
    customers: int
    orders: int
    revenue: Decimal
    seconds: float


def _windows(days: int) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for c in CAMPAIGNS:
        if c.window is not None:
            w = scaled_window(c.window[0], c.window[1], days)
            out[c.id] = (w.start_day, w.end_day)
    for b in BREAKS:
        out[b.id] = break_window_days(b, days, out.get(b.campaign or ""))
    return out


def _batch_table(gen: JourneyGenerator) -> pa.Table:
    """The rows the generator holds as an ``EVENT_SCHEMA`` table; empties the generator."""
    rows = gen.rows
    n = len(rows)
    if n:
        (
            ts,
            _,
            event,
            channel,
            campaign,
            device,
            anon,
            order_id,
            product_id,
            category,
            score,
            revenue,
            props,
        ) = zip(*rows, strict=True)
    else:
        ts = event = channel = campaign = device = anon = order_id = product_id = category = ()
        score = revenue = props = ()
    rev = [None if r is None else Decimal(r).scaleb(-2) for r in revenue]
    string = pa.string()
    table = pa.table(
        {
            "event_id": pa.array(gen.event_ids, string),
            "customer_id": pa.array(gen.customer_ids, string),
            "anonymous_id": pa.array(anon, string),
            "ts": pa.array(ts, pa.int64()).cast(TS_TYPE),
            "event": pa.array(event, string),
            "channel": pa.array(channel, string),
            "campaign": pa.array(campaign, string),
            "source": pa.repeat(pa.scalar(SOURCE, string), n),
            "revenue": pa.array(rev, pa.decimal128(18, 2)),
            "currency": pa.array(["EUR" if r is not None else None for r in revenue], string),
            "properties": pa.array(props, string),
            "device": pa.array(device, string),
            "order_id": pa.array(order_id, string),
            "product_id": pa.array(product_id, string),
            "category": pa.array(category, string),
            "score": pa.array(score, pa.int32()),
        }
    )
    gen.rows = []
    gen.event_ids = []
    gen.customer_ids = []
    return conform(table)


def _check_args(customers: int, seed: int, days: int) -> None:
    if customers < 1:
        raise ValueError(f"customers must be at least 1, got {customers}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    if days < 14:
        raise ValueError(
            f"days must be at least 14 (the injected breaks need room), got {days}; "
            "the default is 181 (half a year)"
        )


def simulate_shop(
    out_dir: Path,
    *,
    customers: int = 20_000,
    seed: int = 7,
    start: dt.date = dt.date(2026, 1, 1),
    days: int = 181,
    progress: bool = False,
) -> SimulationResult:
    """Simulate a fashion web shop's customers from ``start`` for ``days`` days.

    Writes ``out_dir/events/part-*.parquet`` (``EVENT_SCHEMA``) and ``out_dir/truth.json``
    (personas, injected breaks, campaigns, counts). The same arguments give the same data.
    Existing part files in ``out_dir/events`` are replaced.
    """
    _check_args(customers, seed, days)
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    events_dir = out_dir / "events"
    events_dir.mkdir(parents=True, exist_ok=True)
    for old in events_dir.glob("part-*.parquet"):
        old.unlink()

    tz = ZoneInfo(TIMEZONE)
    start_us = int(dt.datetime.combine(start, dt.time(), tzinfo=dt.UTC).timestamp()) * 1_000_000
    offsets = utc_offsets_seconds(start, days, tz)
    windows = _windows(days)
    catalogue = Catalogue(seed)
    stats_total = ChunkStats()
    personas: list[int] = []
    events_by_name: Counter[str] = Counter()
    n_events = 0

    bar = _progress_bar() if progress else None
    with bar if bar is not None else nullcontext():
        task = bar.add_task("simulating customers", total=customers) if bar is not None else None
        for part, first in enumerate(range(1, customers + 1, CUSTOMERS_PER_PART)):
            last = min(customers, first + CUSTOMERS_PER_PART - 1)
            gen = JourneyGenerator(
                seed=seed,
                chunk=part,
                start_us=start_us,
                days=days,
                weekday0=start.weekday(),
                utc_offsets=offsets,
                catalogue=catalogue,
                windows=windows,
                customers_total=customers,
            )
            path = events_dir / f"part-{part:05d}.parquet"
            with pq.ParquetWriter(path, EVENT_SCHEMA, compression="zstd") as writer:
                for lo in range(first, last + 1, CUSTOMERS_PER_ROW_GROUP):
                    hi = min(last, lo + CUSTOMERS_PER_ROW_GROUP - 1)
                    for cnum in range(lo, hi + 1):
                        gen.customer(cnum)
                    table = _batch_table(gen)
                    n_events += table.num_rows
                    for item in table.column("event").value_counts().to_pylist():
                        events_by_name[item["values"]] += item["counts"]
                    writer.write_table(table, row_group_size=table.num_rows or None)
                    if bar is not None and task is not None:
                        bar.advance(task, hi - lo + 1)
            _merge(stats_total, gen.stats)
            personas.extend(gen.personas)

    truth = _truth(
        seed=seed,
        customers=customers,
        start_us=start_us,
        days=days,
        windows=windows,
        stats=stats_total,
        personas=personas,
        n_events=n_events,
        events_by_name=dict(sorted(events_by_name.items())),
    )
    truth_path = out_dir / "truth.json"
    write_truth(truth, truth_path)
    return SimulationResult(
        events_path=events_dir,
        truth_path=truth_path,
        events=n_events,
        customers=customers,
        orders=stats_total.orders,
        revenue=Decimal(stats_total.revenue_cents).scaleb(-2),
        seconds=time.perf_counter() - t0,
    )


def _progress_bar() -> Progress:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )


def _merge(total: ChunkStats, part: ChunkStats) -> None:
    total.orders += part.orders
    total.revenue_cents += part.revenue_cents
    total.buyers += part.buyers
    for i in range(len(PERSONAS)):
        total.persona_customers[i] += part.persona_customers[i]
        total.persona_buyers[i] += part.persona_buyers[i]
        total.persona_orders[i] += part.persona_orders[i]
        total.persona_revenue[i] += part.persona_revenue[i]
    for name, tally in part.breaks.items():
        total.breaks[name].merge(tally)


def _utc(us: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=us)


def _rate(num: int, den: int) -> float:
    return round(num / den, 4) if den else 0.0


def _truth(
    *,
    seed: int,
    customers: int,
    start_us: int,
    days: int,
    windows: dict[str, tuple[int, int]],
    stats: ChunkStats,
    personas: list[int],
    n_events: int,
    events_by_name: dict[str, int],
) -> Truth:
    breaks = []
    for b in BREAKS:
        t: BreakTally = stats.breaks[b.id]
        a, e = windows[b.id]
        breaks.append(
            BreakTruth(
                id=b.id,
                kind=b.kind,
                touchpoint=b.touchpoint,
                event=b.event,
                campaign=b.campaign,
                segment=dict(b.segment),
                window_start=_utc(start_us + a * DAY),
                window_end=_utc(start_us + e * DAY),
                baseline_rate=b.baseline_rate,
                injected_rate=b.injected_rate,
                observed_baseline_rate=_rate(t.baseline_exits, t.baseline_sessions),
                observed_injected_rate=_rate(t.exited_sessions, t.exposed_sessions),
                exposed_sessions=t.exposed_sessions,
                exited_sessions=t.exited_sessions,
                baseline_sessions=t.baseline_sessions,
                baseline_exits=t.baseline_exits,
                exposed_customers=t.exposed_customers,
                affected_customers=t.affected_customers,
                extra_exits=t.extra_exits,
                lost_orders_estimate=round(t.lost_orders, 1),
                lost_revenue_estimate=Decimal(round(t.lost_revenue_cents)).scaleb(-2),
                description=b.description,
                measure=b.measure,
            )
        )
    campaigns = []
    for c in CAMPAIGNS:
        w = windows.get(c.id)
        campaigns.append(
            CampaignTruth(
                id=c.id,
                channel=c.channel,
                platform=c.platform,
                description=c.description,
                start=None if w is None else _utc(start_us + w[0] * DAY),
                end=None if w is None else _utc(start_us + w[1] * DAY),
                weekends_only=c.weekends_only,
            )
        )
    return Truth(
        seed=seed,
        customers=customers,
        period_start=_utc(start_us),
        period_end=_utc(start_us + days * DAY),
        timezone=TIMEZONE,
        personas={
            p.name: PersonaTruth(
                name=p.name,
                share=p.share,
                description=p.description,
                customers=stats.persona_customers[i],
                buyers=stats.persona_buyers[i],
                orders=stats.persona_orders[i],
                revenue=Decimal(stats.persona_revenue[i]).scaleb(-2),
            )
            for i, p in enumerate(PERSONAS)
        },
        customer_personas={
            f"c{k:07d}": PERSONA_NAMES[pi] for k, pi in enumerate(personas, start=1)
        },
        breaks=tuple(breaks),
        campaigns=tuple(campaigns),
        counts=CountsTruth(
            events=n_events,
            orders=stats.orders,
            revenue=Decimal(stats.revenue_cents).scaleb(-2),
            buyers=stats.buyers,
            events_by_name=events_by_name,
        ),
    )
