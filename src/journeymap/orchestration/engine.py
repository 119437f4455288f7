"""The campaign engine: entries, steps, durable timers and the transactional outbox.

State lives in the operational database (``campaign_entries``, ``campaign_outbox``): an event
or a due timer is processed in **one write transaction** that moves the entry and writes the
messages it sends to the outbox; the worker (``orchestration.worker``) delivers them later.
The outbox key is a deterministic send id per (campaign, customer, step, entry key), so a step
that runs twice (a crash before commit, a replayed event) never sends twice.

Entry: a trigger event enters a customer once per entry key (``order_id``); ``reentry``
decides whether another key (or, without a key, another event) may enter again. Every entry is
assigned a group: ``control`` (the global control group, only for campaigns with marketing
messages), ``holdout`` (the campaign's holdout share) or ``treatment``. Control and holdout
members go through the flow but their marketing messages are recorded as ``suppressed``, so the
report compares like with like. Transactional messages are exempt from holdouts, consent
topics, caps and quiet hours, but never go to a suppressed (hard-bounced) address.

Policies at a send step, in order: group → address → suppression list → consent (granted for
the channel and topic; confirmed double opt-in where required) → quiet hours in the recipient's
time zone (the entry waits until they end and retries the step) → frequency caps per channel
and overall per local day and week (a capped message is skipped and the customer advances).

A ``wait_for`` step without ``on_timeout`` exits the campaign when the timeout passes.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from journeymap.channels.registry import ChannelRegistry
from journeymap.channels.tracking import TrackingLinks
from journeymap.errors import ConfigError
from journeymap.model.campaigns import (
    BranchStep,
    Campaign,
    Condition,
    ExitStep,
    SendStep,
    SplitStep,
    UpdateStep,
    WaitForStep,
    WaitStep,
    WaitUntilStep,
    time_from_trait,
)
from journeymap.orchestration.clock import Clock, SystemClock
from journeymap.orchestration.content import ContentError, render_values
from journeymap.orchestration.gate import SendGate, send_id
from journeymap.orchestration.policies import (
    PolicySettings,
    bucket,
    customer_zone,
    next_local_time,
)
from journeymap.storage.db import (
    OperationalDB,
    campaign_entries,
    campaign_optins,
    campaign_outbox,
    campaign_suppressions,
    suppression_key,
)
from journeymap.storage.db import traits as trait_rows
from journeymap.storage.profiles import IdentityOp, ProfileStore

log = logging.getLogger(__name__)

Group = Literal["treatment", "holdout", "control"]
EntryStatus = Literal["active", "completed", "exited"]
#: Outbox states: ``pending`` → ``sending`` (``sent_at`` set once committed, see
#: ``orchestration.worker``) → ``sent`` | ``retry`` | ``failed``; ``suppressed`` rows record a
#: message a policy withheld (holdout, consent, cap, bounce).
OutboxStatus = Literal["pending", "sending", "retry", "sent", "failed", "suppressed"]
PHASE_EVENT = "Phase Entered"
_MAX_STEPS = 200

# Hot statements, built once (building a Core statement costs more than running it on SQLite)
_ENTRIES_OF = sa.select(campaign_entries).where(
    campaign_entries.c.campaign == sa.bindparam("b_campaign"),
    campaign_entries.c.customer_id == sa.bindparam("b_customer"),
)
_ENTRY = sa.select(campaign_entries).where(
    campaign_entries.c.entry_id == sa.bindparam("b_entry_id")
)
#: the SET clause comes from the parameters' other keys
_UPDATE_ENTRY = campaign_entries.update().where(
    campaign_entries.c.entry_id == sa.bindparam("b_entry_id")
)
_TRAITS_OF = sa.select(trait_rows.c.name, trait_rows.c.value).where(
    trait_rows.c.profile_id == sa.bindparam("b_pid")
)


@dataclass(frozen=True)
class TriggerEvent:
    """An event as the engine sees it (a row of the event lake or a collector message)."""

    customer_id: str
    event: str
    ts: dt.datetime | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)
    event_id: str | None = None

    @classmethod
    def of(cls, value: TriggerEvent | Mapping[str, Any]) -> TriggerEvent:
        if isinstance(value, TriggerEvent):
            return value
        props = value.get("properties") or {}
        if isinstance(props, str):
            props = json.loads(props)
        return cls(
            customer_id=str(value["customer_id"]),
            event=str(value["event"]),
            ts=value.get("ts"),
            properties=dict(props),
            event_id=value.get("event_id"),
        )


@dataclass(frozen=True)
class Entry:
    entry_id: int
    campaign: str
    customer_id: str
    entry_key: str
    status: str
    step: str | None
    group: str
    variant: str | None
    entered_at: dt.datetime
    wake_at: dt.datetime | None
    exit_reason: str | None
    converted_at: dt.datetime | None

    @classmethod
    def of(cls, row: Row[Any]) -> Entry:
        return cls(
            row.entry_id,
            row.campaign,
            row.customer_id,
            row.entry_key,
            row.status,
            row.step,
            row.group_name,
            row.variant,
            row.entered_at,
            row.wake_at,
            row.exit_reason,
            row.converted_at,
        )


def _matches(where: Mapping[str, Sequence[Any]], props: Mapping[str, Any]) -> bool:
    for key, allowed in where.items():
        value = _lookup(props, key)
        if value not in allowed and str(value) not in [str(a) for a in allowed]:
            return False
    return True


def _lookup(data: Mapping[str, Any], dotted: str) -> Any:
    value: Any = data
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def evaluate(cond: Condition, profile: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """Evaluate a branch condition on the profile traits or the trigger event's properties."""
    scope, _, key = cond.field.partition(".")
    value = _lookup(profile if scope == "profile" else event, key)
    op, target = cond.op, cond.value
    if op == "exists":
        return value is not None
    if op == "missing":
        return value is None
    if op == "in":
        options = target if isinstance(target, list) else [target]
        return value in options
    if op in ("eq", "ne"):
        equal = value == target or (value is not None and str(value) == str(target))
        return equal if op == "eq" else not equal
    try:
        a, b = float(value), float(target)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return {"gt": a > b, "gte": a >= b, "lt": a < b, "lte": a <= b}[op]


