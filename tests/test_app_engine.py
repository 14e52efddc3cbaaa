"""App Engine's way in: app.yaml's entrypoint, run for real (``python -m bot serve``), against the stand-ins.

It is the command a local run uses, so this is also the start-up every deployment shares (the Dockerfile's
``vmbot serve`` is the same function: tests/test_packaging.py checks it is the console script).
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
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from bot import __version__
from bot.settings import PLACEHOLDER, REPO_ROOT
from conftest import BOT_TOKEN, PROJECT, SIGNING_SECRET
from durable_support import until
from standins.compute import ComputeStandin
from standins.slack_api import SlackStandin
from standins.slack_driver import SlackDriver

APP_YAML = yaml.safe_load((REPO_ROOT / "app.yaml").read_text())


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_listening(self) -> None:
        """Until the bot says it listens (after start-up: settings, database, migrations)."""
        deadline = time.monotonic() + 60
        while "listening on port" not in self.log():
            assert self.process.poll() is None and time.monotonic() < deadline, self.log()
            time.sleep(0.05)


def entrypoint() -> list[str]:
    """app.yaml's entrypoint, with this interpreter as `python` (App Engine's is the runtime's own)."""
    args = shlex.split(APP_YAML["entrypoint"])
    assert args[:3] == ["python", "-m", "bot"], args
    return [sys.executable, *args[1:]]


def start_entrypoint(env: dict[str, str], tmp_path: Path) -> Served:
    """app.yaml's entrypoint as App Engine runs it: PORT set, the log to a file."""
    with socket.socket() as probe:  # a free port for PORT, as App Engine picks one
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log_path = tmp_path / "vmbot.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            entrypoint(), env={**env, "PORT": str(port)}, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT
        )
    return Served(process, f"http://127.0.0.1:{port}", log_path)


def app_engine_env(home: Path, **values: str) -> dict[str, str]:
    """app.yaml's env_variables that are not deploy-time placeholders, plus ``values``; nothing else from this machine."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "NO_GCE_CHECK": "True"}
    env.update({k: str(v) for k, v in APP_YAML["env_variables"].items() if not PLACEHOLDER.match(str(v))})
    return {**env, **values}


@pytest.fixture
def served(gcp: ComputeStandin, slack: SlackStandin, tmp_path: Path) -> Iterator[Served]:
    env = app_engine_env(
        tmp_path,
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        GOOGLE_CLOUD_PROJECT=PROJECT,  # App Engine sets it
        SLACK_API_URL=slack.api_url,
        VMBOT_COMPUTE_ENDPOINT=gcp.url,
        DATABASE_URL=f"sqlite:///{tmp_path / 'vmbot.db'}",
    )
    server = start_entrypoint(env, tmp_path)
    try:
        server.wait_listening()
        yield server
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


def test_app_yaml_fits_a_bot_with_background_work() -> None:
    assert re.fullmatch(r"python3(1[1-9]|[2-9]\d)", APP_YAML["runtime"])
    # The command a local run uses (one process: the background lives in it); App Engine sets PORT.
    assert shlex.split(APP_YAML["entrypoint"]) == ["python", "-m", "bot", "serve"]
    assert APP_YAML["manual_scaling"]["instances"] == 1 and APP_YAML["instance_class"].startswith("B")
    assert "automatic_scaling" not in APP_YAML and "basic_scaling" not in APP_YAML
    secrets = {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "DATABASE_URL"}
    for name, value in APP_YAML["env_variables"].items():
        assert name not in secrets or PLACEHOLDER.match(value), f"{name} must be a deploy-time placeholder"
    assert APP_YAML["env_variables"]["VMBOT_LOG_FORMAT"] == "json"


def test_the_entrypoint_serves_healthz_and_a_signed_slash_command_that_runs_to_the_end(
    served: Served, slack: SlackStandin, gcp: ComputeStandin
) -> None:
    health = requests.get(f"{served.base_url}/healthz", timeout=60)
    assert health.status_code == 200 and health.json()["ok"] is True and health.json()["version"] == __version__
    assert health.json()["database"] == "reachable"

    with SlackDriver(f"{served.base_url}/slack/events", SIGNING_SECRET, slack) as driver:
        ack = driver.command("create wsgi-vm")
        assert ack.status == 200 and "Creating `wsgi-vm`" in ack.text
        forged = driver.send(b"command=%2Fvm&text=list", {"X-Slack-Signature": "v0=bad", "X-Slack-Request-Timestamp": "1"})
        assert forged.status == 401

    # The work runs on the job runner inside the serving process: the thread root is updated at the end.
    assert slack.wait_for(lambda: any(m.edits for m in slack.messages("C100")), timeout=60), served.log()
    # A graceful stop hands unfinished work over rather than waiting for it: stop once this process has ended it.
    # (The log is a file: nothing announces a line, so it is read until the line is there.)
    assert until(lambda: "create of wsgi-vm ended" in served.log(), timeout=60), served.log()
    instance = gcp.instance(PROJECT, "us-central1-a", "wsgi-vm")
    assert instance is not None and instance["status"] == "RUNNING"

    assert served.stop() == 0
    lines = [json.loads(line) for line in served.log().splitlines() if line.startswith("{")]
    ours = [line for line in lines if line["logger"] == "bot.core.workflows"]
    assert [line["message"] for line in ours] == ["create of wsgi-vm started", "create of wsgi-vm ended: succeeded"]
    for line in ours:
        assert line["severity"] == "INFO" and line["time"].endswith("Z")
        assert (line["vm"], line["slack_user"], type(line["operation_id"])) == ("wsgi-vm", "U100", int)
    assert len(lines) == len(served.log().splitlines()), "every line is JSON, the server's own too"
    assert "vmbot stopped" in [line["message"] for line in lines], "SIGTERM ran the background's stop"
    assert BOT_TOKEN not in served.log() and SIGNING_SECRET not in served.log()


def test_the_entrypoint_with_a_bad_environment_exits_2_with_one_line_per_problem(tmp_path: Path) -> None:
    env = app_engine_env(tmp_path, SLACK_SIGNING_SECRET=SIGNING_SECRET, GOOGLE_CLOUD_PROJECT=PROJECT)
    server = start_entrypoint(env, tmp_path)
    try:
        code = server.process.wait(timeout=60)
    finally:
        server.process.kill()
    log = server.log()
    assert code == 2, log
    assert log.splitlines() == ["SLACK_BOT_TOKEN is not set; see README > Configuration"], log
