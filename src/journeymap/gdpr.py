"""GDPR: export everything held about a customer, or erase it for good.

The subject is named by any of its ids (customer id, user id or anonymous id); the identity
graph gives the whole cluster: the profile, the profiles merged into it, every user id and every
anonymous id *linked* to it. Ambiguous anonymous ids (seen with two customers) are not part of
anyone's cluster: their events without a customer id cannot be attributed and stay.

``export_customer`` returns one JSON-ready document: profile, traits and their history, consent
and its history, groups, the lake's events, messages still waiting in the inbox, dead letters.

``delete_customer`` removes, while holding the loader lock (no round can re-add events meanwhile):

1. the lake's events (``customer_id`` in the cluster's user ids, or no customer id and an
   anonymous id of the cluster), then vacuums with zero retention so the old Parquet files that
   still held them are deleted from disk, and expires the Delta log (which records the delete's
   predicate and min/max statistics of old files) down to a fresh checkpoint;
2. pending inbox messages and dead letters carrying the ids, the profiles, identity links,
   traits, consent and group memberships — in one transaction;
3. cached journey tables (derived from the lake, they hold the events too).

It writes a ``gdpr_log`` row with a random request id, the times and the row counts, never an
id. Running it again is harmless (it finds nothing). Events of the customer that arrive later
are new data: erasure is not a block list.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.dataset as pads
import sqlalchemy as sa

from journeymap.collect.loader import loader_lock
from journeymap.storage.db import OperationalDB, gdpr_log, inbox, utcnow
from journeymap.storage.inbox import InboxStore
from journeymap.storage.lake import DeltaEventStore
from journeymap.storage.profiles import ProfileStore


@dataclass(frozen=True)
class Subject:
    """Who a request is about: the profile cluster's ids."""

    profile_ids: tuple[int, ...]
    user_ids: tuple[str, ...]
    anonymous_ids: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not (self.user_ids or self.anonymous_ids)


@dataclass(frozen=True)
class ErasureReceipt:
    """What ``delete_customer`` removed (counts only: the log holds no personal data)."""

    request_id: str
    requested_at: str
    completed_at: str
    found: bool
    counts: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _subject(db: OperationalDB, any_id: str) -> Subject:
    profiles = ProfileStore(db)
    with db.connect() as conn:
        pid = profiles.find_pid(conn, any_id)
        if pid is None:
            # no profile: a visitor the loader never needed one for (or not yet loaded)
            return Subject((), (any_id,), (any_id,))
        pids, users, anons = profiles.cluster(conn, pid)
    return Subject(tuple(pids), tuple(users), tuple(anons))


def _lake_filter(subject: Subject) -> Any:
    f = pads.field("customer_id").isin(list(subject.user_ids))
    if subject.anonymous_ids:
        f = f | (
            pads.field("customer_id").is_null()
            & pads.field("anonymous_id").isin(list(subject.anonymous_ids))
        )
    return f


