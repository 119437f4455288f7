"""The operational database: one SQLAlchemy Core schema on SQLite (embedded) or PostgreSQL.

It holds what changes row by row: the collector's sources and inbox, dead letters, profiles,
identity links, traits, consent, groups and the GDPR log. The event lake holds the events.

**One writer thread per database** (datasette's pattern, ``datasette/database.py``): every
write runs as a task on one thread that owns one connection. SQLite allows one writer at a time
anyway; funnelling writes through one thread lets the collector use *group commit*: while one
transaction is being fsynced, the requests that arrive meanwhile queue up and share the next
transaction (and fsync). That is how a disk doing ~230 fsyncs/s acknowledges 10,000+ durable
events/s. PostgreSQL gets the same writer (one connection, group commit); readers use the pool.

**Durability**: SQLite runs in WAL mode with ``synchronous=FULL`` (the WAL is fsynced at every
commit), so a committed transaction survives a process kill and a power cut; PostgreSQL commits
are durable with its defaults (``fsync=on``, ``synchronous_commit=on``).

**Migrations** are versioned in the ``schema_migrations`` table. A new database gets the current
schema (``create_all``) and is stamped with every version; an existing one runs the migrations
it lacks, in order, inside one transaction under a lock (SQLite ``BEGIN IMMEDIATE``, a
PostgreSQL advisory lock), so processes starting together cannot race. A migration is a Python
function given alembic's ``Operations`` (portable ``add_column`` & co., SQLite batch mode)
without alembic's script directory and ini file: the migrations ship inside the package.

Errors: ``StoreUnavailableError`` (transient: locked, disconnected, disk full — retry later,
the collector answers 503) and ``StoreError`` (anything else) derive from
``OperationalStoreError``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url

from journeymap.errors import ConfigError, JourneymapError, MissingExtraError

log = logging.getLogger(__name__)
T = TypeVar("T")

#: The default database of a project: SQLite in the data folder.
DEFAULT_DATABASE: Final = "sqlite:///data/journeymap.db"
ID_LEN: Final = 100
SOURCE_LEN: Final = 40


class OperationalStoreError(JourneymapError):
    """The operational database failed."""


class StoreUnavailableError(OperationalStoreError):
    """Transient trouble (locked, disconnected, disk full): the same write may succeed later."""


class StoreError(OperationalStoreError):
    """A permanent failure of the operational database (schema, constraint, bug)."""


def now_us() -> int:
    """The current time as integer microseconds since the epoch (UTC)."""
    return time.time_ns() // 1000


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(sa.types.TypeDecorator[dt.datetime]):
    """An aware UTC datetime on every backend (SQLite stores naive UTC text)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: journeymap stores aware UTC times")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # pragma: no cover - SQLite without type detection
            value = dt.datetime.fromisoformat(value)
        assert isinstance(value, dt.datetime)
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _pending(column: str) -> dict[str, Any]:
    """Keyword arguments of a partial index over rows where ``column`` is NULL."""
    where = sa.text(f"{column} IS NULL")
    return {"sqlite_where": where, "postgresql_where": where}


_BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite rowid alias

metadata = sa.MetaData()

schema_migrations = sa.Table(
    "schema_migrations",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("applied_at", UTCDateTime, nullable=False),
)

