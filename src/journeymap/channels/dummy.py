"""A fault-injecting fake channel (dlt's dummy destination): seeded failure probabilities."""

from __future__ import annotations

import random
from collections import Counter

from journeymap.channels.base import (
    BaseChannel,
    DeliveryResult,
    OutboundMessage,
    TerminalChannelError,
    TransientChannelError,
)


class DummyChannel(BaseChannel):
    """Records what it "delivers"; fails with the given probabilities (seeded), or along a
    fixed ``script`` of outcomes (``"ok"``, ``"transient"``, ``"terminal"``, ``"bounce"``,
    ``"crash"``) consumed one per call before the probabilities apply."""

    def __init__(
        self,
        *,
        transient: float = 0.0,
        terminal: float = 0.0,
        seed: int = 0,
        script: list[str] | None = None,
        address_trait: str | None = None,
        deduplicates: bool = False,
    ) -> None:
        self.name = "dummy"
        self.transient = transient
        self.terminal = terminal
        self.rng = random.Random(seed)
        self.script = list(script or [])
        self.address_trait = address_trait
        self.deduplicates = deduplicates
        self.delivered: list[OutboundMessage] = []
        self.calls: Counter[str] = Counter()

    def send(self, message: OutboundMessage) -> DeliveryResult:
        self.calls[message.send_id] += 1
        outcome = self.script.pop(0) if self.script else None
        if outcome is None:
            r = self.rng.random()
            outcome = (
                "transient"
                if r < self.transient
                else "terminal"
                if r < self.transient + self.terminal
                else "ok"
            )
        if outcome == "transient":
            raise TransientChannelError(f"dummy: transient failure of {message.send_id}")
        if outcome == "terminal":
            raise TerminalChannelError(f"dummy: rejected {message.send_id}", "rejected")
        if outcome == "bounce":
            raise TerminalChannelError(f"dummy: {message.address} bounced", "hard_bounce")
        if outcome == "crash":
            raise RuntimeError("dummy: unexpected failure")
        self.delivered.append(message)
        return DeliveryResult(message.send_id, provider_id=f"dummy-{len(self.delivered)}")
