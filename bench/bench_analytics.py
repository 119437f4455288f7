"""Journey analytics side by side: journeymap against retentioneering 5.x, pm4py and
ChannelAttribution on ONE simulator dataset, each operation in a fresh process (issue 3).

    make bench-peers                                   # once: the peers' venv, bench/.peers-venv
    python bench/bench_analytics.py                    # 100k customers (~5.5M events), 3 reps
    python bench/bench_analytics.py --reps 1 --ops dfg,funnel4
    python bench/bench_analytics.py --events-20m --memory-limit 4GB
                                    # 400k customers (~22M events): every journeymap analysis,
                                    # peak memory each (DuckDB memory_limit as project setting)
    python bench/bench_analytics.py --report           # the last run's tables again

**Data.** The simulator's demo shop (``bench_journey.ensure_project``: 100k customers, seed 7,
5.47M events in the project's Delta lake). journeymap's journey table is built once into its
cache (``.journeymap/journey/*.parquet``); that build is timed as its own line (cache cleared,
fresh process) and is *not* part of the journeymap rows below. From that same journey table
two peer inputs are exported once (also printed as their own lines, not part of any row):
``events.parquet`` (``customer_id, event, ts``, in journey order: customer, then ``(ts,
event_id)``) and ``paths.csv``, the Markov journeys in ChannelAttribution's aggregated format
``path;total_conversions;total_conversion_value;total_null`` (channel of each session's entry,
30-day lookback, repeats collapsed), written by ``journeymap.analytics.attribution``.

**What one row includes.** Every row is one fresh process, timed from ``Popen`` to its exit:
interpreter start, imports, loading, the tool's own preparation and the operation. Peak
memory is the child's VmHWM (``/proc/self/status``, read by the child as it finishes; the
``ru_maxrss`` that ``os.wait4`` returns would also count the driver's memory copied into the
child before ``exec``). CPU is the child's user+system time from ``os.wait4``. Both sides
start warm in the same way: one untimed import run per environment first (so both have
``.pyc`` caches, as in a normal installation; ``PYTHONDONTWRITEBYTECODE`` is cleared for the
children) and the input files in the page cache.

* journeymap: ``Journeymap(project)`` then ``jm.journey()`` (the cache hit: the lake's Delta
  log is read to check the cache key, the cached Parquet is opened), then the call. Uses the
  DuckDB engine through Ibis with the project's settings (2 threads here).
* retentioneering 5.2.4: ``pandas.read_parquet(events.parquet)``, ``Eventstream(df, schema)``
  (its sort, indexing and categoricals), then the call (DuckDB inside).
* pm4py: ``pandas.read_parquet``, ``pm4py.format_dataframe``, then the call.
* ChannelAttribution: ``pandas.read_csv(paths.csv)``, then ``markov_model`` (``ncore=2``).

**Operations** (same semantics on every side; results are cross-checked and printed):

* ``dfg``: event-level directly-follows graph, every (event, next event) pair per customer.
  journeymap: ``paths.transitions(journey, "event", until="end", times=False)``, which also
  counts the distinct customers per edge and the (start)/(exit) edges; the counts of the real
  edges must equal pm4py's ``discover_dfg`` and retentioneering's
  ``transition_graph_data(edge_weight="count")`` (without its path_start/path_end).
* ``dfg_times``: the same graph with the median time per edge: journeymap ``times=True`` (and
  the counts and customers), retentioneering ``edge_weight="time_median"``, pm4py
  ``discover_performance_dfg(perf_aggregation_key="median")``; the medians must agree.
* ``funnel4`` / ``funnel12`` / ``funnel12x3``: ordered event funnel, anything in between, no
  window, per customer (``funnel12x3``: the 4 steps three times over, i.e. 12 steps matching
  the same events, which isolates what the number of steps costs). journeymap
  ``jm.funnel(steps, by="event", skips=False)`` (which also returns medians and the
  time-to-convert histogram); retentioneering ``funnel_data(steps)``; pm4py has no funnel:
  the customers left by ``ltl_checker.eventually_follows(df, steps[:k])`` for each k (the way
  the research notes measured it; a per-customer cartesian join).
* ``stepmatrix``: share of customers on each event at steps 1..10 (step-matrix / step-Sankey
  data). journeymap ``paths.step_sankey(journey, "event", steps=10, collapse_repeats=False,
  until="end")`` (nodes and flows); retentioneering ``step_matrix_data(max_steps=10)`` (the
  same data as ``step_sankey_data``). pm4py has no step matrix.
* ``markov``: first-order Markov removal effects on ``paths.csv``: journeymap
  ``attribution_from_paths(..., models=["markov"])`` (exact linear solve; the process imports
  ``journeymap.analytics.attribution`` only, as a path file needs no project) against
  ChannelAttribution ``markov_model`` (Monte-Carlo simulation). journeymap's effects are
  checked against an independent dense solve of the absorbing chain in this script.
  ``markov_events`` is journeymap from the journey table (paths built in the engine), which no
  peer can do.

Bars (issue 3): journeymap >= 5x faster than retentioneering and pm4py with <= 1/2 of their
peak memory; Markov no slower than ChannelAttribution. With ``--events-20m`` every
journeymap analysis runs at ~20M events and must peak below 8 GB. Timing is never asserted in
tests; this prints figures for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / "data"
PEERS_PY = ROOT / "bench" / ".peers-venv" / "bin" / "python"

FUNNEL4 = ["product_view", "add_to_cart", "checkout_start", "order_completed"]
FUNNEL12 = [
    "page_view",
    "product_view",
    "size_guide_view",
    "add_to_cart",
    "checkout_start",
    "checkout_size_select",
    "checkout_address",
    "payment_start",
    "order_completed",
    "order_shipped",
    "delivery_confirmed",
    "survey_response",
]
#: twelve steps over the same four events: what the number of steps alone costs
FUNNEL12X3 = FUNNEL4 * 3
STEPS = 10
OPS = ("dfg", "dfg_times", "funnel4", "funnel12", "funnel12x3", "stepmatrix", "markov")
FUNNELS = {"funnel4": FUNNEL4, "funnel12": FUNNEL12, "funnel12x3": FUNNEL12X3}
#: which tools run an operation (journeymap first: the ratios are against it)
TOOLS = {
    "dfg": ("journeymap", "retentioneering", "pm4py"),
    "dfg_times": ("journeymap", "retentioneering", "pm4py"),
    "funnel4": ("journeymap", "retentioneering", "pm4py"),
    "funnel12": ("journeymap", "retentioneering", "pm4py"),
    "funnel12x3": ("journeymap", "retentioneering"),
    "stepmatrix": ("journeymap", "retentioneering"),
    "markov": ("journeymap", "channelattribution"),
}
#: journeymap-only extra rows of the comparison
EXTRA = {"markov": ("journeymap:markov_events",)}
#: every journeymap analysis of the --events-20m run
ANALYSES = (
    "dfg",
    "transitions",
    "top_paths",
    "funnel4",
    "funnel12",
    "sankey",
    "attr_heuristic",
    "attr_markov",
    "personas",
    "breaks",
    "experience",
    "retention",
)
LABELS = {
    "dfg": "transition graph / DFG (event level): counts",
    "dfg_times": "transition graph / DFG (event level): median time per edge",
    "funnel4": "funnel, 4 steps",
    "funnel12": "funnel, 12 steps",
    "funnel12x3": "funnel, 12 steps = the 4 steps 3 times",
    "stepmatrix": "step matrix / Sankey data, 10 steps",
    "markov": "Markov attribution (order 1), same path file",
    "markov_events": "Markov attribution from the journey table",
    "transitions": "transitions (facade default: phase level)",
    "top_paths": "top paths to conversion (channel)",
    "sankey": "step Sankey (event level, 10 steps)",
    "attr_heuristic": "attribution first/last/linear",
    "attr_markov": "attribution Markov (order 1)",
    "personas": "personas (k-means, k by silhouette)",
    "breaks": "journey breaks",
    "experience": "experience (NPS/CSAT/CES)",
    "retention": "retention matrix (week)",
}


# -- workers: run in a fresh process each (journeymap's venv or the peers' venv) ------------------
def _edges_out(pairs: dict[tuple[str, str], int]) -> dict[str, Any]:
    return {
        "pairs": len(pairs),
        "transitions": sum(pairs.values()),
        "edges": {f"{a}\x1f{b}": n for (a, b), n in sorted(pairs.items())},
    }


def _markov_out(r: Any) -> dict[str, Any]:
    return {
        "p_conversion": r.conversion_probability,
        "removal_effects": {e.channel: e.removal_effect for e in r.removal_effects},
    }


def _medians_out(medians: dict[tuple[str, str], float | None]) -> dict[str, float | None]:
    return {f"{a}\x1f{b}": v for (a, b), v in sorted(medians.items())}


def worker_journeymap(op: str, data: Path, project: Path, memory_limit: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    if op == "markov":  # a path file needs no project: the attribution module alone
        from journeymap.analytics.attribution import attribution_from_paths

        t1 = time.perf_counter()
        r = attribution_from_paths(data / "paths.csv", models=["markov"])
        t3 = time.perf_counter()
        result = _markov_out(r)
        return {"phases": {"import": t1 - t0, "load": 0.0, "op": t3 - t1}, "result": result}
    from journeymap import Journeymap

    settings = {"memory_limit": memory_limit} if memory_limit else {}
    jm = Journeymap(project, **settings)
    t1 = time.perf_counter()
    # the journey table from the cache (built beforehand); "build" times the build itself
    journey = jm.journey() if op not in ("markov", "build") else None
    t2 = time.perf_counter()
    result: dict[str, Any] = {}
    if op in ("dfg", "dfg_times"):
        from journeymap.analytics.paths import END_NODES, START, transitions

        g = transitions(journey, "event", until="end", times=op == "dfg_times")
        real = [e for e in g.edges if e.source != START and e.target not in END_NODES]
        result = _edges_out({(e.source, e.target): e.count for e in real})
        result["graph_edges"] = len(g.edges)
        if op == "dfg_times":
            result["medians"] = _medians_out({(e.source, e.target): e.median_seconds for e in real})
    elif op in FUNNELS:
        f = jm.funnel(FUNNELS[op], by="event", skips=False)
        result = {"steps": [s.customers for s in f.steps]}
    elif op == "stepmatrix":
        from journeymap.analytics.paths import END_NODES, step_sankey

        s = step_sankey(
            journey, "event", steps=STEPS, top_n=1000, collapse_repeats=False, until="end"
        )
        result = {
            "shares": {
                f"{n.step}\x1f{n.node}": n.share_of_start
                for n in s.nodes
                if n.node not in END_NODES
            },
            "flows": len(s.flows),
        }
    elif op == "markov_events":
        result = _markov_out(jm.attribution(models=["markov"], collapse_repeats=True))
    else:
        result = _journeymap_analysis(jm, op)
    t3 = time.perf_counter()
    return {"phases": {"import": t1 - t0, "load": t2 - t1, "op": t3 - t2}, "result": result}


def _journeymap_analysis(jm: Any, op: str) -> dict[str, Any]:
    """The --events-20m analyses, through the facade as a user calls them."""
    if op == "transitions":
        return {"edges": len(jm.transitions().edges)}
    if op == "top_paths":
        return {"paths": len(jm.top_paths().paths)}
    if op == "sankey":
        return {"flows": len(jm.step_sankey(by="event", steps=STEPS).flows)}
    if op == "attr_heuristic":
        r = jm.attribution(models=["first", "last", "linear"])
        return {"conversions": r.conversions}
    if op == "attr_markov":
        return {"conversions": jm.attribution(models=["markov"]).conversions}
    if op == "personas":
        return {"personas": len(jm.personas().personas)}
    if op == "breaks":
        return {"breaks": len(jm.breaks().to_records())}
    if op == "experience":
        return {"rows": len(jm.experience().to_records())}
    if op == "retention":
        return {"rows": len(jm.retention().to_records())}
    if op == "build":
        shutil.rmtree(jm.settings.cache_dir / "journey", ignore_errors=True)
        path = jm.journey_path()
        return {"built": jm.last_journey_built, "bytes": path.stat().st_size}
    raise SystemExit(f"unknown journeymap operation {op!r}")


def worker_retentioneering(op: str, data: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    import pandas as pd
    import retentioneering as rete

    t1 = time.perf_counter()
    df = pd.read_parquet(data / "events.parquet", columns=["customer_id", "event", "ts"])
    t2 = time.perf_counter()
    schema = {"path_cols": ["customer_id"], "event_col": "event", "timestamp_col": "ts"}
    es = rete.Eventstream(df, schema=schema)
    t3 = time.perf_counter()
    synthetic = {"path_start", "path_end"}
    if op == "dfg":
        m = es.transition_graph_data(edge_weight="count")
        pairs = {
            (str(a), str(b)): int(m.loc[a, b])
            for a in m.index
            for b in m.columns
            if m.loc[a, b] and a not in synthetic and b not in synthetic
        }
        result = _edges_out(pairs)
    elif op == "dfg_times":
        m = es.transition_graph_data(edge_weight="time_median")
        medians = {
            (str(a), str(b)): m.loc[a, b].total_seconds()
            for a in m.index
            for b in m.columns
            if not pd.isna(m.loc[a, b]) and a not in synthetic and b not in synthetic
        }
        result = {"medians": _medians_out(medians)}
    elif op in FUNNELS:
        f = es.funnel_data(FUNNELS[op])
        result = {"steps": [int(s["unique_paths"]) for s in f["steps"]]}
    elif op == "stepmatrix":
        sm = es.step_matrix_data(max_steps=STEPS)
        result = {
            "shares": {
                f"{int(k)}\x1f{e}": float(sm.loc[e, k])
                for e in sm.index
                for k in sm.columns
                if 1 <= int(k) <= STEPS and e not in synthetic and sm.loc[e, k]
            }
        }
    else:
        raise SystemExit(f"retentioneering has no operation {op!r}")
    t4 = time.perf_counter()
    phases = {"import": t1 - t0, "load": t2 - t1, "prep": t3 - t2, "op": t4 - t3}
    return {"phases": phases, "result": result}


def worker_pm4py(op: str, data: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    import pandas as pd
    import pm4py

    t1 = time.perf_counter()
    df = pd.read_parquet(data / "events.parquet", columns=["customer_id", "event", "ts"])
    t2 = time.perf_counter()
    df = pm4py.format_dataframe(df, case_id="customer_id", activity_key="event", timestamp_key="ts")
    t3 = time.perf_counter()
    if op == "dfg":
        dfg, _, _ = pm4py.discover_dfg(df)
        result = _edges_out({(str(a), str(b)): int(n) for (a, b), n in dfg.items()})
    elif op == "dfg_times":
        perf, _, _ = pm4py.discover_performance_dfg(df, perf_aggregation_key="median")
        result = {
            "medians": _medians_out({(str(a), str(b)): float(v) for (a, b), v in perf.items()})
        }
    elif op in FUNNELS:
        from pm4py.algo.filtering.pandas.ltl import ltl_checker

        steps = FUNNELS[op]
        case, activity = "case:concept:name", "concept:name"
        counts = [int(df.loc[df[activity] == steps[0], case].nunique())]
        for k in range(2, len(steps) + 1):
            counts.append(int(ltl_checker.eventually_follows(df, steps[:k])[case].nunique()))
        result = {"steps": counts}
    else:
        raise SystemExit(f"pm4py has no operation {op!r}")
    t4 = time.perf_counter()
    phases = {"import": t1 - t0, "load": t2 - t1, "prep": t3 - t2, "op": t4 - t3}
    return {"phases": phases, "result": result}


def worker_channelattribution(op: str, data: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    import pandas as pd
    from ChannelAttribution import markov_model

    t1 = time.perf_counter()
    paths = pd.read_csv(data / "paths.csv", sep=";")
    t2 = time.perf_counter()
    r = markov_model(
        paths,
        "path",
        "total_conversions",
        var_value="total_conversion_value",
        var_null="total_null",
        order=1,
        out_more=True,
        ncore=2,
        verbose=False,
        flg_pro=False,
    )
    t3 = time.perf_counter()
    re = r["removal_effects"]
    effects = dict(zip(re["channel_name"], re["removal_effects_conversion"], strict=True))
    result = {"removal_effects": {str(k): float(v) for k, v in effects.items()}}
    return {"phases": {"import": t1 - t0, "load": t2 - t1, "op": t3 - t2}, "result": result}


def run_worker(args: argparse.Namespace) -> None:
    tool, op = args.worker
    if tool == "journeymap":
        out = worker_journeymap(op, args.data, args.project, args.memory_limit)
    elif tool == "retentioneering":
        out = worker_retentioneering(op, args.data)
    elif tool == "pm4py":
        out = worker_pm4py(op, args.data)
    elif tool == "channelattribution":
        out = worker_channelattribution(op, args.data)
    else:
        raise SystemExit(f"unknown tool {tool!r}")
    (args.data / f"result-{tool}-{op}.json").write_text(json.dumps(out["result"]))
    # VmHWM of this process: ru_maxrss of a child also counts the parent's memory before exec
    print(json.dumps({"phases": out["phases"], "hwm_kb": _rss_kb(os.getpid())}))


# -- the driver ----------------------------------------------------------------------------------
def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # .pyc caches, as in a normal installation
    env["RETENTIONEERING_NO_TRACK"] = "1"  # retentioneering phones home otherwise
    return env


def python_for(tool: str) -> str:
    return sys.executable if tool == "journeymap" else str(PEERS_PY)


def measure(
    tool: str,
    op: str,
    args: argparse.Namespace,
    *,
    timeout: float | None = None,
    max_rss_gb: float | None = None,
) -> dict[str, Any]:
    """Run one operation in a fresh process: wall, CPU and peak RSS of the child."""
    cmd = [python_for(tool), str(Path(__file__).resolve()), "--worker", tool, op]
    cmd += ["--data", str(args.data), "--project", str(args.project)]
    if args.memory_limit:
        cmd += ["--memory-limit", args.memory_limit]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
        cwd=ROOT,
        start_new_session=True,
    )
    failure = None
    rss_kb = 0
    # poll for the time and memory caps; wait4 gives the child's CPU time
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        elapsed = time.perf_counter() - t0
        rss_kb = max(rss_kb, _rss_kb(proc.pid))
        if timeout and elapsed > timeout:
            failure = f"stopped after {timeout:.0f} s (time cap)"
        elif max_rss_gb and rss_kb > max_rss_gb * 1024 * 1024:
            failure = f"stopped at {rss_kb / 1024**2:.1f} GB RSS (memory cap)"
        if failure:
            os.killpg(proc.pid, signal.SIGKILL)
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.stdout is not None
    assert proc.stderr is not None
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    row: dict[str, Any] = {
        "tool": tool,
        "op": op,
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "peak_mb": rss_kb / 1024,  # polled; replaced by the child's own VmHWM below
        "load1": load,
    }
    if failure or proc.returncode != 0:
        row["failed"] = failure or f"exit {proc.returncode}: {stderr.strip()[-400:]}"
        return row
    report = json.loads(stdout.strip().splitlines()[-1])
    row["phases"] = report["phases"]
    row["peak_mb"] = report["hwm_kb"] / 1024
    return row


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def warm_up(tools: set[str], args: argparse.Namespace) -> None:
    """One untimed import per environment (writes .pyc caches) and the inputs into the page
    cache, so that no side is measured colder than the other."""
    imports = {
        "journeymap": "import journeymap, journeymap.analytics.paths, "
        "journeymap.analytics.attribution, ibis.backends.duckdb",
        "retentioneering": "import pandas, retentioneering",
        "pm4py": "import pandas, pm4py",
        "channelattribution": "import pandas, ChannelAttribution",
    }
    for tool in sorted(tools):
        subprocess.run(
            [python_for(tool), "-c", imports[tool]],
            env=child_env(),
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
    for f in [*args.data.glob("*.parquet"), *args.data.glob("*.csv")]:
        f.read_bytes()
    for f in (args.project / ".journeymap").rglob("*.parquet"):
        f.read_bytes()


def export_inputs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The peers' inputs, from the same journey table (timed, printed as their own lines)."""
    from journeymap import Journeymap
    from journeymap.analytics.attribution import attribution_paths, write_paths

    rows = []
    t0 = time.perf_counter()
    jm = Journeymap(args.project)
    src = jm.journey_path()
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    con.execute(
        f"COPY (SELECT customer_id, event, ts::TIMESTAMP AS ts FROM read_parquet('{src}') "
        f"ORDER BY customer_id, step_index) TO '{args.data / 'events.parquet'}' "
        "(FORMAT parquet, COMPRESSION zstd)"
    )
    row = con.execute(f"SELECT count(*) FROM read_parquet('{src}')").fetchone()
    n = row[0] if row else 0
    con.close()
    args.events_label = f"{n:,} events, {args.customers:,} customers (seed {args.seed})"
    rows.append({"what": "export events.parquet for the peers", "wall": time.perf_counter() - t0})
    t0 = time.perf_counter()
    table = attribution_paths(jm.journey(), touch="session", collapse_repeats=True)
    write_paths(table, args.data / "paths.csv")
    rows.append(
        {
            "what": f"export paths.csv ({table.num_rows:,} distinct paths, journeymap)",
            "wall": time.perf_counter() - t0,
        }
    )
    jm.close()
    return rows


