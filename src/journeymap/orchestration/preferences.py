"""What the customer-facing endpoints change: consent from the preference page, push
subscriptions on the profile, double opt-in tokens, and feedback events as collector messages.

The server's routes (``server.campaign_routes``) parse and render; the rules live here:

* **preferences**: the page shows channels × topics (those the campaigns send marketing on,
  plus every consent the customer has) with the *effective* status, as the send gate reads it
  (the topic's own status, else the channel's ``*``). Saving writes only what differs, channel
  rows (``*``) first, so unticking "all email" but keeping one topic keeps that topic;
* **push subscriptions**: the trait ``push_subscription`` holds a list of the browser's
  ``PushSubscription`` objects (one per device, newest last, at most ``MAX_DEVICES``); the
  permission prompt is the consent for the ``push`` channel, recorded only when granted;
* **feedback events** (opened, clicked, unsubscribed, confirmed, preferences changed) become
  Segment ``track`` messages of the source ``journeymap`` with a deterministic ``messageId``,
  stored through the collector's inbox, so the normal loader moves them into the lake.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from journeymap.channels.push import (
    MAX_DEVICES,
    SUBSCRIPTION_TRAIT,
    PushSubscriptionError,
    parse_subscription,
)
from journeymap.collect.internal import INTERNAL_SOURCE
from journeymap.model.campaigns import Campaign, SendStep
from journeymap.storage.db import OperationalDB, campaign_optins, campaign_outbox, consents
from journeymap.storage.profiles import (
    ANY_TOPIC,
    ConsentChange,
    ConsentStatus,
    IdentityOp,
    ProfileStore,
)

#: How long a double opt-in link can be confirmed.
OPTIN_VALID: Final = dt.timedelta(days=7)
PREFERENCE_SOURCE: Final = "preference_page"


# -- feedback events not tied to a send ----------------------------------------------------
def customer_event(
    customer_id: str,
    name: str,
    ts: dt.datetime,
    properties: Mapping[str, Any],
    *,
    channel: str | None = None,
    key: str | None = None,
) -> dict[str, Any]:
    """A feedback event not tied to a send (opt-in, preferences, push subscriptions);
    ``key`` makes the event id deterministic (a retried request is one event)."""
    seed = key or f"{customer_id}\x1f{name}\x1f{ts.isoformat()}\x1f{json.dumps(properties)}"
    digest = hashlib.sha256(seed.encode()).hexdigest()[:32]
    return {
        "event_id": f"jm-{digest}",
        "customer_id": customer_id,
        "ts": ts,
        "event": name,
        "channel": channel,
        "campaign": None,
        "source": INTERNAL_SOURCE,
        "properties": json.dumps(dict(properties), default=str),
    }


# -- sends and opt-ins ---------------------------------------------------------------------
@dataclass(frozen=True)
class SendInfo:
    send_id: str
    customer_id: str
    campaign: str
    channel: str
    topic: str


def send_info(db: OperationalDB, send_id: str) -> SendInfo | None:
    with db.connect() as conn:
        row = conn.execute(
            sa.select(
                campaign_outbox.c.send_id,
                campaign_outbox.c.customer_id,
                campaign_outbox.c.campaign,
                campaign_outbox.c.channel,
                campaign_outbox.c.topic,
            ).where(campaign_outbox.c.send_id == send_id)
        ).first()
    return None if row is None else SendInfo(*row)


@dataclass(frozen=True)
class OptIn:
    customer_id: str
    channel: str
    requested_at: dt.datetime
    confirmed_at: dt.datetime | None

    def expired(self, now: dt.datetime) -> bool:
        return self.confirmed_at is None and now - self.requested_at > OPTIN_VALID


def find_opt_in(db: OperationalDB, token: str) -> OptIn | None:
    if not token or len(token) > 64:
        return None
    with db.connect() as conn:
        row = conn.execute(
            sa.select(
                campaign_optins.c.customer_id,
                campaign_optins.c.channel,
                campaign_optins.c.requested_at,
                campaign_optins.c.confirmed_at,
            ).where(campaign_optins.c.token == token)
        ).first()
    return None if row is None else OptIn(*row)


# -- the preference page -------------------------------------------------------------------
@dataclass(frozen=True)
class Preference:
    """One cell of the page: ``status`` is the effective one (``None``: never asked)."""

    channel: str
    topic: str
    status: str | None

    @property
    def key(self) -> str:
        return f"{self.channel}:{self.topic}"

    @property
    def granted(self) -> bool:
        return self.status == "granted"


def _effective(found: Mapping[tuple[str, str], str], channel: str, topic: str) -> str | None:
    return found.get((channel, topic), found.get((channel, ANY_TOPIC)))


def marketing_topics(flows: Iterable[Campaign]) -> set[tuple[str, str]]:
    """(channel, topic) of every marketing send step."""
    return {
        (s.channel, s.topic)
        for c in flows
        for s in c.steps
        if isinstance(s, SendStep) and not s.transactional
    }


class PreferenceCenter:
    """Reads and saves one customer's consent for the preference page."""

    def __init__(self, db: OperationalDB, flows: Iterable[Campaign]) -> None:
        self.db = db
        self.profiles = ProfileStore(db)
        self.topics = marketing_topics(flows)

    def _found(self, conn: Connection, pid: int) -> dict[tuple[str, str], str]:
        rows = conn.execute(
            sa.select(consents.c.channel, consents.c.topic, consents.c.status).where(
                consents.c.profile_id == pid
            )
        )
        return {(c, t): s for c, t, s in rows}

    def preferences(self, customer_id: str) -> list[Preference] | None:
        """The page's rows (``None``: no such customer)."""
        with self.db.connect() as conn:
            pid = self.profiles.find_pid(conn, customer_id)
            if pid is None:
                return None
            found = self._found(conn, pid)
        cells = self.topics | set(found)
        order = sorted(cells, key=lambda ct: (ct[0], ct[1] != ANY_TOPIC, ct[1]))
        return [Preference(c, t, _effective(found, c, t)) for c, t in order]

    def save(
        self,
        customer_id: str,
        shown: Sequence[str],
        ticked: Iterable[str],
        now: dt.datetime,
    ) -> list[ConsentChange]:
        """Grant the ticked cells among ``shown`` (``channel:topic`` keys), deny the others;
        returns the changes written (none when nothing differs)."""
        wanted = set(ticked)
        cells: list[tuple[str, str]] = []
        for key in shown:
            channel, sep, topic = key.partition(":")
            if not sep or not channel or not topic or len(channel) > 60 or len(topic) > 100:
                raise ValueError(f"preference {key[:80]!r} is not channel:topic")
            cells.append((channel, topic))
        unknown = wanted - set(shown)
        if unknown:
            raise ValueError(
                f"preference {sorted(unknown)[0][:80]!r} was not on the page; reload it"
            )
        # channel-wide rows first: a topic row is then compared with the new fallback
        cells.sort(key=lambda ct: ct[1] != ANY_TOPIC)
        with self.db.connect() as conn:
            pid = self.profiles.find_pid(conn, customer_id)
            if pid is None:
                raise LookupError(f"no customer {customer_id!r}")
            found = self._found(conn, pid)
        changes: list[ConsentChange] = []
        for channel, topic in cells:
            status: ConsentStatus = "granted" if f"{channel}:{topic}" in wanted else "denied"
            current = _effective(found, channel, topic)
            if (current == "granted") == (status == "granted"):
                continue
            changes.append(ConsentChange(channel, topic, status))
            found[(channel, topic)] = status
        if changes:
            self.profiles.set_consent(
                customer_id,
                changes,
                source=PREFERENCE_SOURCE,
                ts=now,
                event_id=f"{PREFERENCE_SOURCE}:{uuid.uuid4().hex}",
            )
        return changes


