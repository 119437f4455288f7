"""Console and file channels: one JSON line per message (demos, dry runs, audits)."""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
from pathlib import Path
from typing import TextIO

from journeymap.channels.base import BaseChannel, DeliveryResult, OutboundMessage


def _line(message: OutboundMessage) -> str:
    return json.dumps(dataclasses.asdict(message), ensure_ascii=False, default=str) + "\n"


class ConsoleChannel(BaseChannel):
    def __init__(self, stream: TextIO | None = None) -> None:
        self.name = "console"
        self.stream = stream

    def send(self, message: OutboundMessage) -> DeliveryResult:
        out = self.stream or sys.stdout
        out.write(_line(message))
        out.flush()
        return DeliveryResult(message.send_id)


class FileChannel(BaseChannel):
    """Appends JSON lines to ``path``."""

    def __init__(self, path: str | Path) -> None:
        self.name = "file"
        self.path = Path(path)
        self._lock = threading.Lock()

    def send(self, message: OutboundMessage) -> DeliveryResult:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, self.path.open("a", encoding="utf-8") as f:
            f.write(_line(message))
        return DeliveryResult(message.send_id)
