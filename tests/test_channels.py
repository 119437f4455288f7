"""Channels against real servers on 127.0.0.1: SMTP (aiosmtpd) with RFC 8058 one-click
unsubscribe and tracked links, signed webhooks (http.server), failure classification, the
registry and the seeded dummy channel."""

from __future__ import annotations

import email
import email.policy
import http.server
import io
import json
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from aiosmtpd.controller import Controller

from journeymap.channels import (
    ChannelRegistry,
    OutboundMessage,
    TerminalChannelError,
    TransientChannelError,
    default_registry,
)
from journeymap.channels.console import ConsoleChannel, FileChannel
from journeymap.channels.dummy import DummyChannel
from journeymap.channels.email import SmtpEmailChannel
from journeymap.channels.tracking import TrackingLinks
from journeymap.channels.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookChannel, verify
from journeymap.errors import ConfigError
from journeymap.server.testing import free_port

TRACKING = TrackingLinks("https://t.shop.example", "s3cret")


class Sink:
    """An aiosmtpd handler keeping every message; refuses recipients at bounce.example."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.endswith("@bounce.example"):
            return "550 5.1.1 no such user"
        if address.endswith("@busy.example"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(
            email.message_from_bytes(envelope.content, policy=email.policy.default)
        )
        return "250 Message accepted"


@pytest.fixture
def smtp() -> Iterator[tuple[Sink, int]]:
    sink = Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


def mail(address: str = "ana@example.com", *, transactional: bool = False) -> OutboundMessage:
    return OutboundMessage(
        send_id="abc123",
        channel="email",
        customer_id="ana",
        campaign="reminder",
        step="mail",
        transactional=transactional,
        address=address,
        renderings={
            "email": {
                "subject": "Still thinking?",
                "html": '<html><body><a href="https://shop.example/cart?id=1&x=2">cart</a>'
                "</body></html>",
                "text": "Your cart",
            }
        },
    )


def test_marketing_mail_has_one_click_unsubscribe_tracked_links_and_an_open_pixel(smtp):
    sink, port = smtp
    channel = SmtpEmailChannel(
        host="127.0.0.1", port=port, sender="shop@example.com", tracking=TRACKING
    )
    result = channel.send(mail())
    (msg,) = sink.messages
    assert result.provider_id == msg["Message-ID"]
    unsubscribe = TRACKING.unsubscribe("abc123")
    assert unsubscribe.startswith("https://t.shop.example/u/abc123?s=")
    assert msg["List-Unsubscribe"].strip() == f"<{unsubscribe}>"  # may be folded
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["X-Journeymap-Send-Id"] == "abc123"
    html = msg.get_body(("html",)).get_content()
    click = TRACKING.click("abc123", "https://shop.example/cart?id=1&x=2")
    assert click.replace("&", "&amp;") in html
    assert "https://shop.example/cart" not in html.replace(
        "u=https%3A%2F%2Fshop.example%2Fcart", ""
    )
    assert TRACKING.open_pixel("abc123").replace("&", "&amp;") in html
    assert msg.get_body(("plain",)).get_content().strip() == "Your cart"
    sig = click.rsplit("s=", 1)[1]
    assert TRACKING.verify(sig, "abc123", "https://shop.example/cart?id=1&x=2")


def test_transactional_mail_has_no_unsubscribe_and_no_tracking(smtp):
    sink, port = smtp
    channel = SmtpEmailChannel(host="127.0.0.1", port=port, tracking=TRACKING)
    channel.send(mail(transactional=True))
    (msg,) = sink.messages
    assert msg["List-Unsubscribe"] is None
    assert msg["List-Unsubscribe-Post"] is None
    assert 'href="https://shop.example/cart?id=1&x=2"' in msg.get_body(("html",)).get_content()


def test_smtp_failures_are_classified(smtp):
    _, port = smtp
    channel = SmtpEmailChannel(host="127.0.0.1", port=port)
    with pytest.raises(TerminalChannelError) as err:
        channel.send(mail("nobody@bounce.example"))
    assert err.value.reason == "hard_bounce"
    with pytest.raises(TransientChannelError, match="451"):
        channel.send(mail("ana@busy.example"))
    with pytest.raises(TransientChannelError, match=r"127\.0\.0\.1"):
        SmtpEmailChannel(host="127.0.0.1", port=free_port(), timeout=2).send(mail())
    with pytest.raises(TerminalChannelError, match="no email rendering") as err:
        channel.send(OutboundMessage("x", "email", "ana", "c", "s", address="a@b.c"))
    assert err.value.reason == "content"


class Receiver(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []
    statuses: ClassVar[list[int]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        status = type(self).statuses.pop(0) if type(self).statuses else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.received, Receiver.statuses = [], []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def hook_message() -> OutboundMessage:
    return OutboundMessage(
        send_id="sid-1",
        channel="webhook",
        customer_id="ana",
        campaign="thanks",
        step="notify",
        variant="a",
        renderings={"webhook": {"order": "42", "tracking": "TRK1"}},
    )


def test_webhooks_are_signed_with_hmac_sha256_and_a_timestamp(receiver):
    channel = WebhookChannel(url=receiver, secret="whsec", now=lambda: 1_700_000_000.0)
    assert channel.send(hook_message()).detail == "HTTP 200"
    ((headers, body),) = Receiver.received
    assert headers[TIMESTAMP_HEADER] == "1700000000"
    assert headers["Idempotency-Key"] == "sid-1"
    assert verify("whsec", headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    assert not verify("other", headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    assert not verify("whsec", "1700000001", body, headers[SIGNATURE_HEADER])
    payload = json.loads(body)
    assert payload["data"] == {"order": "42", "tracking": "TRK1"}
    assert (payload["campaign"], payload["step"], payload["variant"]) == ("thanks", "notify", "a")


def test_webhook_failures_are_classified(receiver):
    channel = WebhookChannel(url=receiver, secret="whsec")
    Receiver.statuses = [503, 429, 410]
    with pytest.raises(TransientChannelError, match="503"):
        channel.send(hook_message())
    with pytest.raises(TransientChannelError, match="429"):
        channel.send(hook_message())
    with pytest.raises(TerminalChannelError, match="410"):
        channel.send(hook_message())
    dead = WebhookChannel(url=f"http://127.0.0.1:{free_port()}/", secret="s", timeout=2)
    with pytest.raises(TransientChannelError):
        dead.send(hook_message())


def test_builtins_register_through_the_same_hook_as_a_third_party():
    registry = default_registry(entry_points=False)
    assert registry.kinds() == ["banner", "console", "dummy", "email", "file", "push", "webhook"]

    class SmsChannel(DummyChannel):
        pass

    registry.register("sms", SmsChannel)
    sms = registry.configure("sms_eu", "sms", seed=3)
    assert registry.get("sms_eu") is sms
    assert sms.name == "sms_eu"
    with pytest.raises(
        ConfigError, match="unknown channel kind 'fax'; allowed: banner, console, dummy"
    ):
        registry.configure("fax")
    with pytest.raises(ConfigError, match="registered twice"):
        registry.register("sms", SmsChannel)
    with pytest.raises(ConfigError, match="'push' is not configured; configured: sms_eu"):
        registry.get("push")
    assert isinstance(ChannelRegistry().names(), list)


def test_the_dummy_channel_fails_reproducibly_with_its_seed():
    def outcomes(seed: int) -> list[str]:
        channel = DummyChannel(transient=0.3, terminal=0.1, seed=seed)
        out = []
        for i in range(50):
            try:
                channel.send(OutboundMessage(f"s{i}", "dummy", "c", "k", "s"))
                out.append("ok")
            except TransientChannelError:
                out.append("transient")
            except TerminalChannelError:
                out.append("terminal")
        return out

    assert outcomes(1) == outcomes(1) != outcomes(2)
    assert {"ok", "transient", "terminal"} == set(outcomes(1))


def test_console_and_file_channels_write_json_lines(tmp_path):
    buf = io.StringIO()
    ConsoleChannel(buf).send(hook_message())
    assert json.loads(buf.getvalue())["send_id"] == "sid-1"
    path = tmp_path / "out" / "messages.jsonl"
    channel = FileChannel(path)
    channel.send(hook_message())
    channel.send(hook_message())
    assert len(path.read_text().splitlines()) == 2


def test_gil_held_commit_and_dot_do_what_the_ordinary_calls_do(tmp_path):
    """The exactly-once window's C calls (channels.gilheld): the commit is the real commit,
    the bytes arrive, and anything they cannot handle falls back to the ordinary call."""
    import socket
    import sqlite3

    from journeymap.channels import gilheld

    path = tmp_path / "t.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("CREATE TABLE t (x)")
    conn.execute("INSERT INTO t VALUES (1)")
    assert gilheld.sqlite_commit(conn)
    assert not conn.in_transaction
    assert sqlite3.connect(path).execute("SELECT x FROM t").fetchall() == [(1,)]
    assert not gilheld.sqlite_commit(object())  # not a sqlite3.Connection: nothing done
    conn.close()

    a, b = socket.socketpair()
    a.settimeout(5)
    gilheld.send_all(a, b".\r\n")
    big = b"x" * (8 << 20)  # more than the kernel takes at once: the rest goes by sendall
    import threading

    got = bytearray()

    def read() -> None:
        while len(got) < 3 + len(big):
            got.extend(b.recv(1 << 20))

    reader = threading.Thread(target=read)
    reader.start()
    gilheld.send_all(a, big)
    reader.join(30)
    assert bytes(got) == b".\r\n" + big
    a.close()
    b.close()


def test_gil_held_postgresql_commit_commits(tmp_path):
    import select

    import psycopg

    from journeymap.channels import gilheld
    from journeymap.server.testing import postgres_base_url

    url = postgres_base_url().replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE gil_held (x int)")
        conn.execute("BEGIN")
        conn.execute("INSERT INTO gil_held VALUES (7)")
        assert gilheld.pg_send_commit(conn.pgconn)
        pg, statuses = conn.pgconn, []
        while True:  # read the reply as the worker does
            pg.consume_input()
            if pg.is_busy():
                select.select([pg.socket], [], [], 1.0)
                continue
            res = pg.get_result()
            if res is None:
                break
            statuses.append(res.command_status)
        assert statuses == [b"COMMIT"]
        assert conn.execute("SELECT x FROM gil_held").fetchall() == [(7,)]
