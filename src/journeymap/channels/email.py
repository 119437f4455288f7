"""Email over SMTP (stdlib ``smtplib``).

Marketing mail carries ``List-Unsubscribe`` (an HTTPS URL and, if configured, a mailto) and
``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058, required by Gmail and Yahoo
for bulk senders); its links go through the click redirect and it carries an open pixel when a
tracking base URL is configured, and a footer with the customer's preference page (and the
unsubscribe link, when the template has none). Transactional mail gets neither tracking nor
unsubscribe.

Failures are classified: SMTP 5xx on the recipient → terminal ``hard_bounce``; other 5xx →
terminal ``rejected``; 4xx, timeouts and connection trouble → transient.

Sending is two-phase (``send_committed``, see ``channels.base``): MAIL, RCPT, DATA and the
body go out, the caller records the commit, then the final ``<CRLF>.<CRLF>`` (the SMTP commit
point) is written. Each worker thread keeps its own connection across messages (reconnecting
after an error or ``idle_seconds``); ``concurrency`` says how many the worker may use.
"""

from __future__ import annotations

import contextlib
import io
import re
import smtplib
import socket
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from email.generator import BytesGenerator
from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from html import escape
from typing import Any

from journeymap.channels import gilheld
from journeymap.channels.base import (
    BaseChannel,
    ChannelError,
    DeliveryResult,
    OutboundMessage,
    TerminalChannelError,
    TransientChannelError,
)
from journeymap.channels.tracking import TrackingLinks


def _footer(html: str, preferences: str | None, unsubscribe: str | None) -> str:
    """A small footer with the preference page and unsubscribe links the template lacks."""
    links = [
        f'<a href="{escape(url)}">{label}</a>'
        for url, label in ((preferences, "Manage your preferences"), (unsubscribe, "Unsubscribe"))
        if url and escape(url) not in html and url not in html
    ]
    if not links:
        return ""
    return '<p style="font-size:12px;color:#666">' + " · ".join(links) + "</p>"


@dataclass(frozen=True)
class PreparedEmail:
    """A built message: the bytes for DATA (before dot-stuffing) and its Message-ID."""

    data: bytes
    international: bool
    message_id: str