# -- checks --------------------------------------------------------------------------------------
def _result(args: argparse.Namespace, tool: str, op: str) -> dict[str, Any] | None:
    f = args.data / f"result-{tool}-{op}.json"
    return json.loads(f.read_text()) if f.exists() else None


def exact_markov(path: Path) -> tuple[float, dict[str, float]]:
    """Removal effects by a direct dense solve of the absorbing chain (independent of
    journeymap's solver): states (start) + channels; absorbing conversion and null."""
    import numpy as np

    paths: list[tuple[list[str], int, int]] = []
    with path.open(encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f, delimiter=";"):
            chans = [c.strip() for c in r["path"].split(">") if c.strip()]
            paths.append((chans, int(r["total_conversions"]), int(r["total_null"])))
    channels = sorted({c for p, _, _ in paths for c in p})
    idx = {c: i + 1 for i, c in enumerate(channels)}  # 0 is (start)
    n = len(channels) + 1
    counts = np.zeros((n, n))
    conv = np.zeros(n)
    out = np.zeros(n)
    for chans, c, z in paths:
        if not chans or c + z == 0:
            continue
        w = c + z
        prev = 0
        for ch in chans:
            counts[prev, idx[ch]] += w
            out[prev] += w
            prev = idx[ch]
        conv[prev] += c
        out[prev] += w

    def p_conv(removed: int | None) -> float:
        q = counts / out[:, None]
        r = conv / out
        if removed is not None:  # the removed channel leads nowhere but to null
            q[:, removed] = 0.0
            q[removed, :] = 0.0
            r[removed] = 0.0
        return float(np.linalg.solve(np.eye(n) - q, r)[0])

    base = p_conv(None)
    return base, {c: 1.0 - p_conv(i) / base for c, i in idx.items()}


