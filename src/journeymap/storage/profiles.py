"""Profiles, the identity graph, traits with their history, consent and groups.

The identity graph maps every user id and anonymous id to one profile. A profile with a
``customer_id`` is a known customer (its canonical id); one without is an anonymous visitor
that has traits, consent or groups of its own. The rules, applied by the loader in inbox order:

* a message with a user id makes sure that user has a profile; with an anonymous id too, it
  links them: an unknown anonymous id joins the customer, an anonymous-only profile is merged
  into the customer's (its traits and consent come along, the newer value winning);
* **conservative merging**: an anonymous id already linked to *another known customer* is not
  moved; it is marked ``ambiguous`` (a shared device) and no longer used to attribute events;
  two known customers are merged **only by an explicit alias** (Segment ``alias``, PostHog
  ``$create_alias``): ``previousId``'s profile is merged into ``userId``'s, and ``userId``
  becomes the canonical id;
* traits keep their full history (``trait_history``, one row per event and trait); the current
  value is the one with the latest event time, so late-arriving old messages do not overwrite
  newer values; ``traitsOnce`` (PostHog ``$set_once``) only fills traits that are missing;
* consent is kept per channel and topic (``*``: every topic) with status ``granted``,
  ``denied`` or ``revoked`` (a denial after a grant), event time and source; history too.

Every change is keyed by the event id that caused it, so applying a batch twice (a loader that
crashed before its checkpoint) changes nothing the second time.

``identity_map()`` exports ``(id_kind, id, customer_id)`` for every linked id of a known
customer: the journey table joins it to re-attribute events, including anonymous events that
were loaded before the identify that explains them.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from journeymap.errors import ConfigError
from journeymap.storage.db import (
    OperationalDB,
    UTCDateTime,
    consent_history,
    consents,
    group_members,
    groups,
    identities,
    profiles,
    trait_history,
    traits,
    utcnow,
)

if TYPE_CHECKING:
    import pyarrow as pa

IdKind = Literal["user", "anonymous"]
ConsentStatus = Literal["granted", "denied", "revoked"]
CONSENT_STATUSES: Final = ("granted", "denied", "revoked")
IDENTITY_VERSION: Final = "identity_version"
_CHUNK: Final = 500
ANY_TOPIC: Final = "*"


@dataclass(frozen=True)
class ConsentChange:
    channel: str
    topic: str
    status: ConsentStatus


@dataclass
class IdentityOp:
    """What one message means for profiles (built by the loader from the message)."""

    kind: str
    event_id: str
    source: str
    ts: dt.datetime
    user_id: str | None = None
    anonymous_id: str | None = None
    previous_id: str | None = None
    group_id: str | None = None
    traits: dict[str, Any] | None = None
    traits_once: dict[str, Any] | None = None
    group_traits: dict[str, Any] | None = None
    group_only: bool = False
    consent: list[ConsentChange] = field(default_factory=list)


@dataclass(frozen=True)
class Profile:
    profile_id: int
    customer_id: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    first_seen: dt.datetime | None
    last_seen: dt.datetime | None
    user_ids: tuple[str, ...]
    anonymous_ids: tuple[str, ...]
    ambiguous_ids: tuple[str, ...]
    traits: dict[str, Any]
    groups: tuple[str, ...]
    merged_profile_ids: tuple[int, ...]


@dataclass(frozen=True)
class Consent:
    channel: str
    topic: str
    status: str
    ts: dt.datetime
    source: str


def parse_consent(value: Any) -> list[ConsentChange]:
    """Consent from ``{"email": true}``, ``{"email": {"newsletter": "granted"}}`` or
    ``[{"channel", "topic", "status"}]``; ``ValueError`` names the first bad entry."""
    changes: list[ConsentChange] = []

    def status(v: Any, where: str) -> ConsentStatus:
        if isinstance(v, bool):
            return "granted" if v else "denied"
        if isinstance(v, str) and v.lower() in CONSENT_STATUSES:
            return v.lower()  # type: ignore[return-value]
        raise ValueError(
            f"consent {where}: {v!r} is not a status; allowed: true, false, "
            + ", ".join(CONSENT_STATUSES)
        )

    def name(v: Any, what: str, limit: int) -> str:
        if not isinstance(v, str) or not v or len(v) > limit:
            raise ValueError(f"consent {what} {v!r} must be text of 1 to {limit} characters")
        return v

    if isinstance(value, dict):
        for channel, v in value.items():
            name(channel, "channel", 60)
            if isinstance(v, dict):
                for topic, s in v.items():
                    name(topic, "topic", 100)
                    changes.append(ConsentChange(channel, topic, status(s, f"{channel}.{topic}")))
            else:
                changes.append(ConsentChange(channel, ANY_TOPIC, status(v, channel)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise ValueError(f"consent[{i}] must be an object with channel, topic, status")
            channel = name(item.get("channel"), "channel", 60)
            topic = name(item.get("topic", ANY_TOPIC), "topic", 100)
            changes.append(ConsentChange(channel, topic, status(item.get("status"), f"[{i}]")))
    else:
        raise ValueError("consent must be an object or a list")
    return changes


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


class _Applier:
    """Applies a batch of ``IdentityOp`` inside one write transaction, with small caches."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.now = utcnow()
        self.ids: dict[tuple[str, str], tuple[int, str] | None] = {}
        self.customers: dict[int, str | None] = {}
        self.seen: dict[int, tuple[dt.datetime, dt.datetime]] = {}
        self.graph_changed = False

    # -- lookups ------------------------------------------------------------------------
    def ident(self, kind: str, value: str) -> tuple[int, str] | None:
        key = (kind, value)
        if key not in self.ids:
            row = self.conn.execute(
                sa.select(identities.c.profile_id, identities.c.status).where(
                    identities.c.id_kind == kind, identities.c.id_value == value
                )
            ).first()
            self.ids[key] = (int(row[0]), str(row[1])) if row else None
        return self.ids[key]

    def customer(self, pid: int) -> str | None:
        if pid not in self.customers:
            self.customers[pid] = self.conn.execute(
                sa.select(profiles.c.customer_id).where(profiles.c.profile_id == pid)
            ).scalar()
        return self.customers[pid]

    def preload(self, ops: Sequence[IdentityOp]) -> None:
        """Look up every id of ``ops`` and their profiles in a few queries (not one each)."""
        keys: set[tuple[str, str]] = set()
        for op in ops:
            if op.user_id:
                keys.add(("user", op.user_id))
            if op.anonymous_id:
                keys.add(("anonymous", op.anonymous_id))
            if op.previous_id:
                keys.update((("user", op.previous_id), ("anonymous", op.previous_id)))
        keys -= set(self.ids)
        for kind in ("user", "anonymous"):
            values = sorted(v for k, v in keys if k == kind)
            for i in range(0, len(values), _CHUNK):
                chunk = values[i : i + _CHUNK]
                for value in chunk:
                    self.ids[(kind, value)] = None
                rows = self.conn.execute(
                    sa.select(
                        identities.c.id_value, identities.c.profile_id, identities.c.status
                    ).where(identities.c.id_kind == kind, identities.c.id_value.in_(chunk))
                )
                for value, pid, status in rows:
                    self.ids[(kind, value)] = (int(pid), str(status))
        pids = sorted({hit[0] for hit in self.ids.values() if hit} - set(self.customers))
        for i in range(0, len(pids), _CHUNK):
            owners = self.conn.execute(
                sa.select(profiles.c.profile_id, profiles.c.customer_id).where(
                    profiles.c.profile_id.in_(pids[i : i + _CHUNK])
                )
            )
            for pid, customer in owners:
                self.customers[int(pid)] = customer

    # -- graph changes ------------------------------------------------------------------
    def create(self, customer_id: str | None) -> int:
        res = self.conn.execute(
            profiles.insert().values(
                customer_id=customer_id, created_at=self.now, updated_at=self.now
            )
        )
        pid = int(res.inserted_primary_key[0])  # type: ignore[index]
        self.customers[pid] = customer_id
        return pid

    def link(self, kind: str, value: str, pid: int, event_id: str) -> None:
        self.conn.execute(
            identities.insert().values(
                id_kind=kind,
                id_value=value,
                profile_id=pid,
                status="linked",
                linked_at=self.now,
                event_id=event_id,
            )
        )
        self.ids[(kind, value)] = (pid, "linked")
        self.graph_changed = True

    def set_customer(self, pid: int, customer_id: str) -> None:
        self.conn.execute(
            profiles.update()
            .where(profiles.c.profile_id == pid)
            .values(customer_id=customer_id, updated_at=self.now)
        )
        self.customers[pid] = customer_id
        self.graph_changed = True

    def mark_ambiguous(self, kind: str, value: str) -> None:
        current = self.ident(kind, value)
        if current is None or current[1] == "ambiguous":
            return
        self.conn.execute(
            identities.update()
            .where(identities.c.id_kind == kind, identities.c.id_value == value)
            .values(status="ambiguous")
        )
        self.ids[(kind, value)] = (current[0], "ambiguous")
        self.graph_changed = True

    def merge(self, src: int, dst: int) -> None:
        """Merge profile ``src`` into ``dst``: ids, traits, consent, groups move."""
        c = self.conn
        if src == dst:
            return
        c.execute(identities.update().where(identities.c.profile_id == src).values(profile_id=dst))
        # traits: the newer value wins
        mine = {r.name: r for r in c.execute(sa.select(traits).where(traits.c.profile_id == dst))}
        for r in c.execute(sa.select(traits).where(traits.c.profile_id == src)).all():
            ours = mine.get(r.name)
            if ours is None:
                c.execute(traits.insert().values(**{**r._asdict(), "profile_id": dst}))
            elif r.ts > ours.ts:
                c.execute(
                    traits.update()
                    .where(traits.c.profile_id == dst, traits.c.name == r.name)
                    .values(value=r.value, ts=r.ts, event_id=r.event_id, source=r.source)
                )
        c.execute(traits.delete().where(traits.c.profile_id == src))
        c.execute(
            trait_history.update().where(trait_history.c.profile_id == src).values(profile_id=dst)
        )
        mine_c = {
            (r.channel, r.topic): r
            for r in c.execute(sa.select(consents).where(consents.c.profile_id == dst))
        }
        for r in c.execute(sa.select(consents).where(consents.c.profile_id == src)).all():
            ours = mine_c.get((r.channel, r.topic))
            if ours is None:
                c.execute(consents.insert().values(**{**r._asdict(), "profile_id": dst}))
            elif r.ts > ours.ts:
                c.execute(
                    consents.update()
                    .where(
                        consents.c.profile_id == dst,
                        consents.c.channel == r.channel,
                        consents.c.topic == r.topic,
                    )
                    .values(status=r.status, ts=r.ts, source=r.source, event_id=r.event_id)
                )
        c.execute(consents.delete().where(consents.c.profile_id == src))
        c.execute(
            consent_history.update()
            .where(consent_history.c.profile_id == src)
            .values(profile_id=dst)
        )
        member_of = {
            g
            for (g,) in c.execute(
                sa.select(group_members.c.group_id).where(group_members.c.profile_id == dst)
            )
        }
        for r in c.execute(sa.select(group_members).where(group_members.c.profile_id == src)).all():
            if r.group_id not in member_of:
                c.execute(group_members.insert().values(**{**r._asdict(), "profile_id": dst}))
        c.execute(group_members.delete().where(group_members.c.profile_id == src))
        src_row = c.execute(
            sa.select(profiles.c.first_seen, profiles.c.last_seen).where(
                profiles.c.profile_id == src
            )
        ).first()
        c.execute(
            profiles.update()
            .where(profiles.c.profile_id == src)
            .values(merged_into=dst, customer_id=None, updated_at=self.now)
        )
        c.execute(profiles.update().where(profiles.c.merged_into == src).values(merged_into=dst))
        if src_row is not None and src_row.first_seen is not None:
            self.seen_at(dst, src_row.first_seen)
            self.seen_at(dst, src_row.last_seen)
        self.seen.pop(src, None)
        # ids moved: forget cached links (cheap; merges are rare)
        self.ids.clear()
        self.customers.pop(src, None)
        self.graph_changed = True

    # -- resolution ---------------------------------------------------------------------
    def resolve(self, op: IdentityOp, need_profile: bool) -> int | None:
        u, a = op.user_id, op.anonymous_id
        pa = self.ident("anonymous", a) if a else None
        if u:
            pu = self.ident("user", u)
            if pu is None:
                if pa is not None and pa[1] == "linked" and self.customer(pa[0]) is None:
                    # the anonymous visitor's profile becomes this customer's
                    self.set_customer(pa[0], u)
                    self.link("user", u, pa[0], op.event_id)
                    return pa[0]
                pid = self.create(u)
                self.link("user", u, pid, op.event_id)
            else:
                pid = pu[0]
            if a:
                if pa is None:
                    self.link("anonymous", a, pid, op.event_id)
                elif pa[0] != pid and pa[1] == "linked":
                    if self.customer(pa[0]) is None:
                        self.merge(pa[0], pid)
                    else:
                        self.mark_ambiguous("anonymous", a)  # two known customers: no merge
            return pid
        if pa is not None:
            return pa[0] if pa[1] == "linked" else None
        if a and need_profile:
            pid = self.create(None)
            self.link("anonymous", a, pid, op.event_id)
            return pid
        return None

    def alias(self, op: IdentityOp) -> int:
        u, prev = op.user_id, op.previous_id
        assert u
        assert prev
        prev_kind = "anonymous" if prev == op.anonymous_id else "user"
        pp = self.ident("user", prev) or self.ident("anonymous", prev)
        pu = self.ident("user", u)
        if pu is None and pp is None:
            pid = self.create(u)
            self.link("user", u, pid, op.event_id)
            self.link(prev_kind, prev, pid, op.event_id)
            return pid
        if pp is None:
            assert pu is not None
            self.link(prev_kind, prev, pu[0], op.event_id)
            return pu[0]
        if pu is None:
            self.link("user", u, pp[0], op.event_id)
            self.set_customer(pp[0], u)  # the alias target is the canonical id from now on
            return pp[0]
        if pp[0] != pu[0]:
            self.merge(pp[0], pu[0])  # explicit alias: two known customers may merge
        return pu[0]

    # -- attributes ---------------------------------------------------------------------
    def seen_at(self, pid: int, ts: dt.datetime | None) -> None:
        if ts is None:
            return
        lo, hi = self.seen.get(pid, (ts, ts))
        self.seen[pid] = (min(lo, ts), max(hi, ts))

    def set_traits(
        self, pid: int, values: dict[str, Any], op: IdentityOp, *, once: bool = False
    ) -> None:
        c = self.conn
        for name, value in values.items():
            if name == "consent" or len(name) > 200:
                continue
            text = _dumps(value)
            applied = c.execute(
                sa.select(trait_history.c.id).where(
                    trait_history.c.event_id == op.event_id, trait_history.c.name == name
                )
            ).first()
            if applied is None:
                c.execute(
                    trait_history.insert().values(
                        profile_id=pid,
                        name=name,
                        value=text,
                        ts=op.ts,
                        event_id=op.event_id,
                        source=op.source,
                        recorded_at=self.now,
                    )
                )
            cur = c.execute(
                sa.select(traits.c.ts, traits.c.event_id).where(
                    traits.c.profile_id == pid, traits.c.name == name
                )
            ).first()
            if cur is None:
                c.execute(
                    traits.insert().values(
                        profile_id=pid,
                        name=name,
                        value=text,
                        ts=op.ts,
                        event_id=op.event_id,
                        source=op.source,
                    )
                )
            elif not once and cur.event_id != op.event_id and op.ts >= cur.ts:
                c.execute(
                    traits.update()
                    .where(traits.c.profile_id == pid, traits.c.name == name)
                    .values(value=text, ts=op.ts, event_id=op.event_id, source=op.source)
                )

    def set_consent(self, pid: int, change: ConsentChange, op: IdentityOp) -> None:
        c = self.conn
        exists = c.execute(
            sa.select(consent_history.c.id).where(
                consent_history.c.event_id == op.event_id,
                consent_history.c.channel == change.channel,
                consent_history.c.topic == change.topic,
            )
        ).first()
        if exists is not None:
            return  # this event was applied already
        cur = c.execute(
            sa.select(consents.c.status, consents.c.ts).where(
                consents.c.profile_id == pid,
                consents.c.channel == change.channel,
                consents.c.topic == change.topic,
            )
        ).first()
        status = change.status
        if status == "denied" and cur is not None and cur.status == "granted":
            status = "revoked"
        c.execute(
            consent_history.insert().values(
                profile_id=pid,
                channel=change.channel,
                topic=change.topic,
                status=status,
                ts=op.ts,
                source=op.source,
                event_id=op.event_id,
                recorded_at=self.now,
            )
        )
        values = {"status": status, "ts": op.ts, "source": op.source, "event_id": op.event_id}
        if cur is None:
            c.execute(
                consents.insert().values(
                    profile_id=pid, channel=change.channel, topic=change.topic, **values
                )
            )
        elif op.ts >= cur.ts:
            c.execute(
                consents.update()
                .where(
                    consents.c.profile_id == pid,
                    consents.c.channel == change.channel,
                    consents.c.topic == change.topic,
                )
                .values(**values)
            )

    def group(self, pid: int | None, op: IdentityOp) -> None:
        c = self.conn
        assert op.group_id
        if op.group_traits is not None:
            row = c.execute(
                sa.select(groups.c.traits, groups.c.updated_ts).where(
                    groups.c.group_id == op.group_id
                )
            ).first()
            if row is None:
                c.execute(
                    groups.insert().values(
                        group_id=op.group_id, traits=_dumps(op.group_traits), updated_ts=op.ts
                    )
                )
            else:
                old = json.loads(row.traits)
                merged = (
                    {**old, **op.group_traits}
                    if op.ts >= row.updated_ts
                    else {
                        **op.group_traits,
                        **old,
                    }
                )
                c.execute(
                    groups.update()
                    .where(groups.c.group_id == op.group_id)
                    .values(traits=_dumps(merged), updated_ts=max(op.ts, row.updated_ts))
                )
        if pid is not None and not op.group_only:
            member = c.execute(
                sa.select(group_members.c.ts).where(
                    group_members.c.group_id == op.group_id, group_members.c.profile_id == pid
                )
            ).first()
            if member is None:
                c.execute(
                    group_members.insert().values(
                        group_id=op.group_id, profile_id=pid, ts=op.ts, event_id=op.event_id
                    )
                )

    # -- the batch ----------------------------------------------------------------------
    def run(self, ops: Sequence[IdentityOp]) -> list[str | None]:
        self.preload(ops)
        for op in ops:
            if op.kind == "alias":
                pid: int | None = self.alias(op)
            else:
                need = bool(op.traits or op.traits_once or op.consent) or (
                    op.kind == "group" and not op.group_only
                )
                pid = self.resolve(op, need_profile=need)
            if pid is not None:
                self.seen_at(pid, op.ts)
                if op.traits:
                    self.set_traits(pid, op.traits, op)
                if op.traits_once:
                    self.set_traits(pid, op.traits_once, op, once=True)
                for change in op.consent:
                    self.set_consent(pid, change, op)
            if op.kind == "group":
                self.group(pid, op)
        self._write_seen()
        return self.customers_of(ops)

    def customers_of(self, ops: Sequence[IdentityOp]) -> list[str | None]:
        """Each op's canonical customer id as the graph stands now."""
        self.preload(ops)
        out: list[str | None] = []
        for op in ops:
            customer = None
            for kind, value in (("user", op.user_id), ("anonymous", op.anonymous_id)):
                if value:
                    hit = self.ident(kind, value)
                    if hit is not None and hit[1] == "linked":
                        customer = self.customer(hit[0])
                        break
            out.append(customer)
        return out

    def _write_seen(self) -> None:
        c = self.conn
        pids = sorted(self.seen)
        current: dict[int, tuple[dt.datetime | None, dt.datetime | None]] = {}
        for i in range(0, len(pids), _CHUNK):
            rows = c.execute(
                sa.select(profiles.c.profile_id, profiles.c.first_seen, profiles.c.last_seen).where(
                    profiles.c.profile_id.in_(pids[i : i + _CHUNK])
                )
            )
            current.update({int(p): (f, la) for p, f, la in rows})
        changes = []
        for pid, (lo, hi) in self.seen.items():
            if pid not in current:
                continue
            first_seen, last_seen = current[pid]
            first = lo if first_seen is None else min(lo, first_seen)
            last = hi if last_seen is None else max(hi, last_seen)
            if (first, last) != (first_seen, last_seen):
                changes.append({"pid": pid, "first": first, "last": last})
        if changes:
            c.execute(
                profiles.update()
                .where(profiles.c.profile_id == sa.bindparam("pid"))
                .values(
                    first_seen=sa.bindparam("first", type_=UTCDateTime()),
                    last_seen=sa.bindparam("last", type_=UTCDateTime()),
                    updated_at=self.now,
                ),
                changes,
            )


