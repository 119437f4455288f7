"""A simulated fashion web shop with known ground truth, for the demo and for tests.

``simulate_shop`` writes the events of customers with latent personas, campaigns, surveys and
injected journey breaks as Parquet (``EVENT_SCHEMA``) plus ``truth.json``; ``load_truth`` reads
the truth back, so tests can check that the analytics recover it.
"""

from __future__ import annotations

from journeymap.simulate.shop import SimulationResult, simulate_shop
from journeymap.simulate.truth import (
    BreakTruth,
    CampaignTruth,
    CountsTruth,
    PersonaTruth,
    Truth,
    load_truth,
)

__all__ = [
    "BreakTruth",
    "CampaignTruth",
    "CountsTruth",
    "PersonaTruth",
    "SimulationResult",
    "Truth",
    "load_truth",
    "simulate_shop",
]