def checks(args: argparse.Namespace, ops: list[str]) -> list[str]:
    lines = []
    for op in ops:
        jm = _result(args, "journeymap", op)
        if jm is None:
            continue
        for tool in TOOLS[op][1:]:
            peer = _result(args, tool, op)
            if peer is None:
                lines.append(f"- {op}: {tool} gave no result to compare")
                continue
            lines.append(f"- {op}: journeymap vs {tool}: {_compare(op, jm, peer)}")
    if "markov" in ops and (jm := _result(args, "journeymap", "markov")):
        base, exact = exact_markov(args.data / "paths.csv")
        re_jm = jm["removal_effects"]
        err = max(abs(re_jm[c] - exact[c]) for c in exact)
        lines.append(
            f"- markov: journeymap vs a dense NumPy solve of the chain: P(conversion) "
            f"{jm['p_conversion']:.12f} vs {base:.12f}; max |removal effect difference| "
            f"{err:.1e} over {len(exact)} channels ({'exact' if err < 1e-9 else 'NOT exact'})"
        )
        ev = _result(args, "journeymap", "markov_events")
        if ev is not None:
            d = max(abs(ev["removal_effects"][c] - re_jm[c]) for c in re_jm)
            lines.append(f"- markov: journeymap from events vs from paths.csv: max diff {d:.1e}")
        ca = _result(args, "channelattribution", "markov")
        if ca is not None:
            rel = {c: abs(ca["removal_effects"][c] - exact[c]) / exact[c] for c in exact}
            worst = max(rel, key=lambda c: rel[c])
            lines.append(
                f"- markov: ChannelAttribution (simulation) vs exact: mean relative deviation "
                f"{statistics.mean(rel.values()):.2%}, max {rel[worst]:.2%} ({worst})"
            )
    return lines


