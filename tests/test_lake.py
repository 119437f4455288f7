"""The event lake: idempotent appends, deletion, compaction."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from conftest import make_events
from journeymap.errors import LakeError
from journeymap.model.events import EVENT_SCHEMA
from journeymap.storage.lake import DeltaEventStore


def _rows(n: int, customer: str = "c1", day: int = 1) -> list[dict[str, object]]:
    return [
        {
            "event_id": f"{customer}-{day}-{i}",
            "customer_id": customer,
            "ts": f"2026-01-{day:02d}T10:{i % 60:02d}:00+00:00",
            "event": "page_view",
        }
        for i in range(n)
    ]


def test_append_is_idempotent_and_partitioned_by_date(tmp_path):
    store = DeltaEventStore(tmp_path / "lake")
    batch = make_events(_rows(5, day=1) + _rows(3, day=2))
    first = store.append(batch)
    assert (first.received, first.appended, first.already_in_lake) == (8, 8, 0)
    version = store.version()
    again = store.append(batch)
    assert (again.appended, again.already_in_lake) == (0, 8)
    assert store.version() == version  # nothing written, no new version
    table = store.read()
    assert table.schema == EVENT_SCHEMA
    assert table.num_rows == 8
    dirs = sorted(p.name for p in (tmp_path / "lake").iterdir() if p.is_dir())
    assert dirs == ["_delta_log", "event_date=2026-01-01", "event_date=2026-01-02"]


def test_duplicates_inside_a_batch_keep_the_first(tmp_path):
    store = DeltaEventStore(tmp_path / "lake")
    rows = _rows(2)
    dup = dict(rows[0], event="other")
    result = store.append(make_events([*rows, dup]))
    assert (result.received, result.duplicates_in_batch, result.appended) == (3, 1, 2)
    events = store.read().sort_by("event_id").column("event").to_pylist()
    assert events == ["page_view", "page_view"]


def test_partial_overlap_appends_only_new_rows(tmp_path):
    store = DeltaEventStore(tmp_path / "lake")
    store.append(make_events(_rows(4)))
    result = store.append(make_events(_rows(6)))
    assert (result.appended, result.already_in_lake) == (2, 4)
    ids = store.read().column("event_id")
    assert len(ids) == 6 == len(pc.unique(ids))


def test_delete_customer_removes_only_their_events(tmp_path):
    store = DeltaEventStore(tmp_path / "lake")
    rows = _rows(3, "alice") + _rows(2, "o'brien") + _rows(2, "bob")
    rows.append(
        {
            "event_id": "anon-1",
            "anonymous_id": "cookie-9",
            "ts": "2026-01-01T09:00:00+00:00",
            "event": "page_view",
        }
    )
    store.append(make_events(rows))
    assert store.delete_customer("o'brien", anonymous_ids=["cookie-9"]) == 3
    left = store.read()
    assert sorted(set(left.column("customer_id").to_pylist())) == ["alice", "bob"]
    assert left.num_rows == 5


def test_compact_merges_small_files_and_keeps_rows(tmp_path):
    store = DeltaEventStore(tmp_path / "lake")
    for i in range(4):
        store.append(make_events(_rows(5, customer=f"c{i}")))
    before = store.read().sort_by("event_id")
    result = store.compact(vacuum_hours=0)
    assert result.files_before == 4
    assert result.files_after == 1
    assert result.files_removed_from_disk == 4
    assert store.read().sort_by("event_id").equals(before)
    parquet_files = list((tmp_path / "lake").rglob("*.parquet"))
    assert len(parquet_files) == 1


def test_missing_lake_says_how_to_create_it(tmp_path):
    store = DeltaEventStore(tmp_path / "nowhere")
    assert store.version() is None
    assert store.read().num_rows == 0
    with pytest.raises(LakeError, match="journeymap import FILE"):
        store.table()


def test_derived_columns_follow_the_timestamp(tmp_path):
    store = DeltaEventStore(tmp_path / "lake")
    store.append(
        make_events(
            [{"event_id": "x", "customer_id": "c", "event": "e", "ts": "2026-03-01T00:30:00+01:00"}]
        )
    )
    row = store.read().to_pylist()[0]
    assert row["ts_us"] == 1772321400 * 1_000_000
    assert str(row["event_date"]) == "2026-02-28"  # the UTC date
    assert pa.types.is_timestamp(store.read().schema.field("ts").type)
