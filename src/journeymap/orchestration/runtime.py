"""The campaign runtime of a project: engine, worker, channels and tracking from its settings.

One place turns ``Settings`` into the running parts, so ``journeymap worker``, the server's
tracking / decide endpoints, ``campaigns simulate`` and the facade all see the same policies,
secrets and channels::

    rt = CampaignRuntime.open(settings, db)
    rt.engine.handle(event)          # enter / advance campaigns
    rt.worker.run_once()             # fire timers, deliver the outbox
    rt.loop.opened(send_id, sig)     # closing the loop from the tracking endpoints

Secrets (tracking key, webhook key) live in files named by settings, created with random
content on first use and never printed; the SMTP password comes from the environment
variable ``SMTP_PASSWORD``.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from journeymap.channels.registry import ChannelRegistry, default_registry
from journeymap.channels.tracking import TrackingLinks
from journeymap.config import Settings
from journeymap.orchestration.clock import Clock, SystemClock
from journeymap.orchestration.policies import ANY_CHANNEL, Period, PolicySettings
from journeymap.storage.files import ensure_secret_file

if TYPE_CHECKING:
    from journeymap.model.campaigns import Campaign
    from journeymap.orchestration.engine import CampaignEngine
    from journeymap.orchestration.loop import LoopRecorder
    from journeymap.orchestration.worker import OutboxWorker
    from journeymap.storage.db import OperationalDB

SMTP_PASSWORD_ENV = "SMTP_PASSWORD"

#: Hooks that add channels to a project's registry (name → configure(registry, settings,
#: tracking)); the built-in channels that need settings register here, like a plug-in would.
ChannelSetup = Callable[[ChannelRegistry, Settings, TrackingLinks], None]
CHANNEL_SETUPS: dict[str, ChannelSetup] = {}


def channel_setup(name: str) -> Callable[[ChannelSetup], ChannelSetup]:
    def register(fn: ChannelSetup) -> ChannelSetup:
        CHANNEL_SETUPS[name] = fn
        return fn

    return register


def policy_settings(settings: Settings) -> PolicySettings:
    """The orchestration policies of ``settings`` (quiet hours, caps, control, tracking)."""
    quiet_start = quiet_end = None
    if settings.quiet_hours:
        start, end = settings.quiet_hours.split("-")
        quiet_start, quiet_end = dt.time.fromisoformat(start), dt.time.fromisoformat(end)
    overall: dict[Period, int] = {}
    if settings.cap_per_day:
        overall["day"] = settings.cap_per_day
    if settings.cap_per_week:
        overall["week"] = settings.cap_per_week
    return PolicySettings(
        default_timezone=settings.timezone,
        quiet_start=quiet_start,
        quiet_end=quiet_end,
        caps={ANY_CHANNEL: overall} if overall else {},
        global_control=settings.global_control_share,
        tracking_base_url=settings.tracking_base_url,
        tracking_secret=tracking_secret(settings),
    )


def tracking_secret(settings: Settings) -> str:
    secret, _ = ensure_secret_file(settings.tracking_secret_file, lambda: secrets.token_hex(32))
    return secret


def tracking_links(settings: Settings) -> TrackingLinks:
    return TrackingLinks(settings.tracking_base_url, tracking_secret(settings))


@channel_setup("email")
def _email(registry: ChannelRegistry, settings: Settings, tracking: TrackingLinks) -> None:
    registry.configure(
        "email",
        host=settings.smtp_host,
        port=settings.smtp_port,
        sender=settings.smtp_sender,
        sender_name=settings.smtp_sender_name or None,
        starttls=settings.smtp_starttls,
        ssl=settings.smtp_ssl,
        username=settings.smtp_username or None,
        password=os.environ.get(SMTP_PASSWORD_ENV) or None,
        tracking=tracking,
    )


@channel_setup("webhook")
def _webhook(registry: ChannelRegistry, settings: Settings, tracking: TrackingLinks) -> None:
    if not settings.webhook_url:
        return
    secret, _ = ensure_secret_file(settings.webhook_secret_file, lambda: secrets.token_hex(32))
    registry.configure("webhook", url=settings.webhook_url, secret=secret)


@channel_setup("push")
def _push(registry: ChannelRegistry, settings: Settings, tracking: TrackingLinks) -> None:
    """Web Push from ``vapid_private_key_file`` and ``vapid_subject``, when the ``push`` extra
    is installed (the key pair is created on first use)."""
    import importlib.util

    if importlib.util.find_spec("pywebpush") is None:
        return
    registry.configure(
        "push",
        vapid_private_key_file=settings.vapid_private_key_file,
        vapid_subject=settings.vapid_subject,
        tracking=tracking,
    )


@channel_setup("banner")
def _banner(registry: ChannelRegistry, settings: Settings, tracking: TrackingLinks) -> None:
    """Website banners: campaigns queue them, the decide API (``POST /v1/decide``) shows them;
    needs no settings, so every project has it."""
    registry.configure("banner")


@channel_setup("console")
def _console(registry: ChannelRegistry, settings: Settings, tracking: TrackingLinks) -> None:
    registry.configure("console")


def project_channels(
    settings: Settings, tracking: TrackingLinks | None = None, *, entry_points: bool = True
) -> ChannelRegistry:
    """Every channel the project's settings configure (plus third-party kinds)."""
    registry = default_registry(entry_points=entry_points)
    links = tracking or tracking_links(settings)
    for setup in CHANNEL_SETUPS.values():
        setup(registry, settings, links)
    return registry


def project_campaigns(settings: Settings) -> list[Campaign]:
    """The campaign flows in ``campaigns_dir`` (none when the folder is missing)."""
    from journeymap.model.campaigns import load_campaigns

    folder = settings.campaigns_dir
    return load_campaigns(folder) if folder.is_dir() else []


@dataclass
class CampaignRuntime:
    """The campaign parts of one project, built lazily from its settings."""

    settings: Settings
    db: OperationalDB
    clock: Clock = field(default_factory=SystemClock)
    campaigns: Sequence[Campaign] | None = None
    channels: ChannelRegistry | None = None

    @classmethod
    def open(
        cls,
        settings: Settings,
        db: OperationalDB,
        *,
        clock: Clock | None = None,
        campaigns: Sequence[Campaign] | None = None,
        channels: ChannelRegistry | None = None,
    ) -> CampaignRuntime:
        return cls(settings, db, clock or SystemClock(), campaigns, channels)

    @cached_property
    def policy(self) -> PolicySettings:
        return policy_settings(self.settings)

    @cached_property
    def tracking(self) -> TrackingLinks:
        return TrackingLinks(self.settings.tracking_base_url, self.policy.tracking_secret)

    @cached_property
    def registry(self) -> ChannelRegistry:
        return self.channels or project_channels(self.settings, self.tracking)

    @cached_property
    def flows(self) -> list[Campaign]:
        return (
            list(self.campaigns) if self.campaigns is not None else project_campaigns(self.settings)
        )

    @cached_property
    def engine(self) -> CampaignEngine:
        from journeymap.orchestration.engine import CampaignEngine

        return CampaignEngine(
            self.db, self.flows, self.registry, settings=self.policy, clock=self.clock
        )

    @cached_property
    def worker(self) -> OutboxWorker:
        from journeymap.orchestration.worker import OutboxWorker

        return OutboxWorker(
            self.db, self.registry, settings=self.policy, clock=self.clock, engine=self.engine
        )

    @cached_property
    def loop(self) -> LoopRecorder:
        from journeymap.orchestration.loop import LoopRecorder

        return LoopRecorder(self.db, self.tracking, self.clock)
