"""/readyz names the database, Slack and GCP, each with its status and last error, from a check at most
60 s old; it answers 503 when any of them fails. Outages are real: Slack's stand-in failing auth.test,
the GCP stand-in stopped, a database nobody listens for."""

from __future__ import annotations

import socket
import threading
import time
import tomllib
from pathlib import Path
from types import SimpleNamespace

import requests
from conftest import Running

from bot import __version__
from bot.observability.readiness import Readiness
from bot.web.observability import describer, probes
from standins.compute import ComputeStandin
from standins.slack_api import SlackStandin
from storage.store import Store


def readyz(running: Running) -> tuple[int, dict]:
    answer = requests.get(f"{running.base_url}/readyz", timeout=30)
    return answer.status_code, answer.json()


def test_ready_when_all_three_answer(running: Running) -> None:
    status, body = readyz(running)
    assert status == 200, body
    assert body["ok"] is True and body["version"] == __version__
    for name in ("database", "slack", "gcp"):
        assert body[name]["status"] == "ok" and body[name]["last_error"] is None, name
        assert body[name]["checked_at"].endswith("Z")


def test_slack_down_is_503_naming_slack(running: Running, slack: SlackStandin) -> None:
    slack.fail("auth.test", status=503)
    status, body = readyz(running)
    assert status == 503
    assert body["ok"] is False
    assert body["slack"]["status"] == "failing" and "service_unavailable" in body["slack"]["last_error"]
    assert body["database"]["status"] == "ok" and body["gcp"]["status"] == "ok"


def test_gcp_down_is_503_naming_gcp(running: Running, gcp: ComputeStandin) -> None:
    gcp.stop()
    status, body = readyz(running)
    assert status == 503
    assert body["gcp"]["status"] == "failing" and "could not reach GCP" in body["gcp"]["last_error"]
    assert body["slack"]["status"] == "ok" and body["database"]["status"] == "ok"


def test_database_down_is_503_naming_the_database(running: Running) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nowhere = Store.from_url(f"postgresql+psycopg://vmbot@127.0.0.1:{port}/test", create=False)
    bot = running.bot
    deps = SimpleNamespace(client=bot.client, metrics=bot.metrics, store=nowhere, compute=bot.compute, settings=bot.settings)
    ready, body = Readiness(probes(deps), describe=describer(deps)).report()  # type: ignore[arg-type]
    assert not ready
    assert body["database"]["status"] == "failing" and "OperationalError" in body["database"]["last_error"]
    assert body["slack"]["status"] == "ok" and body["gcp"]["status"] == "ok"


def test_a_check_is_reused_for_60_s_then_probed_again() -> None:
    now = [1000.0]
    calls = {"slack": 0}
    down = threading.Event()

    def slack() -> None:
        calls["slack"] += 1
        if down.is_set():
            raise ConnectionError("Slack did not answer")

    readiness = Readiness({"database": lambda: None, "slack": slack, "gcp": lambda: None}, clock=lambda: now[0])
    assert readiness.report()[0] is True and calls["slack"] == 1
    down.set()
    now[0] += 59
    assert readiness.report()[0] is True and calls["slack"] == 1  # the answer of 59 s ago still stands
    now[0] += 1
    ready, body = readiness.report()
    assert not ready and calls["slack"] == 2
    assert body["slack"] == {**body["slack"], "status": "failing", "last_error": "Slack did not answer"}
    down.clear()
    now[0] += 60
    ready, body = readiness.report()
    assert ready and body["slack"]["status"] == "ok"
    assert body["slack"]["last_error"] == "Slack did not answer" and body["slack"]["last_error_at"]  # when it last failed


def test_a_probe_that_hangs_fails_after_its_timeout() -> None:
    release = threading.Event()
    readiness = Readiness({"database": lambda: release.wait(30) and None, "slack": lambda: None}, timeout=0.2)
    started = time.monotonic()
    ready, body = readiness.report()
    release.set()
    assert time.monotonic() - started < 5
    assert not ready and body["database"]["last_error"] == "no answer within 0.2 s"
    assert body["slack"]["status"] == "ok"


def test_the_version_is_pyprojects() -> None:
    pyproject = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    assert __version__ == pyproject["project"]["version"]
