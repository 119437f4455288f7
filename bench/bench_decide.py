"""Decide API latency under an open-loop load: ``POST /v1/decide`` at a fixed arrival rate.

    .venv/bin/python bench/bench_decide.py [--rate 200] [--seconds 30] [--customers 100000]

Builds a project with ``--offers`` offers over three slots (eligibility by phase, persona and
a trait condition, holdouts, per-offer caps), ``--customers`` known customers in the
operational database (SQLite, WAL, synchronous=FULL) with traits and a persona assignment
file, and sampling counts for every (offer, persona). Then starts, as subprocesses on
127.0.0.1, (1) the real server (``python -m journeymap.server``, loader on as configured)
and (2) the floor: a trivial FastAPI endpoint returning a constant, under the same uvicorn.

The load is **open loop**: request *i* is due at ``start + i / rate`` and is sent then on a free
keep-alive connection (a new one when all are busy), whatever the earlier responses did; its
latency is measured from the *due* time to the end of the response, so a server that falls
behind shows its queueing (no coordinated omission). 90 % of requests name a known customer,
10 % an anonymous visitor. Prints p50/p95/p99/max, the achieved rate, errors and the load
average; after the run it checks that every answered decision is in ``decide_exposures`` (the
decision is durable before the answer).

Only loopback addresses; every loop is bounded by time and by count.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
SLOTS = ("home_hero", "cart_sidebar", "in_app_modal")
PHASES = ("awareness", "consideration", "preference", "purchase", "after_sale", "loyalty")
PERSONAS = ("bargain_hunters", "loyal_fans", "researchers", "impulse_buyers", "newcomers")
MAX_REQUESTS = 100_000  # hard bound per run, whatever the rate and duration


@dataclass
class RunResult:
    name: str
    due: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    connections: int = 0
    seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)
    load_before: float = 0.0
    load_after: float = 0.0
    #: CPU seconds the server process used during the run (user + system)
    server_cpu: float = float("nan")
    sent: int = 0

    def pct(self, p: float) -> float:
        xs = sorted(self.latencies_ms)
        return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0


# -- the project ---------------------------------------------------------------------------
def offers_yaml(n: int) -> str:
    lines = ["slots: [" + ", ".join(SLOTS) + "]", "offers:"]
    for i in range(n):
        slot = SLOTS[i % len(SLOTS)]
        rules = []
        if i % 4 == 1:
            rules.append(f"phases: [{PHASES[i % 6]}, {PHASES[(i + 1) % 6]}, {PHASES[(i + 2) % 6]}]")
        if i % 4 == 2:
            rules.append(f"personas: [{PERSONAS[i % 5]}, {PERSONAS[(i + 2) % 5]}]")
        if i % 4 == 3:
            rules.append("where: [{field: profile.orders, op: gte, value: 1}]")
        eligible = f"    eligible: {{{', '.join(rules)}}}\n" if rules else ""
        lines.append(
            f"  - id: offer_{i:02d}\n"
            f"    slots: [{slot}]\n"
            "    content:\n"
            f'      headline: "{{{{ profile.first_name }}}}, offer {i} is for you"\n'
            '      body: "Only this week, for {{ persona }}."\n'
            "      cta: Show me\n"
            f'      url: "https://shop.example/o/{i}?c={{{{ customer_id }}}}"\n'
            + eligible
            + ("    holdout: 0.05\n" if i % 5 == 0 else "")
            + ("    cap: {day: 5}\n" if i % 3 == 0 else "")
        )
    return "\n".join(lines) + "\n"


def build_project(
    project: Path, customers: int, offers: int, seed: int, loader_interval: float
) -> str:
    """Write the project (offers, personas, customers, counts); returns a write key."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import sqlalchemy as sa

    from journeymap.collect.sources import SourceRegistry
    from journeymap.config import Settings
    from journeymap.storage.db import (
        OperationalDB,
        database_url,
        identities,
        offer_stats,
        profiles,
        traits,
    )

    (project / "journeymap.toml").write_text(
        "[settings]\n"
        # banner exposures per local day / week (all channels): high enough for a load test
        "cap_per_day = 50\ncap_per_week = 200\nglobal_control_share = 0.05\n"
        f"loader_interval_seconds = {loader_interval}\n"
    )
    (project / "offers.yaml").write_text(offers_yaml(offers))
    settings = Settings.load(project)
    rng = random.Random(seed)
    ids = [f"c{i:06d}" for i in range(customers)]
    persona = [PERSONAS[rng.randrange(len(PERSONAS))] for _ in ids]
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table({"customer_id": ids, "persona": persona, "persona_label": persona}),
        settings.cache_dir / "personas-bench.parquet",
    )
    db = OperationalDB(database_url(settings.database, project))
    try:
        now = dt.datetime.now(dt.UTC)
        chunk = 20_000
        with db.engine.begin() as conn:
            for start in range(0, customers, chunk):
                part = range(start, min(start + chunk, customers))
                conn.execute(
                    profiles.insert(),
                    [
                        {
                            "profile_id": i + 1,
                            "customer_id": ids[i],
                            "created_at": now,
                            "updated_at": now,
                            "first_seen": now,
                            "last_seen": now,
                            "merged_into": None,
                        }
                        for i in part
                    ],
                )
                conn.execute(
                    identities.insert(),
                    [
                        {
                            "id_kind": "user",
                            "id_value": ids[i],
                            "profile_id": i + 1,
                            "status": "linked",
                            "linked_at": now,
                            "event_id": None,
                        }
                        for i in part
                    ],
                )
                rows = []
                for i in part:
                    values = {
                        "first_name": f"Name{i}",
                        "phase": PHASES[rng.randrange(6)],
                        "orders": rng.randrange(4),
                        "timezone": rng.choice(("Europe/Berlin", "America/New_York", "UTC")),
                    }
                    rows += [
                        {
                            "profile_id": i + 1,
                            "name": k,
                            "value": json.dumps(v),
                            "ts": now,
                            "event_id": None,
                            "source": "bench",
                        }
                        for k, v in values.items()
                    ]
                conn.execute(traits.insert(), rows)
            conn.execute(
                offer_stats.insert(),
                [
                    {
                        "offer": f"offer_{o:02d}",
                        "persona": p,
                        "exposures": 2000,
                        "clicks": 100,
                        "conversions": rng.randrange(20, 200),
                    }
                    for o in range(offers)
                    for p in (*PERSONAS, "all")
                ],
            )
            conn.execute(sa.text("ANALYZE"))
        return SourceRegistry(db).add("web")[1]
    finally:
        db.close()