def _compare(op: str, jm: dict[str, Any], peer: dict[str, Any]) -> str:
    if op == "dfg":
        same = jm["edges"] == peer["edges"]
        return (
            f"{jm['pairs']} / {peer['pairs']} event pairs, {jm['transitions']:,} / "
            f"{peer['transitions']:,} transitions, every edge count equal: {same}"
        )
    if op == "dfg_times":
        a, b = jm["medians"], peer["medians"]
        both = set(a) & set(b)
        diff = max((abs((a[k] or 0.0) - (b[k] or 0.0)) for k in both), default=0.0)
        return (
            f"{len(a)} / {len(b)} edges with a median time, {len(both)} in both, max "
            f"difference {diff:.1e} s"
        )
    if op.startswith("funnel"):
        return f"{jm['steps']} / {peer['steps']}, equal: {jm['steps'] == peer['steps']}"
    if op == "stepmatrix":
        keys = set(jm["shares"]) | set(peer["shares"])
        diff = max(abs(jm["shares"].get(k, 0.0) - peer["shares"].get(k, 0.0)) for k in keys)
        return f"{len(keys)} (step, event) cells, max share difference {diff:.1e}"
    if op == "markov":
        return "removal effects compared with the exact solution below"
    return ""


# -- tables --------------------------------------------------------------------------------------
def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in rows if "failed" not in r]
    if not ok:
        return {"failed": rows[0]["failed"], "peak_mb": max(r["peak_mb"] for r in rows)}
    med = statistics.median
    return {
        "wall": med(r["wall"] for r in ok),
        "cpu": med(r["cpu"] for r in ok),
        "peak_mb": max(r["peak_mb"] for r in ok),
        "load1": med(r["load1"] for r in ok),
        "phases": {k: med(r["phases"][k] for r in ok) for k in ok[0]["phases"]},
        "runs": len(ok),
    }


