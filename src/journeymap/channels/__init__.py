"""Channels deliver rendered messages; they never touch storage (see ``channels.base``)."""

from journeymap.channels.base import (
    BaseChannel,
    Channel,
    ChannelError,
    DeliveryResult,
    OutboundMessage,
    TerminalChannelError,
    TransientChannelError,
)
from journeymap.channels.registry import ChannelRegistry, default_registry, register_builtins

__all__ = [
    "BaseChannel",
    "Channel",
    "ChannelError",
    "ChannelRegistry",
    "DeliveryResult",
    "OutboundMessage",
    "TerminalChannelError",
    "TransientChannelError",
    "default_registry",
    "register_builtins",
]