def _sql_list(values: tuple[str, ...]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def _lake_predicate(subject: Subject) -> str:
    terms = [f"customer_id IN ({_sql_list(subject.user_ids)})"] if subject.user_ids else []
    if subject.anonymous_ids:
        terms.append(
            f"(customer_id IS NULL AND anonymous_id IN ({_sql_list(subject.anonymous_ids)}))"
        )
    return " OR ".join(terms)


def _pending_of(db: OperationalDB, subject: Subject) -> list[tuple[int, dict[str, Any]]]:
    """Pending inbox messages carrying one of the subject's ids: ``(seq, message)``."""
    needles = [
        f'"{key}":{json.dumps(v)}'
        for key, values in (
            ("userId", subject.user_ids),
            ("previousId", subject.user_ids + subject.anonymous_ids),
            ("anonymousId", subject.anonymous_ids),
        )
        for v in values
    ]
    if not needles:
        return []
    q = sa.select(inbox.c.seq, inbox.c.payload).where(
        inbox.c.loaded_at_us.is_(None),
        sa.or_(*(inbox.c.payload.contains(n, autoescape=True) for n in needles)),
    )
    users, anons = set(subject.user_ids), set(subject.anonymous_ids)
    found = []
    with db.connect() as conn:
        for seq, payload in conn.execute(q):
            msg = json.loads(payload)
            if (
                msg.get("userId") in users
                or msg.get("anonymousId") in anons
                or msg.get("previousId") in users | anons
            ):
                found.append((int(seq), msg))
    return found


def _iso(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def export_customer(db: OperationalDB, store: DeltaEventStore, any_id: str) -> dict[str, Any]:
    """Everything held about the customer (or visitor) ``any_id``, as a JSON-ready dict."""
    profiles = ProfileStore(db)
    inbox_store = InboxStore(db)
    subject = _subject(db, any_id)
    request_id = str(uuid.uuid4())
    requested = utcnow()
    doc: dict[str, Any] = {
        "request_id": request_id,
        "generated_at": requested.isoformat(),
        "subject": {
            "user_ids": list(subject.user_ids),
            "anonymous_ids": list(subject.anonymous_ids),
        },
        "profile": None,
        "traits_history": [],
        "consent": [],
        "consent_history": [],
    }
    if subject.profile_ids:
        with db.connect() as conn:
            profile = profiles.profile_in(conn, subject.profile_ids[0])
        doc["profile"] = {k: _iso(v) for k, v in asdict(profile).items()}
        for pid in subject.profile_ids:
            doc["traits_history"] += profiles.trait_history(pid)
            doc["consent_history"] += profiles.consent_history(pid)
        doc["consent"] = [
            {k: _iso(v) for k, v in asdict(c).items()}
            for c in profiles.consents(subject.profile_ids[0])
        ]
    events: list[dict[str, Any]] = []
    if store.exists() and not subject.empty:
        table = store.dataset().to_table(filter=_lake_filter(subject))
        table = table.take(pc.sort_indices(table, [("ts", "ascending"), ("event_id", "ascending")]))
        for row in table.to_pylist():
            row = {k: _iso(v) for k, v in row.items()}
            if row.get("revenue") is not None:
                row["revenue"] = str(row["revenue"])
            for key in ("properties", "context"):
                if row.get(key):
                    row[key] = json.loads(row[key])
            events.append(row)
    doc["events"] = events
    doc["pending_messages"] = [m for _, m in _pending_of(db, subject)]
    with db.connect() as conn:
        doc["dead_letters"] = [
            {k: _iso(v) for k, v in r.items()}
            for r in inbox_store.dead_letters_of(conn, subject.user_ids, subject.anonymous_ids)
        ]
    _log(db, request_id, "export", requested, {"events": len(events)})
    return doc


def _log(
    db: OperationalDB, request_id: str, action: str, requested: dt.datetime, counts: dict[str, int]
) -> None:
    def run(conn: sa.Connection) -> None:
        conn.execute(
            gdpr_log.insert().values(
                request_id=request_id,
                action=action,
                requested_at=requested,
                completed_at=utcnow(),
                outcome=json.dumps(counts, sort_keys=True),
            )
        )

    db.write(run)


def _purge_lake(store: DeltaEventStore, predicate: str) -> dict[str, int]:
    """Delete rows, remove the files that held them, and expire the log that names them."""
    with store.writer_lock():
        table = store.table()
        metrics = table.delete(predicate)
        deleted = int(metrics.get("num_deleted_rows", 0))
        if not deleted:
            return {"lake_events": 0, "lake_files_removed": 0}
    removed = len(store.vacuum(0))
    with store.writer_lock():
        table = store.table()
        before = table.metadata().configuration.get("delta.logRetentionDuration")
        table.alter.set_table_properties({"delta.logRetentionDuration": "interval 0 seconds"})
        table = store.table()
        table.create_checkpoint()
        table.cleanup_metadata()
        restore = before or "interval 30 days"
        store.table().alter.set_table_properties({"delta.logRetentionDuration": restore})
    return {"lake_events": deleted, "lake_files_removed": removed}


def delete_customer(
    db: OperationalDB,
    store: DeltaEventStore,
    any_id: str,
    *,
    cache_dirs: tuple[Path, ...] = (),
) -> ErasureReceipt:
    """Erase the customer (or visitor) ``any_id`` everywhere; see the module doc."""
    profiles = ProfileStore(db)
    inbox_store = InboxStore(db)
    request_id = str(uuid.uuid4())
    requested = utcnow()
    counts: dict[str, int] = {}
    with loader_lock(store.path):
        subject = _subject(db, any_id)
        found = bool(subject.profile_ids)
        if store.exists() and not subject.empty:
            counts.update(_purge_lake(store, _lake_predicate(subject)))
        pending = [seq for seq, _ in _pending_of(db, subject)]

        def run(conn: sa.Connection) -> dict[str, int]:
            out = {
                "inbox_pending": inbox_store.delete(conn, pending),
                "dead_letters": inbox_store.delete_dead_letters_of(
                    conn, subject.user_ids, subject.anonymous_ids
                ),
            }
            if subject.profile_ids:
                out.update(profiles.delete_in(conn, subject.profile_ids))
            ids = subject.user_ids + subject.anonymous_ids
            if ids:  # campaign state and decide exposures (aggregate counts stay)
                from journeymap.decide.service import erase_decisions
                from journeymap.orchestration.engine import erase_customers

                out.update(erase_customers(conn, ids))
                out.update(erase_decisions(conn, ids))
            return out

        counts.update(db.write(run))
    for cache in cache_dirs:
        journey = Path(cache) / "journey"
        if journey.is_dir():
            removed = 0
            for old in journey.glob("*.parquet"):
                old.unlink(missing_ok=True)
                removed += 1
            counts["cached_tables_removed"] = counts.get("cached_tables_removed", 0) + removed
    found = found or any(counts.get(k, 0) for k in ("lake_events", "inbox_pending", "dead_letters"))
    _log(db, request_id, "delete", requested, counts)
    return ErasureReceipt(
        request_id=request_id,
        requested_at=requested.isoformat(),
        completed_at=utcnow().isoformat(),
        found=found,
        counts=counts,
    )
