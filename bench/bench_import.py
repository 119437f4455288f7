"""Benchmark: ``import_file`` of a large Parquet file beside hand-written DuckDB SQL.

Both sides read the same Parquet file (the event schema without the derived columns),
validate and normalise the same fields, drop duplicate event ids and write date-partitioned
zstd Parquet: ``import_file`` into a fresh Delta lake, the SQL with ``COPY ... PARTITION_BY``.
Each run is a fresh subprocess; the table shows the median of the in-process work time
(imports excluded, the same modules pre-imported on both sides), the process wall time and the
peak RSS (``ru_maxrss`` of the child).

    python bench/bench_import.py                      # 5M synthetic events, 3 runs each
    python bench/bench_import.py --rows 1000000 --runs 1
    python bench/bench_import.py --file events.parquet
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
#: Share of rows sent twice (same event id) and of rows breaking a rule.
DUPLICATE_SHARE = 0.001
BAD_SHARE = 0.0005


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Time import_file against hand-written DuckDB SQL on one Parquet file.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--rows", type=int, default=5_000_000, help="events to generate")
    parser.add_argument(
        "--file",
        type=Path,
        default=None,
        help="use this Parquet file (event schema without ts_us/event_date) instead of "
        "generating one, e.g. the simulator's output",
    )
    parser.add_argument(
        "--simulate",
        type=int,
        default=None,
        metavar="CUSTOMERS",
        help="use the shop simulator's events (journeymap.simulate.simulate_shop) for this many "
        "customers instead of synthetic data (92000 customers give about 5M events)",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs of each side, interleaved")
    parser.add_argument("--seed", type=int, default=7, help="seed of the synthetic data")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument(
        "--child", choices=["import", "sql", "generate", "simulate"], help=argparse.SUPPRESS
    )
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "generate":
        generate(args.rows, args.seed)
        return 0
    if args.child == "simulate":
        simulate(args.simulate, args.seed)
        return 0
    if args.child:
        return _child(args.child, args.file, args.out)

    # generate in a subprocess: a child forked from a big parent would report the parent's
    # memory as its peak RSS
    if args.file:
        path = args.file
    elif args.simulate:
        path = _simulated_path(args.simulate, args.seed)
        child = ["--child", "simulate", "--simulate", str(args.simulate)]
    else:
        path = _data_path(args.rows, args.seed)
        child = ["--child", "generate", "--rows", str(args.rows)]
    if not path.exists():
        cmd = [sys.executable, str(Path(__file__).resolve()), *child, "--seed", str(args.seed)]
        subprocess.run(cmd, check=True)
    print(f"input: {path} ({path.stat().st_size / 1e6:.1f} MB)", flush=True)
    results: dict[str, list[dict[str, Any]]] = {"import": [], "sql": []}
    with tempfile.TemporaryDirectory(prefix="jm-bench-") as tmp:
        for run in range(args.runs):
            order = ["import", "sql"] if run % 2 == 0 else ["sql", "import"]
            for side in order:
                out = Path(tmp) / f"{side}-{run}"
                record = _run_child(side, path, out)
                results[side].append(record)
                print(
                    f"run {run + 1} {side:6}: {record['seconds']:6.2f} s work, "
                    f"{record['wall']:6.2f} s wall, {record['rss_mb']:6.0f} MB, "
                    f"{record['rows']:,} rows written",
                    flush=True,
                )
                shutil.rmtree(out, ignore_errors=True)
    summary = _summarise(results)
    _print_table(summary, path)
    if args.json:
        args.json.write_text(json.dumps({"input": str(path), "runs": results, **summary}, indent=2))
    return 0


# -- data ---------------------------------------------------------------------------------
def generate(rows: int, seed: int) -> Path:
    """A synthetic shop's events in ``bench/data`` (reused when present)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    DATA.mkdir(parents=True, exist_ok=True)
    path = _data_path(rows, seed)
    if path.exists():
        return path
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    n = rows
    customers = rng.integers(0, max(n // 25, 1), n)
    start = 1_704_067_200_000_000  # 2024-01-01, 90 days, time-ordered as exports are
    ts = np.sort(start + rng.integers(0, 90 * 86_400_000_000, n))
    names = np.array(
        ["page_view", "product_view", "add_to_cart", "checkout", "purchase", "search", "visit"]
    )
    ev = rng.choice(len(names), n, p=[0.35, 0.25, 0.1, 0.05, 0.02, 0.08, 0.15])
    channels = np.array(["email", "seo", "sea", "social", "direct", "affiliate", "push"])
    ch = rng.integers(0, len(channels), n)
    visit, purchase = ev == 6, ev == 4
    device = np.array(["mobile", "desktop", "tablet"])[rng.integers(0, 3, n)]
    page = rng.integers(0, 5000, n).astype(str)
    idx = np.arange(n).astype(str)
    anonymous = rng.random(n) < 0.1
    event_id = np.char.add("e", idx)
    dup = rng.random(n) < DUPLICATE_SHARE  # resent events: the id of the previous row
    event_id[1:][dup[1:]] = event_id[:-1][dup[1:]]
    props = np.char.add(
        np.char.add(np.char.add('{"device":"', device), '","page":"/p/'), np.char.add(page, '"}')
    )
    bad = rng.random(n) < BAD_SHARE  # properties that are not a JSON object
    props[bad] = "[not json"

    def where(keep: Any, values: Any) -> pa.Array:
        """``values`` where ``keep``, null elsewhere (no object arrays: fast)."""
        return pa.array(np.broadcast_to(values, (n,)), pa.string(), mask=~keep)

    table = pa.table(
        {
            "event_id": pa.array(event_id),
            "customer_id": where(~anonymous, np.char.add("c", customers.astype(str))),
            "anonymous_id": where(anonymous, np.char.add("a", customers.astype(str))),
            "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "event": pa.array(names[ev]),
            "channel": where(visit, channels[ch]),
            "campaign": where(visit & (ch < 3), np.char.add("spring-", ch.astype(str))),
            "source": pa.array(np.full(n, "shop")),
            "revenue": pa.array(np.round(rng.gamma(2.0, 40.0, n), 2), mask=~purchase).cast(
                pa.decimal128(18, 2)
            ),
            "currency": where(purchase, "EUR"),
            "properties": pa.array(props),
            "context": pa.nulls(n, pa.string()),
            "device": pa.array(device),
            "order_id": where(purchase, np.char.add("o", idx)),
            "product_id": where(ev == 1, np.char.add("p", page)),
            "category": pa.nulls(n, pa.string()),
            "score": pa.nulls(n, pa.int32()),
        }
    )
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp, compression="zstd", row_group_size=1_000_000)
    tmp.rename(path)
    print(f"generated {n:,} events in {time.perf_counter() - started:.1f} s", flush=True)
    return path


def _data_path(rows: int, seed: int) -> Path:
    return DATA / f"events_{rows}_{seed}.parquet"


def _simulated_path(customers: int, seed: int) -> Path:
    return DATA / f"simulated_{customers}_{seed}.parquet"


def simulate(customers: int, seed: int) -> Path:
    """The simulator's events as one Parquet file without the derived columns."""
    import duckdb

    from journeymap.simulate import simulate_shop

    DATA.mkdir(parents=True, exist_ok=True)
    path = _simulated_path(customers, seed)
    with tempfile.TemporaryDirectory(prefix="jm-sim-") as tmp:
        sim = simulate_shop(Path(tmp), customers=customers, seed=seed)
        parts = sim.events_path if sim.events_path.is_file() else sim.events_path / "*.parquet"
        con = duckdb.connect()
        con.execute("SET enable_progress_bar = false")
        tmp_out = path.with_suffix(".tmp")
        con.execute(
            f"COPY (SELECT * EXCLUDE (ts_us, event_date) FROM read_parquet('{parts}'))"
            f" TO '{tmp_out}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 1000000)"
        )
        tmp_out.rename(path)
    print(f"simulated {sim.events:,} events of {customers:,} customers", flush=True)
    return path


# -- the two sides ------------------------------------------------------------------------
def _run_child(side: str, path: Path, out: Path) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        side,
        "--file",
        str(path),
        "--out",
        str(out),
    ]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"{side} failed ({proc.returncode}): {output}")
    record: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    record.update(wall=wall, rss_mb=usage.ru_maxrss / 1024)
    return record


