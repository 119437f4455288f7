"""The collector's HTTP contract (shared/COLLECTOR.md) on a real uvicorn socket."""

from __future__ import annotations

import base64
import gzip
import json
import uuid
import zlib

import httpx
import pytest

from journeymap.collect.collector import Faults
from journeymap.collect.loader import InboxLoader
from journeymap.config import Settings
from journeymap.server.app import create_app
from journeymap.server.testing import BACKENDS, ServerThread, database_for_test
from journeymap.storage.db import OperationalDB
from journeymap.storage.lake import DeltaEventStore
from journeymap.storage.profiles import ProfileStore

ADMIN = {"Authorization": "Bearer admin-token"}
ERROR_KEYS = {"code", "message", "detail"}


class Env:
    def __init__(self, project, server, app, key):
        self.project, self.server, self.app, self.key = project, server, app, key
        self.state = app.state.jm
        self.http = httpx.Client(base_url=server.url, timeout=30)

    def basic(self, key=None, colon=True):
        raw = (key or self.key) + (":" if colon else "")
        return {"Authorization": "Basic " + base64.b64encode(raw.encode()).decode()}

    def post(self, path, body, *, headers=None, key=None):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.http.post(path, content=data, headers={**self.basic(key), **(headers or {})})

    def load(self):
        return self.state.loader.load_all()

    def lake_ids(self):
        store = self.state.store
        return [] if not store.exists() else store.read(["event_id"]).column(0).to_pylist()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    project = tmp_path_factory.mktemp("collector")
    settings = Settings.load(project, overrides={"cors_origins": "https://shop.example"})
    app = create_app(settings, admin_token="admin-token", faults=Faults(), loader_interval=0)
    with ServerThread(app) as server:
        _, key = app.state.jm.collector.registry.add("web")
        e = Env(project, server, app, key)
        yield e
        e.http.close()


def mid():
    return str(uuid.uuid4())


def track(**kw):
    return {"type": "track", "event": "Clicked", "userId": "u1", "messageId": mid(), **kw}


def assert_error(resp, status, code):
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == ERROR_KEYS, body
    assert body["code"] == code, body
    assert isinstance(body["message"], str)
    assert body["message"]
    return body


# -- success ------------------------------------------------------------------------------
SINGLE = ["identify", "track", "page", "screen", "group", "alias", "i", "t", "p", "s", "g", "a"]


@pytest.mark.parametrize("route", SINGLE)
def test_single_message_routes_answer_exactly_200_success(env, route):
    msg = {"userId": "u1", "messageId": mid(), "event": "E", "groupId": "g", "previousId": "p0"}
    r = env.post(f"/v1/{route}", msg, headers={"Content-Type": "text/plain"})
    assert (r.status_code, r.content) == (200, b'{"success": true}')
    assert r.headers["content-type"] == "application/json"


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/b", "/v1/import"])
def test_batch_routes(env, path):
    r = env.post(path, {"batch": [track(), track()], "sentAt": "2026-01-01T00:00:00Z"})
    assert (r.status_code, r.json()) == (200, {"success": True})


def test_every_way_of_giving_the_write_key(env):
    batch = {"batch": [track()]}
    no_auth = {"Authorization": ""}
    assert env.post("/v1/batch", batch, headers=env.basic(colon=False)).status_code == 200
    assert env.post("/v1/batch", {**batch, "writeKey": env.key}, headers=no_auth).status_code == 200
    bearer = {"Authorization": "Bearer some-oauth-token"}  # OAuth: the key is in the body
    assert env.post("/v1/batch", {**batch, "writeKey": env.key}, headers=bearer).status_code == 200
    ph = {"event": "x", "distinct_id": "d", "uuid": mid()}
    assert (
        env.post("/batch/", {"api_key": env.key, "batch": [ph]}, headers=no_auth).status_code == 200
    )
    one = {**ph, "uuid": mid(), "properties": {"token": env.key}}
    assert env.post("/capture/", one, headers=no_auth).status_code == 200
    assert (
        env.post("/e/", [{**ph, "uuid": mid(), "api_key": env.key}], headers=no_auth).status_code
        == 200
    )


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda b: zlib.compress(b)[2:-4]),  # raw deflate, as some clients send
        ("identity", lambda b: b),
    ],
)
def test_compressed_bodies_whatever_the_content_type(env, encoding, compress):
    body = compress(json.dumps({"batch": [track()]}).encode())
    headers = {"Content-Encoding": encoding, "Content-Type": "application/x-www-form-urlencoded"}
    assert env.post("/v1/batch", body, headers=headers).status_code == 200


