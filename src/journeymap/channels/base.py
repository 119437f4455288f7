"""The channel interface: ``Channel.send(message) -> DeliveryResult``.

Channels send; they never touch storage. They *classify* failures and the engine decides what
to do with them (STYLE habit 7, dlt's transient vs terminal job errors)::

    ChannelError (JourneymapError)
    ├── TransientChannelError    try again later (timeout, 4xx SMTP reply, HTTP 429/5xx)
    └── TerminalChannelError     never retry; ``reason`` says why (``hard_bounce``, ``rejected``,
                                 ``content``, ``config``); a hard bounce suppresses the address

Any other exception is *unknown*: the engine retries it only on a channel whose provider
deduplicates on the send id (``Channel.deduplicates``), so nothing is sent twice.

**Two-phase channels** (``TwoPhaseChannel``, optional) make exactly-once delivery possible
without a deduplicating provider. ``send_committed(message, commit)`` does everything that a
dropped connection undoes (SMTP: ``MAIL``, ``RCPT``, ``DATA`` and the body, but not the final
``<CRLF>.<CRLF>``), then calls ``commit(point)``: the engine durably records that the message
is being committed and runs ``point()`` — the irrevocable step (the dot's ``write()``) —
right after the commit returns, in the thread that committed, so that nothing but that return
separates them. Rules:

* an error *before* the commit means nothing was delivered (the channel dropped the
  transaction); it is classified as usual;
* if ``commit`` raises, ``point`` was not run: the channel abandons the transaction (closing
  the connection, never completing it) and lets the exception propagate; ``point`` itself
  never raises (it keeps its error for the channel to report);
* an error *after* the commit is the provider's verdict (a reply: transient or terminal) or
  unknown (no reply: the engine counts the message as delivered, unconfirmed).

A two-phase channel may also offer ``prepare(message)``, the CPU-heavy part of a send (MIME
building), whose result ``send_committed(message, commit, prepared)`` takes: the worker
prepares a batch before its sending threads start, so that the thread that commits gets the
interpreter back at once and the dot follows the commit closely.

The worker detects the method (``is_two_phase``); other channels keep the one-method interface.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from journeymap.errors import JourneymapError

TerminalReason = Literal["hard_bounce", "rejected", "content", "config", "unknown"]


class ChannelError(JourneymapError):
    """A channel could not deliver a message."""


class TransientChannelError(ChannelError):
    """The same send may succeed later: retry with backoff, and not before ``retry_after``
    seconds when the provider asked for a delay (HTTP ``Retry-After``)."""

    retry_after: float | None = None


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


@runtime_checkable
class TwoPhaseChannel(Channel, Protocol):
    """A channel whose send has a commit point the engine can record first (see above)."""

    def send_committed(
        self,
        message: OutboundMessage,
        commit: Callable[[Callable[[], None]], None],
        prepared: object = None,
    ) -> DeliveryResult: ...


def is_two_phase(channel: object) -> bool:
    """Whether ``channel`` offers ``send_committed`` (the exactly-once protocol)."""
    return callable(getattr(channel, "send_committed", None))


def concurrency(channel: object) -> int:
    """How many messages the worker may send on ``channel`` at once (``Channel.concurrency``,
    default 1: in order, one at a time)."""
    value = getattr(channel, "concurrency", 1)
    return max(1, int(value)) if isinstance(value, int) else 1


class BaseChannel:
    """Convenience base: defaults for the protocol's attributes."""

    name: str = "channel"
    deduplicates: bool = False
    address_trait: str | None = None
    #: messages the worker may send at once (threads; each channel keeps its own connections)
    concurrency: int = 1

    def send(self, message: OutboundMessage) -> DeliveryResult:  # pragma: no cover
        raise NotImplementedError
