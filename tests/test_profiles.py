"""Profiles and the identity graph (SQLite and PostgreSQL): linking, conservative merging,
explicit aliases, traits with history, consent, groups, and re-attribution in the journey."""

from __future__ import annotations

import datetime as dt

import ibis
import pyarrow.parquet as pq
import pytest

from journeymap.analytics.journey import build_journey
from journeymap.collect.loader import InboxLoader
from journeymap.errors import ConfigError
from journeymap.model.spec import parse_spec
from journeymap.storage.inbox import InboxStore
from journeymap.storage.lake import DeltaEventStore
from journeymap.storage.profiles import ConsentChange, IdentityOp, ProfileStore, parse_consent


@pytest.fixture
def profiles(db):
    return ProfileStore(db)


T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
_n = iter(range(10**6))


def op(kind="track", minutes=0, **kw):
    return IdentityOp(
        kind=kind,
        event_id=kw.pop("event_id", f"web:e{next(_n)}"),
        source="web",
        ts=T0 + dt.timedelta(minutes=minutes),
        **kw,
    )


def test_identify_links_the_anonymous_visitor_and_attributes_the_whole_batch(profiles):
    ops = [
        op(anonymous_id="a1"),
        op(anonymous_id="a1", minutes=1),
        op("identify", 2, user_id="u1", anonymous_id="a1", traits={"email": "x@y.z"}),
        op(anonymous_id="a1", minutes=3),
    ]
    assert profiles.apply(ops) == ["u1", "u1", "u1", "u1"]
    p = profiles.find("a1")
    assert (p.customer_id, p.user_ids, p.anonymous_ids) == ("u1", ("u1",), ("a1",))
    assert p.traits == {"email": "x@y.z"}
    assert (p.first_seen, p.last_seen) == (
        T0 + dt.timedelta(minutes=2),
        T0 + dt.timedelta(minutes=3),
    )


def test_an_anonymous_profile_is_merged_into_the_customer_on_identify(profiles):
    profiles.apply(
        [
            op(
                "identify",
                anonymous_id="a1",
                traits={"plan": "free", "lang": "de"},
                consent=[ConsentChange("email", "*", "granted")],
            )
        ]
    )
    assert profiles.find("a1").customer_id is None
    profiles.apply([op("identify", 1, user_id="u1", traits={"plan": "pro"})])
    profiles.apply([op(minutes=2, user_id="u1", anonymous_id="a1")])
    p = profiles.find("u1")
    assert p.anonymous_ids == ("a1",)
    assert p.traits == {"plan": "pro", "lang": "de"}  # the newer value wins
    assert len(p.merged_profile_ids) == 1
    assert profiles.consent_status(p.profile_id, "email", "newsletter") == "granted"


def test_two_known_customers_are_never_merged_by_a_shared_anonymous_id(profiles):
    out = profiles.apply(
        [
            op("identify", user_id="u1", anonymous_id="shared"),
            op("identify", 1, user_id="u2", anonymous_id="shared"),
            op(minutes=2, anonymous_id="shared"),
        ]
    )
    assert out == ["u1", "u2", None]  # the shared device attributes nothing any more
    u1, u2 = profiles.find("u1"), profiles.find("u2")
    assert u1.profile_id != u2.profile_id
    assert u1.ambiguous_ids == ("shared",)
    assert u1.anonymous_ids == ()
    assert u2.anonymous_ids == ()
    ids = profiles.identity_map().to_pylist()
    assert {r["id"] for r in ids} == {"u1", "u2"}


def test_an_explicit_alias_merges_two_customers_into_the_alias_target(profiles):
    profiles.apply(
        [
            op(
                "identify", user_id="old", anonymous_id="a1", traits={"name": "Ann", "city": "Köln"}
            ),
            op("identify", 5, user_id="new", traits={"name": "Ann B."}),
        ]
    )
    out = profiles.apply([op("alias", 10, user_id="new", previous_id="old")])
    assert out == ["new"]
    p = profiles.find("old")
    assert p.customer_id == "new"
    assert set(p.user_ids) == {"old", "new"}
    assert p.anonymous_ids == ("a1",)
    assert p.traits == {"name": "Ann B.", "city": "Köln"}
    rows = {(r["id_kind"], r["id"]): r["customer_id"] for r in profiles.identity_map().to_pylist()}
    assert rows == {("user", "old"): "new", ("user", "new"): "new", ("anonymous", "a1"): "new"}


def test_alias_of_a_single_customer_makes_the_new_id_canonical(profiles):
    profiles.apply([op("identify", user_id="guest-7")])
    profiles.apply([op("alias", 1, user_id="ann@shop", previous_id="guest-7")])
    assert profiles.find("guest-7").customer_id == "ann@shop"
    profiles.apply([op("alias", 2, user_id="bob", previous_id="never-seen")])
    assert profiles.find("never-seen").customer_id == "bob"


def test_traits_keep_history_and_late_old_values_do_not_win(profiles):
    profiles.apply([op("identify", 10, user_id="u1", traits={"plan": "pro"})])
    profiles.apply([op("identify", 0, user_id="u1", traits={"plan": "free", "tz": "CET"})])
    profiles.apply([op("identify", 20, user_id="u1", traits_once={"tz": "UTC", "signup": "x"})])
    p = profiles.find("u1")
    assert p.traits == {"plan": "pro", "tz": "CET", "signup": "x"}
    history = [(h["name"], h["value"]) for h in profiles.trait_history(p.profile_id)]
    # every value sent is history, also a $set_once that did not apply
    assert history == [
        ("plan", "free"),
        ("tz", "CET"),
        ("plan", "pro"),
        ("tz", "UTC"),
        ("signup", "x"),
    ]


