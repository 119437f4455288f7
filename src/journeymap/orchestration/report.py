"""The campaign report: conversion of treatment vs holdout, uplift and its 95 % interval.

Every entry belongs to a group (``treatment``, ``holdout``, ``control``); an entry converted if
the goal event came within the goal window. Uplift is the difference of conversion rates,
treatment minus holdout (the campaign's own control), with Newcombe's hybrid score interval
(method 10 of Newcombe 1998, built from two Wilson intervals): unlike the Wald interval it
stays inside [-1, 1] and behaves with few conversions.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

import sqlalchemy as sa

from journeymap.storage.db import OperationalDB, campaign_entries, campaign_outbox

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k / n``."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def newcombe(k1: int, n1: int, k2: int, n2: int, z: float = Z95) -> tuple[float, float]:
    """95 % interval of ``k1/n1 - k2/n2`` (Newcombe's hybrid score method)."""
    p1 = k1 / n1 if n1 else 0.0
    p2 = k2 / n2 if n2 else 0.0
    l1, u1 = wilson(k1, n1, z)
    l2, u2 = wilson(k2, n2, z)
    d = p1 - p2
    lower = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    upper = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return (lower, upper)


ENGAGEMENT = {
    "Message Opened": "opened",
    "Message Link Clicked": "clicked",
    "Unsubscribed": "unsubscribed",
    "Message Bounced": "bounced",
}


@dataclass(frozen=True)
class GroupResult:
    """One group (``treatment``, ``holdout``, ``control``) or one variant of a group.

    ``sends`` are messages the worker tried to deliver (not those a policy withheld),
    ``messages_sent`` the delivered ones; opens, clicks, unsubscribes and bounces count
    distinct messages with that feedback event in the lake. ``revenue`` is the value of the
    goal events that converted the entries.
    """

    group: str
    entries: int
    conversions: int
    messages_sent: int
    messages_suppressed: int
    variant: str | None = None
    sends: int = 0
    failed: int = 0
    opened: int = 0
    clicked: int = 0
    unsubscribed: int = 0
    bounced: int = 0
    revenue: Decimal = Decimal(0)

    @property
    def rate(self) -> float:
        return self.conversions / self.entries if self.entries else 0.0

    def rate_of(self, count: int) -> float:
        """``count`` per delivered message (open rate, click rate …)."""
        return count / self.messages_sent if self.messages_sent else 0.0


@dataclass(frozen=True)
class Uplift:
    """Conversion rate of ``variant`` (``None``: the whole treatment group) minus the
    holdout's, with its 95 % interval."""

    variant: str | None
    uplift: float
    low: float
    high: float

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0


@dataclass(frozen=True)
class CampaignReport:
    campaign: str
    groups: dict[str, GroupResult]
    uplift: float | None
    uplift_low: float | None
    uplift_high: float | None
    #: per (group, variant): the rows of the report table
    variants: list[GroupResult] = field(default_factory=list)
    #: per treatment variant against the holdout (only with two or more variants)
    variant_uplift: list[Uplift] = field(default_factory=list)

    @property
    def significant(self) -> bool:
        """The interval excludes zero."""
        return self.uplift_low is not None and (
            self.uplift_low > 0 or (self.uplift_high is not None and self.uplift_high < 0)
        )


Key = tuple[str, str | None]


def campaign_report(
    db: OperationalDB,
    campaign: str,
    *,
    feedback: Iterable[tuple[str, str]] = (),
    goal_revenue: Mapping[tuple[str, dt.datetime], Decimal] | None = None,
) -> CampaignReport:
    """The report of ``campaign`` from the operational database, plus what the lake knows:
    ``feedback`` as (event name, send id) pairs of the campaign's closing-the-loop events,
    ``goal_revenue`` the revenue of goal events by (customer id, time)."""
    with db.connect() as conn:
        entries = conn.execute(
            sa.select(
                campaign_entries.c.group_name,
                campaign_entries.c.variant,
                campaign_entries.c.customer_id,
                campaign_entries.c.converted_at,
            ).where(campaign_entries.c.campaign == campaign)
        ).all()
        sends = conn.execute(
            sa.select(
                campaign_entries.c.group_name,
                campaign_entries.c.variant,
                campaign_outbox.c.send_id,
                campaign_outbox.c.status,
            )
            .join(campaign_entries, campaign_entries.c.entry_id == campaign_outbox.c.entry_id)
            .where(campaign_outbox.c.campaign == campaign)
        ).all()
    counts: dict[Key, Counter[str]] = defaultdict(Counter)
    revenue: dict[Key, Decimal] = defaultdict(Decimal)
    for group, variant, customer, converted_at in entries:
        c = counts[(group, variant)]
        c["entries"] += 1
        if converted_at is not None:
            c["conversions"] += 1
            revenue[(group, variant)] += (goal_revenue or {}).get(
                (customer, converted_at), Decimal(0)
            )
    by_send: dict[str, Key] = {}
    for group, variant, sid, status in sends:
        key = (group, variant)
        by_send[sid] = key
        counts[key][status] += 1
    seen: set[tuple[str, str]] = set()
    for event, sid in feedback:
        kind = ENGAGEMENT.get(event)
        if kind is None or sid not in by_send or (kind, sid) in seen:
            continue
        seen.add((kind, sid))
        counts[by_send[sid]][kind] += 1

    def result(group: str, variant: str | None, c: Counter[str], value: Decimal) -> GroupResult:
        return GroupResult(
            group=group,
            variant=variant,
            entries=c["entries"],
            conversions=c["conversions"],
            messages_sent=c["sent"],
            messages_suppressed=c["suppressed"],
            sends=c["sent"] + c["failed"] + c["pending"] + c["sending"] + c["retry"],
            failed=c["failed"],
            opened=c["opened"],
            clicked=c["clicked"],
            unsubscribed=c["unsubscribed"],
            bounced=c["bounced"],
            revenue=value,
        )

    variants = [result(g, v, c, revenue[(g, v)]) for (g, v), c in sorted(counts.items(), key=_key)]
    groups: dict[str, GroupResult] = {}
    for name in sorted({g for g, _ in counts}):
        total: Counter[str] = Counter()
        value = Decimal(0)
        for (g, v), c in counts.items():
            if g == name:
                total.update(c)
                value += revenue[(g, v)]
        groups[name] = result(name, None, total, value)
    t, h = groups.get("treatment"), groups.get("holdout")
    if t is None or h is None or not t.entries or not h.entries:
        return CampaignReport(campaign, groups, None, None, None, variants)
    low, high = newcombe(t.conversions, t.entries, h.conversions, h.entries)
    arms = [r for r in variants if r.group == "treatment" and r.entries]
    per_variant = (
        [
            Uplift(
                r.variant,
                r.rate - h.rate,
                *newcombe(r.conversions, r.entries, h.conversions, h.entries),
            )
            for r in arms
        ]
        if len(arms) > 1
        else []
    )
    return CampaignReport(campaign, groups, t.rate - h.rate, low, high, variants, per_variant)


def _key(item: tuple[Key, Counter[str]]) -> tuple[int, str]:
    (group, variant), _ = item
    order = {"treatment": 0, "holdout": 1, "control": 2}
    return (order.get(group, 3), variant or "")
