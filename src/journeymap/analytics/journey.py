"""The journey table: events joined to touchpoints and phases, ordered per customer.

Built once per (lake version, spec, session gap) and reused by every analysis. Columns:

=================== =========================================================================
``customer_id``     the journey's customer: the event's customer id, else the one customer id
                    its anonymous id was seen with (identity stitching), else the anonymous id
``step_index``      1-based position in the customer's events ordered by ``(ts, event_id)``
``session_index``   1-based session number of the customer: a new session starts when more
                    than the gap (30 minutes by default) passed since the previous event;
                    ``(customer_id, session_index)`` identifies a session
``is_session_start`` whether the event opened its session
``touchpoint``      the first touchpoint of the spec whose rule matches (NULL: none matches)
``phase``,
``phase_index``     the touchpoint's phase and its 1-based position in the spec
``is_conversion``   whether the event matches the spec's goal
=================== =========================================================================

plus the event columns (``event_id``, ``anonymous_id``, ``ts``, ``ts_us``, ``event``,
``channel``, ``campaign``, ``source``, ``revenue``, ``currency``, ``device``, ``order_id``,
``product_id``, ``category``, ``score``, ``properties``).

The code is one Ibis expression and follows the portability rules (shared/research/engine.md):
every ordering ends in the unique ``event_id``; running sums use ``cumsum``; durations are
integer microseconds (``ts_us``); properties are read with ``re_extract``, never a JSON cast.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import reduce
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir

from journeymap.model.spec import COLUMN_CONDITIONS, JourneySpec, Match
from journeymap.storage.files import atomic_target

#: Bump when the journey table's definition changes, so caches are rebuilt.
JOURNEY_TABLE_VERSION = 1

JOURNEY_COLUMNS = (
    "customer_id",
    "step_index",
    "session_index",
    "is_session_start",
    "event_id",
    "anonymous_id",
    "ts",
    "ts_us",
    "event",
    "channel",
    "campaign",
    "source",
    "touchpoint",
    "phase",
    "phase_index",
    "is_conversion",
    "revenue",
    "currency",
    "device",
    "order_id",
    "product_id",
    "category",
    "score",
    "properties",
)


def property_value(properties: ir.StringValue, key: str) -> ir.StringValue:
    """The scalar value of a top-level ``properties`` key as text ('' when absent).

    Portable across engines (a regular expression, not a JSON cast); values that contain a
    comma or a quote are cut there, so promote such keys to columns at ingestion instead.
    """
    pattern = '"' + re.escape(key) + r'"\s*:\s*"?([^",}\]]*)'
    return properties.re_extract(pattern, 1)


def match_condition(t: ir.Table, match: Match) -> ir.BooleanValue:
    """An Ibis condition that is true for events matching ``match``."""
    conds: list[ir.BooleanValue] = []
    if match.event:
        conds.append(t.event.isin(match.event))
    if match.channel:
        conds.append(t.channel.isin(match.channel))
    if match.campaign:
        conds.append(t.campaign.isin(match.campaign))
    for key, values in match.where.items():
        if key == "score":
            conds.append(t.score.isin([int(v) for v in values]))
        elif key in COLUMN_CONDITIONS:
            conds.append(t[key].isin([_as_text(v) for v in values]))
        else:
            conds.append(property_value(t.properties, key).isin([_as_text(v) for v in values]))
    if not conds:
        return ibis.literal(False)
    return reduce(lambda a, b: a & b, conds).fill_null(False)


def _as_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def stitched_customer(events: ir.Table) -> ir.Table:
    """Events with ``customer_id`` resolved through anonymous ids seen with one customer.

    Conservative: an anonymous id seen with two different customer ids is not merged.
    """
    both = events.filter(events.customer_id.notnull() & events.anonymous_id.notnull())
    links = (
        both.group_by("anonymous_id")
        .agg(n_customers=both.customer_id.nunique(), linked_customer=both.customer_id.min())
        .filter(lambda x: x.n_customers == 1)
        .select("anonymous_id", "linked_customer")
    )
    joined = events.left_join(links, "anonymous_id")
    return joined.mutate(
        customer_id=ibis.coalesce(joined.customer_id, joined.linked_customer, joined.anonymous_id)
    ).drop("linked_customer", *[c for c in joined.columns if c.endswith("_right")])


def apply_identity_map(events: ir.Table, id_map: ir.Table) -> ir.Table:
    """Events with ``customer_id`` replaced by the canonical customer of the identity graph.

    ``id_map`` has ``(id_kind, id, customer_id)`` rows (``ProfileStore.identity_map()``): a
    user id maps to its canonical customer (aliases merge two user ids), an anonymous id to the
    customer it is linked to. A late identify therefore re-attributes earlier anonymous events.
    """
    users = id_map.filter(id_map.id_kind == "user").select(u_id="id", u_customer="customer_id")
    anons = id_map.filter(id_map.id_kind == "anonymous").select(a_id="id", a_customer="customer_id")
    t = events.left_join(users, events.customer_id == users.u_id)
    t = t.left_join(anons, t.anonymous_id == anons.a_id)
    return t.mutate(customer_id=ibis.coalesce(t.u_customer, t.customer_id, t.a_customer)).drop(
        "u_id", "u_customer", "a_id", "a_customer"
    )


def build_journey(
    events: ir.Table,
    spec: JourneySpec,
    *,
    session_gap_minutes: int = 30,
    stitch: bool = True,
    identity_map: ir.Table | None = None,
) -> ir.Table:
    """The journey table expression for ``events`` under ``spec``.

    With ``identity_map`` (the profiles' identity graph) ids are resolved through it first;
    stitching then covers anonymous ids the graph does not know.
    """
    if identity_map is not None:
        events = apply_identity_map(events, identity_map)
    t = (
        stitched_customer(events)
        if stitch
        else events.mutate(customer_id=ibis.coalesce(events.customer_id, events.anonymous_id))
    )
    t = t.filter(t.customer_id.notnull())

    tp_branches = [(match_condition(t, tp.rule()), tp.id) for tp in spec.touchpoints]
    touchpoint = (
        ibis.cases(*tp_branches, else_=ibis.null("string")) if tp_branches else ibis.null("string")
    )
    t = t.mutate(touchpoint=touchpoint, is_conversion=match_condition(t, spec.goal.match))

    phase_of = {tp.id: tp.phase for tp in spec.touchpoints}
    index_of = {p: i for i, p in enumerate(spec.phase_ids(), start=1)}
    if phase_of:
        phase = t.touchpoint.cases(*phase_of.items(), else_=ibis.null("string"))
        phase_index = t.touchpoint.cases(
            *((tp, index_of[p]) for tp, p in phase_of.items()), else_=ibis.null("int64")
        )
    else:
        phase, phase_index = ibis.null("string"), ibis.null("int64")
    t = t.mutate(phase=phase, phase_index=phase_index.cast("int64"))

    order = [t.ts_us, t.event_id]
    w = ibis.window(group_by=t.customer_id, order_by=order)
    gap_us = session_gap_minutes * 60 * 1_000_000
    prev = t.ts_us.lag().over(w)
    t = t.mutate(
        step_index=(ibis.row_number().over(w) + 1).cast("int64"),  # row_number() is 0-based
        is_session_start=(prev.isnull() | ((t.ts_us - prev) > gap_us)).fill_null(True),
    )
    t = t.mutate(
        session_index=t.is_session_start.cast("int64")
        .cumsum(group_by=t.customer_id, order_by=[t.ts_us, t.event_id])
        .cast("int64")
    )
    return t.select(*JOURNEY_COLUMNS)


class JourneyCache:
    """Journey tables materialised as Parquet, one per (lake version, spec, settings).

    A build writes a temporary file and renames it into place, so concurrent readers never
    see a partial file; older tables of the same lake are removed after a successful build.
    """

    def __init__(self, cache_dir: Path) -> None:
        self.dir = Path(cache_dir) / "journey"

    @staticmethod
    def key(
        lake: Path,
        lake_version: int | None,
        spec: JourneySpec,
        gap_minutes: int,
        identity_version: int | None = None,
    ) -> str:
        blob = "|".join(
            map(
                str,
                (
                    JOURNEY_TABLE_VERSION,
                    lake.resolve(),
                    lake_version,
                    spec.fingerprint(),
                    gap_minutes,
                    identity_version,
                ),
            )
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def path_for(self, key: str) -> Path:
        return self.dir / f"journey-{key}.parquet"

    def get_or_build(self, con: Any, key: str, build: ir.Table) -> tuple[Path, bool]:
        """The Parquet file for ``key``, building it from ``build`` if needed.

        Returns the path and whether it was built now.
        """
        path = self.path_for(key)
        if path.exists():
            return path, False
        with atomic_target(path) as tmp:
            con.to_parquet(build, tmp, compression="zstd")
        self._prune(keep=path)
        return path, True

    def _prune(self, keep: Path) -> None:
        for old in self.dir.glob("journey-*.parquet"):
            if old != keep:
                old.unlink(missing_ok=True)

    def clear(self) -> int:
        removed = 0
        for old in self.dir.glob("journey-*.parquet"):
            old.unlink(missing_ok=True)
            removed += 1
        return removed


def compile_sql(expr: ir.Table, dialects: Sequence[str] = ("duckdb", "pyspark")) -> dict[str, str]:
    """The SQL of ``expr`` per dialect (used by tests to keep every analysis portable)."""
    return {d: str(ibis.to_sql(expr, dialect=d)) for d in dialects}