def test_applying_the_same_batch_twice_changes_nothing(profiles, db):
    batch = [
        op(
            "identify",
            user_id="u1",
            anonymous_id="a1",
            traits={"k": 1},
            consent=[ConsentChange("sms", "*", "granted")],
        ),
        op("identify", 1, user_id="u1", consent=[ConsentChange("sms", "*", "denied")]),
        op("group", 2, user_id="u1", group_id="acme", group_traits={"size": 5}),
    ]
    first = profiles.apply(batch)
    version = profiles.identity_version()
    p1 = profiles.find("u1")
    h1 = profiles.trait_history(p1.profile_id), profiles.consent_history(p1.profile_id)
    assert profiles.apply(batch) == first
    p2 = profiles.find("u1")
    assert (p2.traits, p2.groups) == (p1.traits, p1.groups) == ({"k": 1}, ("acme",))
    assert (profiles.trait_history(p2.profile_id), profiles.consent_history(p2.profile_id)) == h1
    assert profiles.consent_status(p2.profile_id, "sms") == "revoked"
    assert profiles.identity_version() == version


def test_consent_per_channel_and_topic_with_status_time_and_source(profiles):
    changes = parse_consent({"email": {"newsletter": True, "offers": "denied"}, "push": False})
    profiles.apply([op("identify", user_id="u1", consent=changes)])
    p = profiles.set_consent(
        "u1",
        parse_consent([{"channel": "email", "topic": "newsletter", "status": False}]),
        source="unsubscribe-link",
    )
    got = {(c.channel, c.topic): (c.status, c.source) for c in profiles.consents(p.profile_id)}
    assert got == {
        ("email", "newsletter"): ("revoked", "unsubscribe-link"),
        ("email", "offers"): ("denied", "web"),
        ("push", "*"): ("denied", "web"),
    }
    assert profiles.consent_status(p.profile_id, "push", "anything") == "denied"
    with pytest.raises(ValueError, match="'maybe' is not a status; allowed: true, false, granted"):
        parse_consent({"email": "maybe"})
    with pytest.raises(ConfigError, match="no profile for 'nobody'"):
        profiles.set_consent("nobody", changes)


def test_groups_keep_traits_and_members(profiles):
    profiles.apply(
        [
            op("group", user_id="u1", group_id="acme", group_traits={"plan": "a"}),
            op(
                "group",
                1,
                anonymous_id="x",
                group_id="company:acme",
                group_traits={"n": 1},
                group_only=True,
            ),
        ]
    )
    assert profiles.find("u1").groups == ("acme",)
    assert profiles.group_traits("company:acme") == {"n": 1}
    assert profiles.find("x") is None  # group traits only: no profile for the caller


def test_identity_map_export(profiles, tmp_path):
    profiles.apply([op("identify", user_id="u1", anonymous_id="a1")])
    path = profiles.export_identity_map(tmp_path / "ids.parquet")
    assert pq.read_table(path).to_pylist() == [
        {"id_kind": "anonymous", "id": "a1", "customer_id": "u1"},
        {"id_kind": "user", "id": "u1", "customer_id": "u1"},
    ]


# -- re-attribution in the journey table -----------------------------------------------------
SPEC = parse_spec(
    """
model: three-stage
touchpoints:
  - {id: visit, phase: before_purchase, match: {event: page_view}}
  - {id: order, phase: during_purchase, match: {event: order_completed}}
goal: {match: {event: order_completed}}
"""
)


def test_a_late_identify_re_attributes_earlier_anonymous_events_in_the_journey(db, tmp_path):
    inbox, store = InboxStore(db), DeltaEventStore(tmp_path / "lake")
    loader = InboxLoader(db, store)

    def send(i, **msg):
        msg.setdefault("timestamp", f"2026-03-01T10:0{i}:00Z")
        inbox.append(
            [
                {
                    "source": "web",
                    "message_id": f"m{i}",
                    "received_at_us": 0,
                    "payload": __import__("json").dumps({"messageId": f"m{i}", **msg}),
                }
            ]
        )
        loader.load_once()

    send(0, type="page", anonymousId="a1")
    send(1, type="track", userId="old", event="order_completed")
    stored = {r["event_id"]: r["customer_id"] for r in store.read().to_pylist()}
    assert stored == {"web:m0": None, "web:m1": "old"}
    send(2, type="identify", userId="old", anonymousId="a1")  # late identify
    send(3, type="alias", previousId="old", userId="new")  # and a merge
    con = ibis.duckdb.connect()
    con.con.register("events", store.dataset())
    con.con.register("ids", ProfileStore(db).identity_map())
    journey = build_journey(con.table("events"), SPEC, identity_map=con.table("ids"))
    out = journey.order_by("step_index").to_pyarrow().to_pylist()
    assert [(r["event_id"], r["customer_id"], r["step_index"]) for r in out] == [
        ("web:m0", "new", 1),
        ("web:m1", "new", 2),
        ("web:m2", "new", 3),
        ("web:m3", "new", 4),
    ]
    assert [r["touchpoint"] for r in out][:2] == ["visit", "order"]
    con.disconnect()