def test_posthog_js_signals_gzip_in_the_query_string(env):
    body = gzip.compress(
        json.dumps(
            [{"event": "x", "distinct_id": "d", "uuid": mid(), "properties": {"token": env.key}}]
        ).encode()
    )
    r = env.http.post("/e/?compression=gzip-js", content=body)
    assert r.status_code == 200


# -- errors: one shape, never 5xx for bad input -------------------------------------------
def test_the_error_shape_is_the_same_everywhere(env):
    assert_error(env.post("/v1/batch", b"{not json"), 400, "invalid_json")
    assert_error(env.post("/v1/batch", b""), 400, "invalid_json")
    assert_error(env.post("/v1/batch", [1, 2]), 400, "invalid_envelope")
    assert_error(env.post("/v1/batch", {"batch": {"a": 1}}), 400, "invalid_batch")
    assert_error(env.post("/v1/batch", {"batch": []}, key="nope"), 401, "unknown_write_key")
    assert_error(env.http.post("/v1/batch", json={"batch": []}), 401, "missing_write_key")
    assert_error(
        env.post("/v1/batch", b"x", headers={"Authorization": "Basic !!"}),
        401,
        "invalid_authorization",
    )
    assert_error(
        env.post("/v1/batch", b"{}", headers={"Content-Encoding": "br"}),
        400,
        "unsupported_encoding",
    )
    assert_error(env.http.get("/v1/batch"), 405, "method_not_allowed")
    assert_error(env.http.get("/nowhere"), 404, "not_found")
    assert_error(env.http.get("/admin/status"), 401, "invalid_admin_token")
    assert_error(
        env.http.post("/admin/sources", json={"nam": "x"}, headers=ADMIN), 400, "invalid_request"
    )