def _child(side: str, path: Path, out: Path) -> int:
    # the same heavy modules on both sides, imported before the clock starts
    import deltalake  # noqa: F401
    import duckdb
    import pyarrow.dataset as pads

    import journeymap.importing as importing
    from journeymap.storage.lake import DeltaEventStore

    started = time.perf_counter()
    if side == "import":
        store = DeltaEventStore(out / "lake")
        summary = importing.import_file(store, path, rejects_path=out / "rejects.jsonl")
        seconds = time.perf_counter() - started
        rows = store.stats().events
        extra = {"rejected": summary.rows_rejected, "duplicates": summary.duplicates}
    else:
        out.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect()
        con.execute("SET enable_progress_bar = false")
        con.execute(hand_sql(path, out / "parquet", source=path.name.split(".")[0]))
        seconds = time.perf_counter() - started
        rows = pads.dataset(out / "parquet", format="parquet", partitioning="hive").count_rows()
        extra = {}
    print(json.dumps({"seconds": seconds, "rows": rows, **extra}))
    return 0


def hand_sql(path: Path, out: Path, *, source: str) -> str:
    """What an engineer would write in DuckDB for the same import (valid rows only)."""
    f = "'" + str(path).replace("'", "''") + "'"
    o = "'" + str(out).replace("'", "''") + "'"

    def t(c: str) -> str:
        return f"NULLIF(trim({c}), '')"

    return f"""
SET TimeZone = 'UTC';
COPY (
  WITH n AS (
    SELECT {t("event_id")} AS event_id, {t("customer_id")} AS customer_id,
           {t("anonymous_id")} AS anonymous_id, ts, epoch_us(ts) AS ts_us,
           {t("event")} AS event, {t("channel")} AS channel, {t("campaign")} AS campaign,
           coalesce({t("source")}, '{source}') AS source,
           CAST(round_even(CAST(revenue AS DECIMAL(38,9)), 2) AS DECIMAL(18,2)) AS revenue,
           coalesce(upper({t("currency")}), CASE WHEN revenue IS NOT NULL THEN 'EUR' END)
             AS currency,
           {t("properties")} AS properties, {t("context")} AS context,
           {t("device")} AS device, {t("order_id")} AS order_id, {t("product_id")} AS product_id,
           {t("category")} AS category, score
    FROM read_parquet({f})
  )
  SELECT *, CAST(ts AS DATE) AS event_date FROM n
  WHERE ts_us >= 631152000000000 AND ts_us < 4102444800000000
    AND event IS NOT NULL AND length(event) <= 200
    AND (customer_id IS NOT NULL OR anonymous_id IS NOT NULL)
    AND coalesce(length(customer_id), 0) <= 100 AND coalesce(length(anonymous_id), 0) <= 100
    AND coalesce(length(event_id), 0) <= 100 AND coalesce(length(channel), 0) <= 200
    AND coalesce(length(campaign), 0) <= 200 AND length(source) <= 200
    AND (currency IS NULL OR regexp_full_match(currency, '[A-Z]{{3}}'))
    AND (properties IS NULL OR (starts_with(properties, '{{') AND json_valid(properties)))
    AND (context IS NULL OR (starts_with(context, '{{') AND json_valid(context)))
  QUALIFY row_number() OVER (PARTITION BY event_id) = 1
) TO {o} (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (event_date));
"""


