"""One normalisation step for every format: raw columns in, typed events and rejects out.

It runs as one DuckDB query per chunk (vectorised; no Python per row). A *stage* first selects
the raw value of every event field the source provides (``r_<field>``, from CSV text, a JSON
line, typed Parquet columns or a preset's JSON paths), the columns folded into ``properties``
(``r_extras``) and, for JSON, whether the line is a JSON object (``r_pre``). The query then

* trims spaces around text and treats empty text as missing;
* reads ``ts``: ISO 8601 with an offset or ``Z`` as given; naive text, naive timestamps and
  dates in the import time zone (``SET TimeZone``; a time skipped by a daylight-saving change
  moves forward by the gap, an ambiguous one is read as standard time); numbers as epoch
  seconds, milliseconds or microseconds by their size; truncated to microseconds;
* rounds ``revenue`` half-even to DECIMAL(18,2); upper-cases ``currency`` (default currency
  when a revenue has none); checks that ``properties`` and ``context`` are JSON objects;
* takes the promoted columns (device, order_id, product_id, category, score) from
  ``properties`` (device also from ``context.device.type``) unless the source has them;
* names, per row, the first rule broken (``_jm_rule``) and the offending value.

``EventIdDeriver`` then gives rows without an ``event_id`` a deterministic one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from journeymap.importing.rejects import Locator, Reject, row_reject
from journeymap.importing.sources import JSON_COL, LOC
from journeymap.model.events import (
    DERIVED_COLUMNS,
    EVENT_SCHEMA,
    MAX_ABS_REVENUE,
    MAX_ID_LENGTH,
    MAX_NAME_LENGTH,
    MAX_TS,
    MIN_TS,
    PROMOTED_PROPERTIES,
    TS_TYPE,
)

#: Event fields an input may provide (by name, a mapping or a preset).
TARGETS: tuple[str, ...] = tuple(f.name for f in EVENT_SCHEMA if f.name not in DERIVED_COLUMNS)
_ID_FIELDS = ("event_id", "customer_id", "anonymous_id")
_NAME_FIELDS = ("event", "channel", "campaign", "source")
_PLAIN_TEXT = ("device", "order_id", "product_id", "category")
_MIN_US = int(MIN_TS.timestamp()) * 1_000_000
_MAX_US = int(MAX_TS.timestamp()) * 1_000_000
_NUMERIC = re.compile(
    r"(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|UHUGEINT"
    r"|FLOAT|DOUBLE|DECIMAL.*)"
)
_NESTED = re.compile(r"(STRUCT|MAP|UNION).*|.*\[\d*\]")
OUTPUT_COLUMNS = (
    *(n for n in TARGETS if n != "ts"),
    "ts_us",
)


def q(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def lit(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def json_path(*parts: str) -> str:
    """A JSON path literal: ``json_path("a", "b")`` is ``'$."a"."b"'``."""
    quoted = ".".join('"' + p.replace("\\", "\\\\").replace('"', '\\"') + '"' for p in parts)
    return lit("$." + quoted)


@dataclass(frozen=True)
class Stage:
    """SQL selecting ``_jm_loc``, ``r_<field>`` for ``provided`` fields, ``r_extras`` (a JSON
    object text or NULL) and, when ``has_pre``, ``r_pre`` (a line-level rule) and ``r_raw``."""

    sql: str
    provided: frozenset[str]
    has_pre: bool = False


def extras_object(pairs: Iterable[tuple[str, str]]) -> str:
    """SQL for a JSON object of the given ``(key, sql value)`` pairs without null members."""
    args = ", ".join(f"{lit(k)}, {v}" for k, v in pairs)
    if not args:
        return "NULL"
    return f"NULLIF(CAST(json_strip_nulls(json_object({args})) AS VARCHAR), '{{}}')"


def column_stage(sources: Mapping[str, str], extras: Iterable[str], *, text: bool) -> Stage:
    """A stage over named columns (CSV text or typed Parquet)."""
    cols = [f"{q(LOC)}"] + [f"{q(src)} AS r_{t}" for t, src in sources.items()]
    if text:
        pairs = [(c, f"NULLIF(trim({q(c)}), '')") for c in extras]
    else:
        pairs = [(c, q(c)) for c in extras]
    cols.append(f"{extras_object(pairs)} AS r_extras")
    return Stage(f"SELECT {', '.join(cols)} FROM src", frozenset(sources))


def json_guard(relation: str = "src") -> str:
    """SQL of the JSON objects (``j``) of ``relation``'s ``_jm_json`` column, with ``r_pre``
    naming the problem of a line that is not one (then ``j`` is ``{}`` and ``r_raw`` the line)."""
    col = q(JSON_COL)
    return (
        f"SELECT {q(LOC)}, r_pre, CASE WHEN r_pre IS NULL THEN {col} ELSE '{{}}' END AS j,"
        f" CASE WHEN r_pre IS NOT NULL THEN {col} END AS r_raw FROM ("
        f"SELECT *, CASE WHEN NOT json_valid({col}) THEN 'json.invalid'"
        f" WHEN NOT starts_with(ltrim({col}), '{{') THEN 'json.not_object' END AS r_pre"
        f" FROM {relation})"
    )


def json_stage(sources: Mapping[str, tuple[str, ...]], extras: Iterable[str]) -> Stage:
    """A stage over JSON lines: a field comes from a path of keys, extras are top-level keys."""
    targets = list(sources)
    extras = list(extras)
    fields = ", ".join(json_path(*sources[t]) for t in targets)
    cols = [q(LOC), "r_pre", "r_raw"]
    if targets:
        cols.append(f"json_extract_string(j, [{fields}]) AS _v")
    if extras:
        cols.append(f"json_extract(j, [{', '.join(json_path(k) for k in extras)}]) AS _x")
    inner = f"SELECT {', '.join(cols)} FROM ({json_guard()})"
    outer = [q(LOC), "r_pre", "r_raw"]
    outer += [f"_v[{i + 1}] AS r_{t}" for i, t in enumerate(targets)]
    outer.append(f"{extras_object((k, f'_x[{i + 1}]') for i, k in enumerate(extras))} AS r_extras")
    return Stage(f"SELECT {', '.join(outer)} FROM ({inner})", frozenset(targets), has_pre=True)


def json_keys_sql() -> str:
    """SQL listing the distinct top-level keys of the JSON objects of ``src``."""
    return (
        f"SELECT DISTINCT unnest(json_keys(j)) AS k FROM ({json_guard()}) WHERE r_pre IS NULL"
        " ORDER BY k"
    )


# -- the normalisation query ------------------------------------------------------------------
def _text(col: str, dtype: str) -> str:
    # trim() strips spaces only: 3x faster than naming a set of whitespace characters
    if dtype == "VARCHAR":
        return f"NULLIF(trim({col}), '')"
    if _NESTED.fullmatch(dtype) or dtype == "JSON":
        return f"NULLIF(CAST(to_json({col}) AS VARCHAR), 'null')"
    return f"NULLIF(trim(CAST({col} AS VARCHAR)), '')"


def _epoch_us(n: str) -> str:
    """Epoch seconds / ms / µs (by magnitude, DECIMAL ``n``) to integer µs, floored."""
    return (
        f"TRY_CAST(floor(CASE WHEN abs({n}) < 1e11 THEN {n} * 1000000"
        f" WHEN abs({n}) < 1e14 THEN {n} * 1000 ELSE {n} END) AS BIGINT)"
    )


def build_query(
    stage: Stage, types: Mapping[str, str], *, default_source: str, default_currency: str
) -> str:
    """The normalisation query over ``stage`` whose ``r_`` columns have DuckDB ``types``."""
    has = stage.provided

    def raw(field: str) -> str:
        return f"r_{field}" if field in has else "NULL"

    def dtype(field: str) -> str:
        return types.get(f"r_{field}", "VARCHAR") if field in has else "VARCHAR"

    # b: text values
    b = [
        q(LOC),
        "r_pre" if stage.has_pre else "NULL AS r_pre",
        "r_raw" if stage.has_pre else "NULL AS r_raw",
        "r_extras",
    ]
    for f in (*_ID_FIELDS, *_NAME_FIELDS, *_PLAIN_TEXT):
        b.append(f"{_text(raw(f), dtype(f)) if f in has else 'NULL::VARCHAR'} AS t_{f}")
    b.append(f"upper({_text(raw('currency'), dtype('currency'))}) AS t_currency")
    ts_type = dtype("ts")
    ts_kind = _ts_kind(ts_type)
    b.append(f"{raw('ts') if ts_kind != 'text' else _text(raw('ts'), ts_type)} AS s_ts")
    for f in ("revenue", "score"):
        kind_numeric = bool(_NUMERIC.fullmatch(dtype(f)))
        b.append(f"{raw(f) if kind_numeric else _text(raw(f), dtype(f))} AS s_{f}")
    b.append(f"{_text(raw('properties'), dtype('properties'))} AS p")
    b.append(f"{_text(raw('context'), dtype('context'))} AS cx")

    # c: parsed numbers and JSON checks
    c = ["*"]
    if ts_kind == "text":  # a number never reads as a time: parse as a time first (cheaper)
        c.append("epoch_us(TRY_CAST(s_ts AS TIMESTAMPTZ)) AS t_us")
        c.append("CASE WHEN t_us IS NULL THEN TRY_CAST(s_ts AS DECIMAL(38,6)) END AS n_ts")
    elif ts_kind == "number":
        c.append("TRY_CAST(s_ts AS DECIMAL(38,6)) AS n_ts")
    c.append("TRY_CAST(s_revenue AS DECIMAL(38,9)) AS rev_d")
    c.append("TRY_CAST(s_score AS DOUBLE) AS score_d")
    c.append("(p IS NULL OR (starts_with(p, '{') AND json_valid(p))) AS p_ok")
    c.append("(cx IS NULL OR (starts_with(cx, '{') AND json_valid(cx))) AS cx_ok")

    # d: µs since the epoch
    if ts_kind == "text":
        us = f"coalesce(t_us, {_epoch_us('n_ts')})"
        ts_text = "s_ts"
    elif ts_kind == "number":
        us = _epoch_us("n_ts")
        ts_text = "CAST(s_ts AS VARCHAR)"
    elif ts_kind == "tstz":
        us = "epoch_us(s_ts)"
        ts_text = "CAST(s_ts AS VARCHAR)"
    elif ts_kind == "naive":
        us = "epoch_us(CAST(s_ts AS TIMESTAMPTZ))"
        ts_text = "CAST(s_ts AS VARCHAR)"
    elif ts_kind == "timestamptz_ns":  # truncate, where a cast would round
        us = "epoch_ns(s_ts) // 1000"
        ts_text = "CAST(s_ts AS VARCHAR)"
    elif ts_kind == "timestamp_ns":
        us = "epoch_us(CAST(make_timestamp(epoch_ns(s_ts) // 1000) AS TIMESTAMPTZ))"
        ts_text = "CAST(s_ts AS VARCHAR)"
    else:  # nested or otherwise unreadable
        us = "NULL::BIGINT"
        ts_text = "CAST(s_ts AS VARCHAR)"
    d = ["*", f"{us} AS us", f"{ts_text} AS ts_text"]

    # e: the first broken rule, the offending value, final values
    checks = [
        ("r_pre IS NOT NULL", "r_pre", "r_raw"),
        ("s_ts IS NULL", "'ts.missing'", "NULL"),
        ("us IS NULL", "'ts.unparseable'", "ts_text"),
        (f"us < {_MIN_US} OR us >= {_MAX_US}", "'ts.out_of_range'", "ts_text"),
        ("t_event IS NULL", "'event.missing'", "NULL"),
        (f"length(t_event) > {MAX_NAME_LENGTH}", "'event.too_long'", "t_event"),
        ("t_customer_id IS NULL AND t_anonymous_id IS NULL", "'identity.missing'", "NULL"),
    ]
    checks += [
        (f"length(t_{f}) > {MAX_ID_LENGTH}", f"'{f}.too_long'", f"t_{f}")
        for f in ("customer_id", "anonymous_id", "event_id")
    ]
    checks += [
        (f"length(t_{f}) > {MAX_NAME_LENGTH}", f"'{f}.too_long'", f"t_{f}")
        for f in ("channel", "campaign", "source")
    ]
    rev_text = "CAST(s_revenue AS VARCHAR)"
    checks += [
        ("s_revenue IS NOT NULL AND rev_d IS NULL", "'revenue.not_number'", rev_text),
        (f"abs(rev_d) >= {MAX_ABS_REVENUE}", "'revenue.out_of_range'", rev_text),
        ("NOT regexp_full_match(t_currency, '[A-Z]{3}')", "'currency.invalid'", "t_currency"),
        ("NOT p_ok", "'properties.not_object'", "p"),
        ("NOT cx_ok", "'context.not_object'", "cx"),
        (
            "s_score IS NOT NULL AND (score_d IS NULL OR score_d <> floor(score_d)"
            " OR abs(score_d) > 2147483647)",
            "'score.not_integer'",
            "CAST(s_score AS VARCHAR)",
        ),
    ]
    rule = "CASE " + " ".join(f"WHEN {w} THEN {r}" for w, r, _ in checks) + " END"
    value = "CASE " + " ".join(f"WHEN {w} THEN {v}" for w, _, v in checks) + " END"
    revenue = (
        f"CASE WHEN abs(rev_d) < {MAX_ABS_REVENUE}"
        " THEN CAST(round_even(rev_d, 2) AS DECIMAL(18,2)) END"
    )
    props = (
        "CASE WHEN NOT p_ok THEN NULL WHEN r_extras IS NULL THEN p"
        " ELSE CAST(json_merge_patch(coalesce(p, '{}'), r_extras) AS VARCHAR) END"
    )
    e = [
        q(LOC),
        f"{rule} AS _jm_rule",
        f"{value} AS _jm_value",
        "t_event_id AS event_id",
        "t_customer_id AS customer_id",
        "t_anonymous_id AS anonymous_id",
        "us AS ts_us",
        "t_event AS event",
        "t_channel AS channel",
        "t_campaign AS campaign",
        f"coalesce(t_source, {lit(default_source)}) AS source",
        f"{revenue} AS revenue",
        f"coalesce(t_currency, CASE WHEN rev_d IS NOT NULL THEN {lit(default_currency)} END)"
        " AS currency",
        f"{props} AS properties",
        "CASE WHEN cx_ok THEN cx END AS context",
        *(f"t_{f} AS {f}" for f in _PLAIN_TEXT),
        "CASE WHEN score_d = floor(score_d) AND abs(score_d) <= 2147483647"
        " THEN CAST(score_d AS INTEGER) END AS score",
    ]

    # f: promoted columns from properties / context where the source has none
    promote = [k for k in PROMOTED_PROPERTIES if k not in has]
    final = [q(LOC), "_jm_rule", "_jm_value"]
    for name in OUTPUT_COLUMNS:
        if name in promote:
            i = promote.index(name) + 1
            if name == "device":
                expr = f"coalesce(_pk[{i}], json_extract_string(context, '$.device.type'))"
            elif name == "score":
                n = f"TRY_CAST(_pk[{i}] AS DOUBLE)"
                expr = (
                    f"CASE WHEN {n} = floor({n}) AND abs({n}) <= 2147483647"
                    f" THEN CAST({n} AS INTEGER) END"
                )
            else:
                expr = f"_pk[{i}]"
            final.append(f"{expr} AS {name}")
        else:
            final.append(name)
    paths = ", ".join(json_path(k) for k in promote)
    pk = f", json_extract_string(properties, [{paths}]) AS _pk" if promote else ""
    return (
        f"WITH a AS ({stage.sql}),"
        f" b AS (SELECT {', '.join(b)} FROM a),"
        f" c AS (SELECT {', '.join(c)} FROM b),"
        f" d AS (SELECT {', '.join(d)} FROM c),"
        f" e AS (SELECT {', '.join(e)} FROM d),"
        f" f AS (SELECT *{pk} FROM e)"
        f" SELECT {', '.join(final)} FROM f"
    )


def _ts_kind(dtype: str) -> str:
    if dtype in ("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ"):
        return "tstz"
    if dtype in ("TIMESTAMPTZ_NS", "TIMESTAMP_NS"):
        return dtype.lower()
    if dtype.startswith("TIMESTAMP") or dtype == "DATE":
        return "naive"
    if _NUMERIC.fullmatch(dtype):
        return "number"
    if dtype in ("VARCHAR", "JSON", "BOOLEAN"):
        return "text"
    return "other"


# -- running it -------------------------------------------------------------------------------
class Normalizer:
    """Normalise chunks on one DuckDB connection (whose TimeZone is the import time zone)."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        *,
        locator: Locator,
        timezone: str,
        default_source: str,
        default_currency: str,
    ) -> None:
        self._con = con
        self._locator = locator
        self._tz = timezone
        self._source = default_source
        self._currency = default_currency
        self._queries: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}

    def run(self, table: pa.Table, stage: Stage) -> tuple[pa.Table, list[Reject]]:
        """Normalise one Arrow chunk: valid rows (``ts`` as UTC, ``_jm_loc`` kept) and rejects."""
        con = self._con
        con.register("src", table)
        try:
            result = con.sql(self._query(stage)).to_arrow_table()
        finally:
            con.unregister("src")
        return self._split(result)

    def stream(
        self, relation_sql: str, stage: Stage, batch_rows: int
    ) -> Iterator[tuple[pa.Table, list[Reject], int]]:
        """Normalise a relation DuckDB scans itself (Parquet), batch by batch: valid rows,
        rejects and the number of source rows of each batch."""
        con = self._con
        con.execute(f"CREATE OR REPLACE TEMP VIEW src AS {relation_sql}")
        reader = con.sql(self._query(stage)).to_arrow_reader(batch_rows)
        for batch in reader:
            valid, rejects = self._split(pa.Table.from_batches([batch]))
            yield valid, rejects, batch.num_rows

    def _query(self, stage: Stage) -> str:
        types = {
            str(r[0]): str(r[1])
            for r in self._con.sql(f"DESCRIBE {stage.sql}").fetchall()
            if str(r[0]).startswith("r_")
        }
        key = (stage.sql, tuple(sorted(types.items())))
        sql = self._queries.get(key)
        if sql is None:
            sql = build_query(
                stage, types, default_source=self._source, default_currency=self._currency
            )
            self._queries[key] = sql
        return sql

    def _split(self, result: pa.Table) -> tuple[pa.Table, list[Reject]]:
        rule = result.column("_jm_rule")
        rejects: list[Reject] = []
        if rule.null_count < result.num_rows:
            bad = result.filter(pc.is_valid(rule)).select([LOC, "_jm_rule", "_jm_value"])
            for loc, code, value in zip(*(c.to_pylist() for c in bad.columns), strict=True):
                rejects.append(self._reject(int(loc), str(code), value))
            result = result.filter(pc.is_null(rule))
        result = result.drop_columns(["_jm_rule", "_jm_value"])
        ts = pc.cast(result.column("ts_us"), pa.int64()).cast(TS_TYPE)
        return result.append_column("ts", ts), rejects

    def _reject(self, loc: int, rule: str, value: str | None) -> Reject:
        if rule.startswith("json.") and value is not None:
            value = value.rstrip("\r\n")  # lines are passed with their line break
        if rule == "json.invalid":
            return Reject(self._locator, loc, None, value, _json_problem(value or ""), rule)
        if rule == "json.not_object":
            kind = _json_kind(value or "")
            return Reject(
                self._locator,
                loc,
                None,
                value,
                f"found {kind}; each line must be one JSON object such as "
                '{"event": "page_view", "ts": "2024-05-01T10:00:00Z", "customer_id": "c1"}',
                rule,
            )
        detail = None
        if rule in ("properties.not_object", "context.not_object"):
            detail = "found " + _json_kind(value or "")
        return row_reject(self._locator, loc, rule, value, tz=self._tz, detail=detail)