def _phases(s: dict[str, Any]) -> str:
    return " + ".join(f"{k} {v:.2f}" for k, v in s["phases"].items())


def compare_table(summary: dict[tuple[str, str], dict[str, Any]], ops: list[str]) -> list[str]:
    out = [
        "| operation | tool | wall s | CPU s | peak MB | peer/jm wall | peer/jm CPU | jm/peer peak "
        "| bar (wall, peak) | in-process phases s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for op in ops:
        jm = summary.get(("journeymap", op))
        for tool in TOOLS[op]:
            s = summary.get((tool, op))
            if s is None:
                continue
            label = LABELS[op]
            if "failed" in s:
                out.append(
                    f"| {label} | {tool} | – | – | ≥ {s['peak_mb']:,.0f} | did not finish: "
                    f"{s['failed']} | | | | |"
                )
                continue
            ratio_t = ratio_c = ratio_m = bar = ""
            if tool != "journeymap" and jm and "failed" not in jm:
                rt, rm = s["wall"] / jm["wall"], jm["peak_mb"] / s["peak_mb"]
                ratio_t, ratio_m = f"{rt:.1f}×", f"{rm:.2f}×"
                ratio_c = f"{s['cpu'] / jm['cpu']:.1f}×"
                if op == "markov":
                    bar = "met" if rt >= 1 else "MISSED"
                    bar += " (no slower)"
                else:
                    bar = (
                        f"time {'met' if rt >= 5 else 'MISSED'}, "
                        f"memory {'met' if rm <= 0.5 else 'MISSED'}"
                    )
            out.append(
                f"| {label} | {tool} | {s['wall']:.2f} | {s['cpu']:.2f} | {s['peak_mb']:,.0f} "
                f"| {ratio_t} | {ratio_c} | {ratio_m} | {bar} | {_phases(s)} |"
            )
        for extra in EXTRA.get(op, ()):
            tool, xop = extra.split(":")
            s = summary.get((tool, xop))
            if s and "failed" not in s:
                out.append(
                    f"| {LABELS[xop]} | {tool} | {s['wall']:.2f} | {s['cpu']:.2f} | "
                    f"{s['peak_mb']:,.0f} | | | | | {_phases(s)} |"
                )
    return out


# -- modes ---------------------------------------------------------------------------------------
def compare(args: argparse.Namespace) -> None:
    ops = [o for o in args.ops.split(",") if o]
    unknown = set(ops) - set(OPS)
    if unknown:
        raise SystemExit(f"unknown --ops {sorted(unknown)}; allowed: {', '.join(OPS)}")
    tools = {t for op in ops for t in TOOLS[op]} - set(args.skip)
    if tools - {"journeymap"} and not PEERS_PY.exists():
        raise SystemExit(f"{PEERS_PY} is missing: run `make bench-peers` first")
    print(f"load average at start: {_load()}", flush=True)
    if not args.no_build:
        r = measure("journeymap", "build", args)
        print(
            f"journey-table build (cache cleared, fresh process; not in the rows below): "
            f"{r['wall']:.2f} s wall, {r['cpu']:.2f} s CPU, {r['peak_mb']:,.0f} MB peak",
            flush=True,
        )
    for e in export_inputs(args):
        print(f"{e['what']} (not in the rows below): {e['wall']:.2f} s", flush=True)
    warm_up(tools, args)
    specs = [(t, op) for op in ops for t in TOOLS[op] if t in tools]
    specs += [tuple(x.split(":")) for op in ops for x in EXTRA.get(op, ()) if "journeymap" in tools]
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for rep in range(args.reps):
        order = specs if rep % 2 == 0 else specs[::-1]
        for tool, op in order:
            heavy = tool == "pm4py" and op.startswith("funnel")
            if heavy and rep >= args.pm4py_funnel_reps:
                continue
            if tool == "pm4py" and op == "funnel12" and args.skip_pm4py_funnel12:
                continue
            r = measure(
                tool,
                op,
                args,
                timeout=args.peer_timeout if tool != "journeymap" else None,
                max_rss_gb=args.peer_max_gb if tool != "journeymap" else None,
            )
            runs.setdefault((tool, op), []).append(r)
            status = r.get("failed") or f"{r['wall']:6.2f} s {r['peak_mb']:7,.0f} MB"
            print(
                f"rep {rep + 1} {tool:<19} {op:<14} {status}  (load {r['load1']:.2f})", flush=True
            )
    summary = {k: summarize(v) for k, v in runs.items()}
    payload = {"label": args.events_label, "reps": args.reps, "ops": ops, "load_end": _load()}
    payload["summary"] = {f"{t}:{o}": s for (t, o), s in summary.items()}
    _save(args, payload)
    report(args, payload)


def report(args: argparse.Namespace, payload: dict[str, Any]) -> None:
    """The comparison table, the funnel ratios and the cross-checks (also from a saved run:
    ``--report``)."""
    summary = {tuple(k.split(":")): v for k, v in payload["summary"].items()}
    ops = payload.get("ops") or [o for o in OPS if ("journeymap", o) in summary]
    print()
    print(
        f"## {payload.get('label', args.events_label)}, median of {payload.get('reps', '?')} "
        f"fresh processes (wall, CPU), max peak RSS; load average at end: "
        f"{payload.get('load_end', '?')}"
    )
    print()
    print("\n".join(compare_table(summary, ops)))
    print()
    for name in ("funnel12", "funnel12x3"):
        a, b = summary.get(("journeymap", "funnel4")), summary.get(("journeymap", name))
        if a and b and "failed" not in a and "failed" not in b:
            op_ratio = b["phases"]["op"] / a["phases"]["op"]
            print(
                f"journeymap {LABELS[name]} vs 4 steps: {b['wall'] / a['wall']:.2f}× end-to-end "
                f"wall, {b['cpu'] / a['cpu']:.2f}× CPU, {op_ratio:.2f}× the funnel call alone "
                "(bar: ≤ 1.3×)"
            )
    print()
    print("Results cross-checked:")
    print("\n".join(checks(args, ops)))
    print()
    print("Not compared (the peer has no such operation):")
    print("- pm4py: no step matrix / Sankey data (only single-activity position summaries).")
    print("- pm4py: no funnel; measured as eventually-follows filters, one per funnel prefix.")
    print("- retentioneering, pm4py: no attribution; ChannelAttribution: no paths or funnels.")


def analyses_20m(args: argparse.Namespace) -> None:
    print(f"load average at start: {_load()}", flush=True)
    rows = []
    ops = [o for o in args.ops.split(",") if o] if args.ops != ",".join(OPS) else list(ANALYSES)
    if not args.no_build:
        ops = ["build", *ops]
    for op in ops:
        r = measure("journeymap", op, args)
        rows.append(r)
        status = r.get("failed") or f"{r['wall']:7.2f} s {r['peak_mb']:8,.0f} MB"
        print(f"{op:<15} {status}  (load {r['load1']:.2f})", flush=True)
    limit = args.memory_limit or "DuckDB default (80 % of RAM)"
    print()
    print(f"## every journeymap analysis at {args.events_label}, memory_limit={limit}")
    print()
    print("| analysis | wall s | CPU s | peak MB | ≤ 8 GB | in-process phases s |")
    print("|---|---:|---:|---:|---|---|")
    for r in rows:
        label = LABELS.get(r["op"], "journey-table build (cache cleared)")
        if "failed" in r:
            print(f"| {label} | – | – | {r['peak_mb']:,.0f} | FAILED: {r['failed']} | |")
            continue
        ok = "met" if r["peak_mb"] <= 8 * 1024 else "MISSED"
        print(
            f"| {label} | {r['wall']:.2f} | {r['cpu']:.2f} | {r['peak_mb']:,.0f} | {ok} | "
            f"{_phases(r)} |"
        )
    print(f"\nload average at end: {_load()}")
    _save(args, {"analyses": rows})


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _save(args: argparse.Namespace, payload: dict[str, Any]) -> None:
    f = args.data / "summary.json"
    f.write_text(json.dumps(payload, indent=1, default=str))
    print(f"\n(raw figures: {f.relative_to(ROOT)})")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--ops", default=",".join(OPS), help="comma-separated subset of operations")
    ap.add_argument("--skip", nargs="*", default=[], help="tools to leave out (e.g. pm4py)")
    ap.add_argument(
        "--events-20m",
        action="store_true",
        help="400k customers (~22M events): every journeymap analysis, peak memory each",
    )
    ap.add_argument("--memory-limit", default="", help="DuckDB memory_limit for journeymap")
    ap.add_argument("--no-build", action="store_true", help="skip the journey-build line")
    ap.add_argument("--peer-timeout", type=float, default=600, help="seconds per peer process")
    ap.add_argument("--peer-max-gb", type=float, default=12, help="RSS cap per peer process")
    ap.add_argument(
        "--pm4py-funnel-reps",
        type=int,
        default=1,
        help="repetitions of pm4py's (slow) funnels",
    )
    ap.add_argument("--skip-pm4py-funnel12", action="store_true")
    ap.add_argument(
        "--report", action="store_true", help="print the tables of the last saved run again"
    )
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--project", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        run_worker(args)
        return
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_journey import ensure_project

    if args.events_20m and args.customers == 100_000:
        args.customers = 400_000
    args.project = ensure_project(args.customers, args.seed)
    args.data = DATA / "out" / f"analytics-{args.customers}-{args.seed}"
    args.data.mkdir(parents=True, exist_ok=True)
    args.events_label = f"{args.customers:,} customers (seed {args.seed})"
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if args.report:
        payload = json.loads((args.data / "summary.json").read_text())
        if "summary" in payload:
            report(args, payload)
        return
    if args.events_20m:
        analyses_20m(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
