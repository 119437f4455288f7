"""File import: CSV / JSON lines / Parquet into the lake, rejects, ids, time zones."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from journeymap.errors import ConfigError, InputDataError, MissingColumnsError
from journeymap.importing import ImportSummary, import_file, parse_mapping
from journeymap.importing.textblocks import Block, RecordSplitter
from journeymap.storage.lake import DeltaEventStore

UTC = dt.UTC


def _import(tmp_path: Path, name: str, content: bytes | str, **kwargs: Any) -> ImportSummary:
    path = tmp_path / name
    data = content.encode() if isinstance(content, str) else content
    if name.endswith(".gz"):
        data = gzip.compress(data)
    path.write_bytes(data)
    return import_file(DeltaEventStore(tmp_path / "lake"), path, **kwargs)


def _rejects(summary: ImportSummary) -> list[dict[str, Any]]:
    if summary.rejects_path is None:
        return []
    lines = summary.rejects_path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def _rows(tmp_path: Path, *columns: str) -> list[dict[str, Any]]:
    table = (
        DeltaEventStore(tmp_path / "lake")
        .read()
        .sort_by([("ts", "ascending"), ("event_id", "ascending")])
    )
    return table.select(list(columns)).to_pylist() if columns else table.to_pylist()


def _utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


# -- the bar: bad input ---------------------------------------------------------------------
BAD_CSV = [
    b"event_id,customer_id,ts,event,revenue,city",
    b"e1,c1,2024-05-01 10:00:00,page_view,,Berlin",
    b"e2,c1,2024-13-45 10:00,page_view,,Berlin",
    b"e3,c2,2024-05-01 10:00:00,purchase",
    b"e4,c2,2024-05-01 10:00:00,purchase,12 EUR,Paris",
    b"e5,c3,2024-05-01 10:00:00,page_view,,K\xf6ln",
    b'e6,c3,2024-05-01 10:00:00,page_view,,"' + b"x" * (10 * 1024 * 1024) + b'"',
    b'e7,c4,2024-05-01 11:00:00,"checkout\nstep 2",12.345,"Caf\xc3\xa9, ""Ecke"""',
    b"e8,c4,2024-05-01 10:00:00,purchase,1,too,many",
    b"e9,c5,2024-05-01 12:00:00,page_view,,Rome",
]


def test_bad_csv_rows_are_rejected_with_line_field_and_reason_and_the_rest_is_kept(tmp_path):
    content = b"\r\n".join(BAD_CSV) + b"\r\n"
    summary = _import(tmp_path, "shop.csv", content, timezone="Europe/Berlin")

    rejects = _rejects(summary)
    assert [(r["line"], r["field"], r["rule"]) for r in rejects] == [
        (3, "ts", "ts.unparseable"),
        (4, None, "csv.field_count"),
        (5, "revenue", "revenue.not_number"),
        (6, "city", "line.not_utf8"),
        (7, None, "line.too_long"),
        (10, None, "csv.field_count"),  # e7 spans lines 8-9
    ]
    assert all(r["file"] == "shop.csv" for r in rejects)
    by_line = {r["line"]: r for r in rejects}
    assert by_line[3]["value"] == "2024-13-45 10:00"
    assert by_line[3]["reason"].startswith(
        "cannot read '2024-13-45 10:00' as a time (naive times are read in Europe/Berlin); "
        "expected a time between 1990-01-01 and 2100-01-01: ISO 8601 with offset"
    )
    assert by_line[4]["reason"].startswith("the line has 4 fields but the header has 6")
    assert by_line[4]["value"] == "e3,c2,2024-05-01 10:00:00,purchase"
    assert "cannot read '12 EUR' as an amount" in by_line[5]["reason"]
    assert by_line[6]["value"] == "K\\xf6ln"
    assert by_line[6]["reason"] == (
        "invalid UTF-8 byte 0xf6 at byte 39 of the line in column 'city'; the file must be "
        "UTF-8 (convert it first, e.g. iconv -f latin1 -t utf-8)"
    )
    assert by_line[7]["reason"].startswith(
        "the line is 10,485,799 bytes long, more than max_line_bytes=1,048,576"
    )
    assert len(by_line[7]["value"]) == 200
    assert by_line[10]["reason"].startswith("the line has 7 fields but the header has 6")

    assert (summary.rows_read, summary.rows_taken, summary.rows_rejected) == (9, 3, 6)
    assert (summary.appended, summary.duplicates) == (3, 0)
    rows = _rows(tmp_path, "event_id", "ts", "event", "revenue", "currency", "properties")
    assert rows == [
        {
            "event_id": "e1",
            "ts": _utc(2024, 5, 1, 8),
            "event": "page_view",
            "revenue": None,
            "currency": None,
            "properties": '{"city":"Berlin"}',
        },
        {
            "event_id": "e7",
            "ts": _utc(2024, 5, 1, 9),
            "event": "checkout\nstep 2",
            "revenue": Decimal("12.34"),
            "currency": "EUR",
            "properties": '{"city":"Café, \\"Ecke\\""}',
        },
        {
            "event_id": "e9",
            "ts": _utc(2024, 5, 1, 10),
            "event": "page_view",
            "revenue": None,
            "currency": None,
            "properties": '{"city":"Rome"}',
        },
    ]


