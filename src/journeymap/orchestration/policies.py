"""Sending policies: time zones, quiet hours, frequency caps, holdouts, retries.

Everything customer-facing is evaluated in the **recipient's** time zone (profile trait
``timezone``, else ``default_timezone``): quiet hours defer a message to their end, and caps
count calendar days and ISO weeks (Monday) of the recipient (Braze's convention).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from journeymap.errors import ConfigError

Period = Literal["day", "week"]
ANY_CHANNEL = "*"


def _default_caps() -> dict[str, dict[Period, int]]:
    return {ANY_CHANNEL: {"day": 3, "week": 10}}


@dataclass(frozen=True)
class PolicySettings:
    """The orchestration settings (proposed ``campaign_*`` rows of the settings table)."""

    default_timezone: str = "UTC"
    #: local quiet hours [start, end); ``None`` turns them off; may span midnight
    quiet_start: dt.time | None = dt.time(21, 0)
    quiet_end: dt.time | None = dt.time(8, 0)
    #: marketing messages per channel (``*``: all channels together) per local day / week
    caps: Mapping[str, Mapping[Period, int]] = field(default_factory=_default_caps)
    #: share of customers in the global control group (no marketing from any campaign)
    global_control: float = 0.0
    global_control_salt: str = "journeymap"
    #: channels whose consent counts only after a confirmed opt-in
    double_opt_in: tuple[str, ...] = ("email",)
    #: channels where no consent record means allowed (opt-out): banners on the shop's own
    #: pages (see ``decide.service``); a denied or revoked record still stops them
    opt_out_channels: tuple[str, ...] = ("banner",)
    max_attempts: int = 6
    backoff: dt.timedelta = dt.timedelta(minutes=1)
    backoff_max: dt.timedelta = dt.timedelta(hours=1)
    #: where tracked links, the open pixel and unsubscribe URLs point (server endpoints)
    tracking_base_url: str | None = None
    tracking_secret: str = "change-me"

    def __post_init__(self) -> None:
        zone(self.default_timezone)
        if not 0 <= self.global_control <= 0.5:
            raise ConfigError(
                f"global control share {self.global_control!r} must be between 0 and 0.5 "
                "(1 to 10 % is usual)"
            )


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin"
        ) from None


def customer_zone(traits: Mapping[str, Any], settings: PolicySettings) -> ZoneInfo:
    """The trait ``timezone`` if it is a valid IANA name, else the default."""
    tz = traits.get("timezone")
    if isinstance(tz, str):
        try:
            return ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return zone(settings.default_timezone)


def quiet_until(now: dt.datetime, tz: ZoneInfo, settings: PolicySettings) -> dt.datetime | None:
    """The end of the quiet hours ``now`` falls in (UTC), or ``None`` outside them."""
    start, end = settings.quiet_start, settings.quiet_end
    if start is None or end is None or start == end:
        return None
    local = now.astimezone(tz)
    t = local.time()
    inside = (start <= t < end) if start < end else (t >= start or t < end)
    if not inside:
        return None
    day = local.date() if (start < end or t < end) else local.date() + dt.timedelta(days=1)
    return local_time_to_utc(day, end, tz)


def local_time_to_utc(day: dt.date, t: dt.time, tz: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, t, tzinfo=tz).astimezone(dt.UTC)


def next_local_time(now: dt.datetime, t: dt.time, tz: ZoneInfo) -> dt.datetime:
    """The first moment at or after ``now`` when the local clock shows ``t``."""
    local = now.astimezone(tz)
    candidate = local_time_to_utc(local.date(), t, tz)
    if candidate < now:
        candidate = local_time_to_utc(local.date() + dt.timedelta(days=1), t, tz)
    return candidate


def period_start(now: dt.datetime, tz: ZoneInfo, period: Period) -> dt.datetime:
    """Start of the recipient's local day or ISO week (Monday) containing ``now``, in UTC."""
    day = now.astimezone(tz).date()
    if period == "week":
        day -= dt.timedelta(days=day.weekday())
    return local_time_to_utc(day, dt.time(0), tz)


def bucket(*parts: str) -> float:
    """A stable number in [0, 1) from ``parts`` (SHA-256): holdouts, splits, control group."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def backoff(attempts: int, settings: PolicySettings) -> dt.timedelta:
    """Exponential backoff after ``attempts`` failed tries (1, 2, 4 … × base, capped)."""
    delay: dt.timedelta = settings.backoff * (2 ** max(attempts - 1, 0))
    return min(delay, settings.backoff_max)
