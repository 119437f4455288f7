"""The operational database and the inbox, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from journeymap.errors import ConfigError
from journeymap.storage.db import (
    SCHEMA_VERSION,
    OperationalDB,
    StoreError,
    StoreUnavailableError,
    classify,
    database_url,
    now_us,
    schema_migrations,
)
from journeymap.storage.inbox import InboxStore


def rows(n, source="web", prefix="m"):
    return [
        {
            "source": source,
            "message_id": f"{prefix}{i}",
            "received_at_us": now_us(),
            "payload": f'{{"i":{i}}}',
        }
        for i in range(n)
    ]


def test_new_database_is_stamped_and_reopening_migrates_nothing(url):
    with OperationalDB(url) as db:
        assert db.schema_version() == SCHEMA_VERSION
    with OperationalDB(url, migrate=False) as db:
        assert db.migrate() == 0


def test_a_newer_schema_is_refused_with_the_fix(url):
    with OperationalDB(url) as db:
        db.write(
            lambda c: c.execute(
                schema_migrations.insert().values(
                    version=SCHEMA_VERSION + 1, name="future", applied_at=sa.func.now()
                )
            )
        )
    with pytest.raises(StoreError, match=r"newer than this journeymap.*upgrade journeymap"):
        OperationalDB(url)


def test_processes_opening_a_new_database_together_do_not_race(url):
    errors = []

    def open_once():
        try:
            OperationalDB(url).close()
        except Exception as exc:  # pragma: no cover - the assertion shows it
            errors.append(exc)

    threads = [threading.Thread(target=open_once) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_resent_messages_are_stored_once(db):
    inbox = InboxStore(db)
    inbox.append(rows(10))
    inbox.append(rows(10) + rows(5, prefix="n"))
    inbox.append(rows(3, source="app"))  # same ids, another source: other messages
    assert inbox.stats().pending == 18
    assert len(inbox.message_ids("web")) == 15


def test_concurrent_batches_share_commits_and_are_durable_when_acknowledged(db):
    inbox = InboxStore(db)
    with ThreadPoolExecutor(16):
        futures = [inbox.submit(rows(50, prefix=f"b{b}-")) for b in range(200)]
        for f in futures:
            f.result()
    # every acknowledged row is visible to a fresh connection
    assert inbox.stats().pending == 10_000
    # group commit: fewer transactions than batches
    assert db.stats.transactions < 200
    assert db.stats.max_group > 1
    assert db.pending == 0


def test_the_loader_marks_exactly_the_rows_it_read(db):
    inbox = InboxStore(db)
    inbox.append(rows(5))
    first = inbox.pending(3)
    inbox.append(rows(2, prefix="late"))  # arrives while the loader works
    db.write(lambda c: inbox.mark_loaded(c, [p.seq for p in first]))
    left = inbox.pending(100)
    assert sorted(p.message_id for p in left) == ["late0", "late1", "m3", "m4"]
    stats = inbox.stats()
    assert (stats.pending, stats.loaded) == (4, 3)
    # a loaded key still drops resends (its payload is gone)
    inbox.append(rows(1))
    assert inbox.stats().pending == 4


def test_prune_forgets_only_loaded_keys_older_than_the_cutoff(db):
    inbox = InboxStore(db)
    inbox.append(rows(4))
    loaded = inbox.pending(2)
    db.write(lambda c: inbox.mark_loaded(c, [p.seq for p in loaded]))
    assert inbox.prune(now_us() + 1) == 2
    assert inbox.stats().pending == 2
    assert inbox.prune(now_us() + 1) == 0


def test_dead_letters_are_unique_per_message_and_keep_their_reason(db):
    inbox = InboxStore(db)
    dead = {
        "source": "web",
        "message_id": "x",
        "received_at_us": now_us(),
        "reason": "event.missing",
        "detail": "a track needs an event",
        "user_id": "u",
        "anonymous_id": None,
        "payload": "{}",
    }
    inbox.append([], [dead])
    inbox.append([], [dead, {**dead, "message_id": None}, {**dead, "message_id": None}])
    got = inbox.dead_letters()
    assert len(got) == 3
    assert {d.reason for d in got} == {"event.missing"}


def test_database_errors_are_classified_transient_or_permanent():
    locked = sa.exc.OperationalError("INSERT", {}, Exception("database is locked"))
    assert isinstance(classify(locked), StoreUnavailableError)
    broken = sa.exc.IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed"))
    assert isinstance(classify(broken), StoreError)
    assert not isinstance(classify(broken), StoreUnavailableError)


def test_database_urls_are_resolved_and_checked(tmp_path):
    url = database_url("sqlite:///data/x.db", tmp_path)
    assert url.database == str(tmp_path / "data" / "x.db")
    assert database_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    with pytest.raises(ConfigError, match="in-memory SQLite database loses"):
        database_url("sqlite://")
    with pytest.raises(ConfigError, match="unsupported backend 'mysql'"):
        database_url("mysql://u@h/db")


def test_writes_after_close_fail_cleanly(url):
    db = OperationalDB(url)
    db.close()
    with pytest.raises(StoreUnavailableError, match="closed"):
        InboxStore(db).submit(rows(1))
