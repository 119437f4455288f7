"""Shared fixtures: hand-built events and small projects."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ibis
import pyarrow as pa
import pytest

from journeymap.model.events import EVENT_SCHEMA, conform
from journeymap.server.testing import BACKENDS


def make_events(rows: list[dict[str, Any]]) -> pa.Table:
    """Events from dicts; ``ts`` may be an ISO string with offset. Missing fields are null."""
    names = [f.name for f in EVENT_SCHEMA if f.name not in ("ts_us", "event_date")]
    cols: dict[str, list[Any]] = {n: [] for n in names}
    for i, row in enumerate(rows):
        unknown = set(row) - set(names)
        assert not unknown, f"row {i}: unknown fields {unknown}"
        for n in names:
            value = row.get(n)
            if n == "ts" and isinstance(value, str):
                value = dt.datetime.fromisoformat(value).astimezone(dt.UTC)
            if n == "event_id" and value is None:
                value = f"e{i:04d}"
            cols[n].append(value)
    types = {f.name: f.type for f in EVENT_SCHEMA}
    from decimal import Decimal

    cols["revenue"] = [None if v is None else Decimal(str(v)) for v in cols["revenue"]]
    table = pa.table({n: pa.array(v, type=types[n]) for n, v in cols.items()})
    return conform(table)


@pytest.fixture
def events_factory() -> Callable[[list[dict[str, Any]]], pa.Table]:
    return make_events


@pytest.fixture
def duck() -> Iterator[Any]:
    con = ibis.duckdb.connect()
    yield con
    con.disconnect()


def register(con: Any, table: pa.Table, name: str = "events") -> ibis.Table:
    con.con.register(name, table)
    return con.table(name)


DEMO_SPEC = Path(__file__).parents[1] / "src" / "journeymap" / "simulate" / "demo_journey.yaml"


#: Marks for a module of Spark tests: ``pytestmark = SPARK_MARKS``.
SPARK_MARKS = [
    pytest.mark.spark,
    # py4j leaves its gateway sockets to the garbage collector, and PySpark's toPandas path
    # (which Ibis uses to collect results) trips pandas 3 deprecations.
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning"),
]


@pytest.fixture(scope="session")
def spark_con() -> Iterator[Any]:
    """One local SparkSession per test run (JVM start ~10 s), as an Ibis connection."""
    pytest.importorskip("pyspark")
    from pyspark.sql import SparkSession

    from journeymap.analytics.engine import connect_pyspark

    session = (
        SparkSession.builder.master("local[2]")
        .appName("journeymap-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.memory", "1g")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    yield connect_pyspark(session)
    session.stop()


@pytest.fixture(params=BACKENDS)
def url(request: Any, tmp_path: Path) -> Iterator[str]:
    """An empty operational database's URL, once on SQLite and once on PostgreSQL (skipped
    locally without ``JOURNEYMAP_TEST_POSTGRES_URL``; CI must have one)."""
    from journeymap.server.testing import database_for_test

    value, cleanup = database_for_test(request.param, tmp_path)
    yield value
    cleanup()


@pytest.fixture
def db(url: str) -> Iterator[Any]:
    """The operational database at ``url``."""
    from journeymap.storage.db import OperationalDB

    database = OperationalDB(url)
    yield database
    database.close()
