"""The real SDKs, unmodified, against a real uvicorn socket: every event lands exactly once,
identify traits reach profiles, aliases merge, and resends after a 500 do not duplicate.

segment-analytics-python, rudder-sdk-python (gzip on, its default) and posthog run always;
@segment/analytics-node runs where Node and the npm registry are reachable (skipped otherwise).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess

import pytest

from journeymap.collect.collector import Faults
from journeymap.config import Settings
from journeymap.server.app import create_app
from journeymap.server.testing import ServerThread
from journeymap.storage.profiles import ProfileStore


@pytest.fixture
def env(tmp_path):
    faults = Faults()
    app = create_app(Settings.load(tmp_path), admin_token="t", faults=faults, loader_interval=0)
    with ServerThread(app) as server:
        yield app.state.jm, server.url, faults


def lake_ids(state, source):
    state.loader.load_all()
    rows = state.store.read(["event_id", "source"]).to_pylist()
    return [r["event_id"] for r in rows if r["source"] == source]


def assert_exactly_once(state, source, message_ids):
    got = lake_ids(state, source)
    assert len(got) == len(set(got)), "an event landed twice"
    assert sorted(got) == sorted(f"{source}:{m}" for m in message_ids)


def run_python_client(client, faults, calls):
    """Make the calls, with the first request failing after storing and the next one
    failing before storing, then flush; returns the message ids the client generated."""
    faults.fail_next(1, after_store=True)
    faults.fail_next(1)
    ids = [call(client) for call in calls]
    client.flush()
    client.shutdown()
    assert faults.injected == 2, "the client never hit the injected 500s"
    return ids


def segment_calls(prefix):
    def mid(result):
        ok, msg = result
        assert ok
        return msg["messageId"]

    calls = [
        lambda c: mid(c.page(anonymous_id=f"{prefix}-anon", name="Home")),
        lambda c: mid(
            c.track(
                anonymous_id=f"{prefix}-anon",
                event="Product Viewed",
                properties={"product_id": "p1", "revenue": 9.99},
            )
        ),
        lambda c: mid(
            c.identify(
                f"{prefix}-user",
                {"email": f"{prefix}@example.com", "plan": "pro"},
                anonymous_id=f"{prefix}-anon",
            )
        ),
        lambda c: mid(c.screen(f"{prefix}-user", name="Cart")),
        lambda c: mid(c.group(f"{prefix}-user", f"{prefix}-co", {"name": "Acme"})),
        lambda c: mid(c.identify(f"{prefix}-old", {"legacy": True})),
        lambda c: mid(c.alias(f"{prefix}-old", f"{prefix}-user")),
    ]
    calls += [
        lambda c, i=i: mid(c.track(f"{prefix}-user", f"Event {i}", {"i": i})) for i in range(40)
    ]
    return calls


def assert_profile(state, prefix, email=True):
    profile = ProfileStore(state.db).find(f"{prefix}-user")
    assert profile is not None
    if email:
        assert profile.traits["email"] == f"{prefix}@example.com"
    assert set(profile.user_ids) == {f"{prefix}-user", f"{prefix}-old"}  # the alias merged
    assert profile.anonymous_ids == (f"{prefix}-anon",)
    return profile


def test_segment_analytics_python(env):
    from segment.analytics.client import Client

    state, url, faults = env
    _, key = state.collector.registry.add("segment")
    errors = []
    client = Client(
        key, host=url, on_error=lambda e, b: errors.append(e), max_retries=5, upload_interval=0.05
    )
    ids = run_python_client(client, faults, segment_calls("seg"))
    assert errors == []
    assert_exactly_once(state, "segment", ids)
    profile = assert_profile(state, "seg")
    assert profile.traits["legacy"] is True
    assert profile.groups == ("seg-co",)


def test_segment_analytics_python_gzip(env):
    from segment.analytics.client import Client

    state, url, faults = env
    _, key = state.collector.registry.add("segment-gz")
    client = Client(key, host=url, gzip=True, max_retries=5, upload_interval=0.05)
    ids = run_python_client(client, faults, segment_calls("sgz"))
    assert_exactly_once(state, "segment-gz", ids)
    assert_profile(state, "sgz")


def test_rudder_sdk_python_with_its_default_gzip(env):
    from rudderstack.analytics.client import Client

    state, url, faults = env
    _, key = state.collector.registry.add("rudder")
    errors = []
    client = Client(
        key, host=url, on_error=lambda e, b: errors.append(e), max_retries=5, upload_interval=0.05
    )
    assert client.gzip  # the SDK's default
    ids = run_python_client(client, faults, segment_calls("rud"))
    assert errors == []
    assert_exactly_once(state, "rudder", ids)
    assert_profile(state, "rud")  # identify traits travel in context.traits only


def test_posthog_python(env):
    from posthog import Posthog

    state, url, faults = env
    _, key = state.collector.registry.add("posthog")
    errors = []
    client = Posthog(
        key,
        host=url,
        on_error=lambda e, b: errors.append(e),
        max_retries=4,
        flush_interval=0.05,
        enable_local_evaluation=False,
    )
    calls = [
        lambda c: c.capture(
            "$pageview",
            distinct_id="ph-anon",
            properties={"$device_id": "ph-anon", "$current_url": "/"},
        ),
        lambda c: c.capture(
            "$identify",
            distinct_id="ph-user",
            properties={"$anon_distinct_id": "ph-anon", "$set": {"email": "ph@example.com"}},
        ),
        lambda c: c.set(distinct_id="ph-user", properties={"plan": "pro"}),
        lambda c: c.set_once(distinct_id="ph-user", properties={"first": "2026"}),
        lambda c: c.capture("signup", distinct_id="ph-old"),
        lambda c: c.alias("ph-old", "ph-user"),
        lambda c: c.group_identify("company", "acme", {"size": 10}),
    ]
    calls += [
        lambda c, i=i: c.capture(f"event {i}", distinct_id="ph-user", properties={"i": i})
        for i in range(40)
    ]
    ids = run_python_client(client, faults, calls)
    assert None not in ids
    assert errors == []
    assert_exactly_once(state, "posthog", ids)
    profile = ProfileStore(state.db).find("ph-user")
    assert profile.traits == {"email": "ph@example.com", "plan": "pro", "first": "2026"}
    assert set(profile.user_ids) == {"ph-user", "ph-old"}
    assert profile.anonymous_ids == ("ph-anon",)
    assert ProfileStore(state.db).group_traits("company:acme") == {"size": 10}


# -- @segment/analytics-node --------------------------------------------------------------
NODE_SCRIPT = r"""
const { Analytics } = require('@segment/analytics-node');
const [writeKey, host] = process.argv.slice(2);
const a = new Analytics({ writeKey, host, path: '/v1/batch', flushAt: 10, flushInterval: 100,
                          maxRetries: 5 });
