"""SIGKILL at random moments while a client streams 100,000 events with retries: after a
restart the lake holds every acknowledged event exactly once.

The server runs as a subprocess with its in-process loader every 0.2 s, so the kills land in
request handling, in group commits and in loader rounds (between the lake commit and the inbox
checkpoint too). The client resends every batch until it gets a 200, as the SDKs do.
"""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid

import httpx
import pytest

from journeymap.collect.loader import InboxLoader
from journeymap.collect.sources import SourceRegistry
from journeymap.config import Settings
from journeymap.server.testing import free_port
from journeymap.storage.db import OperationalDB, database_url
from journeymap.storage.inbox import InboxStore
from journeymap.storage.lake import DeltaEventStore

pytestmark = pytest.mark.slow

EVENTS = 100_000
BATCH = 100
SENDERS = 4
KILLS = 8
DEADLINE_S = 300


class Server:
    def __init__(self, project, port):
        self.project, self.port = project, port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self):
        with open(self.project / "server.log", "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "journeymap.server",
                    "--project",
                    str(self.project),
                    "--port",
                    str(self.port),
                    "--log-level",
                    "error",
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        self.starts += 1
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("the server did not come up; see server.log")

    def kill(self):
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)


def test_sigkill_at_random_moments_loses_no_acknowledged_event_and_doubles_none(tmp_path):
    project = tmp_path
    (project / "journeymap.toml").write_text(
        "[settings]\nloader_interval_seconds = 0.2\nloader_batch_size = 5000\n"
    )
    settings = Settings.load(project)
    db = OperationalDB(database_url(settings.database, project))
    _, key = SourceRegistry(db).add("web")
    db.close()
    auth = {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}

    batches = [
        [
            {
                "type": "track",
                "event": "e",
                "userId": f"u{(b * BATCH + i) % 997}",
                "messageId": uuid.uuid4().hex,
                "timestamp": "2026-05-01T12:00:00Z",
            }
            for i in range(BATCH)
        ]
        for b in range(EVENTS // BATCH)
    ]
    bodies = [json.dumps({"batch": batch}).encode() for batch in batches]
    todo = list(range(len(batches)))
    todo_lock = threading.Lock()
    acked: set[int] = set()
    deadline = time.monotonic() + DEADLINE_S
    server = Server(project, free_port())
    server.start()
    rng = random.Random(20261123)
    # kill at random points of the stream (so the run takes the stream's time plus KILLS
    # restarts, even on a loaded machine), a random fraction of a second after each point
    kill_points = sorted(rng.sample(range(20, len(batches) - 20), KILLS))
    stop_killing = threading.Event()
    kills = 0
    failures = 0

    def sender():
        nonlocal failures
        headers = {**auth, "Content-Type": "application/json"}
        with httpx.Client(base_url=server.url, timeout=10) as http:
            while time.monotonic() < deadline:
                with todo_lock:
                    if not todo:
                        return
                    b = todo.pop()
                delay = 0.05
                while time.monotonic() < deadline:
                    try:
                        r = http.post("/v1/batch", content=bodies[b], headers=headers)
                        if r.status_code == 200:
                            acked.add(b)
                            break
                        assert r.status_code in (429, 500, 503), r.text
                    except httpx.HTTPError:
                        pass
                    failures += 1
                    time.sleep(delay)
                    delay = min(delay * 2, 0.5)

    def killer():
        nonlocal kills
        for point in kill_points:
            while len(acked) < point:
                if stop_killing.wait(0.01):
                    return
            time.sleep(rng.uniform(0, 0.4))
            server.kill()
            kills += 1
            server.start()

    threads = [threading.Thread(target=sender) for _ in range(SENDERS)]
    kill_thread = threading.Thread(target=killer)
    for t in threads:
        t.start()
    kill_thread.start()
    for t in threads:
        t.join()
    stop_killing.set()
    kill_thread.join()
    server.kill()  # one last time, at whatever it was doing

    assert time.monotonic() < deadline, f"only {len(acked)} batches acknowledged in time"
    assert kills == KILLS

    # restart: a fresh loader finishes what the killed ones left
    db = OperationalDB(database_url(settings.database, project))
    store = DeltaEventStore(settings.lake)
    InboxLoader(db, store).load_all()
    assert InboxStore(db).stats().pending == 0
    db.close()

    ids = store.read(["event_id"]).column(0).to_pylist()
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} events were doubled"
    acked_ids = {f"web:{m['messageId']}" for b in acked for m in batches[b]}
    assert acked_ids <= set(ids), f"{len(acked_ids - set(ids))} acknowledged events were lost"
    assert len(acked) == len(batches)
    assert len(ids) == EVENTS
    print(
        f"\ncrash test: {kills} SIGKILLs, {failures} failed requests retried, "
        f"{len(ids)} events exactly once"
    )
