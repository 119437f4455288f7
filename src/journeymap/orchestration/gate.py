"""The send gate: the policies a message passes before it enters the outbox.

In order: group (holdout and global control get no marketing) → address → suppression list
(hard bounces, also for transactional mail) → consent for the channel and topic, with a
confirmed double opt-in where required → quiet hours in the recipient's time zone (the caller
waits until they end and tries again) → frequency caps per channel and overall per local day
and week (a capped message is recorded and skipped; the customer advances). Transactional
messages skip group, consent, quiet hours and caps. Every withheld message is recorded as a
``suppressed`` outbox row with its reason, so reports see it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from journeymap.channels.registry import ChannelRegistry
from journeymap.channels.tracking import TrackingLinks
from journeymap.model.campaigns import Campaign, SendStep
from journeymap.orchestration.content import ContentError, render_message
from journeymap.orchestration.policies import (
    ANY_CHANNEL,
    PolicySettings,
    period_start,
    quiet_until,
)
from journeymap.storage.db import (
    campaign_optins,
    campaign_outbox,
    campaign_suppressions,
    consents,
    suppression_key,
)

# Hot statements, built once (building a Core statement costs more than running it on SQLite)
_QUEUED = sa.select(campaign_outbox.c.send_id).where(
    campaign_outbox.c.send_id == sa.bindparam("b_sid")
)
_INSERT = campaign_outbox.insert()
_SUPPRESSED = sa.select(campaign_suppressions.c.reason).where(
    campaign_suppressions.c.channel == sa.bindparam("b_channel"),
    campaign_suppressions.c.address == sa.bindparam("b_address"),
)
_CONSENTS = sa.select(consents.c.channel, consents.c.topic, consents.c.status).where(
    consents.c.profile_id == sa.bindparam("b_pid"),
    consents.c.channel == sa.bindparam("b_channel"),
)
_CONFIRMED = sa.select(campaign_optins.c.confirmed_at).where(
    campaign_optins.c.customer_id == sa.bindparam("b_customer"),
    campaign_optins.c.channel == sa.bindparam("b_channel"),
)
_CAP_ANY = sa.select(campaign_outbox.c.created_at).where(
    campaign_outbox.c.customer_id == sa.bindparam("b_customer"),
    campaign_outbox.c.transactional.is_(False),
    campaign_outbox.c.status.in_(("pending", "sending", "retry", "sent")),
    campaign_outbox.c.created_at
    >= sa.bindparam("b_since", type_=campaign_outbox.c.created_at.type),
)
_CAP_CHANNEL = _CAP_ANY.where(campaign_outbox.c.channel == sa.bindparam("b_channel"))


def send_id(campaign: str, customer_id: str, step: str, entry_key: str) -> str:
    """The deterministic id of one message: the outbox key and the provider idempotency key."""
    blob = "\x1f".join((campaign, customer_id, step, entry_key)).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


class SendGate:
    def __init__(
        self,
        settings: PolicySettings,
        channels: ChannelRegistry,
        tracking: TrackingLinks | None,
    ) -> None:
        self.settings = settings
        self.channels = channels
        self.tracking = tracking

    def send(
        self,
        conn: Connection,
        c: Campaign,
        step: SendStep,
        row: Row[Any],
        context: Mapping[str, Any],
        traits: Mapping[str, Any],
        tz: Any,
        now: dt.datetime,
        pid: int | None,
    ) -> dt.datetime | None:
        """Queue (or record as suppressed) one message; returns a time to retry (quiet hours)."""
        sid = send_id(c.id, row.customer_id, step.id, row.entry_key)
        if conn.execute(_QUEUED, {"b_sid": sid}).first():
            return None  # already queued or recorded: never twice
        channel = self.channels.get(step.channel)
        address_trait = getattr(channel, "address_trait", None)
        found = traits.get(address_trait) if address_trait else None
        # text as the outbox stores it: structured addresses (push subscriptions) as JSON
        address = (
            None
            if found is None
            else found
            if isinstance(found, str)
            else json.dumps(found, sort_keys=True, separators=(",", ":"))
        )
        base = {
            "send_id": sid,
            "entry_id": row.entry_id,
            "campaign": c.id,
            "customer_id": row.customer_id,
            "step": step.id,
            "variant": next(reversed(context.get("variants", {}).values()), None),
            "channel": step.channel,
            "topic": step.topic,
            "transactional": step.transactional,
            "address": address,
            "attempts": 0,
            "created_at": now,
        }

        def record(
            status: str, reason: str | None, payload: Any = None, when: dt.datetime | None = None
        ) -> None:
            conn.execute(
                _INSERT,
                {
                    **base,
                    "status": status,
                    "reason": reason,
                    "payload": json.dumps(payload or {}),
                    "next_attempt_at": when,
                    "sent_at": None,
                    "provider_id": None,
                    "last_error": None,
                },
            )

        if not step.transactional and row.group_name != "treatment":
            record("suppressed", row.group_name)
            return None
        if address_trait and address is None:
            record("suppressed", "no_address")
            return None
        if (
            address is not None
            and conn.execute(
                _SUPPRESSED, {"b_channel": step.channel, "b_address": suppression_key(address)}
            ).first()
        ):
            record("suppressed", "bounced")
            return None
        if not step.transactional:
            reason = self._consent_problem(conn, pid, row.customer_id, step)
            if reason is not None:
                record("suppressed", reason)
                return None
            until = quiet_until(now, tz, self.settings)
            if until is not None:
                return until
            if self._capped(conn, row.customer_id, step.channel, tz, now):
                record("suppressed", "cap")
                return None
        links = (
            self.tracking.links(sid) if self.tracking is not None and not step.transactional else {}
        )
        variables = {
            "profile": dict(traits),
            "event": context.get("event", {}),
            "customer_id": row.customer_id,
            "campaign": c.id,
            "links": links,
            "variant": base["variant"],
        }
        try:
            renderings = render_message(step.message, variables)
        except ContentError as exc:
            record("failed", "content", {"error": str(exc)})
            return None
        record("pending", None, {"renderings": renderings, "links": links}, now)
        return None

    def _consent_problem(
        self, conn: Connection, pid: int | None, customer_id: str, step: SendStep
    ) -> str | None:
        if pid is None:
            return "no_consent"
        found = {
            (r.channel, r.topic): r.status
            for r in conn.execute(_CONSENTS, {"b_pid": pid, "b_channel": step.channel})
        }
        status = found.get((step.channel, step.topic), found.get((step.channel, "*")))
        if status != "granted" and not (
            status is None and step.channel in self.settings.opt_out_channels
        ):
            return "no_consent"
        if step.channel in self.settings.double_opt_in:
            confirmed = conn.execute(
                _CONFIRMED, {"b_customer": customer_id, "b_channel": step.channel}
            ).scalar()
            if confirmed is None:
                return "unconfirmed"
        return None

    def _capped(
        self, conn: Connection, customer_id: str, channel: str, tz: Any, now: dt.datetime
    ) -> bool:
        caps = self.settings.caps
        for scope in (channel, ANY_CHANNEL):
            limits = caps.get(scope) or {}
            if not limits:
                continue
            params: dict[str, Any] = {"b_customer": customer_id, "b_channel": scope}
            starts = {p: period_start(now, tz, p) for p in limits}
            params["b_since"] = min(starts.values())
            stmt = _CAP_ANY if scope == ANY_CHANNEL else _CAP_CHANNEL
            # one read of the customer's recent marketing sends serves every period
            created = [r for (r,) in conn.execute(stmt, params)]
            for period, limit in limits.items():
                if sum(1 for t in created if t >= starts[period]) >= limit:
                    return True
        return False
