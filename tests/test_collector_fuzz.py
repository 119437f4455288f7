"""Fuzzing the collector: garbage, truncated gzip, wrong types, oversized and deep JSON get
4xx answers (never 5xx), the server stays up, and a mixed batch keeps its valid messages."""

from __future__ import annotations

import base64
import gzip
import json
import uuid

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from journeymap.collect.messages import MessageLimits, prepare
from journeymap.collect.wire import Envelope
from journeymap.config import Settings
from journeymap.server.app import create_app
from journeymap.server.testing import ServerThread

FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=15,
)
FIELDS = [
    "type",
    "messageId",
    "userId",
    "anonymousId",
    "event",
    "properties",
    "traits",
    "context",
    "timestamp",
    "originalTimestamp",
    "sentAt",
    "previousId",
    "groupId",
    "integrations",
    "consent",
]
messages = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8) | json_values


class Env:
    def __init__(self, server, app, key):
        self.server, self.app, self.key = server, app, key
        self.http = httpx.Client(base_url=server.url, timeout=30)
        self.auth = {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}

    def post(self, body: bytes, headers=None, path="/v1/batch"):
        return self.http.post(path, content=body, headers={**self.auth, **(headers or {})})


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    project = tmp_path_factory.mktemp("fuzz")
    app = create_app(Settings.load(project), loader_interval=0)
    with ServerThread(app) as server:
        _, key = app.state.jm.collector.registry.add("fuzz")
        e = Env(server, app, key)
        yield e
        assert e.http.get("/healthz").json() == {"status": "ok"}  # still up
        e.http.close()


def assert_4xx(r):
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert set(r.json()) == {"code", "message", "detail"}


@FUZZ
@given(body=st.binary(max_size=2000))
def test_garbage_bytes_get_4xx(env, body):
    assert_4xx(env.post(body))
    assert_4xx(env.post(body, {"Content-Encoding": "gzip"}))


@FUZZ
@given(msgs=st.lists(messages, max_size=5), cut=st.floats(0.0, 0.97))
def test_truncated_gzip_gets_400(env, msgs, cut):
    full = gzip.compress(json.dumps({"batch": msgs}).encode())
    r = env.post(full[: int(len(full) * cut)], {"Content-Encoding": "gzip"})
    assert_4xx(r)


@FUZZ
@given(doc=json_values)
def test_wrong_envelopes_get_400_and_never_5xx(env, doc):
    for path in ("/v1/batch", "/v1/track", "/batch/"):
        r = env.post(json.dumps(doc).encode(), path=path)
        if r.status_code != 200:
            assert_4xx(r)


@FUZZ
@given(depth=st.integers(1, 20_000), where=st.sampled_from(["body", "batch", "property"]))
def test_deep_json_gets_4xx_or_a_dead_letter(env, depth, where):
    deep = "[" * depth + "]" * depth
    if where == "body":
        body = deep
    elif where == "batch":
        body = '{"batch": ' + deep + "}"
    else:
        body = (
            '{"batch": [{"type": "track", "event": "e", "userId": "u", "messageId": "'
            + uuid.uuid4().hex
            + '", "properties": {"x": '
            + deep
            + "}}]}"
        )
    r = env.post(body.encode())
    if r.status_code == 200:
        assert where != "body"
    else:
        assert_4xx(r)


def test_oversized_batches_get_400(env):
    big = json.dumps({"batch": [{"pad": "x" * 1000}] * 600}).encode()
    assert_4xx(env.post(big))
    assert_4xx(env.post(gzip.compress(big), {"Content-Encoding": "gzip"}))


VALID = st.builds(
    lambda kind, uid, extra: {
        "type": kind,
        "messageId": uuid.uuid4().hex,
        "userId": uid,
        "event": "E",
        "groupId": "g",
        "previousId": "p",
        **extra,
    },
    st.sampled_from(["track", "page", "screen", "identify", "group", "alias"]),
    st.text(min_size=1, max_size=30),
    st.dictionaries(
        st.sampled_from(["properties", "traits", "context"]),
        st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
        max_size=2,
    ),
)


@FUZZ
@given(good=st.lists(VALID, max_size=6), bad=st.lists(messages, max_size=6), seed=st.randoms())
def test_a_mixed_batch_keeps_exactly_its_valid_messages(env, good, bad, seed):
    tag = uuid.uuid4().hex
    bad = [
        ({**b, "messageId": f"{tag}-bad-{i}", "type": "nonsense"} if isinstance(b, dict) else b)
        for i, b in enumerate(bad)
    ]
    good = [{**g, "messageId": f"{tag}-ok-{i}"} for i, g in enumerate(good)]
    batch = good + bad
    seed.shuffle(batch)
    r = env.post(json.dumps({"batch": batch}).encode())
    assert r.status_code == 200, r.text
    stored = {
        m for _, m in env.app.state.jm.collector.inbox.message_ids("fuzz") if m.startswith(tag)
    }
    assert stored == {g["messageId"] for g in good}


@settings(max_examples=400, deadline=None)
@given(msgs=st.lists(messages, max_size=8), protocol=st.sampled_from(["segment", "posthog"]))
def test_validation_sorts_every_message_and_never_raises(msgs, protocol):
    rows, dead = prepare(
        Envelope(protocol, msgs, sent_at="2026-01-01T00:00:00Z"), "s", 1, MessageLimits()
    )
    assert len(rows) + len(dead) == len(msgs)
    for row in rows:
        json.loads(row["payload"]).get("messageId")  # stored rows are JSON with an id
        assert len(row["message_id"]) <= 100
