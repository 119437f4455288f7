"""Helpers of the worker tests: a project with a one-email campaign, customers with consent,
``Signed Up`` events in the collector's inbox, and an aiosmtpd sink counting send ids."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from journeymap.storage.db import OperationalDB, campaign_optins, utcnow
from journeymap.storage.inbox import InboxStore
from journeymap.storage.profiles import ConsentChange, IdentityOp, ProfileStore

CAMPAIGN = """\
id: welcome
trigger: {event: Signed Up}
reentry: never
steps:
  - id: mail
    type: send
    channel: email
    topic: news
    message:
      email:
        subject: "Welcome {{ profile.first_name }}"
        html: '<p>Hi {{ profile.first_name }}</p><a href="https://shop.example/start">start</a>'
        text: "Hi {{ profile.first_name }}\\n.\\n..two dots\\n.one dot"
"""

SEND_ID = re.compile(rb"^X-Journeymap-Send-Id: *([0-9a-f]+)\r?$", re.M)
JOURNEYMAP = Path(sys.executable).with_name("journeymap")


class CountingSink:
    """aiosmtpd handler: counts every accepted message by its ``X-Journeymap-Send-Id``."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.bodies: dict[str, bytes] = {}
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.content
        m = SEND_ID.search(content)
        sid = m.group(1).decode() if m else "?"
        with self.lock:
            self.counts[sid] += 1
            self.bodies[sid] = content
        return "250 OK"

    def total(self) -> int:
        with self.lock:
            return sum(self.counts.values())


def write_project(root: Path, database: str, smtp_port: int, **settings: Any) -> Path:
    (root / "campaigns").mkdir(parents=True, exist_ok=True)
    (root / "campaigns" / "welcome.yaml").write_text(CAMPAIGN, encoding="utf-8")
    values = {
        "database": database,
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp_port,
        "quiet_hours": "",
        "tracking_base_url": "https://t.shop.example",
        "worker_interval_seconds": 0.1,
        **settings,
    }
    lines = ["[settings]"] + [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    (root / "journeymap.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def seed_customers(db: OperationalDB, n: int, prefix: str = "c") -> list[str]:
    """``n`` customers with an email, consent for email and a confirmed double opt-in."""
    now = utcnow()
    ids = [f"{prefix}{i:06d}" for i in range(n)]
    ops = [
        IdentityOp(
            kind="identify",
            event_id=f"seed-{cid}",
            source="crm",
            ts=now,
            user_id=cid,
            traits={"email": f"{cid}@example.com", "first_name": f"N{cid}"},
            consent=[ConsentChange("email", "*", "granted")],
        )
        for cid in ids
    ]
    ProfileStore(db).apply(ops, chunk=2000)

    def optins(conn: sa.Connection) -> None:
        conn.execute(
            campaign_optins.insert(),
            [
                {
                    "customer_id": cid,
                    "channel": "email",
                    "token": f"tok-{cid}",
                    "requested_at": now,
                    "confirmed_at": now,
                }
                for cid in ids
            ],
        )

    db.write(optins)
    return ids


def signup_messages(ids: list[str], source: str = "web") -> list[dict[str, Any]]:
    """``Signed Up`` track messages as the collector stores them."""
    received_us = time.time_ns() // 1000
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    rows = []
    for cid in ids:
        msg = {
            "type": "track",
            "messageId": f"signup-{cid}",
            "userId": cid,
            "event": "Signed Up",
            "timestamp": stamp,
            "receivedAt": stamp,
            "properties": {"plan": "free"},
        }
        rows.append(
            {
                "source": source,
                "message_id": msg["messageId"],
                "received_at_us": received_us,
                "payload": json.dumps(msg),
            }
        )
    return rows


def append_inbox(db: OperationalDB, rows: list[dict[str, Any]], chunk: int = 5000) -> None:
    store = InboxStore(db)
    for i in range(0, len(rows), chunk):
        store.append(rows[i : i + chunk])  # type: ignore[arg-type]


def worker_command(project: Path, *args: str) -> list[str]:
    return [str(JOURNEYMAP), "--project", str(project), "worker", *args]


def start_worker(project: Path, *args: str, log: Path | None = None) -> subprocess.Popen[bytes]:
    with open(log or project / "worker.log", "ab") as err:  # the child keeps its own copy
        return subprocess.Popen(
            worker_command(project, *args), stdout=subprocess.DEVNULL, stderr=err
        )


class CompletingSMTP(SMTP):
    """aiosmtpd's server, except that an end of data (``<CRLF>.<CRLF>``) that arrived before
    the client's EOF or reset is still processed, as RFC 5321 §4.1.1.4 asks and MTAs such as
    Postfix do: aiosmtpd cancels its session at EOF (and when asyncio then reports the
    connection lost) even while the rest of a complete DATA waits in its read buffer, which
    drops a message whose sender was killed right after the final dot (the worker's commit
    point)."""

    def _buffered_lines(self) -> bool:
        pending = bytes(getattr(self._reader, "_buffer", b""))
        return self._handler_coroutine is not None and pending.endswith(b"\r\n")

    def _finish_later(self) -> None:
        # let the session read what is buffered; the end of the stream ends it after that
        self._reader.feed_eof()
        coroutine = self._handler_coroutine
        assert coroutine is not None
        self.loop.call_later(1.0, coroutine.cancel)

    def eof_received(self) -> bool | None:
        if self._buffered_lines():
            self._finish_later()
            return None
        return super().eof_received()

    def connection_lost(self, error: Exception | None) -> None:
        if self._buffered_lines():
            self._finish_later()  # the session's own end closes the transport
            if self._timeout_handle is not None:
                self._timeout_handle.cancel()
            return
        super().connection_lost(error)


class SinkController(Controller):
    def factory(self) -> SMTP:
        return CompletingSMTP(self.handler, **self.SMTP_kwargs)