def _json_problem(text: str) -> str:
    try:
        json.loads(text)
    except ValueError as exc:
        msg = getattr(exc, "msg", str(exc))
        pos = getattr(exc, "pos", None)
        where = f" at character {pos + 1}" if isinstance(pos, int) else ""
        return f"not valid JSON ({msg}{where}); each line must be one JSON object"
    return "not valid JSON; each line must be one JSON object"


def _json_kind(text: str) -> str:
    try:
        value = json.loads(text)
    except ValueError:
        return "text that is not JSON"
    names = {
        list: "a JSON array",
        str: "a JSON string",
        bool: "a JSON boolean",
        int: "a JSON number",
        float: "a JSON number",
        type(None): "JSON null",
    }
    return names.get(type(value), "a JSON value")


# -- deterministic event ids ------------------------------------------------------------------
#: The stored fields an event id is derived from, in order (everything but the id).
ID_CONTENT = (
    "source",
    "customer_id",
    "anonymous_id",
    "ts_us",
    "event",
    "channel",
    "campaign",
    "revenue",
    "currency",
    "properties",
    "context",
    "device",
    "order_id",
    "product_id",
    "category",
    "score",
)


class EventIdDeriver:
    """Event ids for rows that have none: ``md5(content, occurrence)``.

    The content is ``ID_CONTENT`` of the normalised row; the occurrence is the index of the row
    among identical rows of the same file (counted across chunks), so two identical rows stay
    two events while importing the file again, or in another order, yields the same ids.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        con.execute("CREATE OR REPLACE TEMP TABLE _jm_seen (h UHUGEINT, n BIGINT)")

    def fill(self, valid: pa.Table) -> pa.Table:
        ids = valid.column("event_id")
        missing = pc.is_null(ids)
        if ids.null_count == 0:
            return valid
        con = self._con
        content = " || chr(31) || ".join(
            f"coalesce(CAST({q(c)} AS VARCHAR), '')" for c in ID_CONTENT
        )
        keyed = (
            valid.select([LOC, *ID_CONTENT])
            .append_column("_jm_pos", pa.array(np.arange(valid.num_rows, dtype=np.int64)))
            .filter(missing)
        )
        con.register("_jm_rows", keyed)
        try:
            con.execute(
                "CREATE OR REPLACE TEMP TABLE _jm_h AS SELECT _jm_pos, "
                f"{q(LOC)} AS loc, md5_number({content}) AS h FROM _jm_rows"
            )
            derived = con.sql(
                "SELECT md5(CAST(h.h AS VARCHAR) || '/' || CAST(coalesce(s.n, 0)"
                " + row_number() OVER (PARTITION BY h.h ORDER BY h.loc, h._jm_pos) - 1"
                " AS VARCHAR)) AS id, h._jm_pos FROM _jm_h h"
                " LEFT JOIN (SELECT h, sum(n) AS n FROM _jm_seen GROUP BY h) s USING (h)"
                " ORDER BY h._jm_pos"
            ).to_arrow_table()
            con.execute("INSERT INTO _jm_seen SELECT h, count(*) FROM _jm_h GROUP BY h")
        finally:
            con.unregister("_jm_rows")
        filled = pc.replace_with_mask(
            ids.combine_chunks(), missing.combine_chunks(), derived.column("id").combine_chunks()
        )
        return valid.set_column(valid.schema.get_field_index("event_id"), "event_id", filled)
