"""The channel interface: ``Channel.send(message) -> DeliveryResult``.

Channels send; they never touch storage. They *classify* failures and the engine decides what
to do with them (STYLE habit 7, dlt's transient vs terminal job errors)::

    ChannelError (JourneymapError)
    ├── TransientChannelError    try again later (timeout, 4xx SMTP reply, HTTP 429/5xx)
    └── TerminalChannelError     never retry; ``reason`` says why (``hard_bounce``, ``rejected``,
                                 ``content``, ``config``); a hard bounce suppresses the address

Any other exception is *unknown*: the engine retries it only on a channel whose provider
deduplicates on the send id (``Channel.deduplicates``), so nothing is sent twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from journeymap.errors import JourneymapError

TerminalReason = Literal["hard_bounce", "rejected", "content", "config", "unknown"]


class ChannelError(JourneymapError):
    """A channel could not deliver a message."""


class TransientChannelError(ChannelError):
    """The same send may succeed later: retry with backoff."""


class TerminalChannelError(ChannelError):
    """The send can never succeed; ``reason`` classifies why."""

    def __init__(self, message: str, reason: TerminalReason = "rejected") -> None:
        super().__init__(message)
        self.reason: TerminalReason = reason


@dataclass(frozen=True)
class OutboundMessage:
    """One rendered message for one recipient.

    ``send_id`` is deterministic per (campaign, customer, step, entry key): providers that
    deduplicate get it as an idempotency key. ``renderings`` holds the rendered content per
    kind (``email``: subject/html/text, ``push``: title/body/deep_link, ``banner``,
    ``webhook``: a JSON object, ``text``); ``links`` the tracking and unsubscribe URLs.
    """

    send_id: str
    channel: str
    customer_id: str
    campaign: str
    step: str
    topic: str = "marketing"
    transactional: bool = False
    variant: str | None = None
    address: str | None = None
    renderings: dict[str, Any] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeliveryResult:
    send_id: str
    provider_id: str | None = None
    detail: str = ""


@runtime_checkable
class Channel(Protocol):
    """What every channel implements. ``address_trait``: the profile trait holding the
    recipient's address (``None``: the channel needs none, e.g. a webhook)."""

    name: str
    deduplicates: bool
    address_trait: str | None

    def send(self, message: OutboundMessage) -> DeliveryResult: ...


class BaseChannel:
    """Convenience base: defaults for the protocol's attributes."""

    name: str = "channel"
    deduplicates: bool = False
    address_trait: str | None = None

    def send(self, message: OutboundMessage) -> DeliveryResult:  # pragma: no cover
        raise NotImplementedError