#: Write keys map to sources; only a SHA-256 of each key is stored.
sources = sa.Table(
    "sources",
    metadata,
    sa.Column("name", sa.String(SOURCE_LEN), primary_key=True),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("key_hint", sa.String(16), nullable=False),
    sa.Column("rate_limit", sa.Integer, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

#: Accepted messages, durable before the 200; the loader moves them to the lake. The payload is
#: cleared once loaded; the key row stays (for ``inbox_retention_days``) to drop resends.
inbox = sa.Table(
    "inbox",
    metadata,
    sa.Column("seq", _BIGID, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(SOURCE_LEN), nullable=False),
    sa.Column("message_id", sa.String(ID_LEN), nullable=False),
    sa.Column("received_at_us", sa.BigInteger, nullable=False),
    sa.Column("payload", sa.Text, nullable=True),
    sa.Column("loaded_at_us", sa.BigInteger, nullable=True),
    sa.UniqueConstraint("source", "message_id", name="uq_inbox_source_message"),
    sa.Index("ix_inbox_pending", "seq", **_pending("loaded_at_us")),
)

#: Messages that broke a rule, with the reason; the rest of their batch was kept.
dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("id", _BIGID, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(SOURCE_LEN), nullable=False),
    sa.Column("message_id", sa.String(ID_LEN), nullable=True),
    sa.Column("received_at_us", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.String(60), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    # for erasure: the ids found in the message (when they were strings)
    sa.Column("user_id", sa.String(200), nullable=True, index=True),
    sa.Column("anonymous_id", sa.String(200), nullable=True, index=True),
    sa.Column("payload", sa.Text, nullable=False),
    sa.UniqueConstraint("source", "message_id", name="uq_dead_source_message"),
)

#: A customer (``customer_id`` set: a known user id, the canonical one) or an anonymous visitor
#: that has traits, consent or groups. Merged profiles stay with ``merged_into``.
profiles = sa.Table(
    "profiles",
    metadata,
    sa.Column("profile_id", _BIGID, primary_key=True, autoincrement=True),
    sa.Column("customer_id", sa.String(ID_LEN), nullable=True, unique=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("first_seen", UTCDateTime, nullable=True),
    sa.Column("last_seen", UTCDateTime, nullable=True),
    sa.Column("merged_into", sa.BigInteger, nullable=True),
)

#: The identity graph: every user id and anonymous id points to one profile. ``ambiguous``
#: marks an anonymous id seen with two different known customers (not used for stitching).
identities = sa.Table(
    "identities",
    metadata,
    sa.Column("id_kind", sa.String(10), primary_key=True),
    sa.Column("id_value", sa.String(ID_LEN), primary_key=True),
    sa.Column("profile_id", sa.BigInteger, nullable=False, index=True),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("linked_at", UTCDateTime, nullable=False),
    sa.Column("event_id", sa.String(ID_LEN), nullable=True),
)

traits = sa.Table(
    "traits",
    metadata,
    sa.Column("profile_id", sa.BigInteger, primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("ts", UTCDateTime, nullable=False),
    sa.Column("event_id", sa.String(ID_LEN), nullable=True),
    sa.Column("source", sa.String(SOURCE_LEN), nullable=True),
)

trait_history = sa.Table(
    "trait_history",
    metadata,
    sa.Column("id", _BIGID, primary_key=True, autoincrement=True),
    sa.Column("profile_id", sa.BigInteger, nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("ts", UTCDateTime, nullable=False),
    sa.Column("event_id", sa.String(ID_LEN), nullable=False),
    sa.Column("source", sa.String(SOURCE_LEN), nullable=True),
    sa.Column("recorded_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("event_id", "name", name="uq_trait_history_event"),
)

consents = sa.Table(
    "consents",
    metadata,
    sa.Column("profile_id", sa.BigInteger, primary_key=True),
    sa.Column("channel", sa.String(60), primary_key=True),
    sa.Column("topic", sa.String(100), primary_key=True),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("ts", UTCDateTime, nullable=False),
    sa.Column("source", sa.String(SOURCE_LEN), nullable=False),
    sa.Column("event_id", sa.String(ID_LEN), nullable=True),
)

consent_history = sa.Table(
    "consent_history",
    metadata,
    sa.Column("id", _BIGID, primary_key=True, autoincrement=True),
    sa.Column("profile_id", sa.BigInteger, nullable=False, index=True),
    sa.Column("channel", sa.String(60), nullable=False),
    sa.Column("topic", sa.String(100), nullable=False),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("ts", UTCDateTime, nullable=False),
    sa.Column("source", sa.String(SOURCE_LEN), nullable=False),
    sa.Column("event_id", sa.String(ID_LEN), nullable=False),
    sa.Column("recorded_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("event_id", "channel", "topic", name="uq_consent_history_event"),
)

groups = sa.Table(
    "groups",
    metadata,
    sa.Column("group_id", sa.String(ID_LEN), primary_key=True),
    sa.Column("traits", sa.Text, nullable=False),
    sa.Column("updated_ts", UTCDateTime, nullable=False),
)

group_members = sa.Table(
    "group_members",
    metadata,
    sa.Column("group_id", sa.String(ID_LEN), primary_key=True),
    sa.Column("profile_id", sa.BigInteger, primary_key=True),
    sa.Column("ts", UTCDateTime, nullable=False),
    sa.Column("event_id", sa.String(ID_LEN), nullable=True),
)

#: Erasure and export requests: when and how many rows, never who.
gdpr_log = sa.Table(
    "gdpr_log",
    metadata,
    sa.Column("request_id", sa.String(36), primary_key=True),
    sa.Column("action", sa.String(10), nullable=False),
    sa.Column("requested_at", UTCDateTime, nullable=False),
    sa.Column("completed_at", UTCDateTime, nullable=True),
    sa.Column("outcome", sa.Text, nullable=False),
)

#: Small counters (``identity_version``: bumped whenever the identity graph changes).
meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(60), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)


# -- campaigns (migration 2) ---------------------------------------------------------------
#: One row per (campaign, customer, entry key): where the customer is in the flow. ``wake_at``
#: is the durable timer (a wait, a wait-for timeout, quiet hours); the worker polls it.
campaign_entries = sa.Table(
    "campaign_entries",
    metadata,
    sa.Column("entry_id", _BIGID, primary_key=True, autoincrement=True),
    sa.Column("campaign", sa.String(ID_LEN), nullable=False),
    sa.Column("customer_id", sa.String(ID_LEN), nullable=False),
    sa.Column("entry_key", sa.String(200), nullable=False),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("step", sa.String(ID_LEN), nullable=True),
    sa.Column("group_name", sa.String(10), nullable=False),
    sa.Column("variant", sa.String(ID_LEN), nullable=True),
    sa.Column("entered_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("wake_at", UTCDateTime, nullable=True),
    sa.Column("waiting_for", sa.String(200), nullable=True),
    sa.Column("exited_at", UTCDateTime, nullable=True),
    sa.Column("exit_reason", sa.String(20), nullable=True),
    sa.Column("converted_at", UTCDateTime, nullable=True),
    sa.Column("context", sa.Text, nullable=False),
    sa.UniqueConstraint("campaign", "customer_id", "entry_key", name="uq_campaign_entry"),
    sa.Index("ix_campaign_entries_wake", "wake_at"),
    sa.Index("ix_campaign_entries_customer", "customer_id", "status"),
)

#: The transactional outbox: written in the same transaction as the step that sends; the
#: primary key is the deterministic send id, so one step of one entry sends at most once.
campaign_outbox = sa.Table(
    "campaign_outbox",
    metadata,
    sa.Column("send_id", sa.String(64), primary_key=True),
    sa.Column("entry_id", sa.BigInteger, nullable=False, index=True),
    sa.Column("campaign", sa.String(ID_LEN), nullable=False),
    sa.Column("customer_id", sa.String(ID_LEN), nullable=False),
    sa.Column("step", sa.String(ID_LEN), nullable=False),
    sa.Column("variant", sa.String(ID_LEN), nullable=True),
    sa.Column("channel", sa.String(60), nullable=False),
    sa.Column("topic", sa.String(100), nullable=False),
    sa.Column("transactional", sa.Boolean, nullable=False),
    #: an email address, or a structured one as JSON (a customer's push subscriptions)
    sa.Column("address", sa.Text, nullable=True),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("reason", sa.String(40), nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("next_attempt_at", UTCDateTime, nullable=True),
    sa.Column("sent_at", UTCDateTime, nullable=True),
    sa.Column("provider_id", sa.String(200), nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Index("ix_campaign_outbox_due", "status", "next_attempt_at"),
    sa.Index("ix_campaign_outbox_customer", "customer_id", "sent_at"),
)

#: Addresses never to send to again on a channel (hard bounce, complaint).
campaign_suppressions = sa.Table(
    "campaign_suppressions",
    metadata,
    sa.Column("channel", sa.String(60), primary_key=True),
    sa.Column("address", sa.String(320), primary_key=True),
    sa.Column("reason", sa.String(20), nullable=False),
    sa.Column("ts", UTCDateTime, nullable=False),
)

#: Double opt-in: consent on these channels counts only once confirmed.
campaign_optins = sa.Table(
    "campaign_optins",
    metadata,
    sa.Column("customer_id", sa.String(ID_LEN), primary_key=True),
    sa.Column("channel", sa.String(60), primary_key=True),
    sa.Column("token", sa.String(64), nullable=False, unique=True),
    sa.Column("requested_at", UTCDateTime, nullable=False),
    sa.Column("confirmed_at", UTCDateTime, nullable=True),
)

CAMPAIGN_TABLES: Final = (campaign_entries, campaign_outbox, campaign_suppressions, campaign_optins)


# -- the decide API (migration 3) ----------------------------------------------------------
#: Every decision of ``POST /v1/decide``: the offer shown (or withheld, with the reason and
#: group), for frequency caps, conversion attribution and uplift against holdout and control.
decide_exposures = sa.Table(
    "decide_exposures",
    metadata,
    sa.Column("decision_id", sa.String(32), primary_key=True),
    sa.Column("customer_id", sa.String(ID_LEN), nullable=False),
    sa.Column("anonymous_id", sa.String(ID_LEN), nullable=True),
    sa.Column("source", sa.String(SOURCE_LEN), nullable=False),
    sa.Column("slot", sa.String(ID_LEN), nullable=False),
    sa.Column("offer", sa.String(ID_LEN), nullable=True),
    #: the campaign banner served (an outbox row of channel ``banner``)
    sa.Column("send_id", sa.String(64), nullable=True, index=True),
    sa.Column("persona", sa.String(ID_LEN), nullable=False),
    sa.Column("group_name", sa.String(10), nullable=False),
    sa.Column("reason", sa.String(20), nullable=False),
    sa.Column("shown", sa.Boolean, nullable=False),
    sa.Column("decided_at", UTCDateTime, nullable=False),
    sa.Column("clicked_at", UTCDateTime, nullable=True),
    sa.Column("converted_at", UTCDateTime, nullable=True),
    sa.Column("conversion_id", sa.String(ID_LEN), nullable=True),
    sa.Index("ix_decide_exposures_customer", "customer_id", "decided_at"),
    sa.Index("ix_decide_exposures_time", "decided_at"),
)

#: Thompson-sampling counts per (offer, persona): exposures at decision time, clicks and
#: conversions as they are attributed.
offer_stats = sa.Table(
    "offer_stats",
    metadata,
    sa.Column("offer", sa.String(ID_LEN), primary_key=True),
    sa.Column("persona", sa.String(ID_LEN), primary_key=True),
    sa.Column("exposures", sa.BigInteger, nullable=False),
    sa.Column("clicks", sa.BigInteger, nullable=False),
    sa.Column("conversions", sa.BigInteger, nullable=False),
)

DECIDE_TABLES: Final = (decide_exposures, offer_stats)


# -- migrations ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Migration:
    """One schema step. ``upgrade`` gets alembic ``Operations`` bound to the transaction."""

    version: int
    name: str
    upgrade: Callable[[Any], None]


def _baseline(op: Any) -> None:
    """Version 1 is the baseline: databases created before it do not exist."""


#: Append only; never edit a released step. Change ``metadata`` and add a step together.
def _campaigns(op: Any) -> None:
    """Version 2: campaign entries, the outbox, suppressions and double opt-in."""
    bind = op.get_bind()
    for table in CAMPAIGN_TABLES:
        table.create(bind, checkfirst=True)


def _decide(op: Any) -> None:
    """Version 3: decisions of the decide API and the offer counts it samples from."""
    bind = op.get_bind()
    for table in DECIDE_TABLES:
        table.create(bind, checkfirst=True)


def _long_addresses(op: Any) -> None:
    """Version 4: outbox addresses of any length (push subscriptions are JSON documents);
    SQLite does not enforce VARCHAR lengths, PostgreSQL does."""
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("campaign_outbox", "address", type_=sa.Text, existing_type=sa.String(320))


SUPPRESSION_KEY_MAX = 320


def suppression_key(address: str) -> str:
    """The suppression list's key of ``address``: itself, or a digest when it is longer than
    an email address can be (a push subscription's JSON)."""
    if len(address) <= SUPPRESSION_KEY_MAX:
        return address
    return "sha256:" + hashlib.sha256(address.encode()).hexdigest()


MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(1, "baseline", _baseline),
    Migration(2, "campaigns", _campaigns),
    Migration(3, "decide", _decide),
    Migration(4, "long_addresses", _long_addresses),
)
SCHEMA_VERSION: Final = MIGRATIONS[-1].version


# -- the database --------------------------------------------------------------------------
def database_url(value: str, project_dir: str | os.PathLike[str] = ".") -> URL:
    """The SQLAlchemy URL of a ``database`` setting; relative SQLite paths are made absolute
    against the project folder, ``postgresql://`` means psycopg 3."""
    try:
        url = make_url(value)
    except sa.exc.ArgumentError:
        raise ConfigError(
            f"database {value!r} is not a database URL; use sqlite:///data/journeymap.db or "
            "postgresql://user@host/dbname"
        ) from None
    backend = url.get_backend_name()
    if backend == "sqlite":
        path = url.database or ""
        if path in ("", ":memory:") or path.startswith("file:"):
            raise ConfigError(
                f"database {value!r}: an in-memory SQLite database loses every acknowledged "
                "event; give a file, e.g. sqlite:///data/journeymap.db"
            )
        if not os.path.isabs(path):
            url = url.set(database=str((Path(project_dir) / path).resolve()))
        return url
    if backend in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")
    raise ConfigError(
        f"database {value!r}: unsupported backend {backend!r}; allowed: sqlite, postgresql"
    )


@dataclass
class _Task:
    """A write for the writer thread. Tasks of one ``group`` queued together run together."""

    fn: Callable[[Connection, list[Any]], list[Any]]
    item: Any
    future: Future[Any]
    group: str | None = None
    size: int = 1


@dataclass
class WriterStats:
    transactions: int = 0
    tasks: int = 0
    max_group: int = 0
    errors: int = 0
    pending_size: int = 0


def sqlite_setup(dbapi_conn: Any, *, synchronous: str) -> None:
    """A new pysqlite connection as journeymap uses it: WAL, ``synchronous`` as given, a 30 s
    busy timeout, and transactions begun by the caller (pysqlite's own handling would defer
    BEGIN past the first read)."""
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA synchronous={synchronous}")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


class OperationalDB:
    """The operational database at ``url`` (a SQLAlchemy URL or string).

    ``write(fn)`` runs ``fn(connection)`` in a transaction on the writer thread and returns its
    result; ``submit_grouped`` queues a write that may share its transaction with others.
    ``connect()`` gives a read connection from the pool.
    """

    def __init__(self, url: str | URL, *, migrate: bool = True, group_limit: int = 20_000) -> None:
        self.url = make_url(url) if isinstance(url, str) else url
        self.dialect = self.url.get_backend_name()
        self.group_limit = group_limit
        self.engine = self._create_engine()
        self._queue: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.stats = WriterStats()
        if migrate:
            try:
                self.migrate()
            except BaseException:
                self.engine.dispose()
                raise

    def __repr__(self) -> str:
        return f"OperationalDB({self.url.render_as_string(hide_password=True)!r})"

    # -- engine -----------------------------------------------------------------------------
    def _create_engine(self) -> Engine:
        if self.dialect == "sqlite":
            assert self.url.database
            Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(self.url, connect_args={"timeout": 30})

            @sa.event.listens_for(engine, "connect")
            def _on_connect(dbapi_conn: Any, record: Any) -> None:
                # FULL: the WAL is fsynced at every commit, so an acknowledged batch survives
                # a power cut, not only a process kill (NORMAL would only survive the latter).
                sqlite_setup(dbapi_conn, synchronous="FULL")

            @sa.event.listens_for(engine, "begin")
            def _on_begin(conn: Connection) -> None:
                # Writers take the write lock up front: no deadlock-prone lock upgrades.
                immediate = conn.get_execution_options().get("jm_write", False)
                conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

            return engine
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise MissingExtraError(
                "psycopg", "postgres", "PostgreSQL as the operational database"
            ) from None
        return sa.create_engine(self.url, pool_pre_ping=True, pool_size=5, max_overflow=10)

    @contextlib.contextmanager
    def connect(self) -> Iterator[Connection]:
        """A read connection (its reads see one snapshot until the block ends)."""
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except sa.exc.SQLAlchemyError as exc:
            raise classify(exc) from exc

    @contextlib.contextmanager
    def _write_connection(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn.execution_options(jm_write=True)

    # -- migrations -------------------------------------------------------------------------
    def schema_version(self) -> int | None:
        with self.connect() as conn:
            if not sa.inspect(conn).has_table("schema_migrations"):
                return None
            return conn.execute(sa.select(sa.func.max(schema_migrations.c.version))).scalar()

    def migrate(self) -> int:
        """Bring the schema to ``SCHEMA_VERSION``; returns the number of steps applied."""
        from alembic.migration import MigrationContext
        from alembic.operations import Operations

        try:
            with self._write_connection() as conn, conn.begin():
                if self.dialect == "postgresql":
                    # one migrator at a time across processes; released at commit
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(7405223)"))
                now = utcnow()
                if not sa.inspect(conn).has_table("schema_migrations"):
                    metadata.create_all(conn)
                    conn.execute(
                        schema_migrations.insert(),
                        [
                            {"version": m.version, "name": m.name, "applied_at": now}
                            for m in MIGRATIONS
                        ],
                    )
                    return len(MIGRATIONS)
                current = conn.execute(sa.select(sa.func.max(schema_migrations.c.version))).scalar()
                current = current or 0
                if current > SCHEMA_VERSION:
                    raise StoreError(
                        f"the operational database {self!r} has schema version {current}, newer "
                        f"than this journeymap's {SCHEMA_VERSION}: upgrade journeymap"
                    )
                todo = [m for m in MIGRATIONS if m.version > current]
                ops = Operations(MigrationContext.configure(connection=conn))
                for m in todo:
                    log.info("migrating the operational database to v%d (%s)", m.version, m.name)
                    m.upgrade(ops)
                    conn.execute(
                        schema_migrations.insert(),
                        {"version": m.version, "name": m.name, "applied_at": now},
                    )
                return len(todo)
        except sa.exc.SQLAlchemyError as exc:
            raise classify(exc) from exc

    # -- the writer -------------------------------------------------------------------------
    def _ensure_writer(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._closed:
                raise StoreUnavailableError(f"{self!r} is closed")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._writer_loop, name="journeymap-db-writer", daemon=True
                )
                self._thread.start()

    def submit(self, fn: Callable[[Connection], T]) -> Future[T]:
        """Queue ``fn(connection)`` to run in its own write transaction."""
        fut: Future[T] = Future()
        self._put(_Task(lambda conn, items: [fn(conn)], None, fut))
        return fut

    def submit_grouped(
        self,
        group: str,
        fn: Callable[[Connection, list[Any]], list[Any]],
        item: Any,
        size: int = 1,
    ) -> Future[Any]:
        """Queue ``item`` for ``fn(connection, items)``, which gets every item of ``group``
        queued at the time (group commit) and returns one result per item."""
        fut: Future[Any] = Future()
        self._put(_Task(fn, item, fut, group, size))
        return fut

    def write(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn(connection)`` in a write transaction and return its result."""
        return self.submit(fn).result()

    @property
    def pending(self) -> int:
        """Size of the writes queued and not yet committed (items, as given by callers)."""
        return self.stats.pending_size

    def _put(self, task: _Task) -> None:
        self._ensure_writer()
        with self._lock:
            if self._closed:
                raise StoreUnavailableError(f"{self!r} is closed")
            self.stats.pending_size += task.size
        self._queue.put(task)

    def _writer_loop(self) -> None:
        carry: _Task | None = None
        conn: Connection | None = None
        while True:
            task = carry if carry is not None else self._queue.get()
            carry = None
            if task is None:
                break
            batch = [task]
            if task.group is not None:
                size = task.size
                while size < self.group_limit:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:  # stop after this batch
                        self._queue.put(None)
                        break
                    if nxt.group != task.group:
                        carry = nxt
                        break
                    batch.append(nxt)
                    size += nxt.size
            try:
                if conn is None or conn.invalidated or conn.closed:
                    conn = self.engine.connect().execution_options(jm_write=True)
                with conn.begin():
                    results = task.fn(conn, [t.item for t in batch])
            except BaseException as exc:  # every waiter must hear about it
                err = classify(exc) if isinstance(exc, sa.exc.SQLAlchemyError) else exc
                self.stats.errors += 1
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                conn = None
                for t in batch:
                    if not t.future.done():
                        t.future.set_exception(err)
            else:
                for t, r in zip(batch, results, strict=True):
                    t.future.set_result(r)
                self.stats.transactions += 1
                self.stats.tasks += len(batch)
                self.stats.max_group = max(self.stats.max_group, len(batch))
            finally:
                with self._lock:
                    self.stats.pending_size -= sum(t.size for t in batch)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Finish queued writes, stop the writer and release connections."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join()
        self.engine.dispose()

    def __enter__(self) -> OperationalDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers ----------------------------------------------------------------------------
    def insert_ignore(self, table: sa.Table, keys: Sequence[str]) -> sa.Insert:
        """``INSERT … ON CONFLICT (keys) DO NOTHING`` for this database."""
        if self.dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            return sqlite_insert(table).on_conflict_do_nothing(index_elements=list(keys))
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing(index_elements=list(keys))

    def bump(self, conn: Connection, key: str, by: int = 1) -> None:
        """Increment counter ``key`` of the ``meta`` table (creating it at 0)."""
        conn.execute(self.insert_ignore(meta, ["key"]), {"key": key, "value": 0})
        conn.execute(meta.update().where(meta.c.key == key).values(value=meta.c.value + by))

    def counter(self, key: str) -> int:
        with self.connect() as conn:
            value = conn.execute(sa.select(meta.c.value).where(meta.c.key == key)).scalar()
        return int(value or 0)


_TRANSIENT_HINTS = (
    "database is locked",
    "disk i/o error",
    "database or disk is full",
    "unable to open database",
    "connection",
    "server closed",
    "terminating",
    "could not",
    "timeout",
    "no space left",
    "read-only",
)


def classify(exc: Exception) -> OperationalStoreError:
    """Turn a database exception into a transient or a permanent ``OperationalStoreError``."""
    if isinstance(exc, OperationalStoreError):
        return exc
    if isinstance(exc, sa.exc.DBAPIError):
        text = str(exc.orig).lower()
        if exc.connection_invalidated or (
            isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError)
            and any(h in text for h in _TRANSIENT_HINTS)
        ):
            return StoreUnavailableError(f"the operational database is unavailable: {exc.orig}")
        return StoreError(f"the operational database failed: {exc.orig}")
    if isinstance(exc, sa.exc.TimeoutError | sa.exc.DisconnectionError):
        return StoreUnavailableError(f"the operational database is unavailable: {exc}")
    return StoreError(f"the operational database failed: {exc!r}")
