"""Settings: one table (name, default, help) drives the project file, the environment,
``journeymap settings``, docs/settings.md and a test that keeps them in step.

Precedence, lowest first: defaults, the project's ``journeymap.toml`` (``[settings]`` table),
``JOURNEYMAP_<NAME>`` environment variables, explicit overrides (CLI flags, library keywords).
Relative paths are resolved against the project folder.
"""

from __future__ import annotations

import os
import tomllib
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final

from journeymap.errors import ConfigError

PROJECT_FILE: Final = "journeymap.toml"
ENV_PREFIX: Final = "JOURNEYMAP_"


def _timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {value!r}; use an IANA name such as UTC or Europe/Berlin"
        ) from None
    return value


def _positive_int(value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a whole number") from None
    if number <= 0:
        raise ValueError(f"{number} must be greater than 0")
    return number


def _non_negative_int(value: Any) -> int:
    return _positive_int(value) if value not in (0, "0") else 0


def _currency(value: str) -> str:
    if not (len(value) == 3 and value.isalpha()):
        raise ValueError(f"{value!r} is not a three-letter ISO 4217 code such as EUR")
    return value.upper()


def _engine(value: str) -> str:
    if value not in ("duckdb", "pyspark"):
        raise ValueError(f"{value!r} is not an engine; allowed: duckdb, pyspark")
    return value


def _text(value: Any) -> str:
    return str(value)


def _non_negative_float(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number") from None
    if not number >= 0:
        raise ValueError(f"{number} must be 0 or more")
    return number


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{value!r} is not true or false")


def _share(value: Any) -> float:
    number = _non_negative_float(value)
    if number > 0.5:
        raise ValueError(f"{number} must be between 0 and 0.5 (1 to 10 % is usual)")
    return number


def _quiet_hours(value: Any) -> str:
    text = str(value).strip()
    if not text:
        return ""
    parts = text.split("-")
    if len(parts) != 2 or not all(_is_clock(p.strip()) for p in parts):
        raise ValueError(f"{text!r} is not a time range; use HH:MM-HH:MM such as 21:00-08:00")
    return f"{parts[0].strip()}-{parts[1].strip()}"


def _is_clock(text: str) -> bool:
    hh, sep, mm = text.partition(":")
    return bool(sep) and hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60


def _database_url(value: Any) -> str:
    text = str(value).strip()
    scheme = text.split(":", 1)[0].split("+", 1)[0]
    if scheme not in ("sqlite", "postgresql", "postgres"):
        raise ValueError(
            f"{text!r} is not a database URL; use sqlite:///data/journeymap.db or "
            "postgresql://user@host/dbname"
        )
    netloc = text.split("://", 1)[1].split("/", 1)[0] if "://" in text else ""
    if ":" in netloc.rpartition("@")[0]:
        raise ValueError(
            "the URL contains a password; put it in PGPASSWORD or ~/.pgpass instead "
            "(secrets are never part of settings)"
        )
    return text


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str
    parse: Callable[[Any], Any] = _text
    is_path: bool = False


SETTINGS: Final[tuple[Setting, ...]] = (
    Setting("spec", "journey.yaml", "The journey spec (YAML).", is_path=True),
    Setting("lake", "data/lake", "The event lake (a Delta Lake folder).", is_path=True),
    Setting(
        "rejects_dir",
        "data/rejects",
        "Where imports write the rows they reject (one JSONL file per input).",
        is_path=True,
    ),
    Setting(
        "cache_dir",
        ".journeymap",
        "Derived data (journey table per lake version and spec); safe to delete.",
        is_path=True,
    ),
    Setting("reports_dir", "reports", "Where reports and exported analyses go.", is_path=True),
    Setting(
        "timezone",
        "UTC",
        "The business's time zone: naive timestamps on import are read in it, and local "
        "calendar reports use it. Events are stored in UTC.",
        _timezone,
    ),
    Setting(
        "session_gap_minutes",
        30,
        "Inactivity (minutes) after which the next event of a customer starts a new session.",
        _positive_int,
    ),
    Setting("currency", "EUR", "Currency of revenue that comes without one.", _currency),
    Setting("engine", "duckdb", "Analytics engine: duckdb (embedded) or pyspark.", _engine),
    Setting(
        "threads",
        0,
        "DuckDB worker threads; 0 uses every core.",
        _non_negative_int,
    ),
    Setting(
        "memory_limit",
        "",
        "DuckDB memory limit such as 4GB; empty uses DuckDB's default (80% of RAM).",
    ),
    Setting(
        "import_max_line_bytes",
        1_048_576,
        "Lines longer than this (bytes) are rejected on import instead of read.",
        _positive_int,
    ),
    # -- the server, the collector and the operational database --
    Setting(
        "database",
        "sqlite:///data/journeymap.db",
        "The operational database (profiles, consent, the collector's inbox): a SQLite file "
        "(relative to the project) or postgresql://user@host/dbname. Put a PostgreSQL password "
        "in PGPASSWORD or ~/.pgpass, never in the URL.",
        _database_url,
    ),
    Setting("server_host", "127.0.0.1", "Address `journeymap serve` listens on."),
    Setting("server_port", 8000, "Port `journeymap serve` listens on.", _positive_int),
    Setting(
        "admin_token_file",
        ".journeymap/admin_token",
        "File holding the bearer token of the admin API (created with a random token by "
        "`journeymap serve` when missing).",
        is_path=True,
    ),
    Setting(
        "cors_origins",
        "*",
        "Browser origins allowed to send events, comma-separated (`*`: any).",
    ),
    Setting(
        "collector_max_request_bytes",
        512_000,
        "Largest collector request (bytes, after decompression); larger ones get 400.",
        _positive_int,
    ),
    Setting(
        "collector_max_message_bytes",
        32_768,
        "Largest message (bytes); larger ones go to the dead letters.",
        _positive_int,
    ),
    Setting(
        "collector_rate_limit",
        0,
        "Events per second per source (0: unlimited); a source's own limit wins. Over it: 429.",
        _non_negative_int,
    ),
    Setting(
        "collector_max_queued_events",
        50_000,
        "Events waiting to be committed beyond which the collector answers 429 (backpressure).",
        _positive_int,
    ),
    Setting(
        "loader_interval_seconds",
        2.0,
        "How often `journeymap serve` moves the inbox into the lake (0: never; then run "
        "`journeymap load`).",
        _non_negative_float,
    ),
    Setting(
        "loader_batch_size",
        20_000,
        "Messages per loader round (one lake commit each).",
        _positive_int,
    ),
    Setting(
        "inbox_retention_days",
        30,
        "Days the inbox remembers loaded message ids, so that late resends are dropped.",
        _positive_int,
    ),
    # -- campaigns: playbooks, channels, policies, the worker --
    Setting(
        "campaigns_dir",
        "campaigns",
        "Campaign flows (YAML, one per file) that `journeymap worker` runs; a missing folder "
        "means none. `journeymap init` copies the shipped phase playbooks here.",
        is_path=True,
    ),
    Setting(
        "offers",
        "offers.yaml",
        "Banner and in-app offers the decide API (`POST /v1/decide`) chooses among (YAML).",
        is_path=True,
    ),
    Setting(
        "tracking_base_url",
        "http://127.0.0.1:8000",
        "Public URL of `journeymap serve`: tracked links, the open pixel, unsubscribe and "
        "preference pages in messages point here.",
    ),
    Setting(
        "tracking_secret_file",
        ".journeymap/tracking_secret",
        "File holding the key that signs tracking and unsubscribe URLs (created with a random "
        "key when missing).",
        is_path=True,
    ),
    Setting("smtp_host", "localhost", "SMTP server for the email channel."),
    Setting(
        "smtp_port", 25, "SMTP port (587 with smtp_starttls, 465 with smtp_ssl).", _positive_int
    ),
    Setting("smtp_starttls", False, "Upgrade the SMTP connection with STARTTLS.", _bool),
    Setting("smtp_ssl", False, "Connect to the SMTP server over TLS (port 465).", _bool),
    Setting(
        "smtp_username",
        "",
        "SMTP login (empty: none). The password is read from the environment variable "
        "SMTP_PASSWORD, never from settings.",
    ),
    Setting("smtp_sender", "journeymap@localhost", "From address of campaign email."),
    Setting("smtp_sender_name", "", "Display name of the From address."),
    Setting(
        "webhook_url",
        "",
        "Where the webhook channel POSTs signed JSON (empty: no webhook channel).",
    ),
    Setting(
        "webhook_secret_file",
        ".journeymap/webhook_secret",
        "File holding the HMAC key of webhook signatures (created when missing).",
        is_path=True,
    ),
    Setting(
        "vapid_private_key_file",
        ".journeymap/vapid_private.pem",
        "The Web Push (VAPID) private key, PEM (created when missing; browsers subscribe with "
        "its public key, see `GET /v1/push/key`).",
        is_path=True,
    ),
    Setting(
        "vapid_subject",
        "mailto:admin@localhost",
        "Contact of the sender that push services see in the VAPID token (mailto: or https:).",
    ),
    Setting(
        "quiet_hours",
        "21:00-08:00",
        "No marketing message in this local time range of the recipient (HH:MM-HH:MM; "
        "empty: none); messages wait until it ends.",
        _quiet_hours,
    ),
    Setting(
        "cap_per_day",
        3,
        "Marketing messages per customer per local day, all channels together (0: no cap).",
        _non_negative_int,
    ),
    Setting(
        "cap_per_week",
        10,
        "Marketing messages per customer per local week (Monday first), all channels (0: none).",
        _non_negative_int,
    ),
    Setting(
        "global_control_share",
        0.0,
        "Share of customers in the global control group: no marketing from any campaign, "
        "measured like everyone else (0 to 0.5).",
        _share,
    ),
    Setting(
        "worker_interval_seconds",
        1.0,
        "How often `journeymap worker` polls for due timers, new events and queued messages.",
        _non_negative_float,
    ),
    Setting(
        "worker_batch_size",
        200,
        "Queued messages one worker claims per round.",
        _positive_int,
    ),
)
_BY_NAME: Final = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """Resolved settings of one project; paths are absolute."""

    project_dir: Path
    spec: Path
    lake: Path
    rejects_dir: Path
    cache_dir: Path
    reports_dir: Path
    timezone: str
    session_gap_minutes: int
    currency: str
    engine: str
    threads: int
    memory_limit: str
    import_max_line_bytes: int
    database: str
    server_host: str
    server_port: int
    admin_token_file: Path
    cors_origins: str
    collector_max_request_bytes: int
    collector_max_message_bytes: int
    collector_rate_limit: int
    collector_max_queued_events: int
    loader_interval_seconds: float
    loader_batch_size: int
    inbox_retention_days: int
    campaigns_dir: Path
    offers: Path
    tracking_base_url: str
    tracking_secret_file: Path
    smtp_host: str
    smtp_port: int
    smtp_starttls: bool
    smtp_ssl: bool
    smtp_username: str
    smtp_sender: str
    smtp_sender_name: str
    webhook_url: str
    webhook_secret_file: Path
    vapid_private_key_file: Path
    vapid_subject: str
    quiet_hours: str
    cap_per_day: int
    cap_per_week: int
    global_control_share: float
    worker_interval_seconds: float
    worker_batch_size: int
    #: where each value came from: "default", the project file, "env JOURNEYMAP_X", "argument"
    origins: Mapping[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def load(
        cls,
        project_dir: str | os.PathLike[str] = ".",
        overrides: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        project = Path(project_dir).resolve()
        env = os.environ if environ is None else environ
        raw: dict[str, Any] = {s.name: s.default for s in SETTINGS}
        origins = dict.fromkeys(raw, "default")

        project_file = project / PROJECT_FILE
        if project_file.exists():
            for name, value in _read_project_file(project_file).items():
                raw[name] = value
                origins[name] = str(project_file)
        for s in SETTINGS:
            key = ENV_PREFIX + s.name.upper()
            if key in env:
                raw[s.name] = env[key]
                origins[s.name] = f"env {key}"
        for name, value in (overrides or {}).items():
            if value is None:
                continue
            if name not in _BY_NAME:
                raise ConfigError(f"unknown setting {name!r}; allowed: {', '.join(_BY_NAME)}")
            raw[name] = value
            origins[name] = "argument"

        values: dict[str, Any] = {}
        for s in SETTINGS:
            try:
                value = s.parse(raw[s.name])
            except ValueError as exc:
                raise ConfigError(f"setting {s.name} (from {origins[s.name]}): {exc}") from None
            if s.is_path:
                value = (project / Path(str(value)).expanduser()).resolve()
            values[s.name] = value
        return cls(project_dir=project, origins=origins, **values)

    def as_rows(self) -> list[tuple[str, str, str]]:
        """(name, value, origin) for display."""
        return [
            (f.name, str(getattr(self, f.name)), self.origins.get(f.name, ""))
            for f in fields(self)
            if f.name in _BY_NAME
        ]


def _read_project_file(path: Path) -> dict[str, Any]:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    section = doc.get("settings", {})
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: [settings] must be a table of name = value")
    unknown = sorted(set(section) - set(_BY_NAME))
    if unknown:
        raise ConfigError(
            f"{path}: unknown setting(s) {', '.join(unknown)} in [settings]; "
            f"allowed: {', '.join(_BY_NAME)}"
        )
    return section


def settings_markdown() -> str:
    """docs/settings.md, generated from the table (a test keeps the file in step)."""
    lines = [
        "# Settings",
        "",
        "Set them in the project's `journeymap.toml` under `[settings]`, as environment",
        "variables `JOURNEYMAP_<NAME>`, or as arguments. `journeymap settings` shows the values",
        "in force and where each came from. Relative paths are relative to the project folder.",
        "",
        "| name | environment variable | default | meaning |",
        "|---|---|---|---|",
    ]
    for s in SETTINGS:
        default = f"`{s.default}`" if s.default != "" else "(empty)"
        lines.append(f"| `{s.name}` | `{ENV_PREFIX}{s.name.upper()}` | {default} | {s.help} |")
    return "\n".join(lines) + "\n"
