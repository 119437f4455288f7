"""The banner channel: website banners and in-app messages delivered through the decide API.

A banner cannot be pushed: the page asks for it. So a campaign ``send`` step on channel
``banner`` stays in the outbox, rendered (``message.banner``: headline, call to action, URL,
slot), and the outbox *is* the queue: the next ``POST /v1/decide`` of that customer for that
slot serves it before any sampled offer and records the display (``Banner Shown``, the
decision in ``decide_exposures``). When the worker reaches the row first, ``send`` accepts it
for display (the row becomes ``sent``, still waiting for the page); it only refuses a message
without a banner rendering, terminally. Nothing leaves the process, so a repeated send is
harmless (``deduplicates``).
"""

from __future__ import annotations

from journeymap.channels.base import (
    BaseChannel,
    DeliveryResult,
    OutboundMessage,
    TerminalChannelError,
)

DEFAULT_SLOT = "default"


class BannerChannel(BaseChannel):
    """Accepts rendered banners for display by the decide API."""

    deduplicates: bool = True
    address_trait: str | None = None

    def __init__(self) -> None:
        self.name = "banner"

    def send(self, message: OutboundMessage) -> DeliveryResult:
        banner = message.renderings.get("banner")
        if not isinstance(banner, dict) or not banner.get("headline"):
            raise TerminalChannelError(
                f"send {message.send_id}: the message has no banner rendering; give the send "
                "step a message.banner with headline and cta",
                "content",
            )
        slot = banner.get("slot") or DEFAULT_SLOT
        return DeliveryResult(message.send_id, None, f"waiting for POST /v1/decide in slot {slot}")
