"""App Engine's way in: app.yaml's entrypoint, run for real (gunicorn, bot.web.wsgi:app), against the stand-ins.

gunicorn gets a socket the test has already bound and is listening on (``-b fd://N``
in place of ``-b :$PORT``), so requests simply queue until the worker is up: no
polling for a port.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from bot.settings import PLACEHOLDER, REPO_ROOT
from conftest import BOT_TOKEN, PROJECT, SIGNING_SECRET
from standins.compute import ComputeStandin
from standins.slack_api import SlackStandin
from standins.slack_driver import SlackDriver

APP_YAML = yaml.safe_load((REPO_ROOT / "app.yaml").read_text())


@dataclass
class Gunicorn:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

    def log(self) -> str:
        return self.log_path.read_text()


def start_gunicorn(env: dict[str, str], tmp_path: Path) -> Gunicorn:
    """app.yaml's entrypoint as App Engine runs it, with the port replaced by an inherited, listening socket."""
    listener = socket.create_server(("127.0.0.1", 0))
    args = shlex.split(APP_YAML["entrypoint"])
    assert args[0] == "gunicorn" and args[args.index("-b") + 1] == ":$PORT"
    args[args.index("-b") + 1] = f"fd://{listener.fileno()}"
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", *args], env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
            pass_fds=[listener.fileno()],
        )
    port = listener.getsockname()[1]
    listener.close()  # gunicorn holds its own copy
    return Gunicorn(process, f"http://127.0.0.1:{port}", log_path)


def app_engine_env(home: Path, **values: str) -> dict[str, str]:
    """app.yaml's env_variables that are not deploy-time placeholders, plus ``values``; nothing else from this machine."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "NO_GCE_CHECK": "True"}
    env.update({k: str(v) for k, v in APP_YAML["env_variables"].items() if not PLACEHOLDER.match(str(v))})
    return {**env, **values}


@pytest.fixture
def gunicorn(gcp: ComputeStandin, slack: SlackStandin, tmp_path: Path) -> Iterator[Gunicorn]:
    env = app_engine_env(
        tmp_path,
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        GOOGLE_CLOUD_PROJECT=PROJECT,  # App Engine sets it
        SLACK_API_URL=slack.api_url,
        VMBOT_COMPUTE_ENDPOINT=gcp.url,
        DATABASE_URL=f"sqlite:///{tmp_path / 'vmbot.db'}",
    )
    server = start_gunicorn(env, tmp_path)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


def test_app_yaml_fits_a_bot_with_background_work() -> None:
    assert re.fullmatch(r"python3(1[1-9]|[2-9]\d)", APP_YAML["runtime"])
    args = shlex.split(APP_YAML["entrypoint"])
    assert args[-1] == "bot.web.wsgi:app" and args[args.index("-w") + 1] == "1" and "--preload" not in args
    assert APP_YAML["manual_scaling"]["instances"] == 1 and APP_YAML["instance_class"].startswith("B")
    assert "automatic_scaling" not in APP_YAML and "basic_scaling" not in APP_YAML
    secrets = {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "DATABASE_URL"}
    for name, value in APP_YAML["env_variables"].items():
        assert name not in secrets or PLACEHOLDER.match(value), f"{name} must be a deploy-time placeholder"
    assert APP_YAML["env_variables"]["VMBOT_LOG_FORMAT"] == "json"


def test_gunicorn_serves_healthz_and_a_signed_slash_command_that_runs_to_the_end(
    gunicorn: Gunicorn, slack: SlackStandin, gcp: ComputeStandin
) -> None:
    health = requests.get(f"{gunicorn.base_url}/healthz", timeout=60)
    assert health.status_code == 200 and health.json() == {"ok": True}

    with SlackDriver(f"{gunicorn.base_url}/slack/events", SIGNING_SECRET, slack) as driver:
        ack = driver.command("create wsgi-vm")
        assert ack.status == 200 and "Creating `wsgi-vm`" in ack.text
        forged = driver.send(b"command=%2Fvm&text=list", {"X-Slack-Signature": "v0=bad", "X-Slack-Request-Timestamp": "1"})
        assert forged.status == 401

    # The work runs on the job runner inside the gunicorn worker: the thread root is updated at the end.
    assert slack.wait_for(lambda: any(m.edits for m in slack.messages("C100")), timeout=60), gunicorn.log()
    instance = gcp.instance(PROJECT, "us-central1-a", "wsgi-vm")
    assert instance is not None and instance["status"] == "RUNNING"

    assert gunicorn.stop() == 0
    lines = [json.loads(line) for line in gunicorn.log().splitlines() if line.startswith("{")]
    ours = [line for line in lines if line["logger"] == "bot.core.workflows"]
    assert [line["message"] for line in ours] == ["create of wsgi-vm started", "create of wsgi-vm ended: succeeded"]
    for line in ours:
        assert line["severity"] == "INFO" and line["time"].endswith("Z")
        assert (line["vm"], line["slack_user"], type(line["operation_id"])) == ("wsgi-vm", "U100", int)
    assert any(line["logger"] == "gunicorn.error" for line in lines), "the worker's gunicorn lines are JSON too"
    assert BOT_TOKEN not in gunicorn.log() and SIGNING_SECRET not in gunicorn.log()


def test_gunicorn_stops_instead_of_restarting_a_worker_that_cannot_start(tmp_path: Path) -> None:
    server = start_gunicorn(app_engine_env(tmp_path, SLACK_SIGNING_SECRET=SIGNING_SECRET, GOOGLE_CLOUD_PROJECT=PROJECT), tmp_path)
    try:
        code = server.process.wait(timeout=60)
    finally:
        server.process.kill()
    log = server.log()
    assert code == 4, log  # gunicorn's "App failed to load"
    assert log.count("SLACK_BOT_TOKEN is not set; see README > Configuration") == 1, log
    assert "Traceback" not in log
