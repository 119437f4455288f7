"""The collector: authenticate, rate-limit, validate and durably store one request's messages.

``Collector.accept`` returns only after the transaction holding the batch has committed (the
caller then answers 200), and raises a ``CollectorError`` that says which status to answer
otherwise: 429 over a source's rate or when too many events wait for the writer (backpressure,
with ``Retry-After``), 503 when the database is transiently unavailable. HTTP stays in the
server; this module knows messages, sources and the inbox.

``Faults`` is the test hook (as dlt's fault-injecting dummy destination): it makes the next
requests fail before storing, or *after* storing — the client then resends a batch that is
already durable, which must not create a single duplicate.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from journeymap.collect.errors import (
    CollectorError,
    CollectorUnavailableError,
    RateLimitedError,
    UnknownWriteKeyError,
)
from journeymap.collect.messages import MessageLimits, prepare
from journeymap.collect.sources import Source, SourceRegistry
from journeymap.collect.wire import Envelope
from journeymap.storage.db import OperationalDB, StoreUnavailableError, now_us
from journeymap.storage.inbox import InboxStore


@dataclass(frozen=True)
class CollectorConfig:
    max_request_bytes: int = 512_000
    max_message_bytes: int = 32_768
    max_depth: int = 32
    #: default events/s per source (0: unlimited); a source's own limit wins
    rate_limit: int = 0
    #: events waiting for the writer beyond which requests get 429
    max_queued_events: int = 50_000


@dataclass(frozen=True)
class Accepted:
    """What happened to one request's messages."""

    received: int
    stored: int
    dead_letters: int


class InjectedFaultError(CollectorError):
    """A failure made on purpose by ``Faults`` (tests only)."""

    status = 500


class Faults:
    """Make the next requests fail (thread-safe counters; tests only)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.before_store = 0
        self.after_store = 0
        self.status = 500
        self.injected = 0

    def fail_next(self, n: int = 1, *, after_store: bool = False, status: int = 500) -> None:
        with self._lock:
            if after_store:
                self.after_store += n
            else:
                self.before_store += n
            self.status = status

    def take(self, after_store: bool) -> bool:
        with self._lock:
            left = self.after_store if after_store else self.before_store
            if left <= 0:
                return False
            if after_store:
                self.after_store -= 1
            else:
                self.before_store -= 1
            self.injected += 1
            return True

    def error(self, when: str) -> InjectedFaultError:
        err = InjectedFaultError("injected_fault", f"fault injected {when} storing (test hook)")
        err.status = self.status
        return err


class _TokenBuckets:
    """Events per second per source. A request may overdraw the bucket (a batch is never
    split); the next ones wait until it refills, and are told how long."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._state: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, name: str, rate: int, n: int) -> float:
        """0 when allowed (and taken), else the seconds to wait."""
        now = self._clock()
        with self._lock:
            tokens, last = self._state.get(name, (float(rate), now))
            tokens = min(float(rate), tokens + (now - last) * rate)
            if tokens <= 0:
                self._state[name] = (tokens, now)
                return -tokens / rate if rate else 0.0
            self._state[name] = (tokens - n, now)
            return 0.0


class Collector:
    """Accepts requests for the sources of ``db`` into its inbox."""

    def __init__(
        self,
        db: OperationalDB,
        config: CollectorConfig | None = None,
        *,
        registry: SourceRegistry | None = None,
        faults: Faults | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.config = config or CollectorConfig()
        self.inbox = InboxStore(db)
        self.registry = registry or SourceRegistry(db)
        self.faults = faults
        self.limits = MessageLimits(self.config.max_message_bytes, self.config.max_depth)
        self._buckets = _TokenBuckets(clock)

    def authenticate(self, write_key: str | None) -> Source:
        if not write_key:
            raise UnknownWriteKeyError(
                "missing_write_key",
                "no write key: send it as the Basic username, as writeKey in the body, or as "
                "the PostHog api_key",
            )
        source = self.registry.lookup(write_key)
        if source is None:
            raise UnknownWriteKeyError(
                "unknown_write_key",
                "the write key belongs to no source; create one with `journeymap sources add NAME`",
                {"key_hint": write_key[:4] + "…"},
            )
        return source

    def admit(self, source: Source, n: int) -> None:
        """Raise ``RateLimitedError`` when the source is over its rate or the writer's queue
        is full; otherwise take ``n`` events from the source's allowance."""
        if self.db.pending > self.config.max_queued_events:
            raise RateLimitedError(
                "overloaded",
                "the collector is busy storing earlier batches; retry shortly",
                {"queued_events": self.db.pending},
                retry_after=1,
            )
        rate = source.rate_limit or self.config.rate_limit
        if rate and n:
            wait = self._buckets.take(source.name, rate, n)
            if wait > 0:
                raise RateLimitedError(
                    "rate_limited",
                    f"source {source.name!r} is over its rate limit of {rate} events/s",
                    {"rate_limit": rate},
                    retry_after=max(1, math.ceil(wait)),
                )

    async def accept(self, source: Source, envelope: Envelope) -> Accepted:
        """Store the messages of one request; returns once they are durable."""
        self.admit(source, len(envelope.messages))
        if self.faults is not None and self.faults.take(after_store=False):
            raise self.faults.error("before")
        received = now_us()
        rows, dead = prepare(envelope, source.name, received, self.limits)
        if rows or dead:
            try:
                await asyncio.wrap_future(self.inbox.submit(rows, dead))
            except StoreUnavailableError as exc:
                raise CollectorUnavailableError(
                    "store_unavailable",
                    "the batch could not be stored right now; retry shortly",
                    str(exc),
                    retry_after=1,
                ) from exc
        if self.faults is not None and self.faults.take(after_store=True):
            raise self.faults.error("after")
        return Accepted(len(envelope.messages), len(rows), len(dead))
