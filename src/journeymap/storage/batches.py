"""Group commit: what a writer thread takes from its queue for one transaction."""

from __future__ import annotations

import queue
from typing import Protocol, TypeVar

T = TypeVar("T")


class _Queue(Protocol[T]):
    def get(self) -> T | None: ...
    def get_nowait(self) -> T | None: ...
    def put(self, item: T | None) -> None: ...


def next_batch(q: _Queue[T]) -> list[T] | None:
    """Wait for one item, then take every item already queued: one commit (one fsync) for
    all of them. ``None`` is the stop sentinel: returned as ``None`` when it comes first,
    put back when it comes after items (the writer stops after this batch)."""
    first = q.get()
    if first is None:
        return None
    batch = [first]
    while True:
        try:
            nxt = q.get_nowait()
        except queue.Empty:
            return batch
        if nxt is None:
            q.put(None)
            return batch
        batch.append(nxt)
