"""Which persona a customer belongs to, in memory for the decide API's hot path.

``journeymap personas`` (``analytics.personas``) writes its assignment table ``customer_id,
persona, persona_label`` to ``<cache_dir>/personas-<journey key>.parquet``. The index reads the
newest such file into a dict and reads it again when a newer file appears or the file changes
(checked at most every ``check_seconds``), so a new clustering reaches the decide API without
a restart. A profile trait ``persona`` (set by an identify call or a campaign ``update`` step)
wins over the file; a customer in neither is ``all``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

log = logging.getLogger(__name__)

UNKNOWN_PERSONA: Final = "all"
PERSONA_TRAIT: Final = "persona"
PATTERN: Final = "personas-*.parquet"


class PersonaIndex:
    """``customer_id`` → persona id from the newest assignment file in ``folder``."""

    def __init__(self, folder: str | Path, *, check_seconds: float = 5.0) -> None:
        self.folder = Path(folder)
        self.check_seconds = check_seconds
        self._map: dict[str, str] = {}
        self._stamp: tuple[str, int, int] | None = None
        self._checked = float("-inf")
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._map)

    def newest(self) -> Path | None:
        files = [p for p in self.folder.glob(PATTERN) if p.is_file()]
        return max(files, key=lambda p: (p.stat().st_mtime_ns, p.name)) if files else None

    def refresh(self, *, force: bool = False) -> bool:
        """Read the newest file if it changed; returns whether the mapping was replaced."""
        now = time.monotonic()
        if not force and now - self._checked < self.check_seconds:
            return False
        with self._lock:
            self._checked = now
            try:
                path = self.newest()
                if path is None:
                    changed = self._stamp is not None
                    self._map, self._stamp = {}, None
                    return changed
                st = path.stat()
                stamp = (str(path), st.st_mtime_ns, st.st_size)
                if stamp == self._stamp:
                    return False
                self._map = _read(path)
                self._stamp = stamp
                log.info("decide: %d persona assignments from %s", len(self._map), path.name)
                return True
            except OSError as exc:  # a file replaced while we looked: keep the old mapping
                log.warning("decide: could not read persona assignments: %s", exc)
                return False

    def persona(self, customer_id: str | None, traits: Mapping[str, Any]) -> str:
        """The trait ``persona``, else the assignment of ``customer_id``, else ``all``."""
        trait = traits.get(PERSONA_TRAIT)
        if isinstance(trait, str | int) and not isinstance(trait, bool) and str(trait):
            return str(trait)
        self.refresh()
        if customer_id is None:
            return UNKNOWN_PERSONA
        return self._map.get(customer_id, UNKNOWN_PERSONA)


def _read(path: Path) -> dict[str, str]:
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["customer_id", "persona"])
    ids = table.column("customer_id").to_pylist()
    personas = table.column("persona").to_pylist()
    return {
        c: str(p) for c, p in zip(ids, personas, strict=True) if c is not None and p is not None
    }
