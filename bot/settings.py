"""The one settings object, read from the environment.

Every variable the bot reads is listed here, and in the README's Configuration table.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bot.core.errors import InvalidInput
from bot.core.names import check_option
from storage.models import UNKNOWN_OWNER

REPO_ROOT = Path(__file__).resolve().parent.parent
# An API actor's name (VMBOT_API_TOKENS): lowercase, so it can never be mistaken for a Slack user id (U0123ABCD).
API_ACTOR_RE = re.compile(r"^[a-z][a-z0-9._-]{0,39}$")
# Names the store gives to no principal (storage.models.UNKNOWN_OWNER owns the VMs reconcile adopted):
# a token or an admin by such a name would own them all.
RESERVED_ACTOR_NAMES = frozenset({UNKNOWN_OWNER})
API_TOKEN_MIN_LENGTH = 16
# A Slack conversation id (public or private channel), as chat.postMessage takes it.
SLACK_CHANNEL_RE = re.compile(r"^[CG][A-Z0-9]{2,31}$")
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DATABASE_SCHEMES = ("sqlite", "postgresql+psycopg")
# app.yaml holds "${NAME}" where a deploy fills in a secret; one left as it is would fail much later.
PLACEHOLDER = re.compile(r"^\$\{?[A-Z0-9_]+\}?$")
SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,30}$")
SLACK_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,30}$")  # VMBOT_ALLOWED_CHANNELS: channels, private groups, DMs
# An admin (VMBOT_ADMINS) is a Slack user, or a script calling the HTTP API by its token's name.
ADMIN_ID = re.compile(f"{SLACK_USER_ID.pattern}|{API_ACTOR_RE.pattern}")


class SettingsError(Exception):
    """The environment is missing or has invalid settings; ``problems`` has one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Settings:
    # Secrets stay out of repr(), so printing or logging a Settings cannot leak them.
    slack_bot_token: str = field(repr=False)
    slack_signing_secret: str = field(repr=False)
    project: str
    slack_app_token: str | None = field(default=None, repr=False)
    slack_api_url: str | None = None
    zone: str = "us-central1-a"
    machine_type: str = "e2-small"
    image_project: str = "ubuntu-os-cloud"
    image_family: str = "ubuntu-2404-lts-amd64"
    compute_endpoint: str | None = None
    database_url: str = "sqlite:///vmbot.db"
    port: int = 3000
    workers: int = 8  # threads for short jobs: Slack answers, reports (bot.jobs.runner)
    max_in_flight: int = 200  # operations under way at once; more wait for a slot, and say so (bot.jobs.runner)
    operation_threads: int = 8  # threads that carry operations on between their waits on GCP (bot.jobs.runner)
    http_threads: int = 8  # waitress request threads (bot.web.server); half of them at most wait on API long polls
    operation_timeout: float = 900.0
    operation_lease: float = 60.0
    reconcile_interval: float = 600.0
    web_port: int = 8080
    slack_channel_rate: float | None = 1.0  # chat.postMessage per second per channel; None: no pacing
    startup_script: Path = field(default=REPO_ROOT / "startup-script.py")
    # (actor name, token) pairs for the HTTP API; empty means the API is off. Never shown in a repr.
    api_tokens: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    api_notify_channel: str | None = None
    log_format: str = "text"
    log_level: str = "INFO"
    # The dirty-image sweeper (bot.jobs.sweeper) and its schedule (bot.jobs.scheduler).
    sweep_interval: float = 3600.0
    keep_images: int = 1
    sweep_grace: float = 86400.0
    report_channel: str | None = None
    sweep_concurrency: int = 8
    admins: frozenset[str] = frozenset()  # Slack user ids (or API token names) that may act on any VM and run admin-only verbs
    allowed_channels: frozenset[str] = frozenset()  # empty: the bot acts in every channel
    # The create form's choices (handlers/shortcuts.py). Empty: the default zone only, and the price
    # table's machine types for its region (bot.slack.views.machine_type_choices).
    zones_offered: tuple[str, ...] = ()
    machine_types_offered: tuple[str, ...] = ()
    # Schedules (bot.jobs.schedule_runner): the default zone, how late a missed run may still run,
    # how long before a scheduled park/stop/suspend the owner is warned; the price table (bot.core.pricing).
    timezone: str = "UTC"
    schedule_catchup: float = 900.0
    schedule_notice: float = 1800.0
    prices: Path | None = None  # None: the bundled list-price table
    idle_hours: float = 0.0  # a running VM with no schedule and no operation for this long is reminded daily; 0: off
    metrics_token: str | None = field(default=None, repr=False)  # set: GET /metrics wants it as a bearer token

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``env`` (default: os.environ); raise SettingsError listing every problem."""
        env = os.environ if env is None else env
        problems: list[str] = []

        def required(name: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                problems.append(f"{name} is not set; see README > Configuration")
            return value

        def number(name: str, default: float, kind: type = int, *, zero_ok: bool = False) -> float:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = kind(raw)
            except ValueError:
                problems.append(f"{name}={raw!r} is not a {'whole ' if kind is int else ''}number; see README > Configuration")
                return default
            if value < 0 or (value == 0 and not zero_ok):
                limit = "0 or more" if zero_ok else "greater than 0"
                problems.append(f"{name}={raw!r} must be {limit}; see README > Configuration")
            return value

        def channel_rate(raw: str) -> float | None:
            """Slack's ~1 message/s per channel by default; "off" turns pacing off (a Slack stand-in without limits)."""
            if raw.lower() == "off":
                return None
            return float(number("VMBOT_SLACK_CHANNEL_RATE", cls.slack_channel_rate or 1.0, float))

        def ids(name: str, pattern: re.Pattern[str], example: str) -> frozenset[str]:
            values = frozenset(part.strip() for part in env.get(name, "").split(",") if part.strip())
            for value in sorted(values):
                if not pattern.match(value):
                    problems.append(f"{name}: {value!r} is not {example}; see README > Configuration")
                elif value in RESERVED_ACTOR_NAMES:
                    problems.append(f"{name}: {value!r} is a reserved name (it marks VMs nobody owns)")
            return values

        def choices(name: str, option: str) -> tuple[str, ...]:
            """A comma-separated list of zones or machine types, each checked as `/vm create` checks it."""
            values = tuple(dict.fromkeys(part.strip() for part in env.get(name, "").split(",") if part.strip()))
            for value in values:
                try:
                    check_option(option, value)
                except InvalidInput:
                    problems.append(f"{name}: {value!r} is not a {option.replace('-', ' ')} name; see README > Configuration")
            return values

        settings = cls(
            slack_bot_token=required("SLACK_BOT_TOKEN"),
            slack_signing_secret=required("SLACK_SIGNING_SECRET"),
            project=required("GOOGLE_CLOUD_PROJECT"),
            slack_app_token=env.get("SLACK_APP_TOKEN") or None,
            slack_api_url=env.get("SLACK_API_URL") or None,
            zone=env.get("VMBOT_ZONE") or cls.zone,
            machine_type=env.get("VMBOT_MACHINE_TYPE") or cls.machine_type,
            image_project=env.get("VMBOT_IMAGE_PROJECT") or cls.image_project,
            image_family=env.get("VMBOT_IMAGE_FAMILY") or cls.image_family,
            compute_endpoint=env.get("VMBOT_COMPUTE_ENDPOINT") or None,
            database_url=env.get("DATABASE_URL") or cls.database_url,
            port=int(number("PORT", cls.port)),
            workers=int(number("VMBOT_WORKERS", cls.workers)),
            max_in_flight=int(number("VMBOT_MAX_IN_FLIGHT", cls.max_in_flight)),
            operation_threads=int(number("VMBOT_OPERATION_THREADS", cls.operation_threads)),
            http_threads=int(number("VMBOT_HTTP_THREADS", cls.http_threads)),
            operation_timeout=float(number("VMBOT_OPERATION_TIMEOUT", cls.operation_timeout, float)),
            operation_lease=float(number("VMBOT_OPERATION_LEASE", cls.operation_lease, float)),
            reconcile_interval=float(number("VMBOT_RECONCILE_INTERVAL", cls.reconcile_interval, float)),
            web_port=int(number("VMBOT_WEB_PORT", cls.web_port)),
            slack_channel_rate=channel_rate(env.get("VMBOT_SLACK_CHANNEL_RATE", "").strip()),
            startup_script=Path(env.get("VMBOT_STARTUP_SCRIPT") or REPO_ROOT / "startup-script.py"),
            api_tokens=parse_api_tokens(env.get("VMBOT_API_TOKENS", ""), problems),
            api_notify_channel=env.get("VMBOT_API_NOTIFY_CHANNEL", "").strip() or None,
            log_format=(env.get("VMBOT_LOG_FORMAT") or cls.log_format).strip().lower(),
            log_level=(env.get("VMBOT_LOG_LEVEL") or cls.log_level).strip().upper(),
            sweep_interval=float(number("VMBOT_SWEEP_INTERVAL", cls.sweep_interval, float)),
            keep_images=int(number("VMBOT_KEEP_IMAGES", cls.keep_images)),
            sweep_grace=float(number("VMBOT_SWEEP_GRACE", cls.sweep_grace, float, zero_ok=True)),
            report_channel=env.get("VMBOT_REPORT_CHANNEL", "").strip() or None,
            sweep_concurrency=int(number("VMBOT_SWEEP_CONCURRENCY", cls.sweep_concurrency)),
            admins=ids("VMBOT_ADMINS", ADMIN_ID, "a Slack user id like U012AB3CD, or an API token's name"),
            allowed_channels=ids("VMBOT_ALLOWED_CHANNELS", SLACK_CHANNEL_ID, "a Slack channel id like C012AB3CD"),
            zones_offered=choices("VMBOT_ZONES", "zone"),
            machine_types_offered=choices("VMBOT_MACHINE_TYPES", "machine-type"),
            timezone=_timezone(env.get("VMBOT_TIMEZONE", "").strip() or cls.timezone, problems),
            schedule_catchup=float(number("VMBOT_SCHEDULE_CATCHUP", cls.schedule_catchup, float, zero_ok=True)),
            schedule_notice=float(number("VMBOT_SCHEDULE_NOTICE", cls.schedule_notice, float, zero_ok=True)),
            prices=_prices(env.get("VMBOT_PRICES", "").strip(), problems),
            idle_hours=float(number("VMBOT_IDLE_HOURS", cls.idle_hours, float, zero_ok=True)),
            metrics_token=env.get("VMBOT_METRICS_TOKEN", "").strip() or None,
        )
        if settings.api_notify_channel and not SLACK_CHANNEL_RE.fullmatch(settings.api_notify_channel):
            problems.append(
                f"VMBOT_API_NOTIFY_CHANNEL={settings.api_notify_channel!r} is not a Slack channel id (like C0123ABCD)"
            )
        if settings.report_channel and not SLACK_CHANNEL_RE.fullmatch(settings.report_channel):
            problems.append(f"VMBOT_REPORT_CHANNEL={settings.report_channel!r} is not a Slack channel id (like C0123ABCD)")
        if not settings.startup_script.is_file():
            problems.append(f"VMBOT_STARTUP_SCRIPT={settings.startup_script} is not a file")
        if settings.metrics_token and (len(settings.metrics_token) < API_TOKEN_MIN_LENGTH or " " in settings.metrics_token):
            problems.append(f"VMBOT_METRICS_TOKEN must be at least {API_TOKEN_MIN_LENGTH} characters, no spaces")
        problems.extend(_shape_problems(env, settings))
        if problems:
            raise SettingsError(problems)
        return settings

    @property
    def source_image(self) -> str:
        return f"projects/{self.image_project}/global/images/family/{self.image_family}"


