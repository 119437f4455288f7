"""Preview and simulate campaigns without sending anything (``journeymap campaigns
preview|simulate``).

``preview`` renders every send step of a campaign for a sample profile and event.
``simulate`` replays events through the real engine on a throw-away SQLite database with a fake
clock and dummy channels: every customer of the events gets a profile with consent (granted and
confirmed) so the flow, waits, quiet hours and caps show as they would for consenting
customers; the result counts entries, exits and messages per campaign, step and outcome.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from journeymap.channels.dummy import DummyChannel
from journeymap.channels.registry import ChannelRegistry
from journeymap.model.campaigns import Campaign, SendStep
from journeymap.orchestration.clock import FakeClock
from journeymap.orchestration.content import render_message
from journeymap.orchestration.engine import CampaignEngine, TriggerEvent
from journeymap.orchestration.policies import PolicySettings
from journeymap.orchestration.worker import OutboxWorker
from journeymap.storage.db import OperationalDB
from journeymap.storage.profiles import ConsentChange, IdentityOp, ProfileStore


def preview(
    campaign: Campaign,
    profile: Mapping[str, Any] | None = None,
    event: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Each send step rendered: ``{"step", "channel", "renderings"}``."""
    variables = {
        "profile": dict(profile or {}),
        "event": dict(event or {}),
        "customer_id": str((profile or {}).get("customer_id", "preview")),
        "campaign": campaign.id,
        "links": {"unsubscribe": "https://example.invalid/u/preview"},
        "variant": None,
    }
    return [
        {"step": s.id, "channel": s.channel, "renderings": render_message(s.message, variables)}
        for s in campaign.steps
        if isinstance(s, SendStep)
    ]


@dataclass
class SimulationResult:
    entries: Counter[tuple[str, str]] = field(default_factory=Counter)  # (campaign, group)
    exits: Counter[tuple[str, str]] = field(default_factory=Counter)  # (campaign, reason)
    #: entries that reached the goal within its window: (campaign, group)
    conversions: Counter[tuple[str, str]] = field(default_factory=Counter)
    messages: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """(campaign, step, outcome): outcome is ``sent``, ``failed`` or a suppression reason."""


def simulate(
    campaigns: Iterable[Campaign],
    events: Iterable[TriggerEvent | Mapping[str, Any]],
    *,
    settings: PolicySettings | None = None,
    step: dt.timedelta = dt.timedelta(hours=1),
    tail: dt.timedelta = dt.timedelta(days=14),
    traits: Mapping[str, Mapping[str, Any]] | None = None,
) -> SimulationResult:
    """Replay ``events`` (any order; sorted by time) through ``campaigns``."""
    campaigns = list(campaigns)
    evs = sorted((TriggerEvent.of(e) for e in events), key=lambda e: e.ts or dt.datetime.min)
    if not evs or evs[0].ts is None:
        return SimulationResult()
    channel_names = {s.channel for c in campaigns for s in c.steps if isinstance(s, SendStep)}
    registry = ChannelRegistry()
    for name in sorted(channel_names):
        ch = DummyChannel()
        ch.name = name
        registry.add(ch)
    settings = settings or PolicySettings()
    clock = FakeClock(evs[0].ts)
    # a throw-away database: on tmpfs where there is one, so commits cost no disk flushes
    shm = Path("/dev/shm")
    scratch = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="journeymap-sim-", dir=scratch) as tmp:
        db = OperationalDB(f"sqlite:///{Path(tmp) / 'sim.db'}")
        try:
            customers = sorted({e.customer_id for e in evs})
            ProfileStore(db).apply(
                [
                    IdentityOp(
                        kind="identify",
                        event_id=f"sim-{cid}",
                        source="simulate",
                        ts=clock.now(),
                        user_id=cid,
                        traits=dict((traits or {}).get(cid, {})),
                        consent=[ConsentChange(n, "*", "granted") for n in channel_names],
                    )
                    for cid in customers
                ]
            )
            engine = CampaignEngine(db, campaigns, registry, settings=settings, clock=clock)
            for cid in customers:
                for name in settings.double_opt_in:
                    engine.confirm_opt_in(engine.request_opt_in(cid, name))
            worker = OutboxWorker(db, registry, settings=settings, clock=clock, engine=engine)
            end = (evs[-1].ts or clock.now()) + tail
            i = 0
            while clock.now() <= end:
                start = i
                while i < len(evs) and (evs[i].ts or clock.now()) <= clock.now():
                    i += 1
                if i > start:
                    engine.handle_many(evs[start:i])
                worker.run_once(limit=10_000)
                clock.advance(step)
            result = SimulationResult()
            for e in engine.entries():
                result.entries[(e.campaign, e.group)] += 1
                if e.exit_reason:
                    result.exits[(e.campaign, e.exit_reason)] += 1
                if e.converted_at is not None:
                    result.conversions[(e.campaign, e.group)] += 1
            for r in engine.outbox():
                outcome = r["reason"] if r["status"] == "suppressed" else r["status"]
                result.messages[(r["campaign"], r["step"], str(outcome))] += 1
            return result
        finally:
            db.close()
