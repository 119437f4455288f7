"""Email over SMTP (stdlib ``smtplib``).

Marketing mail carries ``List-Unsubscribe`` (an HTTPS URL and, if configured, a mailto) and
``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058, required by Gmail and Yahoo
for bulk senders); its links go through the click redirect and it carries an open pixel when a
tracking base URL is configured. Transactional mail gets neither tracking nor unsubscribe.

Failures are classified: SMTP 5xx on the recipient → terminal ``hard_bounce``; other 5xx →
terminal ``rejected``; 4xx, timeouts and connection trouble → transient.
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from email.utils import formataddr, make_msgid

from journeymap.channels.base import (
    BaseChannel,
    DeliveryResult,
    OutboundMessage,
    TerminalChannelError,
    TransientChannelError,
)
from journeymap.channels.tracking import TrackingLinks


class SmtpEmailChannel(BaseChannel):
    address_trait: str | None = "email"

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
            if html and self.tracking:
                html = self.tracking.rewrite_html(message.send_id, html)
        msg.set_content(text or "")
        if html:
            msg.add_alternative(html, subtype="html")
        return msg

    def send(self, message: OutboundMessage) -> DeliveryResult:
        msg = self.build(message)
        try:
            cls = smtplib.SMTP_SSL if self.ssl else smtplib.SMTP
            with cls(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls()
                if self.username:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            code = min((c for c, _ in exc.recipients.values()), default=550)
            if code >= 500:
                raise TerminalChannelError(
                    f"{message.address} refused ({code})", "hard_bounce"
                ) from exc
            raise TransientChannelError(f"{message.address} deferred ({code})") from exc
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code >= 500:
                raise TerminalChannelError(
                    f"SMTP {exc.smtp_code}: {exc.smtp_error!r}", "rejected"
                ) from exc
            raise TransientChannelError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}") from exc
        except (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, OSError) as exc:
            raise TransientChannelError(f"SMTP {self.host}:{self.port}: {exc}") from exc
        return DeliveryResult(message.send_id, provider_id=str(msg["Message-ID"]))
