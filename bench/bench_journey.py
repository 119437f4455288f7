"""Journey-table build: journeymap (Ibis on DuckDB, through the facade) beside hand-written
DuckDB SQL doing the same work on the same lake, each in a fresh process.

    python bench/bench_journey.py                    # 100k customers (~5M events)
    python bench/bench_journey.py --customers 20000 --reps 3

The data come from the simulator (generated once under bench/data/). Both sides read the same
Delta lake snapshot (registered as a pyarrow dataset), compute the same columns (identity
stitching, touchpoint CASE from the demo spec, phase, step index, 30-minute sessions,
conversion flag) and write zstd Parquet. The two outputs are checked to be identical.
Prints wall time, peak RSS (of the worker process) and the ratio journeymap / SQL.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / "data"


def ensure_project(customers: int, seed: int) -> Path:
    """A demo project with the simulator's events in its lake (built once)."""
    from journeymap.model.scaffold import project_toml
    from journeymap.simulate import simulate_shop
    from journeymap.storage.lake import DeltaEventStore

    project = DATA / f"project-{customers}-{seed}"
    store = DeltaEventStore(project / "data" / "lake")
    if store.exists():
        return project
    project.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ROOT / "src/journeymap/simulate/demo_journey.yaml", project / "journey.yaml")
    (project / "journeymap.toml").write_text(project_toml("Europe/Berlin"))
    print(f"simulating {customers:,} customers …", flush=True)
    sim = simulate_shop(
        DATA / f"sim-{customers}-{seed}", customers=customers, seed=seed, progress=True
    )
    import pyarrow.parquet as pq

    files = (
        sorted(sim.events_path.glob("*.parquet")) if sim.events_path.is_dir() else [sim.events_path]
    )
    for f in files:
        store.append(pq.read_table(f))
    store.compact(vacuum_hours=0)
    print(f"lake: {store.stats()}", flush=True)
    return project


# -- the hand-written SQL ------------------------------------------------------------------------
def _lit(v: object) -> str:
    return "'" + str(v).replace("'", "''") + "'"


def _cond(match: object) -> str:
    from journeymap.model.spec import COLUMN_CONDITIONS, Match

    assert isinstance(match, Match)
    parts = []
    for col, values in (
        ("event", match.event),
        ("channel", match.channel),
        ("campaign", match.campaign),
    ):
        if values:
            parts.append(f"{col} IN ({', '.join(map(_lit, values))})")
    for key, values in match.where.items():
        pattern = '"' + key + r'"\s*:\s*"?([^",}\]]*)'
        col = key if key in COLUMN_CONDITIONS else f"regexp_extract(properties, {_lit(pattern)}, 1)"
        parts.append(f"{col} IN ({', '.join(map(_lit, values))})")
    return "coalesce(" + " AND ".join(parts) + ", false)"


def hand_sql(spec_path: Path, out: Path, gap_minutes: int = 30) -> str:
    from journeymap.model.spec import load_spec

    spec = load_spec(spec_path)
    tp_case = " ".join(f"WHEN {_cond(t.rule())} THEN {_lit(t.id)}" for t in spec.touchpoints)
    idx = {p: i for i, p in enumerate(spec.phase_ids(), 1)}
    phase_case = " ".join(f"WHEN {_lit(t.id)} THEN {_lit(t.phase)}" for t in spec.touchpoints)
    index_case = " ".join(f"WHEN {_lit(t.id)} THEN {idx[t.phase]}" for t in spec.touchpoints)
    gap = gap_minutes * 60 * 1_000_000
    return f"""
COPY (
WITH links AS (
  SELECT anonymous_id, min(customer_id) AS linked FROM events
  WHERE customer_id IS NOT NULL AND anonymous_id IS NOT NULL
  GROUP BY anonymous_id HAVING count(DISTINCT customer_id) = 1
), e AS (
  SELECT ev.* REPLACE (coalesce(ev.customer_id, l.linked, ev.anonymous_id) AS customer_id)
  FROM events ev LEFT JOIN links l ON ev.anonymous_id = l.anonymous_id
), t AS (
  SELECT *, CASE {tp_case} ELSE NULL END AS touchpoint, {_cond(spec.goal.match)} AS is_conversion
  FROM e WHERE customer_id IS NOT NULL
), w AS (
  SELECT *,
    row_number() OVER w AS step_index,
    coalesce(ts_us - lag(ts_us) OVER w > {gap}, true) AS is_session_start
  FROM t WINDOW w AS (PARTITION BY customer_id ORDER BY ts_us, event_id)
)
SELECT customer_id, step_index,
  sum(is_session_start::BIGINT) OVER (
    PARTITION BY customer_id ORDER BY ts_us, event_id
    ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS session_index,
  is_session_start, event_id, anonymous_id, ts, ts_us, event, channel, campaign, source, touchpoint,
  CASE touchpoint {phase_case} ELSE NULL END AS phase,
  CASE touchpoint {index_case} ELSE NULL END::BIGINT AS phase_index,
  is_conversion, revenue, currency, device, order_id, product_id, category, score, properties
FROM w
) TO {_lit(out)} (FORMAT parquet, COMPRESSION zstd)
"""


