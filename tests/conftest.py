"""Fixtures: the bot served over real HTTP, talking to local stand-ins for Slack and Compute Engine."""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from bot.app import VmBot, create_app
from bot.gcp.compute import Compute
from bot.web.server import make_http_server
from bot.settings import Settings
from standins.compute import ComputeStandin
from standins.slack_api import SlackStandin
from standins.slack_driver import SlackDriver

# Read before the autouse fixture below clears VMBOT_* variables.
POSTGRES_URL = os.environ.get("VMBOT_TEST_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")
PROJECT = "vmbot-test"
SIGNING_SECRET = "test-signing-secret"
BOT_TOKEN = "xoxb-standin"


@pytest.fixture(autouse=True)
def _no_real_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see a real Slack or GCP setting from the machine they run on."""
    for name in list(os.environ):
        if name.startswith(("SLACK_", "GOOGLE_", "VMBOT_", "CLOUDSDK_")) or name in ("DATABASE_URL", "PORT"):
            monkeypatch.delenv(name)


@pytest.fixture
def gcp() -> Iterator[ComputeStandin]:
    with ComputeStandin() as standin:
        yield standin


@pytest.fixture
def slack() -> Iterator[SlackStandin]:
    with SlackStandin(bot_token=BOT_TOKEN) as standin:
        yield standin


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SQLite by default; ``@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)``
    runs a test on both databases."""
    if getattr(request, "param", "sqlite") == "postgresql":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path / 'vmbot.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh schema on the real PostgreSQL server, dropped afterwards.

    There is no skip: a run that expects PostgreSQL and cannot reach it fails
    loudly (`.ci/run` starts the server).
    """
    from sqlalchemy import create_engine, text

    schema = f"t_{secrets.token_hex(6)}"
    admin = create_engine(POSTGRES_URL)
    try:
        with admin.begin() as connection:
            connection.execute(text(f"CREATE SCHEMA {schema}"))
    except Exception as error:  # noqa: BLE001 - turned into one clear failure
        pytest.fail(f"PostgreSQL at {POSTGRES_URL} is not reachable ({error}); start it or set VMBOT_TEST_POSTGRES_URL")
    separator = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    with admin.begin() as connection:
        connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The store suite runs on both databases the bot supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'vmbot.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def settings(gcp: ComputeStandin, slack: SlackStandin, database_url: str) -> Settings:
    return Settings(
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        project=PROJECT,
        slack_api_url=slack.api_url,
        compute_endpoint=gcp.url,
        database_url=database_url,
        workers=4,
        slack_channel_rate=None,  # the Slack stand-in has no channel limit unless a test sets one
    )


def fast_compute(settings: Settings) -> Compute:
    """The production adapter, with retry back-off shortened so fault tests stay quick."""
    return Compute(settings.project, endpoint=settings.compute_endpoint, retry_initial=0.01, retry_deadline=10)


@dataclass
class Running:
    bot: VmBot
    events_url: str
    base_url: str

    def settle(self, timeout: float = 60) -> None:
        """Until every job the bot was given has ended, and the jobs those started (bot.runner.drain)."""
        assert self.bot.runner.drain(timeout=timeout), "the bot's background work did not finish"
        assert self.bot.outbox.drain(timeout=timeout), "the bot's Slack posts did not finish"


@pytest.fixture
def running(settings: Settings) -> Iterator[Running]:
    """The bot served over HTTP on a free port, as `python -m bot` serves it."""
    bot = create_app(settings, compute=fast_compute(settings))
    server = make_http_server(bot, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        yield Running(bot, f"{base}/slack/events", base)
    finally:
        server.shutdown()
        server.server_close()
        bot.runner.drain(timeout=30)
        bot.shutdown()


@pytest.fixture
def driver(running: Running, slack: SlackStandin) -> Iterator[SlackDriver]:
    slack_driver = SlackDriver(running.events_url, SIGNING_SECRET, slack)
    yield slack_driver
    slack_driver.close()


def create_vm(driver: SlackDriver, running: Running, name: str = "vm-a") -> None:
    """``/vm create NAME``, and its work to the end."""
    driver.command(f"create {name}")
    running.settle()


def park_vm(driver: SlackDriver, running: Running, name: str = "vm-a") -> None:
    """``/vm park NAME``, its Park button pressed, and its work to the end."""
    driver.click("park_confirm", blocks=driver.command(f"park {name}").blocks)
    running.settle()


def restore_vm(driver: SlackDriver, running: Running, name: str = "vm-a") -> None:
    """``/vm restore NAME``, and its work to the end."""
    driver.command(f"restore {name}")
    running.settle()


__all__ = ["PROJECT", "Running", "create_vm", "fast_compute", "park_vm", "replace", "restore_vm"]
