"""Closing the loop: opens, clicks, unsubscribes and conversions as events.

The server's tracking endpoints (``/t/o``, ``/t/c``, ``/u``; see ``channels.tracking``) call
these methods; each returns an event (keys of ``EVENT_SCHEMA``, ``feedback_table`` makes the
table) tied to the campaign, step and variant of the send, for the caller to append to the
lake. Event ids are deterministic, so a pixel loaded twice is one event after the lake's
deduplication. An unsubscribe revokes consent for the send's channel and topic.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

import sqlalchemy as sa

from journeymap.channels.tracking import TrackingLinks
from journeymap.errors import JourneymapError
from journeymap.orchestration.clock import Clock, SystemClock
from journeymap.orchestration.worker import FEEDBACK_EVENTS, feedback_event
from journeymap.storage.db import OperationalDB, campaign_entries, campaign_outbox
from journeymap.storage.profiles import ConsentChange, ProfileStore


class TrackingError(JourneymapError, ValueError):
    """A tracking URL with a wrong signature or an unknown send id."""


class LoopRecorder:
    def __init__(self, db: OperationalDB, tracking: TrackingLinks, clock: Clock | None = None):
        self.db = db
        self.tracking = tracking
        self.clock: Clock = clock or SystemClock()

    def _row(self, send_id: str) -> Any:
        with self.db.connect() as conn:
            row = conn.execute(
                sa.select(campaign_outbox).where(campaign_outbox.c.send_id == send_id)
            ).first()
        if row is None:
            raise TrackingError(f"unknown send id {send_id!r}")
        return row

    def _check(self, signature: str, *parts: str) -> None:
        if not self.tracking.verify(signature, *parts):
            raise TrackingError(f"bad signature for send {parts[0]!r}")

    def opened(self, send_id: str, signature: str) -> dict[str, Any]:
        self._check(signature, send_id, "open")
        return feedback_event(self._row(send_id), "opened", self.clock.now())

    def clicked(self, send_id: str, url: str, signature: str) -> dict[str, Any]:
        """The click event; the endpoint then redirects to ``url`` (signed, so no open
        redirect)."""
        self._check(signature, send_id, url)
        event = feedback_event(self._row(send_id), "clicked", self.clock.now(), link_url=url)
        digest = hashlib.sha256(url.encode()).hexdigest()[:12]
        event["event_id"] = f"{event['event_id']}-{digest}"
        return event

    def unsubscribed(self, send_id: str, signature: str) -> dict[str, Any]:
        """Revoke consent for the send's channel and topic (RFC 8058 one-click POST)."""
        self._check(signature, send_id, "unsubscribe")
        row = self._row(send_id)
        now = self.clock.now()
        ProfileStore(self.db).set_consent(
            row.customer_id,
            [ConsentChange(row.channel, row.topic, "revoked")],
            source="unsubscribe",
            ts=now,
            event_id=f"unsubscribe:{send_id}",
        )
        return feedback_event(row, "unsubscribed", now)

    def conversions(self, campaign: str, since: dt.datetime | None = None) -> list[dict[str, Any]]:
        """``Campaign Converted`` events of the entries that reached the goal."""
        q = sa.select(campaign_entries).where(
            campaign_entries.c.campaign == campaign, campaign_entries.c.converted_at.is_not(None)
        )
        if since is not None:
            q = q.where(campaign_entries.c.converted_at >= since)
        with self.db.connect() as conn:
            rows = conn.execute(q.order_by(campaign_entries.c.entry_id)).all()
        out = []
        for r in rows:
            out.append(
                {
                    "event_id": f"jm-conv-{campaign}-{r.entry_id}",
                    "customer_id": r.customer_id,
                    "ts": r.converted_at,
                    "event": FEEDBACK_EVENTS["converted"],
                    "channel": None,
                    "campaign": campaign,
                    "source": "journeymap",
                    "properties": json.dumps(
                        {
                            "campaign_id": campaign,
                            "group": r.group_name,
                            "variant": r.variant,
                            "entry_key": r.entry_key,
                        }
                    ),
                }
            )
        return out
