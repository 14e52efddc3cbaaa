"""A misconfigured start fails fast: one clear line per problem, exit code 2, nothing started.

Through the real entry point, as a subprocess: ``python -m bot`` (app.yaml's view is in test_app_engine.py).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sqlite3
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bot import __version__, service
from bot.settings import REPO_ROOT, Settings, SettingsError
from conftest import BOT_TOKEN, PROJECT, SIGNING_SECRET
from standins.compute import ComputeStandin
from standins.slack_api import SlackStandin

SEE = "see README > Configuration"


def bare_env(**values: str) -> dict[str, str]:
    """Only what a Python process needs, plus ``values``: nothing from the machine's own settings."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), "NO_GCE_CHECK": "True"}
    return {**env, **values}


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)


def test_python_m_bot_with_nothing_set_names_each_missing_setting() -> None:
    result = run([sys.executable, "-m", "bot"], bare_env())
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"SLACK_BOT_TOKEN is not set; {SEE}",
        f"SLACK_SIGNING_SECRET is not set; {SEE}",
        f"GOOGLE_CLOUD_PROJECT is not set; {SEE}",
    ]
    assert result.stdout == ""


def test_python_m_bot_reports_every_invalid_value_at_once(tmp_path: Path) -> None:
    env = bare_env(
        SLACK_BOT_TOKEN="xapp-1-swapped",
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        GOOGLE_CLOUD_PROJECT=PROJECT,
        SLACK_APP_TOKEN="xoxb-swapped",
        PORT="http",
        VMBOT_WORKERS="0",
        VMBOT_LOG_FORMAT="yaml",
        DATABASE_URL="mysql://vmbot:hunter2@db/vmbot",
    )
    result = run([sys.executable, "-m", "bot"], env)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"PORT='http' is not a whole number; {SEE}",
        f"VMBOT_WORKERS='0' must be greater than 0; {SEE}",
        f"SLACK_BOT_TOKEN is not a bot token (those start with xoxb-); {SEE}",
        f"SLACK_APP_TOKEN is not an app-level token (those start with xapp-); {SEE}",
        f"DATABASE_URL must start with sqlite:/// or postgresql+psycopg:// (it starts with mysql://); {SEE}",
        f"VMBOT_LOG_FORMAT='yaml' must be one of text, json; {SEE}",
    ]
    assert "hunter2" not in result.stderr and "swapped" not in result.stderr, "secrets are never echoed"


@pytest.fixture
def quiet_root_logger() -> Iterator[None]:
    """service.build() sets up logging; put the root logger back afterwards."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)


def test_an_unreachable_database_is_one_line_without_its_password(quiet_root_logger: None) -> None:
    env = {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "VMBOT_COMPUTE_ENDPOINT": "http://127.0.0.1:9",
        # Port 9 (discard) refuses connections at once.
        "DATABASE_URL": "postgresql+psycopg://vmbot:hunter2@127.0.0.1:9/vmbot?connect_timeout=5",
    }
    with pytest.raises(SettingsError) as raised:
        service.build(env)
    (line,) = raised.value.problems
    assert line.startswith("DATABASE_URL: cannot use the database: connection failed:") and line.endswith(SEE)
    assert "\n" not in line and "hunter2" not in line


def test_missing_google_credentials_are_one_line(quiet_root_logger: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # not on GCE: do not ask the metadata server
    monkeypatch.setenv("HOME", "/nonexistent")  # no gcloud application-default credentials
    env = {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET, "GOOGLE_CLOUD_PROJECT": PROJECT,
           "DATABASE_URL": "sqlite://"}
    with pytest.raises(SettingsError) as raised:
        service.build(env)
    (line,) = raised.value.problems
    assert line.startswith("Google credentials were not found") and "gcloud auth application-default login" in line


def test_python_m_bot_serve_is_bare_python_m_bot() -> None:
    result = run([sys.executable, "-m", "bot", "serve"], bare_env(SLACK_SIGNING_SECRET=SIGNING_SECRET))
    assert result.returncode == 2
    missing = ["SLACK_BOT_TOKEN", "GOOGLE_CLOUD_PROJECT"]
    assert result.stderr.splitlines() == [f"{name} is not set; {SEE}" for name in missing]


def test_version_help_and_a_wrong_command() -> None:
    version = run([sys.executable, "-m", "bot", "--version"], bare_env())
    assert (version.returncode, version.stdout.strip()) == (0, f"vmbot {__version__}")
    assert __version__ == tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    usage = run([sys.executable, "-m", "bot", "--help"], bare_env())
    assert usage.returncode == 0 and all(command in usage.stdout for command in ("serve", "demo", "migrate"))
    wrong = run([sys.executable, "-m", "bot", "srve"], bare_env())
    assert wrong.returncode == 2 and "invalid choice: 'srve'" in wrong.stderr and wrong.stdout == ""


def test_migrate_help_explains_and_migrates_nothing(tmp_path: Path) -> None:
    database = tmp_path / "vmbot.db"
    result = run([sys.executable, "-m", "bot", "migrate", "--help"], bare_env(DATABASE_URL=f"sqlite:///{database}"))
    assert result.returncode == 0 and "DATABASE_URL" in result.stdout
    assert not database.exists()


def test_migrate_brings_a_new_database_to_head(tmp_path: Path) -> None:
    database = tmp_path / "vmbot.db"
    result = run([sys.executable, "-m", "bot", "migrate"], bare_env(DATABASE_URL=f"sqlite:///{database}"))
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchone() is not None


@pytest.mark.parametrize("name", ["SLACK_BOT_TOKEN", "DATABASE_URL"])
def test_a_placeholder_left_from_app_yaml_is_refused(name: str) -> None:
    env = {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET, "GOOGLE_CLOUD_PROJECT": PROJECT}
    env[name] = "${%s}" % name
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(env)
    assert raised.value.problems == [
        f"{name} still holds the placeholder '${{{name}}}': fill it in at deploy time; see README > Deploy to App Engine"
    ]


def test_python_m_bot_serves_healthz_and_stops_cleanly_on_sigterm(
    gcp: ComputeStandin, slack: SlackStandin, tmp_path: Path
) -> None:
    """The healthy start, for contrast: the same settings style, the bot up, SIGTERM ends it with 0."""
    with socket.socket() as probe:  # a free port for PORT
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = bare_env(
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        GOOGLE_CLOUD_PROJECT=PROJECT,
        SLACK_API_URL=slack.api_url,
        VMBOT_COMPUTE_ENDPOINT=gcp.url,
        DATABASE_URL=f"sqlite:///{tmp_path / 'vmbot.db'}",
        PORT=str(port),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "bot"], env=env, cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True
    )
    try:
        seen = []
        for line in process.stderr:  # the bot says so once it listens
            seen.append(line)
            if "listening on port" in line:
                break
        assert f"vmbot {__version__} in HTTP mode, listening on port {port}" in seen[-1], seen
        health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert health.status_code == 200 and health.json()["ok"] is True and health.json()["version"] == __version__
        assert health.json()["database"] == "reachable"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
        process.wait()