class ProfileStore:
    """Profiles, identities, traits, consent and groups in ``db``."""

    def __init__(self, db: OperationalDB) -> None:
        self.db = db

    # -- the loader ---------------------------------------------------------------------
    def apply_in(self, conn: Connection, ops: Sequence[IdentityOp]) -> list[str | None]:
        """Apply ``ops`` in the caller's write transaction; returns each op's canonical
        customer id (``None``: anonymous)."""
        applier = _Applier(conn)
        result = applier.run(ops)
        if applier.graph_changed:
            self.db.bump(conn, IDENTITY_VERSION)
        return result

    def apply(self, ops: Sequence[IdentityOp], chunk: int = 250) -> list[str | None]:
        """Apply ``ops`` in transactions of ``chunk`` ops (so that the collector's commits
        interleave with a long batch; every op is idempotent, so a crash between two chunks
        is repaired by applying the batch again), then return each op's canonical customer
        id as the graph stands after the whole batch: an identify late in the batch also
        attributes the batch's earlier anonymous events."""
        for i in range(0, len(ops), chunk):
            part = ops[i : i + chunk]
            self.db.write(lambda conn, part=part: self.apply_in(conn, part))  # type: ignore[misc]
        with self.db.connect() as conn:
            return _Applier(conn).customers_of(ops)

    # -- reading ------------------------------------------------------------------------
    def find(self, any_id: str, kind: IdKind | None = None) -> Profile | None:
        """The profile of a customer id, user id or anonymous id (in that order)."""
        with self.db.connect() as conn:
            pid = self._find_pid(conn, any_id, kind)
            return None if pid is None else self._profile(conn, pid)

    def _find_pid(self, conn: Connection, any_id: str, kind: IdKind | None) -> int | None:
        if kind is None:
            pid = conn.execute(
                sa.select(profiles.c.profile_id).where(profiles.c.customer_id == any_id)
            ).scalar()
            if pid is not None:
                return int(pid)
        for k in (kind,) if kind else ("user", "anonymous"):
            pid = conn.execute(
                sa.select(identities.c.profile_id).where(
                    identities.c.id_kind == k, identities.c.id_value == any_id
                )
            ).scalar()
            if pid is not None:
                return int(pid)
        return None

    def _profile(self, conn: Connection, pid: int) -> Profile:
        row = conn.execute(sa.select(profiles).where(profiles.c.profile_id == pid)).one()
        ids = conn.execute(
            sa.select(identities.c.id_kind, identities.c.id_value, identities.c.status)
            .where(identities.c.profile_id == pid)
            .order_by(identities.c.id_kind, identities.c.id_value)
        ).all()
        trait_rows = conn.execute(
            sa.select(traits.c.name, traits.c.value)
            .where(traits.c.profile_id == pid)
            .order_by(traits.c.name)
        )
        member = conn.execute(
            sa.select(group_members.c.group_id)
            .where(group_members.c.profile_id == pid)
            .order_by(group_members.c.group_id)
        )
        merged = conn.execute(
            sa.select(profiles.c.profile_id)
            .where(profiles.c.merged_into == pid)
            .order_by(profiles.c.profile_id)
        )
        return Profile(
            profile_id=pid,
            customer_id=row.customer_id,
            created_at=row.created_at,
            updated_at=row.updated_at,
            first_seen=row.first_seen,
            last_seen=row.last_seen,
            user_ids=tuple(v for k, v, s in ids if k == "user"),
            anonymous_ids=tuple(v for k, v, s in ids if k == "anonymous" and s == "linked"),
            ambiguous_ids=tuple(v for k, v, s in ids if s == "ambiguous"),
            traits={n: json.loads(v) for n, v in trait_rows},
            groups=tuple(g for (g,) in member),
            merged_profile_ids=tuple(int(p) for (p,) in merged),
        )

    def trait_history(self, profile_id: int) -> list[dict[str, Any]]:
        with self.db.connect() as conn:
            rows = conn.execute(
                sa.select(
                    trait_history.c.name,
                    trait_history.c.value,
                    trait_history.c.ts,
                    trait_history.c.source,
                    trait_history.c.event_id,
                )
                .where(trait_history.c.profile_id == profile_id)
                .order_by(trait_history.c.ts, trait_history.c.id)
            )
            return [
                {**r._asdict(), "value": json.loads(r.value), "ts": r.ts.isoformat()} for r in rows
            ]

    def consents(self, profile_id: int) -> list[Consent]:
        with self.db.connect() as conn:
            rows = conn.execute(
                sa.select(
                    consents.c.channel,
                    consents.c.topic,
                    consents.c.status,
                    consents.c.ts,
                    consents.c.source,
                )
                .where(consents.c.profile_id == profile_id)
                .order_by(consents.c.channel, consents.c.topic)
            )
            return [Consent(*r) for r in rows]

    def consent_history(self, profile_id: int) -> list[dict[str, Any]]:
        with self.db.connect() as conn:
            rows = conn.execute(
                sa.select(
                    consent_history.c.channel,
                    consent_history.c.topic,
                    consent_history.c.status,
                    consent_history.c.ts,
                    consent_history.c.source,
                    consent_history.c.event_id,
                )
                .where(consent_history.c.profile_id == profile_id)
                .order_by(consent_history.c.ts, consent_history.c.id)
            )
            return [{**r._asdict(), "ts": r.ts.isoformat()} for r in rows]

    def consent_status(self, profile_id: int, channel: str, topic: str = ANY_TOPIC) -> str | None:
        """The status for a channel and topic (a topic falls back to the channel's ``*``)."""
        found = {(c.channel, c.topic): c.status for c in self.consents(profile_id)}
        return found.get((channel, topic), found.get((channel, ANY_TOPIC)))

    def set_consent(
        self,
        any_id: str,
        changes: Iterable[ConsentChange],
        *,
        source: str = "admin",
        ts: dt.datetime | None = None,
        event_id: str | None = None,
    ) -> Profile:
        """Record consent for a customer (or anonymous id) from outside the collector."""
        when = ts or utcnow()
        eid = event_id or f"{source}:consent:{when.timestamp():.6f}:{any_id}"[:100]
        changes = list(changes)

        def run(conn: Connection) -> int:
            pid = self._find_pid(conn, any_id, None)
            if pid is None:
                raise ConfigError(
                    f"no profile for {any_id!r}: consent is recorded for customers and visitors "
                    "the collector has seen (send an identify first)"
                )
            applier = _Applier(conn)
            op = IdentityOp("consent", eid, source, when, consent=changes)
            for change in changes:
                applier.set_consent(pid, change, op)
            return pid

        pid = self.db.write(run)
        with self.db.connect() as conn:
            return self._profile(conn, pid)

    def group_traits(self, group_id: str) -> dict[str, Any] | None:
        with self.db.connect() as conn:
            text = conn.execute(
                sa.select(groups.c.traits).where(groups.c.group_id == group_id)
            ).scalar()
        return None if text is None else dict(json.loads(text))

    # -- the identity map ---------------------------------------------------------------
    def identity_version(self) -> int:
        """Bumped whenever links change: part of the journey table's cache key."""
        return self.db.counter(IDENTITY_VERSION)

    def identity_map(self) -> pa.Table:
        """``(id_kind, id, customer_id)`` for every linked id of a known customer."""
        import pyarrow as pa

        q = (
            sa.select(identities.c.id_kind, identities.c.id_value, profiles.c.customer_id)
            .join(profiles, profiles.c.profile_id == identities.c.profile_id)
            .where(identities.c.status == "linked", profiles.c.customer_id.is_not(None))
            .order_by(identities.c.id_kind, identities.c.id_value)
        )
        with self.db.connect() as conn:
            rows = conn.execute(q).all()
        return pa.table(
            {
                "id_kind": pa.array([r[0] for r in rows], pa.string()),
                "id": pa.array([r[1] for r in rows], pa.string()),
                "customer_id": pa.array([r[2] for r in rows], pa.string()),
            }
        )

    def export_identity_map(self, path: str | Path) -> Path:
        """Write ``identity_map()`` as Parquet (temporary file, then rename)."""
        import pyarrow.parquet as pq

        from journeymap.storage.files import atomic_target

        target = Path(path)
        with atomic_target(target) as tmp:
            pq.write_table(self.identity_map(), tmp)
        return target

    # -- erasure ------------------------------------------------------------------------
    def cluster(self, conn: Connection, pid: int) -> tuple[list[int], list[str], list[str]]:
        """The profile ids (with those merged into it), user ids and linked anonymous ids."""
        pids = [pid]
        frontier = [pid]
        while frontier:
            nxt = [
                int(p)
                for (p,) in conn.execute(
                    sa.select(profiles.c.profile_id).where(profiles.c.merged_into.in_(frontier))
                )
            ]
            nxt = [p for p in nxt if p not in pids]
            pids += nxt
            frontier = nxt
        ids = conn.execute(
            sa.select(identities.c.id_kind, identities.c.id_value, identities.c.status).where(
                identities.c.profile_id.in_(pids)
            )
        ).all()
        users = sorted(v for k, v, s in ids if k == "user")
        anons = sorted(v for k, v, s in ids if k == "anonymous" and s == "linked")
        return pids, users, anons

    def delete_in(self, conn: Connection, pids: Sequence[int]) -> dict[str, int]:
        """Delete profiles and everything keyed by them; returns rows per table."""
        counts: dict[str, int] = {}
        for table in (identities, traits, trait_history, consents, consent_history, group_members):
            counts[table.name] = int(
                conn.execute(table.delete().where(table.c.profile_id.in_(pids))).rowcount
            )
        counts["profiles"] = int(
            conn.execute(profiles.delete().where(profiles.c.profile_id.in_(pids))).rowcount
        )
        self.db.bump(conn, IDENTITY_VERSION)
        return counts

    def find_pid(self, conn: Connection, any_id: str, kind: IdKind | None = None) -> int | None:
        return self._find_pid(conn, any_id, kind)

    def profile_in(self, conn: Connection, pid: int) -> Profile:
        return self._profile(conn, pid)
