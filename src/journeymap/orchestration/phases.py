"""Phase entries as they happen: the spec's touchpoint rules applied to each incoming event.

Campaigns that trigger on a phase (``trigger: {phase: preference}``) need a ``Phase Entered``
event whenever a customer's journey moves into another phase. The journey table knows phases
after the fact (``Journeymap.simulate_campaigns`` derives the entries from it); the worker
needs them live. ``PhaseTracker`` applies the same first-match touchpoint rules as the
journey table (``analytics.journey.match_condition``, here on one event in Python) and keeps
each customer's current phase as the profile trait ``journey_phase`` (so the decide API and
message templates can use it too). An event whose touchpoint lies in another phase than the
trait's yields one ``Phase Entered`` event with ``phase`` and ``previous_phase``.

The trait is written with the event's id, so replaying a batch (a worker restarted after a
crash) changes nothing; the emitted events have deterministic ids, so the engine's entry keys
and the inbox deduplicate them.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from typing import Any

from journeymap.model.spec import COLUMN_CONDITIONS, JourneySpec, Match, Touchpoint
from journeymap.orchestration.engine import PHASE_EVENT, TriggerEvent
from journeymap.storage.profiles import IdentityOp, ProfileStore

PHASE_TRAIT = "journey_phase"
#: when the customer entered it (ISO 8601): events up to this time are history, so a replayed
#: batch (a worker restarted after a crash) enters nothing twice
PHASE_SINCE_TRAIT = "journey_phase_since"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def matches(rule: Match, event: Mapping[str, Any]) -> bool:
    """Whether one event (a lake row or a ``TriggerEvent``-like mapping with ``event``,
    ``channel``, ``campaign`` and ``properties``) matches ``rule``, as the journey table
    decides it."""
    if rule.is_empty():
        return False
    if rule.event and event.get("event") not in rule.event:
        return False
    if rule.channel and event.get("channel") not in rule.channel:
        return False
    if rule.campaign and event.get("campaign") not in rule.campaign:
        return False
    props = event.get("properties") or {}
    if isinstance(props, str):
        props = json.loads(props)
    for key, values in rule.where.items():
        value = event.get(key) if key in COLUMN_CONDITIONS else None
        if value is None:
            value = props.get(key)
        if value is None or _text(value) not in {_text(v) for v in values}:
            return False
    return True


def touchpoint_of(spec: JourneySpec, event: Mapping[str, Any]) -> Touchpoint | None:
    """The first touchpoint of the spec whose rule matches ``event``."""
    for tp in spec.touchpoints:
        if matches(tp.rule(), event):
            return tp
    return None


def _as_mapping(ev: TriggerEvent) -> dict[str, Any]:
    props = dict(ev.properties)
    return {
        "event": ev.event,
        "channel": props.get("channel"),
        "campaign": props.get("campaign"),
        "properties": props,
        **{k: props.get(k) for k in COLUMN_CONDITIONS},
    }


class PhaseTracker:
    """Turns incoming events into ``Phase Entered`` events (see the module docstring)."""

    def __init__(self, spec: JourneySpec, profiles: ProfileStore) -> None:
        self.spec = spec
        self.profiles = profiles
        self._current: dict[str, tuple[str | None, dt.datetime | None]] = {}

    def current(self, customer_id: str) -> tuple[str | None, dt.datetime | None]:
        """The customer's phase and since when."""
        if customer_id not in self._current:
            profile = self.profiles.find(customer_id)
            traits = profile.traits if profile is not None else {}
            phase, since = traits.get(PHASE_TRAIT), traits.get(PHASE_SINCE_TRAIT)
            self._current[customer_id] = (
                str(phase) if phase is not None else None,
                dt.datetime.fromisoformat(since) if isinstance(since, str) else None,
            )
        return self._current[customer_id]

    def observe(self, events: Iterable[TriggerEvent | Mapping[str, Any]]) -> list[TriggerEvent]:
        """The phase entries ``events`` (in time order) cause; updates the trait."""
        entered: list[TriggerEvent] = []
        ops: list[IdentityOp] = []
        for raw in events:
            ev = TriggerEvent.of(raw)
            if ev.event == PHASE_EVENT:
                continue
            tp = touchpoint_of(self.spec, _as_mapping(ev))
            if tp is None:
                continue
            previous, since = self.current(ev.customer_id)
            if tp.phase == previous or (since is not None and ev.ts is not None and ev.ts <= since):
                continue
            self._current[ev.customer_id] = (tp.phase, ev.ts)
            key = ev.event_id or f"{ev.customer_id}-{ev.ts}"
            entered.append(
                TriggerEvent(
                    customer_id=ev.customer_id,
                    event=PHASE_EVENT,
                    ts=ev.ts,
                    properties={"phase": tp.phase, "previous_phase": previous, "via": tp.id},
                    event_id=f"phase-{key}",
                )
            )
            if ev.ts is not None:
                ops.append(
                    IdentityOp(
                        kind="identify",
                        event_id=f"phase-{key}",
                        source="journeymap",
                        ts=ev.ts,
                        user_id=ev.customer_id,
                        traits={PHASE_TRAIT: tp.phase, PHASE_SINCE_TRAIT: ev.ts.isoformat()},
                    )
                )
        if ops:
            self.profiles.apply(ops)
        return entered
