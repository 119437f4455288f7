"""The campaign report: conversion of treatment vs holdout, uplift and its 95 % interval.

Every entry belongs to a group (``treatment``, ``holdout``, ``control``); an entry converted if
the goal event came within the goal window. Uplift is the difference of conversion rates,
treatment minus holdout (the campaign's own control), with Newcombe's hybrid score interval
(method 10 of Newcombe 1998, built from two Wilson intervals): unlike the Wald interval it
stays inside [-1, 1] and behaves with few conversions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


@dataclass(frozen=True)
class GroupResult:
    group: str
    entries: int
    conversions: int
    messages_sent: int
    messages_suppressed: int

    @property
    def rate(self) -> float:
        return self.conversions / self.entries if self.entries else 0.0


@dataclass(frozen=True)
class CampaignReport:
    campaign: str
    groups: dict[str, GroupResult]
    uplift: float | None
    uplift_low: float | None
    uplift_high: float | None

    @property
    def significant(self) -> bool:
        """The interval excludes zero."""
        return self.uplift_low is not None and (
            self.uplift_low > 0 or (self.uplift_high is not None and self.uplift_high < 0)
        )


def campaign_report(db: OperationalDB, campaign: str) -> CampaignReport:
    with db.connect() as conn:
        entries = conn.execute(
            sa.select(
                campaign_entries.c.group_name,
                sa.func.count(),
                sa.func.count(campaign_entries.c.converted_at),
            )
            .where(campaign_entries.c.campaign == campaign)
            .group_by(campaign_entries.c.group_name)
        ).all()
        sends = conn.execute(
            sa.select(campaign_entries.c.group_name, campaign_outbox.c.status, sa.func.count())
            .join(campaign_entries, campaign_entries.c.entry_id == campaign_outbox.c.entry_id)
            .where(campaign_outbox.c.campaign == campaign)
            .group_by(campaign_entries.c.group_name, campaign_outbox.c.status)
        ).all()
    sent: dict[str, int] = {}
    suppressed: dict[str, int] = {}
    for group, status, n in sends:
        if status == "sent":
            sent[group] = sent.get(group, 0) + int(n)
        elif status == "suppressed":
            suppressed[group] = suppressed.get(group, 0) + int(n)
    groups = {
        g: GroupResult(g, int(n), int(k), sent.get(g, 0), suppressed.get(g, 0))
        for g, n, k in entries
    }
    t, h = groups.get("treatment"), groups.get("holdout")
    if t is None or h is None or not t.entries or not h.entries:
        return CampaignReport(campaign, groups, None, None, None)
    low, high = newcombe(t.conversions, t.entries, h.conversions, h.entries)
    return CampaignReport(campaign, groups, t.rate - h.rate, low, high)
