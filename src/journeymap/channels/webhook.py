"""Signed webhooks (httpx): a JSON POST with an HMAC-SHA256 signature and a timestamp.

Headers: ``X-Journeymap-Timestamp`` (Unix seconds), ``X-Journeymap-Signature:
sha256=<hex of HMAC(secret, "<timestamp>.<body>")>`` (the Stripe/Standard Webhooks scheme:
the timestamp inside the signature defeats replays) and ``Idempotency-Key: <send id>``, so
receivers deduplicate and an unknown failure may be retried.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable

import httpx

from journeymap.channels.base import (
    BaseChannel,
    DeliveryResult,
    OutboundMessage,
    TerminalChannelError,
    TransientChannelError,
)

SIGNATURE_HEADER = "X-Journeymap-Signature"
TIMESTAMP_HEADER = "X-Journeymap-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookChannel(BaseChannel):
    deduplicates = True

    def __init__(
        self,
        *,
        url: str,
        secret: str,
        timeout: float = 10.0,
        client: httpx.Client | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.name = "webhook"
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self.client = client
        self.now = now

    def send(self, message: OutboundMessage) -> DeliveryResult:
        payload = {
            "send_id": message.send_id,
            "campaign": message.campaign,
            "step": message.step,
            "variant": message.variant,
            "customer_id": message.customer_id,
            "topic": message.topic,
            "transactional": message.transactional,
            "data": message.renderings.get("webhook"),
        }
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        ts = str(int(self.now()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: ts,
            SIGNATURE_HEADER: sign(self.secret, ts, body),
            "Idempotency-Key": message.send_id,
        }
        try:
            if self.client is not None:
                resp = self.client.post(self.url, content=body, headers=headers)
            else:
                with httpx.Client(timeout=self.timeout) as client:
                    resp = client.post(self.url, content=body, headers=headers)
        except httpx.TransportError as exc:
            raise TransientChannelError(f"webhook {self.url}: {exc!r}") from exc
        code = resp.status_code
        if 200 <= code < 300:
            return DeliveryResult(message.send_id, detail=f"HTTP {code}")
        if code in (408, 425, 429) or code >= 500:
            raise TransientChannelError(f"webhook {self.url}: HTTP {code}")
        raise TerminalChannelError(f"webhook {self.url}: HTTP {code}", "rejected")