def serve_loader(project: Path) -> None:
    """``journeymap serve``'s loader, in its own process: a round every 2 s until stopped."""
    import signal
    import threading

    from journeymap.collect.loader import InboxLoader
    from journeymap.config import Settings
    from journeymap.storage.db import OperationalDB, database_url
    from journeymap.storage.lake import DeltaEventStore

    settings = Settings.load(project)
    db = OperationalDB(database_url(settings.database, project))
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    loader = InboxLoader(db, DeltaEventStore(settings.lake))
    try:
        while not done.is_set():
            loader.load_all(max_rounds=100)
            done.wait(2.0)
    finally:
        db.close()


def stored_decisions(project: Path) -> int:
    import sqlalchemy as sa

    from journeymap.config import Settings
    from journeymap.decide import DecideService
    from journeymap.orchestration.runtime import CampaignRuntime
    from journeymap.storage.db import OperationalDB, database_url, decide_exposures

    settings = Settings.load(project)
    db = OperationalDB(database_url(settings.database, project))
    try:
        # what the next start does: apply any journal a killed server left
        service = DecideService.open(CampaignRuntime.open(settings, db))
        recovered = service.start()
        service.close()
        print(f"decisions recovered from a journal after the server stopped: {recovered}")
        with db.connect() as conn:
            return int(
                conn.execute(sa.select(sa.func.count()).select_from(decide_exposures)).scalar_one()
            )
    finally:
        db.close()


# -- the load ------------------------------------------------------------------------------
def bodies(n: int, customers: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        slot = SLOTS[rng.randrange(3)]
        if rng.random() < 0.9:
            who = f'"userId":"c{rng.randrange(customers):06d}"'
        else:
            who = f'"anonymousId":"visitor-{i}"'
        out.append(
            ("{" + who + f',"slot":"{slot}","context":{{"page":"/p/{i}","locale":"de"}}}}').encode()
        )
    return out


async def _request(
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
    port: int,
    head: bytes,
    body: bytes,
    due: float,
    result: RunResult,
    measure: bool,
) -> None:
    try:
        reader, writer = pool.get_nowait()
    except asyncio.QueueEmpty:
        reader, writer = await asyncio.open_connection(HOST, port)
        result.connections += 1
    try:
        writer.write(head + str(len(body)).encode() + b"\r\n\r\n" + body)
        await writer.drain()
        status_headers = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in status_headers.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        payload = await reader.readexactly(length)
        done = time.perf_counter()
    except (OSError, asyncio.IncompleteReadError):
        result.errors += measure
        writer.close()
        return
    pool.put_nowait((reader, writer))
    if not measure:
        return
    if status_headers.startswith(b"HTTP/1.1 200 "):
        result.latencies_ms.append((done - due) * 1000)
        reason = json.loads(payload).get("reason", "?")
        result.reasons[reason] = result.reasons.get(reason, 0) + 1
    else:
        result.errors += 1


async def _open_loop(
    name: str, port: int, path: str, key: str, reqs: list[bytes], rate: float, warmup: float
) -> RunResult:
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: {auth}\r\n"
        "Content-Type: application/json\r\nContent-Length: "
    ).encode()
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    result = RunResult(name)
    tasks = []
    result.load_before = os.getloadavg()[0]
    start = time.perf_counter() + 0.2
    measure_from = start + warmup
    for i, body in enumerate(reqs):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        measure = due >= measure_from
        result.due += measure
        tasks.append(asyncio.create_task(_request(pool, port, head, body, due, result, measure)))
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
    result.seconds = (len(reqs) - warmup * rate) / rate
    result.load_after = os.getloadavg()[0]
    while not pool.empty():
        pool.get_nowait()[1].close()
    return result


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_load(
    name: str, port: int, path: str, key: str, args: argparse.Namespace, pid: int
) -> RunResult:
    n = min(MAX_REQUESTS, int((args.seconds + args.warmup) * args.rate))
    reqs = bodies(n, args.customers, args.seed)
    before = cpu_seconds(pid)
    result = asyncio.run(_open_loop(name, port, path, key, reqs, args.rate, args.warmup))
    result.server_cpu = cpu_seconds(pid) - before
    result.sent = n
    return result


