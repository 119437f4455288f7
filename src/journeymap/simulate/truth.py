"""The ground truth of a simulated shop: ``truth.json`` and its typed mirror ``Truth``.

The file is written beside the events by ``simulate_shop`` and read back with ``load_truth``;
tests of the analytics compare what they recover (personas, breaks, campaigns) with it.
Timestamps are ISO 8601 in UTC, money is a decimal string (EUR), rates are fractions.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, cast

from journeymap.errors import InputDataError

BreakKind = Literal["step_exit", "campaign_bounce", "process_abandon"]


@dataclass(frozen=True)
class PersonaTruth:
    """One latent persona: configured share, description and what its customers did."""

    name: str
    share: float
    description: str
    customers: int
    buyers: int
    orders: int
    revenue: Decimal


@dataclass(frozen=True)
class BreakTruth:
    """One injected journey break and what it did.

    ``baseline_rate`` / ``injected_rate`` are the configured exit probabilities at the
    touchpoint; ``observed_*`` are the rates that occurred, measured as ``measure`` says.
    ``affected_customers`` are the customers exposed to the break whose session ended at it;
    ``exposed_customers`` all customers who met the broken touchpoint. ``lost_orders_estimate``
    and ``lost_revenue_estimate`` are the orders (and revenue) the sessions the break ended
    beyond the baseline would have produced without it (expected values; later orders of
    customers who gave up are not included).
    """

    id: str
    kind: BreakKind
    touchpoint: str
    event: str
    campaign: str | None
    segment: dict[str, str]
    window_start: dt.datetime
    window_end: dt.datetime
    baseline_rate: float
    injected_rate: float
    observed_baseline_rate: float
    observed_injected_rate: float
    exposed_sessions: int
    exited_sessions: int
    baseline_sessions: int
    baseline_exits: int
    exposed_customers: int
    affected_customers: int
    extra_exits: int
    lost_orders_estimate: float
    lost_revenue_estimate: Decimal
    description: str
    measure: str


@dataclass(frozen=True)
class CampaignTruth:
    """A campaign of the simulated shop; ``start``/``end`` (UTC, end exclusive) or always on."""

    id: str
    channel: str
    platform: str
    description: str
    start: dt.datetime | None
    end: dt.datetime | None
    weekends_only: bool


@dataclass(frozen=True)
class CountsTruth:
    """Totals of the generated data."""

    events: int
    orders: int
    revenue: Decimal
    buyers: int
    events_by_name: dict[str, int]


@dataclass(frozen=True)
class Truth:
    """Everything the simulator knows and the analytics should recover (``truth.json``)."""

    seed: int
    customers: int
    period_start: dt.datetime
    period_end: dt.datetime
    timezone: str
    personas: dict[str, PersonaTruth]
    customer_personas: dict[str, str]
    breaks: tuple[BreakTruth, ...]
    campaigns: tuple[CampaignTruth, ...]
    counts: CountsTruth

    def break_by_id(self, break_id: str) -> BreakTruth:
        """The break called ``break_id``."""
        for b in self.breaks:
            if b.id == break_id:
                return b
        known = ", ".join(b.id for b in self.breaks)
        raise KeyError(f"no break {break_id!r} in the truth; known breaks: {known}")


def _iso(t: dt.datetime | None) -> str | None:
    return None if t is None else t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _parse_ts(value: object) -> dt.datetime:
    t = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def truth_to_json(truth: Truth) -> dict[str, Any]:
    """The JSON document of ``truth`` (the layout of ``truth.json``)."""
    return {
        "seed": truth.seed,
        "customers": truth.customers,
        "period": {"start": _iso(truth.period_start), "end": _iso(truth.period_end)},
        "timezone": truth.timezone,
        "personas": {
            name: {
                "share": p.share,
                "description": p.description,
                "customers": p.customers,
                "buyers": p.buyers,
                "orders": p.orders,
                "revenue": str(p.revenue),
            }
            for name, p in truth.personas.items()
        },
        "breaks": [
            {
                "id": b.id,
                "kind": b.kind,
                "touchpoint": b.touchpoint,
                "event": b.event,
                "campaign": b.campaign,
                "segment": b.segment,
                "window_start": _iso(b.window_start),
                "window_end": _iso(b.window_end),
                "baseline_rate": b.baseline_rate,
                "injected_rate": b.injected_rate,
                "observed_baseline_rate": b.observed_baseline_rate,
                "observed_injected_rate": b.observed_injected_rate,
                "exposed_sessions": b.exposed_sessions,
                "exited_sessions": b.exited_sessions,
                "baseline_sessions": b.baseline_sessions,
                "baseline_exits": b.baseline_exits,
                "exposed_customers": b.exposed_customers,
                "affected_customers": b.affected_customers,
                "extra_exits": b.extra_exits,
                "lost_orders_estimate": b.lost_orders_estimate,
                "lost_revenue_estimate": str(b.lost_revenue_estimate),
                "description": b.description,
                "measure": b.measure,
            }
            for b in truth.breaks
        ],
        "campaigns": [
            {
                "id": c.id,
                "channel": c.channel,
                "platform": c.platform,
                "description": c.description,
                "start": _iso(c.start),
                "end": _iso(c.end),
                "weekends_only": c.weekends_only,
            }
            for c in truth.campaigns
        ],
        "counts": {
            "events": truth.counts.events,
            "orders": truth.counts.orders,
            "revenue": str(truth.counts.revenue),
            "buyers": truth.counts.buyers,
            "events_by_name": truth.counts.events_by_name,
        },
        # last: for millions of customers this map dominates the file
        "customer_personas": truth.customer_personas,
    }


def write_truth(truth: Truth, path: Path) -> None:
    """Write ``truth`` to ``path`` as JSON (UTF-8)."""
    doc = truth_to_json(truth)
    personas = doc.pop("customer_personas")
    head = json.dumps(doc, indent=2, ensure_ascii=False)
    # The persona map goes on one line per 1,000 customers: readable, and fast for millions.
    with path.open("w", encoding="utf-8") as f:
        f.write(head[:-2])
        f.write(',\n  "customer_personas": {')
        items = list(personas.items())
        for i in range(0, len(items), 1000):
            part = ", ".join(f'"{k}": "{v}"' for k, v in items[i : i + 1000])
            f.write(("\n    " if i == 0 else ",\n    ") + part)
        f.write("\n  }\n}\n")


def _as_dict(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputDataError(f"truth file: {where} must be a JSON object, got {value!r:.80}")
    return cast(dict[str, Any], value)


def load_truth(path: str | Path) -> Truth:
    """Read a ``truth.json`` written by ``simulate_shop``."""
    p = Path(path)
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputDataError(
            f"cannot read the simulator's truth file {p}: {exc}. Generate it with "
            "journeymap.simulate.simulate_shop (or `journeymap demo`)."
        ) from exc
    doc = _as_dict(raw, "the document")
    try:
        period = _as_dict(doc["period"], "period")
        counts = _as_dict(doc["counts"], "counts")
        return Truth(
            seed=int(doc["seed"]),
            customers=int(doc["customers"]),
            period_start=_parse_ts(period["start"]),
            period_end=_parse_ts(period["end"]),
            timezone=str(doc["timezone"]),
            personas={
                name: PersonaTruth(
                    name=name,
                    share=float(v["share"]),
                    description=str(v["description"]),
                    customers=int(v["customers"]),
                    buyers=int(v["buyers"]),
                    orders=int(v["orders"]),
                    revenue=Decimal(str(v["revenue"])),
                )
                for name, v in _as_dict(doc["personas"], "personas").items()
            },
            customer_personas={
                str(k): str(v)
                for k, v in _as_dict(doc["customer_personas"], "customer_personas").items()
            },
            breaks=tuple(
                BreakTruth(
                    id=str(b["id"]),
                    kind=b["kind"],
                    touchpoint=str(b["touchpoint"]),
                    event=str(b["event"]),
                    campaign=None if b["campaign"] is None else str(b["campaign"]),
                    segment={str(k): str(v) for k, v in b["segment"].items()},
                    window_start=_parse_ts(b["window_start"]),
                    window_end=_parse_ts(b["window_end"]),
                    baseline_rate=float(b["baseline_rate"]),
                    injected_rate=float(b["injected_rate"]),
                    observed_baseline_rate=float(b["observed_baseline_rate"]),
                    observed_injected_rate=float(b["observed_injected_rate"]),
                    exposed_sessions=int(b["exposed_sessions"]),
                    exited_sessions=int(b["exited_sessions"]),
                    baseline_sessions=int(b["baseline_sessions"]),
                    baseline_exits=int(b["baseline_exits"]),
                    exposed_customers=int(b["exposed_customers"]),
                    affected_customers=int(b["affected_customers"]),
                    extra_exits=int(b["extra_exits"]),
                    lost_orders_estimate=float(b["lost_orders_estimate"]),
                    lost_revenue_estimate=Decimal(str(b["lost_revenue_estimate"])),
                    description=str(b["description"]),
                    measure=str(b["measure"]),
                )
                for b in doc["breaks"]
            ),
            campaigns=tuple(
                CampaignTruth(
                    id=str(c["id"]),
                    channel=str(c["channel"]),
                    platform=str(c["platform"]),
                    description=str(c["description"]),
                    start=None if c["start"] is None else _parse_ts(c["start"]),
                    end=None if c["end"] is None else _parse_ts(c["end"]),
                    weekends_only=bool(c["weekends_only"]),
                )
                for c in doc["campaigns"]
            ),
            counts=CountsTruth(
                events=int(counts["events"]),
                orders=int(counts["orders"]),
                revenue=Decimal(str(counts["revenue"])),
                buyers=int(counts["buyers"]),
                events_by_name={str(k): int(v) for k, v in counts["events_by_name"].items()},
            ),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputDataError(
            f"the truth file {p} is not in the simulator's format ({type(exc).__name__}: "
            f"{exc}). Regenerate it with journeymap.simulate.simulate_shop."
        ) from exc