# -- push subscriptions on the profile ------------------------------------------------------
def _current(traits: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The valid subscriptions of the trait (invalid entries, if any, are dropped)."""
    value = traits.get(SUBSCRIPTION_TRAIT)
    items = value if isinstance(value, list) else [value] if value else []
    out = []
    for item in items:
        try:
            out.append(parse_subscription(item))
        except PushSubscriptionError:
            continue
    return out


@dataclass(frozen=True)
class PushChange:
    """The result of a subscribe / unsubscribe: the customer (``None``: anonymous visitor)
    and the devices left."""

    customer_id: str | None
    devices: int
    changed: bool


def _find(
    store: ProfileStore, conn: Connection, user_id: str | None, anonymous_id: str | None
) -> int | None:
    if user_id:  # a user id or a customer's canonical id
        pid = store.find_pid(conn, user_id)
        if pid is not None:
            return pid
    if anonymous_id:
        return store.find_pid(conn, anonymous_id, "anonymous")
    return None


def add_push_subscription(
    db: OperationalDB,
    subscription: Mapping[str, Any],
    *,
    user_id: str | None,
    anonymous_id: str | None,
    granted: bool,
    now: dt.datetime,
) -> PushChange:
    """Add (or refresh) a device's subscription; records push consent when ``granted``."""
    sub = parse_subscription(subscription)
    store = ProfileStore(db)

    def run(conn: Connection) -> PushChange:
        pid = _find(store, conn, user_id, anonymous_id)
        subs = _current(store.profile_in(conn, pid).traits) if pid is not None else []
        subs = [s for s in subs if s["endpoint"] != sub["endpoint"]] + [sub]
        subs = subs[-MAX_DEVICES:]
        op = IdentityOp(
            kind="identify",
            event_id=f"push:{uuid.uuid4().hex}",
            source="push",
            ts=now,
            user_id=user_id,
            anonymous_id=anonymous_id,
            traits={SUBSCRIPTION_TRAIT: subs},
            consent=[ConsentChange("push", ANY_TOPIC, "granted")] if granted else [],
        )
        (customer,) = store.apply_in(conn, [op])
        return PushChange(customer, len(subs), True)

    return db.write(run)


def remove_push_subscriptions(
    db: OperationalDB,
    endpoints: Iterable[str],
    *,
    user_id: str | None = None,
    anonymous_id: str | None = None,
    denied: bool = False,
    now: dt.datetime,
) -> PushChange:
    """Drop the devices of ``endpoints`` from the profile (a browser that unsubscribed, or a
    push service that answered 404/410); ``denied`` records the push consent as denied."""
    gone = set(endpoints)
    store = ProfileStore(db)

    def run(conn: Connection) -> PushChange:
        pid = _find(store, conn, user_id, anonymous_id)
        if pid is None:
            return PushChange(None, 0, False)
        subs = _current(store.profile_in(conn, pid).traits)
        kept = [s for s in subs if s["endpoint"] not in gone]
        if len(kept) == len(subs) and not denied:
            return PushChange(store.profile_in(conn, pid).customer_id, len(kept), False)
        op = IdentityOp(
            kind="identify",
            event_id=f"push:{uuid.uuid4().hex}",
            source="push",
            ts=now,
            user_id=user_id,
            anonymous_id=anonymous_id,
            traits={SUBSCRIPTION_TRAIT: kept} if len(kept) != len(subs) else None,
            consent=[ConsentChange("push", ANY_TOPIC, "denied")] if denied else [],
        )
        (customer,) = store.apply_in(conn, [op])
        return PushChange(customer, len(kept), True)

    return db.write(run)