def test_importing_the_same_file_twice_leaves_the_lake_unchanged(tmp_path):
    content = "customer_id,ts,event\nc1,2024-05-01T10:00:00Z,a\nc1,2024-05-01T10:00:00Z,a\n"
    first = _import(tmp_path, "events.csv", content)
    store = DeltaEventStore(tmp_path / "lake")
    version, before = store.version(), store.read().sort_by("event_id")
    assert first.appended == 2  # two identical rows are two events
    again = _import(tmp_path, "events.csv", content)
    assert (again.appended, again.duplicates, again.rows_taken) == (0, 2, 2)
    assert store.version() == version == again.lake_version
    assert store.read().sort_by("event_id").equals(before)


def test_a_missing_required_column_fails_the_whole_file_and_says_how_to_map_it(tmp_path):
    content = "user_id,timestamp,event\nu1,2024-05-01T10:00:00Z,a\n"
    with pytest.raises(MissingColumnsError) as info:
        _import(tmp_path, "export.csv", content)
    assert str(info.value) == (
        "export.csv: missing required column(s) customer_id, ts; the file has event, "
        "timestamp, user_id. Map them with --map customer_id=<column in your file> "
        "or choose a --preset."
    )
    summary = _import(
        tmp_path, "export.csv", content, mapping=parse_mapping("customer_id=user_id, ts=timestamp")
    )
    assert summary.appended == 1
    assert _rows(tmp_path, "customer_id", "ts") == [
        {"customer_id": "u1", "ts": _utc(2024, 5, 1, 10)}
    ]