const ids = [];
const done = (err, ctx) => { if (err) { console.error(err); process.exitCode = 3; }
                             else ids.push(ctx.event.messageId); };
a.identify({ userId: 'node-user', anonymousId: 'node-anon',
             traits: { email: 'node@example.com' } }, done);
a.identify({ userId: 'node-old', traits: { legacy: true } }, done);
a.alias({ previousId: 'node-old', userId: 'node-user' }, done);
for (let i = 0; i < 40; i++) a.track({ userId: 'node-user', event: 'Node ' + i }, done);
a.closeAndFlush({ timeout: 60000 }).then(() => console.log(JSON.stringify(ids)));
"""


@pytest.fixture(scope="module")
def analytics_node(request, tmp_path_factory):
    npm = shutil.which("npm")
    if shutil.which("node") is None or npm is None:
        pytest.skip("Node.js/npm not installed")
    cache = getattr(request.config, "cache", None)  # None with -p no:cacheprovider
    folder = cache.mkdir("analytics-node") if cache else tmp_path_factory.mktemp("node")
    if not (folder / "node_modules" / "@segment" / "analytics-node").is_dir():
        try:
            subprocess.run(
                [
                    npm,
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                    "--prefix",
                    str(folder),
                    "@segment/analytics-node@3",
                ],
                check=True,
                capture_output=True,
                timeout=180,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            pytest.skip(f"npm install @segment/analytics-node failed: {exc}")
    script = folder / "send.js"
    script.write_text(NODE_SCRIPT)
    return folder, script


def test_segment_analytics_node(env, analytics_node):
    folder, script = analytics_node
    state, url, faults = env
    _, key = state.collector.registry.add("node")
    faults.fail_next(1, after_store=True)
    faults.fail_next(1)
    out = subprocess.run(
        ["node", str(script), key, url],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NODE_PATH": str(folder)},
    )
    assert out.returncode == 0, out.stderr
    ids = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(ids) == 43
    assert all(i.startswith("node-next-") for i in ids)
    assert faults.injected == 2
    assert_exactly_once(state, "node", ids)
    profile = ProfileStore(state.db).find("node-user")
    assert profile.traits == {"email": "node@example.com", "legacy": True}
    assert set(profile.user_ids) == {"node-user", "node-old"}


@pytest.fixture(autouse=True)
def _quiet_sdk_loggers():
    # the SDKs log every injected 500 as an error: expected here
    names = ("segment", "rudder", "posthog", "analytics")
    levels = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.CRITICAL)
    yield
    for n, level in levels.items():
        logging.getLogger(n).setLevel(level)
