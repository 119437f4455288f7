"""The channel registry: channel kinds by name, built-ins registered like a plug-in would be.

A third-party package registers a factory through the ``journeymap.channels`` entry point
group (``name = "package.module:factory"``) or by calling ``registry.register`` directly; the
built-in channels go through exactly the same ``register`` call (datasette's
``DEFAULT_PLUGINS`` pattern).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from journeymap.channels.base import Channel
from journeymap.errors import ConfigError

ChannelFactory = Callable[..., Channel]
ENTRY_POINT_GROUP = "journeymap.channels"


class ChannelRegistry:
    """Factories of channel kinds and the configured channel instances."""

    def __init__(self) -> None:
        self._factories: dict[str, ChannelFactory] = {}
        self._channels: dict[str, Channel] = {}

    def register(self, kind: str, factory: ChannelFactory) -> None:
        if kind in self._factories:
            raise ConfigError(f"channel kind {kind!r} is registered twice")
        self._factories[kind] = factory

    def kinds(self) -> list[str]:
        return sorted(self._factories)

    def configure(self, name: str, kind: str | None = None, **options: Any) -> Channel:
        """Create the channel ``name`` from kind ``kind`` (default: ``name``) and options."""
        kind = kind or name
        factory = self._factories.get(kind)
        if factory is None:
            raise ConfigError(
                f"unknown channel kind {kind!r}; allowed: {', '.join(self.kinds())}. Install "
                f"the package that provides it (entry point group {ENTRY_POINT_GROUP!r})"
            )
        channel = factory(**options)
        channel.name = name
        self._channels[name] = channel
        return channel

    def add(self, channel: Channel) -> None:
        """Use an already built channel instance under its ``name``."""
        self._channels[channel.name] = channel

    def get(self, name: str) -> Channel:
        try:
            return self._channels[name]
        except KeyError:
            raise ConfigError(
                f"channel {name!r} is not configured; configured: "
                f"{', '.join(sorted(self._channels)) or 'none'}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._channels)

    def load_entry_points(self) -> None:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name not in self._factories:
                self.register(ep.name, ep.load())


def register_builtins(registry: ChannelRegistry) -> None:
    """The built-in channel kinds, registered through the public hook."""
    from journeymap.channels.banner import BannerChannel
    from journeymap.channels.console import ConsoleChannel, FileChannel
    from journeymap.channels.dummy import DummyChannel
    from journeymap.channels.email import SmtpEmailChannel
    from journeymap.channels.push import WebPushChannel
    from journeymap.channels.webhook import WebhookChannel

    registry.register("email", SmtpEmailChannel)
    registry.register("webhook", WebhookChannel)
    registry.register("push", WebPushChannel)
    registry.register("banner", BannerChannel)
    registry.register("console", ConsoleChannel)
    registry.register("file", FileChannel)
    registry.register("dummy", DummyChannel)


def default_registry(*, entry_points: bool = True) -> ChannelRegistry:
    registry = ChannelRegistry()
    register_builtins(registry)
    if entry_points:
        registry.load_entry_points()
    return registry
