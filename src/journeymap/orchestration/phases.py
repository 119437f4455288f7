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

from sqlalchemy.engine import Connection

from journeymap.model.spec import COLUMN_CONDITIONS, JourneySpec, Match, Touchpoint
from journeymap.orchestration.engine import PHASE_EVENT, TriggerEvent
from journeymap.storage.profiles import IdentityOp, ProfileStore

PHASE_TRAIT = "journey_phase"
#: when the customer entered it (ISO 8601): events before this time are history, so a replayed
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
    """Turns incoming events into ``Phase Entered`` events (see the module docstring).

    ``observe`` runs in transactions of its own; ``observe_in`` in the caller's write
    transaction (the worker's feed: the trait moves with the feed's cursor)."""

    def __init__(self, spec: JourneySpec, profiles: ProfileStore) -> None:
        self.spec = spec
        self.profiles = profiles
        self._current: dict[str, tuple[str | None, dt.datetime | None]] = {}

    def forget(self) -> None:
        """Drop the cached phases (after a rolled-back transaction)."""
        self._current.clear()

    def observe(self, events: Iterable[TriggerEvent | Mapping[str, Any]]) -> list[TriggerEvent]:
        """The phase entries ``events`` (in time order) cause; updates the trait."""
        rows = [_row(e) for e in events]

        def run(conn: Connection) -> list[TriggerEvent]:
            return self.observe_in(conn, rows)

        try:
            return self.profiles.db.write(run)
        except BaseException:
            self.forget()
            raise

    def observe_in(
        self, conn: Connection, events: Iterable[TriggerEvent | Mapping[str, Any]]
    ) -> list[TriggerEvent]:
        """``observe`` in the caller's transaction. Events are lake rows (``event``,
        ``channel``, ``campaign``, ``properties``, the promoted columns) or ``TriggerEvent``s
        (channel and campaign then come from their properties)."""
        entered: list[TriggerEvent] = []
        ops: list[IdentityOp] = []
        for raw in events:
            row = _row(raw)
            customer, ts = str(row["customer_id"]), row.get("ts")
            if row["event"] == PHASE_EVENT:
                continue
            tp = touchpoint_of(self.spec, row)
            if tp is None:
                continue
            previous, since = self._phase(conn, customer)
            if tp.phase == previous or (since is not None and ts is not None and ts < since):
                continue
            self._current[customer] = (tp.phase, ts)
            key = row.get("event_id") or f"{customer}-{ts}"
            entered.append(
                TriggerEvent(
                    customer_id=customer,
                    event=PHASE_EVENT,
                    ts=ts,
                    properties={"phase": tp.phase, "previous_phase": previous, "via": tp.id},
                    event_id=f"phase-{key}",
                )
            )
            if ts is not None:
                ops.append(
                    IdentityOp(
                        kind="identify",
                        event_id=f"phase-{key}",
                        source="journeymap",
                        ts=ts,
                        user_id=customer,
                        traits={PHASE_TRAIT: tp.phase, PHASE_SINCE_TRAIT: ts.isoformat()},
                    )
                )
        if ops:
            self.profiles.apply_in(conn, ops)
        return entered

    def _phase(self, conn: Connection, customer_id: str) -> tuple[str | None, dt.datetime | None]:
        if customer_id not in self._current:
            pid = self.profiles.find_pid(conn, customer_id)
            traits = self.profiles.profile_in(conn, pid).traits if pid is not None else {}
            phase, since = traits.get(PHASE_TRAIT), traits.get(PHASE_SINCE_TRAIT)
            self._current[customer_id] = (
                str(phase) if phase is not None else None,
                dt.datetime.fromisoformat(since) if isinstance(since, str) else None,
            )
        return self._current[customer_id]


def _row(event: TriggerEvent | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(event, TriggerEvent):
        return {
            **_as_mapping(event),
            "customer_id": event.customer_id,
            "ts": event.ts,
            "event_id": event.event_id,
        }
    row = dict(event)
    if "channel" not in row:  # a TriggerEvent-shaped mapping: channel etc. in properties
        trigger = TriggerEvent.of(row)
        return _row(trigger)
    return row