def _timezone(name: str, problems: list[str]) -> str:
    """VMBOT_TIMEZONE: an IANA zone name, spelled canonically (schedules default to it)."""
    from bot.core.schedules import ScheduleError, parse_tz

    try:
        return parse_tz(name)
    except ScheduleError as error:
        problems.append(f"VMBOT_TIMEZONE: {error}; see README > Configuration")
        return "UTC"


def _prices(path: str, problems: list[str]) -> Path | None:
    """VMBOT_PRICES: a price file in prices.json's format, read now so a broken one stops start-up."""
    if not path:
        return None
    from bot.core.pricing import PriceTableError, load_prices

    try:
        load_prices(path)
    except PriceTableError as error:
        problems.append(f"VMBOT_PRICES: {error}; see README > Configuration")
    return Path(path)


def parse_api_tokens(raw: str, problems: list[str]) -> tuple[tuple[str, str], ...]:
    """``NAME=TOKEN[,NAME=TOKEN...]`` -> pairs; each problem names the entry, never the token itself."""
    pairs: list[tuple[str, str]] = []
    for number, entry in enumerate((item.strip() for item in raw.split(",")), start=1):
        if not entry:
            continue
        name, separator, token = (part.strip() for part in entry.partition("="))
        where = f"VMBOT_API_TOKENS entry {number}"
        if not separator:
            problems.append(f"{where} has no '=': write NAME=TOKEN pairs separated by commas")
        elif not API_ACTOR_RE.fullmatch(name):
            problems.append(
                f"{where}: {name[:40]!r} is not a valid name (lowercase letters, digits, '.', '_', '-', "
                "starting with a letter, at most 40 characters)"
            )
        elif name in RESERVED_ACTOR_NAMES:
            problems.append(f"{where}: the name {name!r} is reserved (it marks VMs nobody owns); choose another")
        elif len(token) < API_TOKEN_MIN_LENGTH or any(c.isspace() for c in token):
            problems.append(f"{where} ({name}): the token must be at least {API_TOKEN_MIN_LENGTH} characters, no spaces")
        elif name in (known for known, _ in pairs):
            problems.append(f"{where}: the name {name!r} is used twice")
        elif token in (known for _, known in pairs):
            problems.append(f"{where} ({name}): the same token is given to two names")
        else:
            pairs.append((name, token))
    return tuple(pairs)