# -- the servers ---------------------------------------------------------------------------
def floor_app():  # type: ignore[no-untyped-def]
    """The floor: a trivial FastAPI endpoint answering a constant."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/v1/decide")
    async def decide() -> dict[str, object]:
        return {"decision_id": "0", "slot": "home_hero", "offer": None, "reason": "constant"}

    return app


def wait_up(port: int, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
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


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def start(cmd: list[str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd)
    wait_up(port, proc)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def report(results: list[RunResult], args: argparse.Namespace) -> None:
    print(
        f"\nopen loop, {args.rate:.0f} requests/s due, {args.seconds:.0f} s measured after "
        f"{args.warmup:.0f} s warm-up; {args.customers:,} customers, {args.offers} offers"
    )
    print(
        "| endpoint | achieved req/s | p50 ms | p95 ms | p99 ms | max ms | errors | "
        "connections | server CPU ms/request | load avg (1 min) before / after |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        print(
            f"| {r.name} | {r.rate:.1f} | {r.pct(50):.2f} | {r.pct(95):.2f} | {r.pct(99):.2f} | "
            f"{max(r.latencies_ms, default=float('nan')):.2f} | {r.errors} | {r.connections} | "
            f"{r.server_cpu * 1000 / max(r.sent, 1):.2f} | "
            f"{r.load_before:.2f} / {r.load_after:.2f} |"
        )
    for r in results:
        if r.reasons:
            shares = ", ".join(f"{k} {v}" for k, v in sorted(r.reasons.items()))
            print(f"{r.name} reasons: {shares}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--offers", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--loader",
        choices=("process", "thread", "off"),
        default="process",
        help="the inbox → lake loader: a separate process every 2 s (default), the server's "
        "own thread every 2 s, or not at all",
    )
    parser.add_argument("--skip-floor", action="store_true")
    parser.add_argument("--serve-loader", help=argparse.SUPPRESS)
    parser.add_argument("--serve-floor", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_loader:
        serve_loader(Path(args.serve_loader))
        return
    if args.serve_floor:
        import uvicorn

        uvicorn.run(floor_app(), host=HOST, port=args.serve_floor, log_level="error")
        return

    results: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="jm-bench-decide-") as tmp:
        project = Path(tmp)
        t0 = time.perf_counter()
        interval = 2.0 if args.loader == "thread" else 0.0
        key = build_project(project, args.customers, args.offers, args.seed, interval)
        print(f"project built in {time.perf_counter() - t0:.1f} s", flush=True)
        port = free_port()
        server = [sys.executable, "-m", "journeymap.server", "--project", str(project)]
        proc = start([*server, "--port", str(port), "--log-level", "error"], port)
        loader = None
        if args.loader == "process":
            loader = subprocess.Popen([sys.executable, __file__, "--serve-loader", str(project)])
        try:
            name = f"decide (journeymap, loader: {args.loader})"
            r = run_load(name, port, "/v1/decide", key, args, proc.pid)
        finally:
            stop(proc)
            if loader is not None:
                stop(loader)
        results.append(r)
        stored = stored_decisions(project)
        answered = len(r.latencies_ms)
        print(f"decisions answered (measured) {answered}, stored in total {stored}")
        assert stored >= answered, "an answered decision is missing from decide_exposures"
    if not args.skip_floor:
        port = free_port()
        proc = start([sys.executable, __file__, "--serve-floor", str(port)], port)
        try:
            results.append(
                run_load("floor (FastAPI constant)", port, "/v1/decide", "k", args, proc.pid)
            )
        finally:
            stop(proc)
    report(results, args)


if __name__ == "__main__":
    main()
