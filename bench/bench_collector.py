"""Collector load test: batches of 100 events posted concurrently over loopback.

    .venv/bin/python bench/bench_collector.py [--seconds 15] [--connections 16]

Starts, as subprocesses on 127.0.0.1, (1) the real server (`python -m journeymap.server`,
SQLite in WAL mode with synchronous=FULL: every 200 means the batch is fsynced) with the loader
off, (2) the same with the loader moving the inbox into the lake every 2 s, and (3) a bare
endpoint under the same uvicorn that only reads the body and parses the JSON. A loopback load
generator (asyncio, keep-alive HTTP/1.1, pre-built bodies so the generator costs little) keeps
``--connections`` requests in flight for ``--seconds`` (after a warm-up) and reports events/s
and per-batch latency. The collector's own cost is the ratio against the bare endpoint.

Only loopback addresses; every loop is bounded by time and by count.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
BATCH = 100
MAX_REQUESTS = 200_000  # hard bound per run, whatever the duration


@dataclass
class RunResult:
    name: str
    requests: int
    events: int
    seconds: float
    latencies_ms: list[float]
    errors: int

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds

    def pct(self, p: float) -> float:
        xs = sorted(self.latencies_ms)
        return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_up(port: int, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited during start")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {HOST}:{port}")


def body_factory(run: str):
    template = (
        '{"type":"track","event":"Product Viewed","userId":"u%d","anonymousId":"a%d",'
        '"messageId":"%s-%d","timestamp":"2026-05-01T12:%02d:%02d.000Z",'
        '"properties":{"product_id":"p%d","price":12.5,"category":"shoes"},'
        '"context":{"library":{"name":"bench","version":"1"},'
        '"campaign":{"medium":"email","name":"spring"}}}'
    )

    def make(i: int) -> bytes:
        msgs = ",".join(
            template % (n % 5000, n % 7000, run, n, (n // 60) % 60, n % 60, n % 300)
            for n in range(i * BATCH, (i + 1) * BATCH)
        )
        return ('{"batch":[' + msgs + '],"sentAt":"2026-05-01T12:00:00.000Z"}').encode()

    return make


async def _worker(
    port: int,
    path: str,
    auth: str,
    bodies: list[bytes],
    counter: list[int],
    stop_at: float,
    measure_from: float,
    result: RunResult,
) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        while time.perf_counter() < stop_at and counter[0] < len(bodies):
            body = bodies[counter[0]]
            counter[0] += 1
            head = (
                f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: {auth}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            t0 = time.perf_counter()
            writer.write(head + body)
            await writer.drain()
            status_headers = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in status_headers.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            t1 = time.perf_counter()
            ok = status_headers.startswith(b"HTTP/1.1 200 ")
            if t0 >= measure_from:
                result.requests += 1
                if ok:
                    result.events += BATCH
                    result.latencies_ms.append((t1 - t0) * 1000)
                else:
                    result.errors += 1
    finally:
        writer.close()


async def _load(
    name: str,
    port: int,
    path: str,
    key: str,
    bodies: list[bytes],
    seconds: float,
    connections: int,
    warmup: float,
) -> RunResult:
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    start = time.perf_counter()
    result = RunResult(name, 0, 0, seconds, [], 0)
    counter = [0]
    await asyncio.gather(
        *(
            _worker(
                port, path, auth, bodies, counter, start + warmup + seconds, start + warmup, result
            )
            for _ in range(connections)
        )
    )
    elapsed = time.perf_counter() - start - warmup
    result.seconds = min(seconds, elapsed)
    return result


def run_load(name: str, port: int, path: str, key: str, args: argparse.Namespace) -> RunResult:
    make = body_factory(name.replace(" ", "-") + f"-{os.getpid()}")
    n = min(MAX_REQUESTS, int((args.seconds + args.warmup) * args.max_rate / BATCH))
    bodies = [make(i) for i in range(n)]
    return asyncio.run(
        _load(name, port, path, key, bodies, args.seconds, args.connections, args.warmup)
    )


# -- the servers ---------------------------------------------------------------------------
def bare_app():  # type: ignore[no-untyped-def]
    """The baseline: uvicorn + Starlette, read the body, parse the JSON, answer 200."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def batch(request):  # type: ignore[no-untyped-def]
        doc = json.loads(await request.body())
        assert isinstance(doc["batch"], list)
        return Response(b'{"success": true}', media_type="application/json")

    return Starlette(routes=[Route("/v1/batch", batch, methods=["POST"])])