# -- workers (run in a fresh process each) -----------------------------------------------------
def worker(kind: str, project: Path, out: Path) -> float:
    t0 = time.perf_counter()
    if kind == "journeymap":
        from journeymap import Journeymap

        jm = Journeymap(project)
        shutil.rmtree(jm.settings.cache_dir, ignore_errors=True)
        path = jm.journey_path()
        shutil.copyfile(path, out)
    else:
        import duckdb
        from deltalake import DeltaTable

        con = duckdb.connect()
        con.execute("SET TimeZone='UTC'")
        con.register("events", DeltaTable(str(project / "data" / "lake")).to_pyarrow_dataset())
        con.execute(hand_sql(project / "journey.yaml", out))
    return time.perf_counter() - t0


def run_worker(kind: str, project: Path, out: Path) -> tuple[float, float]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--worker", kind, "--project", str(project), "--out", str(out)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{kind} worker failed ({status}):\n{output}")
    seconds = float(output.strip().splitlines()[-1])
    return seconds, usage.ru_maxrss / 1024  # MB


def same_output(a: Path, b: Path) -> tuple[bool, int]:
    import duckdb

    con = duckdb.connect()
    cols = (
        "customer_id, step_index, session_index, is_session_start, event_id, ts_us, "
        "touchpoint, phase, phase_index, is_conversion, revenue"
    )
    diff = con.sql(
        f"SELECT count(*) FROM ((SELECT {cols} FROM '{a}' EXCEPT ALL SELECT {cols} FROM '{b}') "
        f"UNION ALL (SELECT {cols} FROM '{b}' EXCEPT ALL SELECT {cols} FROM '{a}'))"
    ).fetchall()[0][0]
    rows = con.sql(f"SELECT count(*) FROM '{a}'").fetchall()[0][0]
    return diff == 0, rows


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--worker", choices=["journeymap", "sql"], help=argparse.SUPPRESS)
    ap.add_argument("--project", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(worker(args.worker, args.project, args.out))
        return

    project = ensure_project(args.customers, args.seed)
    outdir = DATA / "out"
    outdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[tuple[float, float]]] = {"journeymap": [], "sql": []}
    for rep in range(args.reps):
        order = ["journeymap", "sql"] if rep % 2 == 0 else ["sql", "journeymap"]
        for kind in order:
            results[kind].append(run_worker(kind, project, outdir / f"journey-{kind}.parquet"))
            print(
                f"rep {rep + 1} {kind:<10} {results[kind][-1][0]:6.2f} s "
                f"{results[kind][-1][1]:7.0f} MB",
                flush=True,
            )
    equal, rows = same_output(outdir / "journey-journeymap.parquet", outdir / "journey-sql.parquet")
    jm_t = statistics.median(t for t, _ in results["journeymap"])
    sql_t = statistics.median(t for t, _ in results["sql"])
    jm_m = max(m for _, m in results["journeymap"])
    sql_m = max(m for _, m in results["sql"])
    print()
    print(f"journey table, {rows:,} events, {args.customers:,} customers, median of {args.reps}")
    print("| approach | wall s | peak RSS MB |\n|---|---|---|")
    print(f"| journeymap (Ibis → DuckDB, facade + cache write) | {jm_t:.2f} | {jm_m:.0f} |")
    print(f"| hand-written DuckDB SQL | {sql_t:.2f} | {sql_m:.0f} |")
    print(f"| **ratio journeymap / SQL** | **{jm_t / sql_t:.2f}×** | {jm_m / sql_m:.2f}× |")
    print(f"outputs identical: {equal}")
    if not equal:
        raise SystemExit("the two journey tables differ")


if __name__ == "__main__":
    main()
