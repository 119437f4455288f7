"""Thompson sampling on observed conversion, per (offer, persona).

Each eligible offer draws a conversion rate from its posterior ``Beta(1 + conversions, 1 +
exposures − conversions)`` for the customer's persona; the highest draw wins. An offer with
few exposures has a wide posterior and wins now and then (exploration); one that converts
better wins more and more often (exploitation) — Chapelle & Li, "An Empirical Evaluation of
Thompson Sampling" (NIPS 2011). The counts live in memory (seeded from ``offer_stats``, bumped
at every exposure, replaced by the database's at every refresh); the generator is seedable so
tests replay the same draws.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


@dataclass
class Counts:
    exposures: int = 0
    conversions: int = 0


class ThompsonSampler:
    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self._counts: dict[tuple[str, str], Counts] = {}
        self._lock = threading.Lock()

    def counts(self, offer: str, persona: str) -> Counts:
        c = self._counts.get((offer, persona))
        return Counts(c.exposures, c.conversions) if c is not None else Counts()

    def replace(self, counts: Mapping[tuple[str, str], Counts]) -> None:
        """Take the counts of the database (every process's exposures and conversions)."""
        with self._lock:
            self._counts = {k: Counts(v.exposures, v.conversions) for k, v in counts.items()}

    def add(self, offer: str, persona: str, *, exposures: int = 0, conversions: int = 0) -> None:
        with self._lock:
            c = self._counts.setdefault((offer, persona), Counts())
            c.exposures += exposures
            c.conversions += conversions

    def draw(self, offers: Iterable[str], persona: str) -> list[tuple[float, str]]:
        """One posterior draw per offer, best first."""
        with self._lock:
            draws = []
            for offer in offers:
                c = self._counts.get((offer, persona)) or Counts()
                failures = max(c.exposures - c.conversions, 0)
                draws.append((self._rng.betavariate(1 + c.conversions, 1 + failures), offer))
        draws.sort(key=lambda d: -d[0])
        return draws

    def choose(self, offers: Sequence[str], persona: str) -> str:
        return self.draw(offers, persona)[0][1]