def test_oversized_requests_get_400_not_413(env):
    limit = env.state.collector.config.max_request_bytes
    big = {"batch": [track(properties={"pad": "x" * 1000}) for _ in range(limit // 1000 + 10)]}
    body = assert_error(env.post("/v1/batch", big), 400, "request_too_large")
    assert body["detail"] == {"limit_bytes": limit}
    bomb = gzip.compress(b'{"batch": [' + b" " * (limit * 4) + b"]}")
    assert len(bomb) < limit
    assert_error(
        env.post("/v1/batch", bomb, headers={"Content-Encoding": "gzip"}), 400, "request_too_large"
    )
    many = {"batch": [{"t": 1}] * 2501}
    assert_error(env.post("/v1/batch", many), 400, "batch_too_large")


def test_truncated_or_fake_gzip_gets_400(env):
    full = gzip.compress(json.dumps({"batch": [track()]}).encode())
    for body in (full[: len(full) // 2], b"not gzip at all", full + b"garbage"):
        r = env.post("/v1/batch", body, headers={"Content-Encoding": "gzip"})
        assert_error(r, 400, "bad_compression")


def test_never_redirect(env):
    r = env.post("/v1/batch/", {"batch": [track()]})
    assert r.status_code == 404  # not 307: segment-python treats any 3xx as a failure


def test_cors_preflight_and_headers_for_allowed_origins_only(env):
    ok = env.http.options(
        "/v1/t", headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"}
    )
    assert ok.status_code == 204
    assert ok.headers["access-control-allow-origin"] == "https://shop.example"
    assert "Authorization" in ok.headers["access-control-allow-headers"]
    r = env.post("/v1/t", track(), headers={"Origin": "https://shop.example"})
    assert r.headers["access-control-allow-origin"] == "https://shop.example"
    bad = env.http.options("/v1/t", headers={"Origin": "https://evil.example"})
    assert_error(bad, 403, "origin_not_allowed")
    r = env.post("/v1/t", track(), headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


# -- per-message validation ----------------------------------------------------------------
def test_a_mixed_batch_keeps_the_valid_messages_and_dead_letters_the_rest(env):
    good = [
        track(),
        track(type="page", name="Home"),
        {"type": "identify", "anonymousId": "a9", "messageId": mid(), "traits": {}},
    ]
    deep: dict = {}
    node = deep
    for _ in range(40):
        node["x"] = {}
        node = node["x"]
    bad = {
        "type.invalid": track(type="explode"),
        "event.missing": track(event=""),
        "identity.missing": track(userId=None, anonymousId=None),
        "alias.ids_missing": {"type": "alias", "userId": "u", "messageId": mid()},
        "group.id_missing": {"type": "group", "userId": "u", "messageId": mid()},
        "properties.type": track(properties=[1]),
        "userId.type": track(userId={"id": 1}),
        "messageId.too_long": track(messageId="m" * 101),
        "timestamp.invalid": track(timestamp="yesterday"),
        "revenue.invalid": track(properties={"revenue": "lots"}),
        "currency.invalid": track(properties={"revenue": 1, "currency": "euro"}),
        "score.invalid": track(properties={"score": 7.5}),
        "message.too_large": track(properties={"pad": "x" * 40_000}),
        "message.too_deep": track(properties=deep),
        "message.not_object": "just text",
    }
    source = "mixed"
    _, key = env.state.collector.registry.add(source)
    before = {d.id for d in env.state.collector.inbox.dead_letters(1000)}
    r = env.post("/v1/batch", {"batch": [*good, *bad.values()]}, key=key)
    assert r.status_code == 200
    got = [d for d in env.state.collector.inbox.dead_letters(1000, source) if d.id not in before]
    assert sorted(d.reason for d in got) == sorted(bad)
    assert {m for _, m in env.state.collector.inbox.message_ids(source)} == {
        g["messageId"] for g in good
    }
    details = {d.reason: d.detail for d in got}
    assert details["event.missing"] == "a track message needs a non-empty event"
    assert details["messageId.too_long"] == "messageId has 101 characters; at most 100 are allowed"


def test_null_ids_count_as_absent_and_numbers_become_text(env):
    m1 = track(userId=None, anonymousId="a-null")  # segment-python sends explicit nulls
    m2 = track(userId=42)
    assert env.post("/v1/batch", {"batch": [m1, m2]}).status_code == 200
    env.load()
    rows = {r["event_id"]: r for r in env.state.store.read().to_pylist()}
    assert rows[f"web:{m1['messageId']}"]["anonymous_id"] == "a-null"
    assert rows[f"web:{m2['messageId']}"]["customer_id"] == "42"


# -- durability, resends and loading -------------------------------------------------------
def test_a_500_after_storing_then_a_resend_stores_nothing_twice(env):
    batch = {"batch": [track() for _ in range(5)]}
    env.state.collector.faults.fail_next(1, after_store=True)
    assert_error(env.post("/v1/batch", batch), 500, "injected_fault")
    assert env.post("/v1/batch", batch, headers={"X-Retry-Count": "1"}).status_code == 200
    env.load()
    ids = env.lake_ids()
    assert len(ids) == len(set(ids))
    assert {f"web:{m['messageId']}" for m in batch["batch"]} <= set(ids)


def test_the_stored_event(env):
    msg = {
        "type": "track",
        "event": "Order Completed",
        "anonymousId": "anon-77",
        "messageId": mid(),
        "originalTimestamp": "2026-02-01T10:00:00.000Z",
        "sentAt": "2026-02-01T10:00:30.000Z",
        "properties": {
            "revenue": 10.005,
            "currency": "usd",
            "order_id": 991,
            "device": "mobile",
            "category": "shoes",
            "score": "9",
            "product_id": "p-1",
        },
        "context": {
            "campaign": {"medium": "email", "source": "newsletter", "name": "spring"},
            "library": {"name": "analytics.js", "version": "1"},
        },
    }
    r = env.post("/v1/batch", {"batch": [msg], "context": {"locale": "de-DE"}, "writeKey": env.key})
    assert r.status_code == 200
    stored = env.state.collector.inbox.pending(10_000)
    payload = next(json.loads(p.payload) for p in stored if p.message_id == msg["messageId"])
    assert "writeKey" not in payload
    assert payload["context"]["locale"] == "de-DE"
    env.load()
    row = next(
        r for r in env.state.store.read().to_pylist() if r["event_id"] == f"web:{msg['messageId']}"
    )
    received = payload["receivedAt"]
    import datetime as dt

    skewed = dt.datetime.fromisoformat(received) - dt.timedelta(seconds=30)
    assert row["ts"] == skewed  # receivedAt − (sentAt − originalTimestamp)
    assert (row["event"], row["channel"], row["campaign"], row["source"]) == (
        "Order Completed",
        "email",
        "spring",
        "web",
    )
    assert (str(row["revenue"]), row["currency"], row["order_id"], row["device"]) == (
        "10.00",
        "USD",
        "991",
        "mobile",
    )
    assert (row["category"], row["score"], row["product_id"]) == ("shoes", 9, "p-1")
    assert json.loads(row["context"])["library"]["name"] == "analytics.js"


def test_rate_limit_answers_429_with_retry_after(env):
    _, key = env.state.collector.registry.add("limited", rate_limit=50)
    batch = {"batch": [track() for _ in range(60)]}
    assert env.post("/v1/batch", batch, key=key).status_code == 200  # may overdraw once
    r = env.post("/v1/batch", {"batch": [track()]}, key=key)
    body = assert_error(r, 429, "rate_limited")
    assert int(r.headers["retry-after"]) >= 1
    assert body["detail"] == {"rate_limit": 50}


def test_backpressure_answers_429(env, monkeypatch):
    import dataclasses

    collector = env.state.collector
    monkeypatch.setattr(
        collector, "config", dataclasses.replace(collector.config, max_queued_events=-1)
    )
    r = env.post("/v1/batch", {"batch": [track()]})
    assert_error(r, 429, "overloaded")
    assert r.headers["retry-after"] == "1"


def test_an_unavailable_database_answers_503_and_the_server_stays_up(tmp_path):
    settings = Settings.load(tmp_path)
    app = create_app(settings, loader_interval=0)
    with ServerThread(app) as server:
        _, key = app.state.jm.collector.registry.add("web")
        app.state.jm.db.close()
        auth = {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
        r = httpx.post(server.url + "/v1/batch", json={"batch": [track()]}, headers=auth)
        assert_error(r, 503, "store_unavailable")
        assert r.headers["retry-after"] == "1"
        assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}


@pytest.mark.parametrize("step", ["profiles", "lake"])
def test_a_loader_crash_at_any_step_neither_loses_nor_doubles(env, step):
    batch = {
        "batch": [
            track(userId=None, anonymousId="crashy"),
            {
                "type": "identify",
                "userId": "crash-user",
                "anonymousId": "crashy",
                "messageId": mid(),
                "traits": {"k": step},
            },
        ]
    }
    assert env.post("/v1/batch", batch).status_code == 200
    loader = InboxLoader(env.state.db, env.state.store)

    def crash(at):
        if at == step:
            raise RuntimeError(f"crash after {at}")

    loader.crash_hook = crash
    with pytest.raises(RuntimeError, match="crash after"):
        loader.load_all()
    assert env.state.collector.inbox.stats().pending >= 2  # nothing marked
    InboxLoader(env.state.db, env.state.store).load_all()  # a restarted loader resumes
    ids = env.lake_ids()
    assert len(ids) == len(set(ids))
    assert {f"web:{m['messageId']}" for m in batch["batch"]} <= set(ids)
    profile = ProfileStore(env.state.db).find("crash-user")
    assert profile.traits["k"] == step
    assert env.state.collector.inbox.stats().pending == 0


# -- the admin API -------------------------------------------------------------------------
def test_admin_sources_and_status(env):
    r = env.http.post("/admin/sources", json={"name": "ios-app"}, headers=ADMIN)
    assert r.status_code == 201
    key = r.json()["write_key"]
    assert env.post("/v1/batch", {"batch": [track()]}, key=key).status_code == 200
    names = [s["name"] for s in env.http.get("/admin/sources", headers=ADMIN).json()]
    assert "ios-app" in names
    dup = env.http.post("/admin/sources", json={"name": "ios-app"}, headers=ADMIN)
    assert "exists already" in assert_error(dup, 400, "invalid_source")["message"]
    new_key = env.http.post("/admin/sources/ios-app/rotate", headers=ADMIN).json()["write_key"]
    env.state.collector.registry.reload()
    assert_error(env.post("/v1/batch", {"batch": []}, key=key), 401, "unknown_write_key")
    assert env.post("/v1/batch", {"batch": [track()]}, key=new_key).status_code == 200
    assert env.http.delete("/admin/sources/ios-app", headers=ADMIN).status_code == 200
    assert_error(env.http.delete("/admin/sources/ios-app", headers=ADMIN), 404, "unknown_source")
    status = env.http.get("/admin/status", headers=ADMIN).json()
    assert status["inbox"]["pending"] >= 1
    loaded = env.http.post("/admin/load", headers=ADMIN).json()
    assert loaded["rounds"][0]["messages"] >= 1
    assert env.http.get("/admin/dead-letters?limit=5", headers=ADMIN).status_code == 200


def test_consent_endpoint_and_admin_consent(env):
    msg = {
        "userId": "consenting",
        "messageId": mid(),
        "consent": {"email": {"newsletter": True}, "sms": False},
    }
    assert env.post("/v1/consent", msg).status_code == 200
    env.load()
    got = env.http.get("/admin/customers/consenting", headers=ADMIN).json()
    assert {(c["channel"], c["topic"], c["status"], c["source"]) for c in got["consent"]} == {
        ("email", "newsletter", "granted", "web"),
        ("sms", "*", "denied", "web"),
    }
    r = env.http.put(
        "/admin/customers/consenting/consent",
        headers=ADMIN,
        json={"consent": {"email": {"newsletter": False}}, "source": "crm"},
    )
    assert r.status_code == 200
    status = {(c["channel"], c["topic"]): (c["status"], c["source"]) for c in r.json()["consent"]}
    assert status[("email", "newsletter")] == ("revoked", "crm")
    assert_error(env.http.get("/admin/customers/nobody", headers=ADMIN), 404, "unknown_customer")


def test_admin_is_off_without_a_token(tmp_path):
    app = create_app(Settings.load(tmp_path), loader_interval=0)
    with ServerThread(app) as server:
        assert_error(httpx.get(server.url + "/admin/status", headers=ADMIN), 403, "admin_disabled")


@pytest.mark.parametrize("backend", BACKENDS)
def test_collect_and_load_on_each_database(backend, tmp_path):
    url, cleanup = database_for_test(backend, tmp_path)
    db = OperationalDB(url)
    try:
        store = DeltaEventStore(tmp_path / "lake")
        app = create_app(Settings.load(tmp_path), db=db, store=store, loader_interval=0.05)
        with ServerThread(app) as server:
            _, key = app.state.jm.collector.registry.add("web")
            auth = {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
            msgs = [track(userId=f"u{i % 7}") for i in range(300)]
            with httpx.Client(base_url=server.url) as http:
                for i in range(0, 300, 50):
                    r = http.post("/v1/batch", json={"batch": msgs[i : i + 50]}, headers=auth)
                    assert r.status_code == 200
                    http.post("/v1/batch", json={"batch": msgs[i : i + 50]}, headers=auth)
            app.state.jm.loader.load_all()
        ids = store.read(["event_id"]).column(0).to_pylist()
        assert sorted(ids) == sorted(f"web:{m['messageId']}" for m in msgs)
    finally:
        db.close()
        cleanup()