def start_collector(project: Path, port: int, loader_interval: float) -> subprocess.Popen[bytes]:
    (project / "journeymap.toml").write_text(
        f"[settings]\nloader_interval_seconds = {loader_interval}\n"
        "collector_max_queued_events = 200000\n"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "journeymap.server",
            "--project",
            str(project),
            "--port",
            str(port),
            "--log-level",
            "error",
        ],
    )
    wait_up(port, proc)
    return proc


def start_bare(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve-bare", str(port)],
    )
    wait_up(port, proc)
    return proc


def add_source(project: Path) -> str:
    from journeymap.collect.sources import SourceRegistry
    from journeymap.config import Settings
    from journeymap.storage.db import OperationalDB, database_url

    settings = Settings.load(project)
    db = OperationalDB(database_url(settings.database, project))
    try:
        return SourceRegistry(db).add("bench")[1]
    finally:
        db.close()


def inbox_count(project: Path) -> int:
    from journeymap.config import Settings
    from journeymap.storage.db import OperationalDB, database_url
    from journeymap.storage.inbox import InboxStore

    settings = Settings.load(project)
    db = OperationalDB(database_url(settings.database, project))
    try:
        s = InboxStore(db).stats()
        return s.pending + s.loaded
    finally:
        db.close()


def load_backlog(project: Path) -> tuple[int, float]:
    """Time the loader over the inbox the run left (the lake and profiles start empty)."""
    from journeymap.collect.loader import InboxLoader
    from journeymap.config import Settings
    from journeymap.storage.db import OperationalDB, database_url
    from journeymap.storage.lake import DeltaEventStore

    settings = Settings.load(project)
    db = OperationalDB(database_url(settings.database, project))
    try:
        loader = InboxLoader(db, DeltaEventStore(settings.lake))
        t0 = time.perf_counter()
        n = sum(r.messages for r in loader.load_all())
        return n, time.perf_counter() - t0
    finally:
        db.close()


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--max-rate", type=float, default=30_000, help="bodies to pre-build for")
    parser.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--skip-loader-run", action="store_true")
    args = parser.parse_args()
    if args.serve_bare:
        import uvicorn

        uvicorn.run(
            bare_app(), host=HOST, port=args.serve_bare, log_level="error", access_log=False
        )
        return

    results: list[RunResult] = []
    loader_rates: list[tuple[int, float]] = []
    runs = [("collector", 0.0)] + ([] if args.skip_loader_run else [("collector+loader", 2.0)])
    for name, interval in runs:
        with tempfile.TemporaryDirectory(prefix="jm-bench-") as tmp:
            project = Path(tmp)
            key = add_source(project)
            port = free_port()
            proc = start_collector(project, port, interval)
            try:
                r = run_load(name, port, "/v1/batch", key, args)
            finally:
                stop(proc)
            stored = inbox_count(project)
            # every acknowledged event is in the inbox (warm-up ones too)
            assert stored >= r.events, (stored, r.events)
            results.append(r)
            if interval == 0:
                loader_rates.append(load_backlog(project))
    port = free_port()
    proc = start_bare(port)
    try:
        results.append(run_load("bare JSON endpoint", port, "/v1/batch", "x", args))
    finally:
        stop(proc)

    bare = results[-1]
    print(
        f"\n{args.connections} connections, batches of {BATCH}, {args.seconds:.0f} s "
        f"measured after {args.warmup:.0f} s warm-up, {os.cpu_count()} cores\n"
    )
    print("| endpoint | events/s | batches/s | p50 ms/batch | p99 ms/batch | errors |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r.name} | {r.events_per_s:,.0f} | {r.events_per_s / BATCH:,.0f} | "
            f"{r.pct(50):.1f} | {r.pct(99):.1f} | {r.errors} |"
        )
    for r in results[:-1]:
        print(
            f"\n{r.name}: {bare.events_per_s / r.events_per_s:.2f}× the bare endpoint's "
            f"cost per event (throughput ratio), p50 latency "
            f"{r.pct(50) / bare.pct(50):.2f}×"
        )
    for n, seconds in loader_rates:
        print(
            f"loader alone, afterwards: {n:,} messages into the lake in {seconds:.1f} s = "
            f"{n / seconds:,.0f} events/s (profiles included)"
        )
    mean = statistics.fmean(results[0].latencies_ms) if results[0].latencies_ms else 0
    print(f"mean latency (collector): {mean:.1f} ms")


if __name__ == "__main__":
    main()
