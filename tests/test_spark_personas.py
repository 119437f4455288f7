"""The persona features and the break-rate aggregates are identical on PySpark and DuckDB.

A small simulated shop goes into a Delta lake; both engines read it (``register_lake``), build
the journey table and run the same Ibis expressions. The NumPy / scikit-learn steps after the
engine then give the same personas and the same break tests.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import DEMO_SPEC, SPARK_MARKS
from journeymap.analytics.breaks import find_breaks
from journeymap.analytics.concentration import cube_expr, subject_trials
from journeymap.analytics.engine import connect_duckdb, register_lake
from journeymap.analytics.features import customer_features_expr, feature_vocabulary
from journeymap.analytics.journey import build_journey
from journeymap.analytics.personas import find_personas
from journeymap.analytics.trials import (
    break_rates_expr,
    default_exit_touchpoints,
    default_processes,
    trials_expr,
)
from journeymap.model.spec import load_spec
from journeymap.simulate import simulate_shop
from journeymap.storage.lake import DeltaEventStore

pytestmark = SPARK_MARKS

SPEC = load_spec(DEMO_SPEC)


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    out = tmp_path_factory.mktemp("spark-shop")
    sim = simulate_shop(out / "sim", customers=400, seed=5, days=60)
    store = DeltaEventStore(out / "lake")
    store.append(pq.read_table(sim.events_path))
    return store


@pytest.fixture(scope="module")
def journeys(spark_con, lake):
    duck = connect_duckdb()
    return build_journey(register_lake(duck, lake), SPEC), build_journey(
        register_lake(spark_con, lake), SPEC
    )


def _rows(table: pa.Table, *keys: str) -> list[dict[str, object]]:
    return sorted(table.to_pylist(), key=lambda r: tuple(str(r[k]) for k in keys))


def test_customer_features_are_identical(journeys):
    duck_j, spark_j = journeys
    vocab = feature_vocabulary(duck_j, SPEC.phase_ids())
    assert feature_vocabulary(spark_j, SPEC.phase_ids()) == vocab
    expected = customer_features_expr(duck_j, vocab, timezone="Europe/Berlin").to_pyarrow()
    got = customer_features_expr(spark_j, vocab, timezone="Europe/Berlin").to_pyarrow()
    assert got.num_rows == expected.num_rows == 400
    assert _rows(got, "customer_id") == _rows(expected, "customer_id")
    # the data exercise the features: buyers, discount codes, several hours and channels
    rows = expected.to_pylist()
    assert sum(r["n_conversions"] > 0 for r in rows) > 20
    assert sum(r["discount_orders"] for r in rows) > 5
    assert sum(1 for h in range(24) if any(r[f"hour_{h}"] for r in rows)) > 12


def test_break_rates_are_identical(journeys):
    duck_j, spark_j = journeys
    procs = default_processes(SPEC)
    tps = default_exit_touchpoints(SPEC, procs)

    def rates(j):
        tr = trials_expr(j, touchpoints=tps, processes=procs)
        return break_rates_expr(tr, ["device", "channel", "campaign"]).to_pyarrow()

    expected, got = rates(duck_j), rates(spark_j)
    keys = ("kind", "subject", "day", "device", "channel", "campaign")
    assert got.num_rows == expected.num_rows > 100
    assert _rows(got, *keys) == _rows(expected, *keys)
    kinds = {r["kind"] for r in expected.to_pylist()}
    assert kinds == {"step_exit", "campaign_bounce", "process_abandon"}
    assert sum(r["exits"] for r in expected.to_pylist()) > 100


def test_concentration_cube_is_identical(journeys):
    duck_j, spark_j = journeys

    def cube(j):
        tr = subject_trials(
            j, "process_abandon", "payment->goal", processes=default_processes(SPEC)
        )
        return cube_expr(tr, tr.device == "mobile", ["payment_method"]).to_pyarrow()

    expected, got = cube(duck_j), cube(spark_j)
    keys = ("in_cell", "device", "channel", "campaign", "property:payment_method")
    assert _rows(got, *keys) == _rows(expected, *keys)
    assert {r["property:payment_method"] for r in expected.to_pylist()} >= {"card", "paypal"}


def test_personas_and_breaks_end_to_end(journeys):
    duck_j, spark_j = journeys
    a = find_personas(duck_j, SPEC, timezone="Europe/Berlin", seed=1)
    b = find_personas(spark_j, SPEC, timezone="Europe/Berlin", seed=1)
    assert b.assignments.equals(a.assignments)
    assert b.to_dict() == a.to_dict()
    x = find_breaks(duck_j, SPEC, min_trials=5)
    y = find_breaks(spark_j, SPEC, min_trials=5)
    assert y.tests == x.tests
    assert y.to_dict() == x.to_dict()