def _shape_problems(env: Mapping[str, str], settings: Settings) -> list[str]:
    """Values that are set but cannot work, found now rather than at the first Slack or GCP call.

    Secret values are never echoed: a message names the variable and what is wrong with it.
    """
    see = "see README > Configuration"
    problems = [
        f"{name} still holds the placeholder {value.strip()!r}: fill it in at deploy time; see README > Deploy to App Engine"
        for name, value in sorted(env.items())
        if (name.startswith(("SLACK_", "VMBOT_", "GOOGLE_")) or name == "DATABASE_URL") and PLACEHOLDER.match(value.strip())
    ]
    if problems:
        return problems  # the checks below would only repeat them
    if settings.slack_bot_token and not settings.slack_bot_token.startswith("xoxb-"):
        problems.append(f"SLACK_BOT_TOKEN is not a bot token (those start with xoxb-); {see}")
    if settings.slack_app_token and not settings.slack_app_token.startswith("xapp-"):
        problems.append(f"SLACK_APP_TOKEN is not an app-level token (those start with xapp-); {see}")
    scheme = re.match(r"^([a-z0-9+.-]+)://", settings.database_url)
    if scheme is None or scheme.group(1) not in DATABASE_SCHEMES:
        found = f"it starts with {scheme.group(1)}://" if scheme else "it has no scheme://"  # never the rest: a password
        problems.append(f"DATABASE_URL must start with sqlite:/// or postgresql+psycopg:// ({found}); {see}")
    for name, url in (("SLACK_API_URL", settings.slack_api_url), ("VMBOT_COMPUTE_ENDPOINT", settings.compute_endpoint)):
        if url and not re.match(r"^https?://[^/\s]+", url):
            problems.append(f"{name}={url!r} is not an http:// or https:// URL; {see}")
    if settings.port > 65535:
        problems.append(f"PORT={settings.port} is not a TCP port (1-65535); {see}")
    if settings.log_format not in LOG_FORMATS:
        problems.append(f"VMBOT_LOG_FORMAT={settings.log_format!r} must be one of {', '.join(LOG_FORMATS)}; {see}")
    if settings.log_level not in LOG_LEVELS:
        problems.append(f"VMBOT_LOG_LEVEL={settings.log_level!r} must be one of {', '.join(LOG_LEVELS)}; {see}")
    return problems