# -- report -------------------------------------------------------------------------------
def _summarise(results: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    med = {
        side: {
            key: statistics.median(r[key] for r in runs)
            for key in ("seconds", "wall", "rss_mb", "rows")
        }
        for side, runs in results.items()
    }
    return {
        "median": med,
        "ratio_work": med["import"]["seconds"] / med["sql"]["seconds"],
        "ratio_wall": med["import"]["wall"] / med["sql"]["wall"],
        "ratio_rss": med["import"]["rss_mb"] / med["sql"]["rss_mb"],
    }


def _print_table(summary: dict[str, Any], path: Path) -> None:
    med = summary["median"]
    print()
    print(f"{'':28} {'work s':>8} {'wall s':>8} {'peak RSS MB':>12} {'rows written':>14}")
    for side, label in (("import", "import_file (Delta lake)"), ("sql", "hand-written DuckDB SQL")):
        m = med[side]
        print(
            f"{label:28} {m['seconds']:8.2f} {m['wall']:8.2f} {m['rss_mb']:12.0f}"
            f" {int(m['rows']):14,}"
        )
    print(
        f"{'ratio import / SQL':28} {summary['ratio_work']:8.2f} {summary['ratio_wall']:8.2f}"
        f" {summary['ratio_rss']:12.2f}"
    )
    if med["import"]["rows"] != med["sql"]["rows"]:
        print("WARNING: the two sides wrote different numbers of rows")


if __name__ == "__main__":
    sys.exit(main())