class CampaignEngine:
    """Runs ``campaigns`` on ``db``; ``handle`` feeds events, ``tick`` fires due timers."""

    def __init__(
        self,
        db: OperationalDB,
        campaigns: Iterable[Campaign],
        channels: ChannelRegistry,
        *,
        settings: PolicySettings | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.db = db
        self.profiles = ProfileStore(db)
        self.campaigns = {c.id: c for c in campaigns}
        self.channels = channels
        self.settings = settings or PolicySettings()
        self.clock: Clock = clock or SystemClock()
        s = self.settings
        self.tracking = (
            TrackingLinks(s.tracking_base_url, s.tracking_secret) if s.tracking_base_url else None
        )
        self.gate = SendGate(self.settings, channels, self.tracking)
        configured = set(channels.names())
        for c in self.campaigns.values():
            for step in c.steps:
                if isinstance(step, SendStep) and step.channel not in configured:
                    raise ConfigError(
                        f"campaign {c.id!r} step {step.id!r} sends on channel {step.channel!r}, "
                        f"which is not configured; configured: {', '.join(sorted(configured))}"
                    )

    # -- public API -----------------------------------------------------------------------
    def handle(self, event: TriggerEvent | Mapping[str, Any]) -> list[int]:
        """Process one event: goals, waits for events, then triggers. Returns touched entries."""
        ev = TriggerEvent.of(event)
        return self.db.write(lambda conn: self._handle(conn, ev))

    def handle_many(
        self, events: Iterable[TriggerEvent | Mapping[str, Any]], batch: int = 500
    ) -> int:
        """Process events in order, ``batch`` per write transaction (one commit, one fsync);
        returns the number of entries touched."""
        todo = [TriggerEvent.of(e) for e in events]
        touched = 0
        for i in range(0, len(todo), batch):
            part = todo[i : i + batch]
            touched += len(self.db.write(lambda conn, part=part: self.handle_in(conn, part)))  # type: ignore[misc]
        return touched

    def handle_in(self, conn: Connection, events: Sequence[TriggerEvent]) -> list[int]:
        """Process ``events`` in order inside the caller's write transaction (the worker adds
        its inbox cursor and the events it records to the same commit); returns the touched
        entry ids."""
        touched: list[int] = []
        for ev in events:
            touched += self._handle(conn, ev)
        return touched

    def due(self, limit: int = 500) -> list[int]:
        """Entries whose timer is due, oldest first."""
        now = self.clock.now()
        with self.db.connect() as conn:
            return [
                int(r)
                for r in conn.execute(
                    sa.select(campaign_entries.c.entry_id)
                    .where(
                        campaign_entries.c.status == "active",
                        campaign_entries.c.wake_at <= now,
                    )
                    .order_by(campaign_entries.c.wake_at, campaign_entries.c.entry_id)
                    .limit(limit)
                ).scalars()
            ]

    def wake_in(self, conn: Connection, entry_ids: Sequence[int]) -> list[int]:
        """Run the due entries ``entry_ids`` inside the caller's write transaction (an entry
        another process moved meanwhile is left alone); returns them."""
        for entry_id in entry_ids:
            self._wake(conn, entry_id)
        return list(entry_ids)

    def tick(self, limit: int = 500, batch: int = 100) -> int:
        """Run the entries whose timer is due, ``batch`` per write transaction; returns how
        many ran."""
        due = self.due(limit)
        for i in range(0, len(due), batch):
            part = due[i : i + batch]
            self.db.write(lambda conn, part=part: self.wake_in(conn, part))  # type: ignore[misc]
        return len(due)

    def entries(self, campaign: str | None = None, customer_id: str | None = None) -> list[Entry]:
        q = sa.select(campaign_entries).order_by(campaign_entries.c.entry_id)
        if campaign is not None:
            q = q.where(campaign_entries.c.campaign == campaign)
        if customer_id is not None:
            q = q.where(campaign_entries.c.customer_id == customer_id)
        with self.db.connect() as conn:
            return [Entry.of(r) for r in conn.execute(q)]

    def outbox(self, customer_id: str | None = None) -> list[dict[str, Any]]:
        q = sa.select(campaign_outbox).order_by(
            campaign_outbox.c.created_at, campaign_outbox.c.entry_id, campaign_outbox.c.step
        )
        if customer_id is not None:
            q = q.where(campaign_outbox.c.customer_id == customer_id)
        with self.db.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def request_opt_in(self, customer_id: str, channel: str = "email") -> str:
        """Start a double opt-in; returns the token the confirmation link carries."""
        token = secrets.token_urlsafe(24)
        now = self.clock.now()

        def run(conn: Connection) -> str:
            conn.execute(
                campaign_optins.delete().where(
                    campaign_optins.c.customer_id == customer_id,
                    campaign_optins.c.channel == channel,
                )
            )
            conn.execute(
                campaign_optins.insert(),
                {
                    "customer_id": customer_id,
                    "channel": channel,
                    "token": token,
                    "requested_at": now,
                    "confirmed_at": None,
                },
            )
            return token

        return self.db.write(run)

    def confirm_opt_in(self, token: str) -> bool:
        now = self.clock.now()

        def run(conn: Connection) -> bool:
            res = conn.execute(
                campaign_optins.update()
                .where(campaign_optins.c.token == token, campaign_optins.c.confirmed_at.is_(None))
                .values(confirmed_at=now)
            )
            return bool(res.rowcount)

        return self.db.write(run)

    def suppress(self, channel: str, address: str, reason: str = "hard_bounce") -> None:
        now = self.clock.now()
        self.db.write(lambda conn: suppress_in(self.db, conn, channel, address, reason, now))

    # -- event processing -----------------------------------------------------------------
    def _handle(self, conn: Connection, ev: TriggerEvent) -> list[int]:
        now = self.clock.now()
        ts = ev.ts or now
        touched: list[int] = []
        for c in self.campaigns.values():
            if c.status != "active":
                continue
            rows = conn.execute(
                _ENTRIES_OF, {"b_campaign": c.id, "b_customer": ev.customer_id}
            ).all()
            if (
                c.goal is not None
                and ev.event == c.goal.event
                and _matches(c.goal.where, ev.properties)
            ):
                for r in rows:
                    if (
                        r.converted_at is None
                        and r.entered_at <= ts <= r.entered_at + c.goal.window
                    ):
                        values: dict[str, Any] = {"converted_at": ts, "updated_at": now}
                        if c.exit_on_goal and r.status == "active":
                            values |= {
                                "status": "exited",
                                "exit_reason": "goal",
                                "exited_at": now,
                                "wake_at": None,
                                "waiting_for": None,
                            }
                        conn.execute(
                            campaign_entries.update()
                            .where(campaign_entries.c.entry_id == r.entry_id)
                            .values(**values)
                        )
                        touched.append(r.entry_id)
            for r in rows:
                if r.status != "active" or r.waiting_for != ev.event or r.step is None:
                    continue
                step = c.step(r.step)
                if isinstance(step, WaitForStep) and _matches(step.where, ev.properties):
                    if c.exit_on_goal and r.entry_id in touched:
                        continue
                    self._run(conn, c, r.entry_id, step.next or c.next_of(step.id), now)
                    touched.append(r.entry_id)
            entered = self._maybe_enter(conn, c, ev, rows, now)
            if entered is not None:
                touched.append(entered)
        return touched

    def _triggered(self, c: Campaign, ev: TriggerEvent) -> bool:
        t = c.trigger
        if t.phase is not None:
            return ev.event == PHASE_EVENT and ev.properties.get("phase") == t.phase
        return ev.event == t.event and _matches(t.where, ev.properties)

    def _maybe_enter(
        self,
        conn: Connection,
        c: Campaign,
        ev: TriggerEvent,
        rows: Sequence[Row[Any]],
        now: dt.datetime,
    ) -> int | None:
        if not self._triggered(c, ev):
            return None
        t = c.trigger
        if t.entry_key is not None:
            key_value = _lookup(ev.properties, t.entry_key)
            if key_value is None:
                log.info("campaign %s: event without %s, not entered", c.id, t.entry_key)
                return None
            key = str(key_value)
        elif c.reentry == "never":
            key = "-"
        else:
            key = ev.event_id or (ev.ts or now).isoformat()
        if any(r.entry_key == key for r in rows):
            return None  # one business object enters once
        if rows and c.reentry == "never":
            return None
        if rows and c.reentry == "after_exit":
            if any(r.status == "active" for r in rows):
                return None
            last = max((r.exited_at or r.updated_at) for r in rows)
            if now < last + c.reentry_cooldown:
                return None
        s = self.settings
        group: Group = "treatment"
        if (
            c.has_marketing()
            and bucket("global", s.global_control_salt, ev.customer_id) < s.global_control
        ):
            group = "control"
        elif bucket("holdout", c.id, ev.customer_id) < c.holdout:
            group = "holdout"
        context = {"event": dict(ev.properties), "event_name": ev.event, "variants": {}}
        res = conn.execute(
            campaign_entries.insert(),
            {
                "campaign": c.id,
                "customer_id": ev.customer_id,
                "entry_key": key,
                "status": "active",
                "step": c.steps[0].id,
                "group_name": group,
                "variant": None,
                "entered_at": ev.ts or now,
                "updated_at": now,
                "wake_at": None,
                "waiting_for": None,
                "exited_at": None,
                "exit_reason": None,
                "converted_at": None,
                "context": json.dumps(context, default=str),
            },
        )
        assert res.inserted_primary_key is not None
        entry_id = int(res.inserted_primary_key[0])
        self._run(conn, c, entry_id, c.steps[0].id, now)
        return entry_id

    def _wake(self, conn: Connection, entry_id: int) -> None:
        now = self.clock.now()
        r = conn.execute(_ENTRY, {"b_entry_id": entry_id}).one()
        if r.status != "active" or r.wake_at is None or r.wake_at > now:
            return  # someone else moved it
        c = self.campaigns.get(r.campaign)
        if c is None or r.step is None:
            self._finish(conn, entry_id, "exited", "campaign_removed", now)
            return
        step = c.step(r.step)
        if isinstance(step, WaitForStep) and r.waiting_for is not None:  # the timeout
            if step.on_timeout is None:
                self._finish(conn, entry_id, "exited", "timeout", now)
                return
            self._run(conn, c, entry_id, step.on_timeout, now)
            return
        self._run(conn, c, entry_id, r.step, now)

    # -- running steps --------------------------------------------------------------------
    def _set(self, conn: Connection, entry_id: int, **values: Any) -> None:
        conn.execute(_UPDATE_ENTRY, {"b_entry_id": entry_id, **values})

    def _finish(
        self, conn: Connection, entry_id: int, status: EntryStatus, reason: str, now: dt.datetime
    ) -> None:
        self._set(
            conn,
            entry_id,
            status=status,
            exit_reason=reason,
            exited_at=now,
            updated_at=now,
            wake_at=None,
            waiting_for=None,
            step=None,
        )

    def _run(
        self, conn: Connection, c: Campaign, entry_id: int, step_id: str | None, now: dt.datetime
    ) -> None:
        """Run steps from ``step_id`` until a wait or the end, in the caller's transaction."""
        row = conn.execute(_ENTRY, {"b_entry_id": entry_id}).one()
        context = json.loads(row.context)
        pid = self.profiles.find_pid(conn, row.customer_id)
        traits: dict[str, Any] = (
            {n: json.loads(v) for n, v in conn.execute(_TRAITS_OF, {"b_pid": pid})}
            if pid is not None
            else {}
        )
        tz = customer_zone(traits, self.settings)
        for _ in range(_MAX_STEPS):
            if step_id is None:
                self._finish(conn, entry_id, "completed", "end", now)
                return
            step = c.step(step_id)
            nxt = step.next or c.next_of(step.id)
            if isinstance(step, WaitStep):
                self._set(
                    conn,
                    entry_id,
                    step=nxt,
                    wake_at=now + step.duration,
                    waiting_for=None,
                    updated_at=now,
                )
                if nxt is None:
                    self._finish(conn, entry_id, "completed", "end", now)
                return
            if isinstance(step, WaitUntilStep):
                own = time_from_trait(traits.get(step.time_trait)) if step.time_trait else None
                self._set(
                    conn,
                    entry_id,
                    step=nxt,
                    wake_at=next_local_time(now, own or step.time, tz),
                    waiting_for=None,
                    updated_at=now,
                )
                if nxt is None:
                    self._finish(conn, entry_id, "completed", "end", now)
                return
            if isinstance(step, WaitForStep):
                self._set(
                    conn,
                    entry_id,
                    step=step.id,
                    wake_at=now + step.timeout,
                    waiting_for=step.event,
                    updated_at=now,
                )
                return
            if isinstance(step, ExitStep):
                self._finish(conn, entry_id, "exited", "exit", now)
                return
            if isinstance(step, BranchStep):
                ok = evaluate(step.if_, traits, context["event"])
                step_id = (step.then if ok else step.else_) or nxt
                continue
            if isinstance(step, SplitStep):
                total = sum(v.share for v in step.variants)
                x = bucket("split", c.id, step.id, row.customer_id, row.entry_key) * total
                chosen = step.variants[-1]
                for v in step.variants:
                    if x < v.share:
                        chosen = v
                        break
                    x -= v.share
                context["variants"][step.id] = chosen.id
                self._set(
                    conn, entry_id, variant=chosen.id, context=json.dumps(context, default=str)
                )
                step_id = chosen.next or nxt
                continue
            if isinstance(step, UpdateStep):
                try:
                    values = render_values(
                        step.set,
                        {
                            "profile": traits,
                            "event": context["event"],
                            "customer_id": row.customer_id,
                        },
                    )
                except ContentError as exc:
                    log.warning("campaign %s step %s: %s", c.id, step.id, exc)
                    step_id = nxt
                    continue
                op = IdentityOp(
                    kind="identify",
                    event_id=f"campaign:{send_id(c.id, row.customer_id, step.id, row.entry_key)}",
                    source="campaign",
                    ts=now,
                    user_id=row.customer_id,
                    traits=values,
                )
                self.profiles.apply_in(conn, [op])
                traits.update(values)
                step_id = nxt
                continue
            assert isinstance(step, SendStep)
            deferred = self.gate.send(conn, c, step, row, context, traits, tz, now, pid)
            if deferred is not None:
                self._set(
                    conn, entry_id, step=step.id, wake_at=deferred, waiting_for=None, updated_at=now
                )
                return
            step_id = nxt
        raise ConfigError(
            f"campaign {c.id!r}: more than {_MAX_STEPS} steps without a wait (a loop?)"
        )


def suppress_in(
    db: OperationalDB, conn: Connection, channel: str, address: str, reason: str, now: dt.datetime
) -> None:
    """Put ``address`` on ``channel``'s suppression list (idempotent)."""
    conn.execute(
        db.insert_ignore(campaign_suppressions, ["channel", "address"]),
        {"channel": channel, "address": suppression_key(address), "reason": reason, "ts": now},
    )


def erase_customers(conn: Connection, customer_ids: Sequence[str]) -> dict[str, int]:
    """GDPR erasure of campaign state (entries, outbox, opt-ins) in the caller's transaction;
    the suppression list keeps bounced addresses (a legal basis: not mailing them again)."""
    ids = list(customer_ids)
    counts = {}
    for table in (campaign_entries, campaign_outbox, campaign_optins):
        res = conn.execute(table.delete().where(table.c.customer_id.in_(ids)))
        counts[table.name] = int(res.rowcount or 0)
    return counts