class SmtpEmailChannel(BaseChannel):
    address_trait: str | None = "email"
    #: connections (worker threads) sending at once; their commit records share fsyncs
    concurrency: int = 8
    #: a pooled connection idle for longer is replaced (servers drop idle clients)
    idle_seconds: float = 30.0

    def __init__(
        self,
        *,
        host: str = "localhost",
        port: int = 25,
        sender: str = "journeymap@localhost",
        sender_name: str | None = None,
        starttls: bool = False,
        ssl: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        tracking: TrackingLinks | None = None,
        unsubscribe_mailto: str | None = None,
    ) -> None:
        self.name = "email"
        self.host, self.port = host, port
        self.sender = sender
        self.sender_name = sender_name
        self.starttls, self.ssl = starttls, ssl
        self.username, self.password = username, password
        self.timeout = timeout
        self.tracking = tracking
        self.unsubscribe_mailto = unsubscribe_mailto

    def build(self, message: OutboundMessage) -> EmailMessage:
        content = message.renderings.get("email")
        if not isinstance(content, dict) or not content.get("subject"):
            raise TerminalChannelError(
                f"send {message.send_id}: the message has no email rendering", "content"
            )
        if not message.address:
            raise TerminalChannelError(f"send {message.send_id}: no email address", "config")
        html = content.get("html")
        text = content.get("text")
        marketing = not message.transactional
        msg = EmailMessage()
        msg["From"] = formataddr((self.sender_name or "", self.sender))
        msg["To"] = message.address
        msg["Subject"] = content["subject"]
        msg["Message-ID"] = make_msgid(idstring=message.send_id[:16])
        msg["X-Journeymap-Send-Id"] = message.send_id
        if marketing:
            unsubscribe = message.links.get("unsubscribe") or (
                self.tracking.unsubscribe(message.send_id) if self.tracking else None
            )
            targets = [f"<{unsubscribe}>"] if unsubscribe else []
            if self.unsubscribe_mailto:
                targets.append(f"<mailto:{self.unsubscribe_mailto}?subject=unsubscribe>")
            if targets:
                msg["List-Unsubscribe"] = ", ".join(targets)
            if unsubscribe:  # RFC 8058: one-click needs an HTTPS URI in List-Unsubscribe
                msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
            preferences = message.links.get("preferences") or (
                self.tracking.preferences(message.customer_id) if self.tracking else None
            )
            footer = _footer(html, preferences, unsubscribe) if html else ""
            if html and self.tracking:
                html = self.tracking.rewrite_html(message.send_id, html)
            if html and footer:  # after the rewrite: these links are not click-tracked
                html = (
                    html.replace("</body>", footer + "</body>", 1)
                    if "</body>" in html
                    else html + footer
                )
        msg.set_content(text or "")
        if html:
            msg.add_alternative(html, subtype="html")
        return msg

    # -- sending: one pooled connection per worker thread, two-phase DATA ------------------
    def send(self, message: OutboundMessage) -> DeliveryResult:
        """Deliver ``message`` (``send_committed`` without a commit record)."""
        return self.send_committed(message, _no_commit)

    def prepare(self, message: OutboundMessage) -> PreparedEmail:
        """The message as the bytes SMTP sends (the CPU-heavy part of a send: the worker
        prepares a batch first, so that its sending threads mostly wait on sockets)."""
        msg = self.build(message)
        assert message.address is not None  # build() checked it
        international = not (self.sender + message.address).isascii()
        return PreparedEmail(
            _flatten(msg, utf8=international), international, str(msg["Message-ID"])
        )

    def send_committed(
        self,
        message: OutboundMessage,
        commit: Callable[[Callable[[], None]], None],
        prepared: object = None,
    ) -> DeliveryResult:
        """Send ``message`` up to the end of DATA, then ``commit(point)``: the caller records
        the commit and runs ``point`` (the final dot's write) right after it; then read the
        reply.

        A server that loses the connection before ``<CRLF>.<CRLF>`` discards the transaction
        (RFC 5321 §4.1.1.4), so every error before the commit delivered nothing. If
        ``commit`` raises, the connection is closed without the dot. After the dot, a reply
        is the server's verdict (4xx transient, 5xx terminal); no reply is a plain
        ``ChannelError`` (unknown: the caller counts the message as delivered, unconfirmed).
        """
        ready = prepared if isinstance(prepared, PreparedEmail) else self.prepare(message)
        assert message.address is not None  # prepare() checked it
        body, international = ready.data, ready.international
        retried = False
        while True:
            smtp, reused = self._connection(message)
            stage = "envelope"
            dot_error: list[BaseException] = []

            def point(
                smtp: smtplib.SMTP = smtp, dot_error: list[BaseException] = dot_error
            ) -> None:
                try:
                    if smtp.sock is None:
                        raise smtplib.SMTPServerDisconnected("the connection is closed")
                    gilheld.send_all(smtp.sock, b"." + _CRLF)  # no GIL release before it
                except BaseException as exc:  # reported below, in the sending thread
                    dot_error.append(exc)

            try:
                self._open_data(smtp, message.address, body, international)
                stage = "commit"
                commit(point)
                stage = "dot"
                if dot_error:
                    raise dot_error[0]
                code, reply = smtp.getreply()
            except smtplib.SMTPRecipientsRefused as exc:
                self._reset(smtp)
                code = min((c for c, _ in exc.recipients.values()), default=550)
                if code >= 500:
                    raise TerminalChannelError(
                        f"{message.address} refused ({code})", "hard_bounce"
                    ) from exc
                raise TransientChannelError(f"{message.address} deferred ({code})") from exc
            except smtplib.SMTPResponseException as exc:  # MAIL or DATA refused
                self._reset(smtp)
                if exc.smtp_code >= 500:
                    raise TerminalChannelError(
                        f"SMTP {exc.smtp_code}: {exc.smtp_error!r}", "rejected"
                    ) from exc
                raise TransientChannelError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}") from exc
            except (smtplib.SMTPException, OSError) as exc:
                self._drop(smtp)  # never let a half transaction complete
                if stage == "envelope" and reused and not retried:
                    retried = True  # a pooled connection the server closed: once more, fresh
                    continue
                if stage in ("envelope", "commit"):
                    raise TransientChannelError(f"SMTP {self.host}:{self.port}: {exc}") from exc
                raise ChannelError(
                    f"SMTP {self.host}:{self.port}: no reply after the end of data ({exc}); "
                    "the message may have been delivered"
                ) from exc
            except BaseException:
                self._drop(smtp)  # commit() failed (or an interrupt): abandon the transaction
                raise
            break
        if code == 250:
            return DeliveryResult(message.send_id, provider_id=ready.message_id)
        if code == 421:
            self._drop(smtp)
        text = reply.decode("utf-8", "replace")
        if code >= 500:
            raise TerminalChannelError(f"SMTP {code}: {text!r}", "rejected")
        raise TransientChannelError(f"SMTP {code}: {text!r}")

    def _open_data(
        self, smtp: smtplib.SMTP, address: str, body: bytes, international: bool
    ) -> None:
        """MAIL, RCPT, DATA and the dot-stuffed body, without the final ``.`` line (the
        steps of ``smtplib.SMTP.sendmail`` and ``data``)."""
        smtp.ehlo_or_helo_if_needed()
        options: list[str] = []
        if smtp.does_esmtp:
            if smtp.has_extn("size"):
                options.append(f"size={len(body)}")
            if international:
                if not smtp.has_extn("smtputf8"):
                    raise TerminalChannelError(
                        f"{address}: the SMTP server does not support SMTPUTF8 addresses",
                        "config",
                    )
                options += ["SMTPUTF8", "BODY=8BITMIME"]
        code, resp = smtp.mail(self.sender, options)
        if code != 250:
            raise smtplib.SMTPSenderRefused(code, resp, self.sender)
        code, resp = smtp.rcpt(address)
        if code not in (250, 251):
            raise smtplib.SMTPRecipientsRefused({address: (code, resp)})
        code, resp = smtp.docmd("DATA")
        if code != 354:
            raise smtplib.SMTPDataError(code, resp)
        data = _PERIOD_AT_LINE_START.sub(b"..", body)
        smtp.send(data if data.endswith(_CRLF) else data + _CRLF)

    def _connection(self, message: OutboundMessage) -> tuple[smtplib.SMTP, bool]:
        """This thread's connection (and whether it was reused), opened when missing or idle
        for longer than ``idle_seconds`` (servers close idle clients)."""
        local = self._local()
        smtp: smtplib.SMTP | None = getattr(local, "smtp", None)
        now = time.monotonic()
        if smtp is not None and now - local.used < self.idle_seconds:
            local.used = now
            return smtp, True
        if smtp is not None:
            self._drop(smtp, quit=True)
        try:
            cls = smtplib.SMTP_SSL if self.ssl else smtplib.SMTP
            smtp = cls(self.host, self.port, timeout=self.timeout)
            try:
                # the dot follows the body as a second small write: without NODELAY, Nagle's
                # algorithm holds it until the server's (delayed, ~40 ms) ACK of the body
                if smtp.sock is not None:
                    smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self.starttls:
                    smtp.starttls()
                if self.username:
                    smtp.login(self.username, self.password or "")
            except BaseException:
                smtp.close()
                raise
        except smtplib.SMTPAuthenticationError as exc:
            raise TerminalChannelError(
                f"SMTP {self.host}:{self.port}: login refused ({exc.smtp_code}); check "
                "smtp_username and the SMTP_PASSWORD environment variable",
                "config",
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise TransientChannelError(
                f"SMTP {self.host}:{self.port}: cannot connect for send {message.send_id}: {exc}"
            ) from exc
        local.smtp, local.used = smtp, now
        with self._conn_lock:
            if not self._open and "_finalizer" not in self.__dict__:
                # a channel dropped without close() still closes its sockets
                self.__dict__["_finalizer"] = weakref.finalize(self, _close_all, self._open)
            self._open.add(smtp)
        return smtp, False

    def _local(self) -> threading.local:
        local: threading.local = self.__dict__.setdefault("_conns", threading.local())
        return local

    @property
    def _conn_lock(self) -> threading.Lock:
        return self.__dict__.setdefault("_lock", threading.Lock())  # type: ignore[no-any-return]

    @property
    def _open(self) -> set[smtplib.SMTP]:
        return self.__dict__.setdefault("_open_set", set())  # type: ignore[no-any-return]

    def _reset(self, smtp: smtplib.SMTP) -> None:
        """After a refusal before DATA's body: RSET keeps the connection, else drop it."""
        try:
            code, _ = smtp.rset()
        except (smtplib.SMTPException, OSError):
            code = 0
        if code != 250:
            self._drop(smtp)

    def _drop(self, smtp: smtplib.SMTP, *, quit: bool = False) -> None:
        """Forget ``smtp``; ``quit`` says goodbye first (never inside DATA: the server
        would read QUIT as a line of the message)."""
        local = self._local()
        if getattr(local, "smtp", None) is smtp:
            local.smtp = None
        with self._conn_lock:
            self._open.discard(smtp)
        with contextlib.suppress(smtplib.SMTPException, OSError):
            if quit:
                smtp.quit()
        smtp.close()

    def close(self) -> None:
        """QUIT every pooled connection (the worker calls this when it stops)."""
        with self._conn_lock:
            conns = list(self._open)
        for smtp in conns:
            self._drop(smtp, quit=True)


_CRLF = b"\r\n"
_PERIOD_AT_LINE_START = re.compile(rb"(?m)^\.")


def _close_all(conns: set[smtplib.SMTP]) -> None:
    for smtp in list(conns):
        with contextlib.suppress(smtplib.SMTPException, OSError):
            smtp.close()
    conns.clear()


def _no_commit(point: Callable[[], None]) -> None:
    """The commit of a one-phase send: nothing to record, the dot goes at once."""
    point()


class _Generator(BytesGenerator):
    """``BytesGenerator`` that writes short plain-ASCII header values as they are (refolding
    them through the header parser costs ~1 ms a message: most of a send's CPU); other
    values (non-ASCII, encoded-word look-alikes, lines over RFC 5322's 998) fold as usual."""

    def _write_headers(self, msg: Any) -> None:
        nl = self._NL  # type: ignore[attr-defined]
        for name, value in msg.raw_items():
            text = str(value)
            if (
                text.isascii()
                and "\n" not in text
                and "\r" not in text
                and "=?" not in text
                and len(name) + len(text) + 2 <= 998
            ):
                self._fp.write(f"{name}: {text}{nl}".encode("ascii"))  # type: ignore[attr-defined]
            else:
                self._fp.write(self.policy.fold_binary(name, value))  # type: ignore[attr-defined,union-attr]
        self.write(nl)


def _flatten(msg: EmailMessage, *, utf8: bool) -> bytes:
    """The message as SMTP sends it (``smtplib.SMTP.send_message``: CRLF line ends,
    ``Bcc`` removed, UTF-8 headers for internationalised addresses)."""
    out = io.BytesIO()
    policy: Any = msg.policy
    if utf8:
        policy = policy.clone(utf8=True)
    generator = _Generator(out, policy=policy)
    del msg["Bcc"]
    generator.flatten(msg, linesep="\r\n")
    return out.getvalue()