def test_a_mapping_to_a_column_the_file_lacks_names_the_columns_it_has(tmp_path):
    with pytest.raises(
        InputDataError,
        match=r"export.csv: --map ts=time: the file has no column "
        r"'time'; it has customer_id, timestamp, event",
    ):
        _import(tmp_path, "export.csv", "customer_id,timestamp,event\n", mapping={"ts": "time"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "customer_id",
            r"mapping 'customer_id' is not FIELD=COLUMN; write pairs like "
            r"customer_id=user_id,ts=timestamp \(fields: event_id, customer_id, anonymous_id, ts,",
        ),
        (
            "user=customer_id",
            r"mapping 'user=customer_id': 'user' is not an event field \(the "
            r"event field comes first: did you mean customer_id=user\?\); map one of: event_id,",
        ),
        ("ts=a,ts=b", r"mapping 'ts=b': the field 'ts' is mapped twice \(ts=a and ts=b\)"),
        ("event_date=day", r"'event_date' is not an event field \(it is derived from ts\)"),
        ("ts=", r"mapping 'ts=' is not FIELD=COLUMN"),
    ],
)
def test_mapping_errors_name_the_pair_and_the_allowed_fields(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_mapping(text)


def test_parse_mapping_reads_pairs():
    assert parse_mapping("customer_id=user_id,ts=timestamp") == {
        "customer_id": "user_id",
        "ts": "timestamp",
    }
    assert parse_mapping(" event = Event Name , ") == {"event": "Event Name"}


# -- time -----------------------------------------------------------------------------------
def test_naive_times_are_read_in_the_import_time_zone_across_daylight_saving(tmp_path):
    content = (
        "\n".join(
            [
                "event_id,customer_id,ts,event",
                "w,c,2024-01-15 09:00:00,winter",
                "b,c,2024-03-31 01:30:00,before_spring_change",
                "g,c,2024-03-31 02:30:00,in_the_gap",  # does not exist: moves forward an hour
                "s,c,2024-03-31 03:30:00,summer",
                "a,c,2024-10-27 02:30:00,ambiguous",  # exists twice: read as standard time (CET)
                "o,c,2024-03-31T02:30:00+05:30,explicit_offset",
                "z,c,2024-03-31T12:00:00.1234567Z,utc_sub_microsecond",
                "d,c,2024-06-01,date_only",
            ]
        )
        + "\n"
    )
    summary = _import(tmp_path, "berlin.csv", content, timezone="Europe/Berlin")
    assert summary.rows_rejected == 0
    got = {r["event_id"]: r["ts"] for r in _rows(tmp_path, "event_id", "ts")}
    assert got == {
        "w": _utc(2024, 1, 15, 8),
        "b": _utc(2024, 3, 31, 0, 30),
        "g": _utc(2024, 3, 31, 1, 30),
        "s": _utc(2024, 3, 31, 1, 30),
        "a": _utc(2024, 10, 27, 1, 30),
        "o": _utc(2024, 3, 30, 21),
        "z": _utc(2024, 3, 31, 12, 0, 0, 123456),  # truncated, not rounded
        "d": _utc(2024, 5, 31, 22),
    }
    lake = DeltaEventStore(tmp_path / "lake").read()
    dates = dict(zip(lake["event_id"].to_pylist(), lake["event_date"].to_pylist(), strict=True))
    assert dates["d"] == dt.date(2024, 5, 31)  # the lake partitions by UTC date


def test_epoch_numbers_are_seconds_milliseconds_or_microseconds_by_size(tmp_path):
    content = (
        "\n".join(
            [
                "event_id,customer_id,ts,event",
                "s,c,1714557600,e",
                "f,c,1714557600.5,e",
                "ms,c,1714557600123,e",
                "us,c,1714557600123456,e",
                "old,c,86400,e",
            ]
        )
        + "\n"
    )
    summary = _import(tmp_path, "epoch.csv", content)
    got = {r["event_id"]: r["ts"] for r in _rows(tmp_path, "event_id", "ts")}
    assert got == {
        "s": _utc(2024, 5, 1, 10),
        "f": _utc(2024, 5, 1, 10, 0, 0, 500000),
        "ms": _utc(2024, 5, 1, 10, 0, 0, 123000),
        "us": _utc(2024, 5, 1, 10, 0, 0, 123456),
    }
    [reject] = _rejects(summary)
    assert (reject["line"], reject["field"], reject["rule"], reject["value"]) == (
        6,
        "ts",
        "ts.out_of_range",
        "86400",
    )
    assert reject["reason"].startswith(
        "'86400' is outside the allowed years (epoch numbers are read as seconds, milliseconds "
        "or microseconds by their size); expected a time between 1990-01-01 and 2100-01-01"
    )


# -- values ---------------------------------------------------------------------------------
def test_values_are_trimmed_typed_and_checked(tmp_path):
    content = (
        "\n".join(
            [
                "event_id,customer_id,anonymous_id,ts,event,revenue,currency,score,properties,context",
                'a, c1 ,,2024-05-01T10:00:00Z, buy ,2.345,usd,9,"{""page"":""/x""}",',
                "b,c1,,2024-05-01T10:00:00Z,buy,2.355,,,,",
                "c,,,2024-05-01T10:00:00Z,buy,,,,,",
                "d,c1,,2024-05-01T10:00:00Z,,,,,,",
                "e,c1,,2024-05-01T10:00:00Z,buy,1,EURO,,,",
                "f,c1,,2024-05-01T10:00:00Z,buy,,,7.5,,",
                'g,c1,,2024-05-01T10:00:00Z,buy,,,,"[1, 2]",',
                "h,c1,,2024-05-01T10:00:00Z,buy,,,,,not json",
                f"{'i' * 101},c1,,2024-05-01T10:00:00Z,buy,,,,,",
                "j,c1,,2024-05-01T10:00:00Z,buy,1e16,,,,",
            ]
        )
        + "\n"
    )
    summary = _import(tmp_path, "values.csv", content, default_currency="chf")
    rows = _rows(
        tmp_path, "event_id", "customer_id", "event", "revenue", "currency", "score", "properties"
    )
    assert rows == [
        {
            "event_id": "a",
            "customer_id": "c1",
            "event": "buy",
            "revenue": Decimal("2.34"),
            "currency": "USD",
            "score": 9,
            "properties": '{"page":"/x"}',
        },
        {
            "event_id": "b",
            "customer_id": "c1",
            "event": "buy",
            "revenue": Decimal("2.36"),
            "currency": "CHF",
            "score": None,
            "properties": None,
        },
    ]
    got = {r["line"]: (r["field"], r["rule"], r["value"]) for r in _rejects(summary)}
    assert got == {
        4: ("customer_id", "identity.missing", None),
        5: ("event", "event.missing", None),
        6: ("currency", "currency.invalid", "EURO"),
        7: ("score", "score.not_integer", "7.5"),
        8: ("properties", "properties.not_object", "[1, 2]"),
        9: ("context", "context.not_object", "not json"),
        10: ("event_id", "event_id.too_long", "i" * 101),
        11: ("revenue", "revenue.out_of_range", "1e16"),
    }
    reasons = {r["line"]: r["reason"] for r in _rejects(summary)}
    assert reasons[6] == (
        "'EURO' is not a currency code; expected a three-letter ISO 4217 code such as EUR or USD"
    )
    assert reasons[8].startswith("found a JSON array; expected a JSON object such as")
    assert reasons[9].startswith("found text that is not JSON; expected a JSON object")
    assert reasons[10].startswith("the id is 101 characters long; expected text of 1 to 100")


def test_promoted_columns_come_from_properties_and_context_unless_the_file_has_them(tmp_path):
    lines = [
        {
            "customer_id": "c",
            "ts": "2024-05-01T10:00:00Z",
            "event": "buy",
            "properties": {
                "order_id": 42,
                "product_id": "p-1",
                "category": "shoes",
                "score": 8,
                "device": "tablet",
            },
        },
        {
            "customer_id": "c",
            "ts": "2024-05-01T10:01:00Z",
            "event": "view",
            "properties": {"score": 0.87},
            "context": {"device": {"type": "mobile"}},
        },
    ]
    _import(tmp_path, "promo.jsonl", "\n".join(json.dumps(x) for x in lines))
    rows = _rows(tmp_path, "device", "order_id", "product_id", "category", "score")
    assert rows == [
        {
            "device": "tablet",
            "order_id": "42",
            "product_id": "p-1",
            "category": "shoes",
            "score": 8,
        },
        {
            "device": "mobile",
            "order_id": None,
            "product_id": None,
            "category": None,
            "score": None,
        },  # a score in properties that is not whole stays only there
    ]


# -- formats --------------------------------------------------------------------------------
def test_gzip_json_lines_with_bad_lines_mapping_and_extra_keys(tmp_path):
    lines = [
        json.dumps(
            {
                "uid": "u1",
                "time": "2024-05-01T10:00:00Z",
                "event": "view",
                "page": "/a",
                "properties": {"ref": "mail"},
                "empty": None,
            }
        ),
        "",
        '{"uid": "u2", "time": "2024-05-01T10:00:00Z", "event": "view",',
        '["not", "an", "object"]',
        json.dumps({"uid": "u3", "time": "yesterday", "event": "view"}),
        json.dumps({"uid": "u4", "time": 1714557600, "event": "buy", "revenue": "19.99"}),
    ]
    summary = _import(
        tmp_path,
        "app.jsonl.gz",
        "\r\n".join(lines) + "\r\n",
        mapping={"customer_id": "uid", "ts": "time"},
    )
    rows = sorted(
        _rows(tmp_path, "customer_id", "event", "revenue", "properties", "source"),
        key=lambda r: r["customer_id"],
    )
    assert rows == [
        {
            "customer_id": "u1",
            "event": "view",
            "revenue": None,
            "source": "app",
            "properties": '{"ref":"mail","page":"/a"}',
        },
        {
            "customer_id": "u4",
            "event": "buy",
            "revenue": Decimal("19.99"),
            "source": "app",
            "properties": None,
        },
    ]
    rejects = _rejects(summary)
    assert [(r["line"], r["field"], r["rule"]) for r in rejects] == [
        (3, None, "json.invalid"),
        (4, None, "json.not_object"),
        (5, "ts", "ts.unparseable"),
    ]
    assert rejects[0]["reason"] == (
        "not valid JSON (Expecting property name enclosed in double quotes at character 63); "
        "each line must be one JSON object"
    )
    assert rejects[1]["reason"].startswith("found a JSON array; each line must be one JSON object")


def test_a_json_array_document_reports_rows(tmp_path):
    doc = [
        {"customer_id": "c", "ts": "2024-05-01T10:00:00Z", "event": "a"},
        {"customer_id": "c", "ts": "bad", "event": "b"},
    ]
    summary = _import(tmp_path, "events.json", json.dumps(doc, indent=2))
    assert summary.rows_taken == 1
    [reject] = _rejects(summary)
    assert (reject["row"], reject["field"], reject["rule"]) == (2, "ts", "ts.unparseable")
    assert "line" not in reject


def test_parquet_with_typed_columns(tmp_path):
    n = 5
    table = pa.table(
        {
            "event_id": pa.array([None, "x2", "x3", "x4", "x5"]),
            "customer_id": pa.array([101, 102, 103, 104, None], pa.int64()),
            "ts": pa.array([1_714_557_600_123_456_789] * n, pa.timestamp("ns", tz="UTC")),
            "local": pa.array([dt.datetime(2024, 7, 1, 12)] * n, pa.timestamp("us")),
            "event": ["a", "b", "c", "d", "e"],
            "revenue": pa.array([2.675, None, float("nan"), 1.005, None], pa.float64()),
            "properties": pa.array(
                [{"k": 1}, None, None, None, None], pa.struct([("k", pa.int64())])
            ),
            "flag": pa.array([True, False, True, False, True]),
        }
    )
    path = tmp_path / "typed.parquet"
    pq.write_table(table, path)
    store = DeltaEventStore(tmp_path / "lake")
    summary = import_file(store, path, timezone="Europe/Berlin")
    rows = {r["customer_id"]: r for r in store.read().to_pylist()}
    assert set(rows) == {"101", "102", "104"}
    assert rows["101"]["ts"] == _utc(2024, 5, 1, 10, 0, 0, 123456)  # ns truncated to µs
    assert rows["101"]["revenue"] == Decimal("2.68")  # half-even on the decimal 2.675
    assert rows["104"]["revenue"] == Decimal("1.00")
    assert rows["101"]["properties"] == '{"k":1,"local":"2024-07-01 12:00:00","flag":true}'
    assert len(rows["101"]["event_id"]) == 32  # derived: the file has none for this row
    assert rows["102"]["event_id"] == "x2"
    got = [(r["row"], r["field"], r["rule"], r["value"]) for r in _rejects(summary)]
    assert got == [
        (3, "revenue", "revenue.not_number", "nan"),
        (5, "customer_id", "identity.missing", None),
    ]

    again = import_file(store, path, timezone="Europe/Berlin", mapping={"ts": "local"})
    assert again.appended == 3  # another ts: other events
    local = {r["ts"] for r in store.read().to_pylist() if r["ts"].month == 7}
    assert local == {_utc(2024, 7, 1, 10)}  # naive Parquet timestamps: in the import zone


def test_semicolon_csv_with_bom(tmp_path):
    content = "\ufeffcustomer_id;ts;event\nc;2024-05-01T10:00:00Z;a\n"
    summary = _import(tmp_path, "excel.csv", content)
    assert summary.rows_taken == 1


def test_a_quote_inside_an_unquoted_value_switches_to_the_lenient_parser(tmp_path):
    content = (
        "\n".join(
            [
                "customer_id,ts,event,title",
                'c,2024-05-01T10:00:00Z,view,27" screen',
                "c,2024-05-01T10:01:00Z,view",
                'c,2024-05-01T10:02:00Z,view,"quoted, ok"',
            ]
        )
        + "\n"
    )
    summary = _import(tmp_path, "odd.csv", content)
    props = [r["properties"] for r in _rows(tmp_path, "properties")]
    assert props == ['{"title":"27\\" screen"}', '{"title":"quoted, ok"}']
    [reject] = _rejects(summary)
    assert (reject["line"], reject["rule"]) == (3, "csv.field_count")


def test_an_unclosed_quote_is_reported_where_it_opens(tmp_path):
    content = 'customer_id,ts,event\nc,2024-05-01T10:00:00Z,a\nc,2024-05-01T10:00:00Z,"b\nc,x,y\n'
    summary = _import(tmp_path, "open.csv", content)
    assert summary.rows_taken == 1
    [reject] = _rejects(summary)
    assert (reject["line"], reject["rule"]) == (3, "csv.unterminated_quote")
    assert reject["reason"].startswith("a quoted field opened on this line is never closed")


def test_the_splitter_skips_an_over_long_line_across_blocks_and_counts_lines():
    data = b"a\n" + b"y" * 5000 + b"\nb\r\n\nc"
    blocks = list(RecordSplitter(io.BytesIO(data), max_bytes=100, block_bytes=64))
    records = [
        (int(line), b.buf[s:e])
        for b in blocks
        if isinstance(b, Block)
        for line, s, e in zip(b.lines, b.starts, b.ends, strict=True)
    ]
    assert records == [(1, b"a"), (3, b"b"), (5, b"c")]
    [reject] = [r for b in blocks for r in b.rejects]
    assert (reject.number, reject.rule) == (2, "line.too_long")
    assert "5,000 bytes long, more than max_line_bytes=100" in reject.reason


# -- ids ------------------------------------------------------------------------------------
def test_derived_event_ids_are_stable_across_runs_and_row_order(tmp_path):
    header = "customer_id,ts,event,revenue"
    rows = [
        "c1,2024-05-01T10:00:00Z,view,",
        "c1,2024-05-01T10:00:00Z,view,",
        "c2,2024-05-01T11:00:00Z,buy,9.99",
        "c3,2024-05-02T11:00:00Z,view,",
    ]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _import(tmp_path / "a", "events.csv", "\n".join([header, *rows]))
    _import(tmp_path / "b", "events.csv", "\n".join([header, *reversed(rows)]))
    ids_a = sorted(_rows(tmp_path / "a", "event_id", "customer_id"), key=str)
    ids_b = sorted(_rows(tmp_path / "b", "event_id", "customer_id"), key=str)
    assert ids_a == ids_b
    assert len({r["event_id"] for r in ids_a}) == 4  # identical rows stay two events
    # the source (default: the file name) is part of the content
    other = _import(tmp_path / "a", "events.csv", "\n".join([header, *rows]), source="crm")
    assert other.appended == 4


# -- files and arguments ----------------------------------------------------------------------
def test_rejects_go_next_to_the_lake_and_are_replaced_on_the_next_import(tmp_path):
    bad = _import(tmp_path, "e.csv", "customer_id,ts,event\nc,never,a\n")
    assert bad.rejects_path == tmp_path / "rejects" / "e.csv.rejects.jsonl"
    assert bad.rejects_path.exists()
    good = _import(tmp_path, "e.csv", "customer_id,ts,event\nc,2024-05-01T10:00:00Z,a\n")
    assert good.rejects_path is None
    assert not (tmp_path / "rejects" / "e.csv.rejects.jsonl").exists()


def test_the_summary_says_what_was_taken_and_rejected(tmp_path):
    content = "customer_id,ts,event\nc,never,a\nc,2024-05-01T10:00:00Z,a\nc,,b\n"
    summary = _import(tmp_path, "s.csv", content)
    text = str(summary)
    assert text.startswith("s.csv: 3 rows read in ")
    assert text.endswith(
        "s; 1 taken (1 new in the lake, 0 duplicates already there or repeated in the file); "
        f"2 rejected (ts.missing 1, ts.unparseable 1), listed in {summary.rejects_path}."
    )
    assert dict(summary.rejected_by_rule) == {"ts.missing": 1, "ts.unparseable": 1}


def test_progress_bar_is_drawn_on_stderr_only(tmp_path, capsys):
    _import(tmp_path, "p.csv", "customer_id,ts,event\nc,2024-05-01T10:00:00Z,a\n", progress=True)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"timezone": "Mars/Olympus"},
            ConfigError,
            r"time zone 'Mars/Olympus' is unknown; use an IANA name such as UTC or Europe/Berlin",
        ),
        (
            {"default_currency": "euro"},
            ConfigError,
            r"default currency 'euro' is not a three-letter ISO 4217 code",
        ),
        ({"preset": "mixpanel"}, ConfigError, r"preset 'mixpanel' is not one of segment, ga4"),
        ({"mapping": {"user": "id"}}, ConfigError, r"'user' is not an event field"),
    ],
)
def test_bad_arguments_are_refused_before_reading(tmp_path, kwargs, error, message):
    with pytest.raises(error, match=message):
        _import(tmp_path, "x.csv", "customer_id,ts,event\n", **kwargs)


def test_unknown_suffix_and_empty_file(tmp_path):
    with pytest.raises(InputDataError, match=r"x.dat: cannot tell the format from the file name"):
        _import(tmp_path, "x.dat", "a")
    with pytest.raises(InputDataError, match=r"e.csv: the file is empty; a CSV needs a header"):
        _import(tmp_path, "e.csv", "")
    summary = _import(tmp_path, "x.dat", "customer_id,ts,event\n", format="csv")
    assert summary.rows_read == 0
