"""Analytics engines: an Ibis backend with the event lake registered as the ``events`` table.

DuckDB (embedded) is the default. The same Ibis expressions run on PySpark; there the lake is
read from the current snapshot's Parquet files, because the ``delta-spark`` wheel carries no
jars offline (on a cluster with delta-spark configured, read the table the usual way and pass
it to the analytics functions).

Ibis pins both engines to UTC; for PySpark it sets ``spark.sql.session.timeZone=UTC`` on the
SparkSession you pass in, which affects the rest of your application too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ibis

from journeymap.errors import EngineError, MissingExtraError

if TYPE_CHECKING:
    from ibis.backends.duckdb import Backend as DuckDBBackend

    from journeymap.storage.lake import DeltaEventStore

EVENTS_TABLE = "events"


def connect_duckdb(
    path: str = ":memory:", *, threads: int = 0, memory_limit: str = ""
) -> DuckDBBackend:
    """An Ibis DuckDB connection (in memory by default)."""
    config: dict[str, Any] = {}
    if threads:
        config["threads"] = threads
    if memory_limit:
        config["memory_limit"] = memory_limit
    con = ibis.duckdb.connect(path, **config)
    # keep insertion order where SQL allows it; analytics never rely on it (rule 1) but
    # reading back Parquet in written order is cheaper with it on.
    con.raw_sql("SET preserve_insertion_order = true")
    return con


def register_lake(con: Any, store: DeltaEventStore, name: str = EVENTS_TABLE) -> ibis.Table:
    """Expose the lake's current snapshot as table ``name`` on ``con``; return it."""
    backend = getattr(con, "name", "")
    if backend == "duckdb":
        con.con.register(name, store.dataset())
        return con.table(name)
    if backend == "pyspark":
        session = con._session
        uris = store.file_uris()
        if not uris:
            raise EngineError(f"the lake at {store.path} is empty; import events first")
        df = session.read.option("basePath", str(store.path)).parquet(*uris)
        df.createOrReplaceTempView(name)
        return con.table(name)
    raise EngineError(f"unsupported Ibis backend {backend!r}; use duckdb or pyspark")


def connect_pyspark(session: Any = None) -> Any:
    """An Ibis PySpark connection, on ``session`` or a new local one."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise MissingExtraError("pyspark", "spark", "The PySpark engine") from None
    if session is None:
        session = (
            SparkSession.builder.master("local[2]")
            .appName("journeymap")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", "4")
            .config("spark.sql.session.timeZone", "UTC")
            .getOrCreate()
        )
    return ibis.pyspark.connect(session)
