"""The collector's inbox: accepted messages, durable before they are acknowledged.

A message is a row unique on ``(source, message_id)``: a resent message (same source, same id)
is ignored by ``INSERT … ON CONFLICT DO NOTHING``. Rows are written through the database's
writer thread with group commit (``submit``): every batch queued while the previous
transaction commits goes into the next one, and each caller's future completes only after
the commit (and, on SQLite, the WAL fsync) that holds its rows.

The loader reads *pending* rows (``loaded_at_us IS NULL``) in ``seq`` order and marks exactly
the rows it loaded, by ``seq``. It never advances a high-water mark: on PostgreSQL a row with a
lower ``seq`` can commit after one with a higher ``seq``, and a mark would skip it. Loading
clears the payload (the lake holds the event now); the key row is kept for
``inbox_retention_days`` so that late resends are still recognised, then ``prune`` drops it.

Messages that break a rule go to ``dead_letters`` with a reason code and a readable detail.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypedDict

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from journeymap.storage.db import OperationalDB, dead_letters, inbox, now_us

#: Rows per statement when marking or deleting by ``seq`` (below every backend's limit).
_CHUNK = 500


class InboxRow(TypedDict):
    """One accepted message as stored."""

    source: str
    message_id: str
    received_at_us: int
    payload: str


class DeadLetterRow(TypedDict):
    """One rejected message as stored, with the rule it broke."""

    source: str
    message_id: str | None
    received_at_us: int
    reason: str
    detail: str
    user_id: str | None
    anonymous_id: str | None
    payload: str


@dataclass(frozen=True)
class PendingMessage:
    seq: int
    source: str
    message_id: str
    received_at_us: int
    payload: str


#: the inbox columns of a ``PendingMessage``, in its order (the loader and the worker's feed)
MESSAGE_COLUMNS = (
    inbox.c.seq,
    inbox.c.source,
    inbox.c.message_id,
    inbox.c.received_at_us,
    inbox.c.payload,
)


@dataclass(frozen=True)
class DeadLetter:
    id: int
    source: str
    message_id: str | None
    received_at_us: int
    reason: str
    detail: str
    payload: str


@dataclass(frozen=True)
class InboxStats:
    pending: int
    loaded: int
    dead_letters: int
    oldest_pending_us: int | None


class InboxStore:
    """The inbox and dead-letter tables of ``db``."""

    GROUP = "inbox"

    def __init__(self, db: OperationalDB) -> None:
        self.db = db
        self._insert_dead = db.insert_ignore(dead_letters, ["source", "message_id"])
        # The hot path bypasses SQLAlchemy's per-row parameter processing (plain text and
        # integers need none): the DB-API's executemany gets tuples directly.
        mark = "?" if db.dialect == "sqlite" else "%s"
        self._insert_sql = (
            "INSERT INTO inbox (source, message_id, received_at_us, payload) VALUES "
            f"({mark}, {mark}, {mark}, {mark}) ON CONFLICT (source, message_id) DO NOTHING"
        )

    # -- writing (the collector's hot path) ----------------------------------------------
    def submit(self, rows: Sequence[InboxRow], dead: Sequence[DeadLetterRow] = ()) -> Future[int]:
        """Queue rows for the next group commit; the future gives how many rows were new
        in their transaction's batch (or -1 when the backend does not count)."""
        return self.db.submit_grouped(
            self.GROUP, self._write_groups, (rows, dead), size=len(rows) + len(dead)
        )

    def append(self, rows: Sequence[InboxRow], dead: Sequence[DeadLetterRow] = ()) -> int:
        """``submit`` and wait for the commit."""
        return int(self.submit(rows, dead).result())

    def _write_groups(
        self, conn: Connection, items: list[tuple[Sequence[InboxRow], Sequence[DeadLetterRow]]]
    ) -> list[int]:
        rows = [r for batch, _ in items for r in batch]
        dead = [d for _, batch in items for d in batch]
        inserted = -1
        if rows:
            params = [
                (r["source"], r["message_id"], r["received_at_us"], r["payload"]) for r in rows
            ]
            inserted = conn.exec_driver_sql(self._insert_sql, params).rowcount
        if dead:
            conn.execute(self._insert_dead, dead)
        return [inserted] * len(items)

    # -- the loader's side ---------------------------------------------------------------
    def pending(self, limit: int) -> list[PendingMessage]:
        """Up to ``limit`` pending messages, oldest ``seq`` first."""
        q = (
            sa.select(*MESSAGE_COLUMNS)
            .where(inbox.c.loaded_at_us.is_(None))
            .order_by(inbox.c.seq)
            .limit(limit)
        )
        with self.db.connect() as conn:
            return [PendingMessage(*row) for row in conn.execute(q)]

    def mark_loaded(self, conn: Connection, seqs: Iterable[int]) -> int:
        """Mark rows loaded (clearing their payload) inside the caller's write transaction."""
        stmt = (
            inbox.update()
            .where(inbox.c.seq == sa.bindparam("s"))
            .values(loaded_at_us=now_us(), payload=None)
        )
        params = [{"s": s} for s in seqs]
        for i in range(0, len(params), 5000):
            conn.execute(stmt, params[i : i + 5000])
        return len(params)

    def prune(self, received_before_us: int) -> int:
        """Drop loaded key rows received before the cutoff (resends are no longer
        recognised by the inbox then; the lake still drops ids it holds on the same date)."""

        def run(conn: Connection) -> int:
            res = conn.execute(
                inbox.delete().where(
                    inbox.c.loaded_at_us.is_not(None),
                    inbox.c.received_at_us < received_before_us,
                )
            )
            return int(res.rowcount)

        return self.db.write(run)

    def delete(self, conn: Connection, seqs: Sequence[int]) -> int:
        """Delete inbox rows by ``seq`` inside the caller's write transaction."""
        n = 0
        for i in range(0, len(seqs), _CHUNK):
            n += conn.execute(inbox.delete().where(inbox.c.seq.in_(seqs[i : i + _CHUNK]))).rowcount
        return n

    # -- dead letters --------------------------------------------------------------------
    def dead_letters(self, limit: int = 100, source: str | None = None) -> list[DeadLetter]:
        q = sa.select(
            dead_letters.c.id,
            dead_letters.c.source,
            dead_letters.c.message_id,
            dead_letters.c.received_at_us,
            dead_letters.c.reason,
            dead_letters.c.detail,
            dead_letters.c.payload,
        ).order_by(dead_letters.c.id.desc())
        if source is not None:
            q = q.where(dead_letters.c.source == source)
        with self.db.connect() as conn:
            return [DeadLetter(*row) for row in conn.execute(q.limit(limit))]

    def add_dead_letters(self, conn: Connection, rows: Sequence[DeadLetterRow]) -> None:
        """Record dead letters inside the caller's write transaction (the loader's rejects)."""
        if rows:
            conn.execute(self._insert_dead, list(rows))

    def dead_letters_of(
        self, conn: Connection, user_ids: Sequence[str], anonymous_ids: Sequence[str]
    ) -> list[dict[str, Any]]:
        """Dead letters carrying any of the ids (for export)."""
        cond = _any_id(user_ids, anonymous_ids)
        if cond is None:
            return []
        q = sa.select(dead_letters).where(cond).order_by(dead_letters.c.id)
        return [dict(r._mapping) for r in conn.execute(q)]

    def delete_dead_letters_of(
        self, conn: Connection, user_ids: Sequence[str], anonymous_ids: Sequence[str]
    ) -> int:
        cond = _any_id(user_ids, anonymous_ids)
        if cond is None:
            return 0
        return int(conn.execute(dead_letters.delete().where(cond)).rowcount)

    # -- status --------------------------------------------------------------------------
    def stats(self) -> InboxStats:
        with self.db.connect() as conn:
            pending, oldest = conn.execute(
                sa.select(sa.func.count(), sa.func.min(inbox.c.received_at_us)).where(
                    inbox.c.loaded_at_us.is_(None)
                )
            ).one()
            total = conn.execute(sa.select(sa.func.count()).select_from(inbox)).scalar_one()
            dead = conn.execute(sa.select(sa.func.count()).select_from(dead_letters)).scalar_one()
        return InboxStats(int(pending), int(total) - int(pending), int(dead), oldest)

    def message_ids(self, source: str | None = None) -> set[tuple[str, str]]:
        """Every ``(source, message_id)`` key held (for tests and audits of small inboxes)."""
        q = sa.select(inbox.c.source, inbox.c.message_id)
        if source is not None:
            q = q.where(inbox.c.source == source)
        with self.db.connect() as conn:
            return {(s, m) for s, m in conn.execute(q)}


def _any_id(user_ids: Sequence[str], anonymous_ids: Sequence[str]) -> Any:
    terms = []
    if user_ids:
        terms.append(dead_letters.c.user_id.in_(list(user_ids)))
    if anonymous_ids:
        terms.append(dead_letters.c.anonymous_id.in_(list(anonymous_ids)))
    return sa.or_(*terms) if terms else None
