"""Presets: Segment / RudderStack messages and the GA4 BigQuery export."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from journeymap.errors import InputDataError
from journeymap.importing import PRESETS, import_file
from journeymap.storage.lake import DeltaEventStore

SEGMENT_MESSAGES: list[dict[str, Any]] = [
    {
        "type": "track",
        "event": "Order Completed",
        "userId": "u1",
        "anonymousId": "a1",
        "messageId": "m1",
        "timestamp": "2024-05-01T10:00:00.123Z",
        "properties": {
            "revenue": 49.905,
            "currency": "usd",
            "order_id": "o-1",
            "products": [{"product_id": "p1"}],
        },
        "context": {
            "campaign": {"source": "newsletter", "medium": "email", "name": "spring"},
            "device": {"type": "mobile"},
            "library": {"name": "analytics-python"},
        },
    },
    {
        "type": "page",
        "name": "Home",
        "category": "Landing",
        "anonymousId": "a2",
        "messageId": "m2",
        "originalTimestamp": "2024-05-01T10:01:00Z",
        "properties": {"path": "/", "total": "12.50"},
    },
    {
        "type": "identify",
        "userId": "u1",
        "messageId": "m3",
        "timestamp": "2024-05-01T10:02:00Z",
        "context": {"traits": {"email": "ann@example.com"}},
    },
    {
        "type": "screen",
        "name": "Cart",
        "userId": "u3",
        "messageId": "m4",
        "timestamp": "2024-05-01T10:03:00Z",
    },
    {
        "type": "group",
        "groupId": "g1",
        "userId": "u3",
        "messageId": "m5",
        "timestamp": "2024-05-01T10:04:00Z",
        "traits": {"plan": "pro"},
    },
    {
        "type": "alias",
        "previousId": "a2",
        "userId": "u2",
        "messageId": "m6",
        "timestamp": "2024-05-01T10:05:00Z",
    },
    {"type": "track", "userId": "u9", "messageId": "m7", "timestamp": "2024-05-01T10:06:00Z"},
]

EXPECTED_SEGMENT = [
    {
        "event_id": "m1",
        "customer_id": "u1",
        "anonymous_id": "a1",
        "event": "Order Completed",
        "channel": "email",
        "campaign": "spring",
        "revenue": Decimal("49.90"),
        "currency": "USD",
        "device": "mobile",
        "order_id": "o-1",
        "properties": '{"revenue":49.905,"currency":"usd","order_id":"o-1",'
        '"products":[{"product_id":"p1"}]}',
    },
    {
        "event_id": "m2",
        "customer_id": None,
        "anonymous_id": "a2",
        "event": "page_view",
        "channel": None,
        "campaign": None,
        "revenue": Decimal("12.50"),
        "currency": "EUR",
        "device": None,
        "order_id": None,
        "properties": '{"path":"/","total":"12.50","name":"Home","category":"Landing"}',
    },
    {
        "event_id": "m3",
        "customer_id": "u1",
        "anonymous_id": None,
        "event": "identify",
        "channel": None,
        "campaign": None,
        "revenue": None,
        "currency": None,
        "device": None,
        "order_id": None,
        "properties": '{"email":"ann@example.com"}',
    },
    {
        "event_id": "m4",
        "customer_id": "u3",
        "anonymous_id": None,
        "event": "screen_view",
        "channel": None,
        "campaign": None,
        "revenue": None,
        "currency": None,
        "device": None,
        "order_id": None,
        "properties": '{"name":"Cart"}',
    },
    {
        "event_id": "m5",
        "customer_id": "u3",
        "anonymous_id": None,
        "event": "group",
        "channel": None,
        "campaign": None,
        "revenue": None,
        "currency": None,
        "device": None,
        "order_id": None,
        "properties": '{"plan":"pro","groupId":"g1"}',
    },
    {
        "event_id": "m6",
        "customer_id": "u2",
        "anonymous_id": None,
        "event": "alias",
        "channel": None,
        "campaign": None,
        "revenue": None,
        "currency": None,
        "device": None,
        "order_id": None,
        "properties": '{"previousId":"a2"}',
    },
]
_COLUMNS = list(EXPECTED_SEGMENT[0])


def _read(store: DeltaEventStore, columns: list[str]) -> list[dict[str, Any]]:
    return store.read().sort_by("ts").select(columns).to_pylist()


def test_segment_messages_one_per_line(tmp_path):
    path = tmp_path / "segment.jsonl"
    path.write_text("\n".join(json.dumps(m) for m in SEGMENT_MESSAGES) + "\n")
    store = DeltaEventStore(tmp_path / "lake")
    summary = import_file(store, path, preset="segment")
    assert _read(store, _COLUMNS) == EXPECTED_SEGMENT
    first = store.read().sort_by("ts").to_pylist()[0]
    assert first["ts"] == dt.datetime(2024, 5, 1, 10, 0, 0, 123000, tzinfo=dt.UTC)
    assert json.loads(first["context"])["library"] == {"name": "analytics-python"}
    [reject] = [json.loads(x) for x in summary.rejects_path.read_text().splitlines()]
    assert (reject["line"], reject["field"], reject["rule"]) == (7, "event", "event.missing")


def test_segment_batch_document_and_batch_lines(tmp_path):
    doc = tmp_path / "batch.json"
    doc.write_text(
        json.dumps({"batch": SEGMENT_MESSAGES, "sentAt": "2024-05-01T10:07:00Z"}, indent=2)
    )
    store = DeltaEventStore(tmp_path / "lake")
    summary = import_file(store, doc, preset="segment")
    assert _read(store, _COLUMNS) == EXPECTED_SEGMENT
    [reject] = [json.loads(x) for x in summary.rejects_path.read_text().splitlines()]
    assert (reject["row"], reject["rule"]) == (7, "event.missing")

    lines = tmp_path / "batches.jsonl"
    lines.write_text(
        json.dumps({"batch": SEGMENT_MESSAGES[:3]})
        + "\n"
        + json.dumps({"batch": SEGMENT_MESSAGES[3:6]})
        + "\n"
    )
    again = import_file(DeltaEventStore(tmp_path / "lake2"), lines, preset="segment")
    assert (again.rows_taken, again.rows_rejected) == (6, 0)


def test_segment_mapping_overrides_a_field_with_a_path(tmp_path):
    path = tmp_path / "segment.jsonl"
    path.write_text(json.dumps(SEGMENT_MESSAGES[0]) + "\n")
    store = DeltaEventStore(tmp_path / "lake")
    import_file(store, path, preset="segment", mapping={"campaign": "context.campaign.source"})
    assert _read(store, ["campaign"]) == [{"campaign": "newsletter"}]


def _param(
    key: str, s: str | None = None, i: int | None = None, d: float | None = None
) -> dict[str, Any]:
    return {
        "key": key,
        "value": {"string_value": s, "int_value": i, "float_value": None, "double_value": d},
    }


def _ga4_rows() -> list[dict[str, Any]]:
    """Two rows as the GA4 BigQuery export has them (ints typed: the Parquet form)."""
    return [
        {
            "event_date": "20240501",
            "event_timestamp": 1714557600123456,
            "event_name": "page_view",
            "event_params": [
                _param("page_location", s="https://shop.example/"),
                _param("ga_session_id", i=1714557600),
                _param("engagement_time_msec", i=1200),
            ],
            "user_pseudo_id": "123.456",
            "user_id": None,
            "device": {"category": "mobile", "operating_system": "iOS"},
            "geo": {"country": "Germany", "city": "Berlin"},
            "traffic_source": {"name": "spring_sale", "medium": "cpc", "source": "google"},
            "collected_traffic_source": None,
            "ecommerce": None,
            "event_value_in_usd": None,
            "items": [],
            "platform": "WEB",
            "stream_id": "999",
        },
        {
            "event_date": "20240501",
            "event_timestamp": 1714557660000000,
            "event_name": "purchase",
            "event_params": [
                _param("ga_session_id", i=1714557600),
                _param("currency", s="EUR"),
                _param("value", d=59.9),
            ],
            "user_pseudo_id": "123.456",
            "user_id": "cust-7",
            "device": {"category": "mobile", "operating_system": "iOS"},
            "geo": {"country": "Germany", "city": "Berlin"},
            "traffic_source": {"name": "spring_sale", "medium": "cpc", "source": "google"},
            "collected_traffic_source": {
                "manual_source": "newsletter",
                "manual_medium": "email",
                "manual_campaign_name": "may",
            },
            "ecommerce": {"purchase_revenue": 59.9, "transaction_id": "T-1"},
            "event_value_in_usd": 64.1,
            "items": [{"item_id": "sku-1", "price": 59.9, "quantity": 1}],
            "platform": "WEB",
            "stream_id": "999",
        },
    ]


def _bq_json(row: dict[str, Any]) -> str:
    """``bq extract`` writes INT64 values as JSON strings."""

    def strings(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: strings(v) for k, v in x.items()}
        if isinstance(x, list):
            return [strings(v) for v in x]
        return str(x) if isinstance(x, int) and not isinstance(x, bool) else x

    return json.dumps(strings(row))


def test_ga4_export_as_gzip_json_lines_and_as_parquet_give_the_same_events(tmp_path):
    jsonl = tmp_path / "events_20240501.json.gz"
    jsonl.write_bytes(gzip.compress("\n".join(_bq_json(r) for r in _ga4_rows()).encode()))
    parquet = tmp_path / "events_20240501.parquet"
    pq.write_table(pa.Table.from_pylist(_ga4_rows()), parquet)

    a, b = DeltaEventStore(tmp_path / "a"), DeltaEventStore(tmp_path / "b")
    assert import_file(a, jsonl, preset="ga4").rows_taken == 2
    assert import_file(b, parquet, preset="ga4").rows_taken == 2
    rows = a.read().sort_by("ts").to_pylist()
    assert rows == b.read().sort_by("ts").to_pylist()  # ids included

    view, buy = rows
    assert view["ts"] == dt.datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=dt.UTC)
    assert (view["event"], view["customer_id"], view["anonymous_id"]) == (
        "page_view",
        None,
        "123.456",
    )
    assert (view["channel"], view["campaign"], view["device"]) == ("cpc", "spring_sale", "mobile")
    assert json.loads(view["properties"]) == {
        "page_location": "https://shop.example/",
        "ga_session_id": 1714557600,
        "engagement_time_msec": 1200,
        "traffic_source": "google",
    }
    assert json.loads(view["context"])["geo"] == {"country": "Germany", "city": "Berlin"}
    assert view["source"] == "events_20240501"
    assert len(view["event_id"]) == 32

    assert (buy["event"], buy["customer_id"], buy["channel"], buy["campaign"]) == (
        "purchase",
        "cust-7",
        "email",
        "may",
    )  # event-scoped traffic source wins
    assert (buy["revenue"], buy["currency"], buy["order_id"]) == (Decimal("59.90"), "EUR", "T-1")
    assert json.loads(buy["properties"])["items"] == [
        {"item_id": "sku-1", "price": 59.9, "quantity": 1}
    ]

    again = import_file(a, jsonl, preset="ga4")
    assert (again.appended, again.duplicates) == (0, 2)


def test_a_file_that_is_not_the_presets_export_is_refused(tmp_path):
    path = tmp_path / "other.jsonl"
    path.write_text(
        json.dumps({"customer_id": "c", "ts": "2024-05-01T10:00:00Z", "event": "a"}) + "\n"
    )
    with pytest.raises(InputDataError) as info:
        import_file(DeltaEventStore(tmp_path / "lake"), path, preset="ga4")
    assert str(info.value) == (
        "other.jsonl: does not look like a Google Analytics 4 BigQuery export (JSON lines from "
        "bq extract, or Parquet): no event_name; no event_timestamp in the first rows; they "
        "have customer_id, event, ts. Choose another --preset, or none and --map the columns"
    )


def test_presets_are_listed_with_a_description():
    assert sorted(PRESETS) == ["ga4", "segment"]
    assert PRESETS["segment"].description.startswith("Segment / RudderStack")
