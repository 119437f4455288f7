"""Presets: the column layouts of common exports, as DuckDB SQL over each JSON message ``j``.

``segment``
    Segment / RudderStack messages, one per line or a ``{"batch": [...]}`` document (a line
    holding a batch is expanded too). ``messageId`` → event_id, ``userId`` → customer_id,
    ``anonymousId`` → anonymous_id, ``timestamp`` (else ``originalTimestamp``) → ts; the
    ``type`` gives the event: track → its ``event``, page → ``page_view`` (the page ``name``
    and ``category`` go into properties), screen → ``screen_view``, identify / group / alias
    → ``identify`` / ``group`` / ``alias``. Properties are ``properties`` (``traits`` for
    identify and group, with ``groupId``; ``previousId`` for alias); ``context`` is kept;
    channel is ``context.campaign.medium`` (else ``.source``), campaign
    ``context.campaign.name``; revenue ``properties.revenue`` (else ``.total``) with
    ``properties.currency``.

``ga4``
    Google Analytics 4's BigQuery export (``bq extract`` as JSON lines, or Parquet).
    ``event_name`` → event, ``event_timestamp`` (µs, number or string) → ts, ``user_id`` →
    customer_id, ``user_pseudo_id`` → anonymous_id; channel / campaign from
    ``collected_traffic_source.manual_medium`` / ``manual_campaign_name`` when present, else
    ``traffic_source.medium`` / ``name`` (the source goes to ``properties.traffic_source``);
    ``event_params`` are flattened into properties (``ga_session_id`` included, values typed);
    ``device.category`` → device; revenue is ``ecommerce.purchase_revenue`` with the
    ``currency`` parameter, or, for purchase events without it, ``event_value_in_usd`` in USD;
    ``ecommerce.transaction_id`` → order_id; ``items`` go to properties (their documented
    fields, typed); device, geo,
    platform, stream and app info to context. GA4 has no event id: it is derived from the
    row's content (``EventIdDeriver``).

A ``mapping`` used with a preset overrides single fields with a dotted path into the message
(``--map campaign=context.campaign.content``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from journeymap.importing.normalize import Stage, json_guard, json_path, q
from journeymap.importing.sources import JSON_COL, LOC


@dataclass(frozen=True)
class Preset:
    """An export layout: SQL per event field over the message ``j`` (JSON)."""

    name: str
    description: str
    #: event field → SQL over ``j`` (and ``derived`` names) giving text or JSON text
    fields: Mapping[str, str]
    #: name → SQL over ``j``, computed once per message before ``fields``
    derived: Mapping[str, str] = field(default_factory=dict)
    #: groups of keys; the messages must use one key of every group (else: not this export)
    signature: tuple[tuple[str, ...], ...] = ()
    #: a message holding a ``batch`` array stands for its elements
    expand_batches: bool = False

    def messages_sql(self, typed_columns: list[str] | None) -> str:
        """SQL of the messages of ``src`` (``j``, ``r_pre``, ``r_raw``, ``derived``): JSON
        lines, or typed columns turned into JSON; batches expanded."""
        relation = "src"
        if typed_columns is not None:
            relation = (
                f"(SELECT {q(LOC)}, CAST(to_json(struct_pack("
                + ", ".join(f"{q(c)} := {q(c)}" for c in typed_columns if c != LOC)
                + f")) AS VARCHAR) AS {q(JSON_COL)} FROM src)"
            )
        messages = f"SELECT {q(LOC)}, r_pre, r_raw, j FROM ({json_guard(relation)})"
        if self.expand_batches:
            messages = (
                f"SELECT {q(LOC)}, r_pre, r_raw, unnest(CASE WHEN json_type(j, '$.batch') ="
                " 'ARRAY' THEN json_extract(j, '$.batch[*]') ELSE [CAST(j AS JSON)] END) AS j"
                f" FROM ({json_guard(relation)})"
            )
        derived = "".join(f", {sql} AS {name}" for name, sql in self.derived.items())
        return f"SELECT *{derived} FROM ({messages})"

    def stage(self, overrides: Mapping[str, str], typed_columns: list[str] | None) -> Stage:
        """The stage over ``src``; ``overrides`` map fields to dotted paths of the message."""
        fields = dict(self.fields)
        for target, path in overrides.items():
            fields[target] = f"j->>{json_path(*path.split('.'))}"
        cols = [q(LOC), "r_pre", "r_raw", *(f"{sql} AS r_{t}" for t, sql in fields.items())]
        cols.append("NULL::VARCHAR AS r_extras")
        sql = f"SELECT {', '.join(cols)} FROM ({self.messages_sql(typed_columns)})"
        return Stage(sql, frozenset(fields), has_pre=True)

    def keys_sql(self, typed_columns: list[str] | None) -> str:
        """SQL of the distinct top-level keys of the first messages (to check ``signature``)."""
        return (
            "SELECT DISTINCT unnest(json_keys(j)) AS k FROM"
            f" (SELECT * FROM ({self.messages_sql(typed_columns)}) WHERE r_pre IS NULL LIMIT 10000)"
            " ORDER BY k"
        )

    def missing_signature(self, keys: set[str]) -> list[str]:
        """The key groups of ``signature`` none of whose keys the messages use."""
        return [" or ".join(g) for g in self.signature if not keys.intersection(g)]


def _s(path: str) -> str:
    """Text at a dotted path of ``j``."""
    return f"(j->>{json_path(*path.split('.'))})"


def _obj(**members: str) -> str:
    """SQL of a JSON object with the given members."""
    return "json_object(" + ", ".join(f"'{k}', {v}" for k, v in members.items()) + ")"


def _type() -> str:
    return f"lower(coalesce({_s('type')}, CASE WHEN {_s('event')} IS NOT NULL THEN 'track' END))"


def _merge(base: str, extra: str) -> str:
    """``base`` (a JSON object text or NULL) with the non-null members of ``extra``; a base that
    is not an object is passed through so the normaliser rejects it."""
    return (
        f"CASE WHEN {base} IS NULL OR json_type({base}) = 'OBJECT' THEN NULLIF(CAST("
        f"json_merge_patch(coalesce({base}, '{{}}'), json_strip_nulls({extra})) AS VARCHAR),"
        f" '{{}}') ELSE {base} END"
    )


_PAGE = _obj(name=_s("name"), category=_s("category"))

SEGMENT = Preset(
    name="segment",
    description="Segment / RudderStack messages (track, page, screen, identify, group, alias)",
    derived={"kind": _type()},
    fields={
        "event_id": _s("messageId"),
        "customer_id": _s("userId"),
        "anonymous_id": _s("anonymousId"),
        "ts": f"coalesce({_s('timestamp')}, {_s('originalTimestamp')})",
        "event": (
            f"CASE kind WHEN 'track' THEN {_s('event')} WHEN 'page' THEN 'page_view'"
            " WHEN 'screen' THEN 'screen_view' WHEN 'identify' THEN 'identify'"
            " WHEN 'group' THEN 'group' WHEN 'alias' THEN 'alias' END"
        ),
        "properties": (
            "CASE kind"
            f" WHEN 'identify' THEN coalesce({_s('traits')}, {_s('context.traits')})"
            f" WHEN 'group' THEN {_merge(_s('traits'), _obj(groupId=_s('groupId')))}"
            f" WHEN 'alias' THEN {_merge('NULL', _obj(previousId=_s('previousId')))}"
            f" WHEN 'page' THEN {_merge(_s('properties'), _PAGE)}"
            f" WHEN 'screen' THEN {_merge(_s('properties'), _obj(name=_s('name')))}"
            f" ELSE {_s('properties')} END"
        ),
        "context": _s("context"),
        "channel": f"coalesce({_s('context.campaign.medium')}, {_s('context.campaign.source')})",
        "campaign": _s("context.campaign.name"),
        "revenue": f"coalesce({_s('properties.revenue')}, {_s('properties.total')})",
        "currency": _s("properties.currency"),
    },
    signature=(("type", "event", "batch"), ("timestamp", "originalTimestamp", "batch")),
    expand_batches=True,
)

_GA4_PARAMS = (
    "TRY(CAST(json_strip_nulls(to_json(map_from_entries(list_transform(from_json("
    'j->\'$.event_params\', \'[{"key":"VARCHAR","value":{"string_value":"VARCHAR",'
    '"int_value":"VARCHAR","float_value":"DOUBLE","double_value":"DOUBLE"}}]\'),'
    " lambda p: {'k': p.key, 'v': coalesce(to_json(p.value.string_value),"
    " to_json(TRY_CAST(p.value.int_value AS BIGINT)), to_json(p.value.float_value),"
    " to_json(p.value.double_value))})))) AS VARCHAR))"
)
# The items' documented fields, typed: the JSON export writes INT64 as strings, Parquet as
# numbers; both must give the same properties (and so the same derived event ids).
_ITEM_FIELDS = {
    **dict.fromkeys(
        (
            "item_id",
            "item_name",
            "item_brand",
            "item_variant",
            "item_category",
            "item_category2",
            "item_category3",
            "item_category4",
            "item_category5",
            "coupon",
            "affiliation",
            "location_id",
            "item_list_id",
            "item_list_name",
            "item_list_index",
            "promotion_id",
            "promotion_name",
            "creative_name",
            "creative_slot",
        ),
        "VARCHAR",
    ),
    **dict.fromkeys(
        (
            "price_in_usd",
            "price",
            "item_revenue_in_usd",
            "item_revenue",
            "item_refund_in_usd",
            "item_refund",
        ),
        "DOUBLE",
    ),
    "quantity": "BIGINT",
}
_GA4_ITEMS = (
    "json_strip_nulls(to_json(from_json(j->'$.items', '["
    + json.dumps(_ITEM_FIELDS, separators=(",", ":"))
    + "]')))"
)
_PURCHASE_REVENUE = f"NULLIF({_s('ecommerce.purchase_revenue')}, 'null')"
_USD_VALUE = (
    f"CASE WHEN {_s('event_name')} IN ('purchase', 'in_app_purchase')"
    f" THEN {_s('event_value_in_usd')} END"
)

GA4 = Preset(
    name="ga4",
    description="Google Analytics 4 BigQuery export (JSON lines from bq extract, or Parquet)",
    derived={"params": _GA4_PARAMS},
    fields={
        "customer_id": _s("user_id"),
        "anonymous_id": _s("user_pseudo_id"),
        "ts": _s("event_timestamp"),
        "event": _s("event_name"),
        "channel": (
            f"coalesce({_s('collected_traffic_source.manual_medium')},"
            f" {_s('traffic_source.medium')})"
        ),
        "campaign": (
            f"coalesce({_s('collected_traffic_source.manual_campaign_name')},"
            f" {_s('traffic_source.name')})"
        ),
        "properties": _merge(
            "params",
            _obj(
                traffic_source=f"coalesce({_s('collected_traffic_source.manual_source')},"
                f" {_s('traffic_source.source')})",
                items=f"CASE WHEN json_array_length(j, '$.items') > 0 THEN {_GA4_ITEMS} END",
            ),
        ),
        "context": (
            "NULLIF(CAST(json_strip_nulls(json_object('device', j->'$.device', 'geo', j->'$.geo',"
            " 'platform', j->'$.platform', 'stream_id', j->'$.stream_id', 'app_info',"
            " j->'$.app_info')) AS VARCHAR), '{}')"
        ),
        "device": _s("device.category"),
        "revenue": f"coalesce({_PURCHASE_REVENUE}, {_USD_VALUE})",
        "currency": (
            f"CASE WHEN {_PURCHASE_REVENUE} IS NOT NULL THEN coalesce("
            f"{_s('ecommerce.currency')}, json_extract_string(params, '$.currency'))"
            f" WHEN {_USD_VALUE} IS NOT NULL THEN 'USD' END"
        ),
        "order_id": (
            f"NULLIF(coalesce({_s('ecommerce.transaction_id')},"
            " json_extract_string(params, '$.transaction_id')), '(not set)')"
        ),
    },
    signature=(("event_name",), ("event_timestamp",)),
)

#: The presets by name.
PRESETS: Mapping[str, Preset] = MappingProxyType({p.name: p for p in (SEGMENT, GA4)})
