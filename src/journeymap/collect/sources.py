"""Sources: named senders of events, each with a write key (``journeymap sources add web``).

Only a SHA-256 of a key is stored, with its first characters as a hint; the key itself is shown
once, when it is created (or rotated). Write keys are not secrets in the strict sense (browser
snippets carry them), but the database never needs them in clear. Lookups are cached; a key the
cache does not know triggers at most one reload per second, so unknown keys cannot hammer the
database.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Final

import sqlalchemy as sa

from journeymap.errors import ConfigError
from journeymap.storage.db import OperationalDB, sources, utcnow

NAME_RE: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")


@dataclass(frozen=True)
class Source:
    name: str
    key_hint: str
    #: events per second; ``None``: the ``collector_rate_limit`` setting applies
    rate_limit: int | None = None


def key_hash(write_key: str) -> str:
    return hashlib.sha256(write_key.encode("utf-8", "surrogatepass")).hexdigest()


def new_write_key() -> str:
    # URL-safe characters only: the key is the username of a Basic header (no colon).
    return secrets.token_urlsafe(24)


class SourceRegistry:
    """The ``sources`` table, with a cache of key hashes for the request path."""

    def __init__(
        self, db: OperationalDB, *, reload_interval: float = 1.0, max_age: float = 30.0
    ) -> None:
        self.db = db
        self.reload_interval = reload_interval
        self.max_age = max_age
        self._by_hash: dict[str, Source] = {}
        self._loaded_at = -1e9
        self._lock = threading.Lock()

    def add(
        self, name: str, *, write_key: str | None = None, rate_limit: int | None = None
    ) -> tuple[Source, str]:
        """Create a source; returns it and its write key (shown once)."""
        if not NAME_RE.fullmatch(name):
            raise ConfigError(
                f"source name {name!r} is not allowed: use 1-40 lower-case letters, digits, "
                "'-' or '_', starting with a letter or digit (e.g. web, ios-app)"
            )
        if rate_limit is not None and rate_limit <= 0:
            raise ConfigError(f"rate limit {rate_limit} must be a positive number of events/s")
        key = write_key or new_write_key()
        if ":" in key or not key.strip():
            raise ConfigError("a write key must be non-empty and contain no ':'")
        src = Source(name, key[:4] + "…", rate_limit)

        def run(conn: sa.Connection) -> None:
            exists = conn.execute(
                sa.select(sources.c.name).where(
                    (sources.c.name == name) | (sources.c.key_hash == key_hash(key))
                )
            ).first()
            if exists is not None:
                raise ConfigError(
                    f"source {name!r} exists already (or the key is taken); see "
                    "`journeymap sources list`, or `journeymap sources rotate NAME` for a new key"
                )
            conn.execute(
                sources.insert().values(
                    name=name,
                    key_hash=key_hash(key),
                    key_hint=src.key_hint,
                    rate_limit=rate_limit,
                    created_at=utcnow(),
                )
            )

        self.db.write(run)
        self._forget()
        return src, key

    def rotate(self, name: str) -> str:
        """Give ``name`` a new write key (the old one stops working); returns the key."""
        key = new_write_key()

        def run(conn: sa.Connection) -> int:
            return int(
                conn.execute(
                    sources.update()
                    .where(sources.c.name == name)
                    .values(key_hash=key_hash(key), key_hint=key[:4] + "…")
                ).rowcount
            )

        if not self.db.write(run):
            raise ConfigError(self._unknown(name))
        self._forget()
        return key

    def remove(self, name: str) -> None:
        def run(conn: sa.Connection) -> int:
            return int(conn.execute(sources.delete().where(sources.c.name == name)).rowcount)

        if not self.db.write(run):
            raise ConfigError(self._unknown(name))
        self._forget()

    def _forget(self) -> None:
        self._by_hash = {}
        self._loaded_at = -1e9

    def list(self) -> list[Source]:
        with self.db.connect() as conn:
            rows = conn.execute(
                sa.select(sources.c.name, sources.c.key_hint, sources.c.rate_limit).order_by(
                    sources.c.name
                )
            )
            return [Source(n, h, r) for n, h, r in rows]

    def _unknown(self, name: str) -> str:
        known = ", ".join(s.name for s in self.list()) or "none yet"
        return f"no source {name!r}; known: {known}. Create it with `journeymap sources add {name}`"

    def lookup(self, write_key: str) -> Source | None:
        """The source of a write key, or ``None``."""
        h = key_hash(write_key)
        age = time.monotonic() - self._loaded_at
        src = self._by_hash.get(h)
        if src is not None and age < self.max_age:
            return src
        with self._lock:
            # a miss reloads at most once per reload_interval; hits re-check after max_age,
            # so a key removed by another process stops working within that time
            if time.monotonic() - self._loaded_at >= self.reload_interval:
                self.reload()
        return self._by_hash.get(h)

    def reload(self) -> None:
        with self.db.connect() as conn:
            rows = conn.execute(
                sa.select(
                    sources.c.key_hash, sources.c.name, sources.c.key_hint, sources.c.rate_limit
                )
            )
            self._by_hash = {h: Source(n, hint, r) for h, n, hint, r in rows}
        self._loaded_at = time.monotonic()
