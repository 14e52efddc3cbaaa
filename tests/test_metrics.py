"""GET /metrics: Prometheus text that prometheus-client's own parser reads, and counters that move
when the bot works (a park through Slack, a GCP 404, a Slack error, a sweep)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest
import requests
from conftest import Running, create_vm, fast_compute, park_vm, restore_vm
from prometheus_client.parser import text_string_to_metric_families
from slack_sdk.errors import SlackApiError

from bot.app import create_app
from bot.settings import Settings, SettingsError
from bot.web.server import make_http_server
from standins.slack_api import SlackStandin
from standins.slack_driver import SlackDriver
from storage.models import utcnow

METRICS_TOKEN = "metrics-token-0123456789"


def scrape(base_url: str, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics by (name, sorted labels), as prometheus-client parses it."""
    answer = requests.get(f"{base_url}/metrics", headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_a_park_moves_the_operation_gcp_and_slack_counters(running: Running, driver: SlackDriver) -> None:
    create_vm(driver, running)
    before = scrape(running.base_url)
    assert value(before, "vmbot_operations_ended_total", verb="create", outcome="succeeded") == 1
    assert value(before, "vmbot_operations_ended_total", verb="park", outcome="succeeded") == 0

    park_vm(driver, running)
    after = scrape(running.base_url)

    assert value(after, "vmbot_operations_started_total", verb="park") == 1
    assert value(after, "vmbot_operations_ended_total", verb="park", outcome="succeeded") == 1
    assert value(after, "vmbot_operation_duration_seconds_count", verb="park") == 1
    assert value(after, "vmbot_operation_duration_seconds_sum", verb="park") > 0
    assert value(after, "vmbot_operation_duration_seconds_bucket", verb="park", le="+Inf") == 1
    # The park stopped the VM, imaged its disk and deleted it: one call each.
    for call in ("instances.stop", "images.insert", "instances.delete"):
        assert value(after, "vmbot_gcp_calls_total", call=call) - value(before, "vmbot_gcp_calls_total", call=call) == 1
    # Its thread in Slack: posts and updates, each counted by method.
    posted = value(after, "vmbot_slack_calls_total", method="chat.postMessage")
    assert posted > value(before, "vmbot_slack_calls_total", method="chat.postMessage")
    assert value(after, "vmbot_jobs_pending") == 0  # settled: nothing queued or running


def test_errors_are_counted_by_kind(running: Running, slack: SlackStandin) -> None:
    bot = running.bot
    assert bot.compute.get_instance("us-central1-a", "no-such-vm") is None  # GCP answers 404
    with pytest.raises(SlackApiError):
        bot.client.auth_test(token="xoxb-not-a-token-slack-knows")
    slack.fail("auth.test", status=503, times=1)
    with contextlib.suppress(SlackApiError):  # whether the client retries a 503 or not, it met one
        bot.client.auth_test()
    samples = scrape(running.base_url)
    assert value(samples, "vmbot_gcp_errors_total", call="instances.get", kind="notFound") == 1
    assert value(samples, "vmbot_slack_errors_total", method="auth.test", kind="invalid_auth") == 1
    assert value(samples, "vmbot_slack_errors_total", method="auth.test", kind="http_503") == 1
    assert value(samples, "vmbot_slack_calls_total", method="auth.test") >= 2


def test_a_sweep_counts_its_results(running: Running, driver: SlackDriver) -> None:
    create_vm(driver, running)
    park_vm(driver, running)
    restore_vm(driver, running)
    park_vm(driver, running)  # the first park's image is dirty now: the sweeper's business
    sweeper = running.bot.sweeper
    sweeper.sweep(dry_run=True)
    in_grace = sweeper.sweep()
    later = sweeper.sweep(now=utcnow() + timedelta(seconds=sweeper.grace + 3600))
    samples = scrape(running.base_url)
    assert value(samples, "vmbot_sweeps_total", trigger="manual", result="dry_run") == 1
    assert value(samples, "vmbot_sweeps_total", trigger="manual", result="swept") == 2
    kept = sum(tally.count for report in (in_grace, later) for tally in report.kept.values())
    assert in_grace.deleted.count == 0 and kept >= 1 and later.deleted.count == 1
    assert value(samples, "vmbot_sweep_images_total", result="kept") == kept
    assert value(samples, "vmbot_sweep_images_total", result="deleted") == 1
    assert value(samples, "vmbot_sweep_images_total", result="failed") == 0


def test_each_app_counts_only_its_own(settings: Settings, running: Running, driver: SlackDriver) -> None:
    other = create_app(settings, compute=fast_compute(settings))
    try:
        create_vm(driver, running)
        assert other.metrics.registry is not running.bot.metrics.registry
        assert other.metrics.registry.get_sample_value(
            "vmbot_operations_ended_total", {"verb": "create", "outcome": "succeeded"}
        ) is None
    finally:
        other.shutdown()


@pytest.fixture
def guarded(settings: Settings) -> Iterator[str]:
    """The bot with VMBOT_METRICS_TOKEN set, served on a free port; yields its base URL."""
    bot = create_app(replace(settings, metrics_token=METRICS_TOKEN), compute=fast_compute(settings))
    server = make_http_server(bot, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        bot.shutdown()


def test_with_a_metrics_token_only_its_bearer_gets_the_metrics(guarded: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": METRICS_TOKEN}):
        answer = requests.get(f"{guarded}/metrics", headers=headers, timeout=10)
        assert answer.status_code == 401, headers
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        assert "VMBOT_METRICS_TOKEN" in answer.json()["message"]
        assert METRICS_TOKEN not in answer.text
    samples = scrape(guarded, Authorization=f"Bearer {METRICS_TOKEN}")
    assert ("vmbot_jobs_pending", ()) in samples
    assert requests.post(f"{guarded}/metrics", timeout=10).status_code == 405


def test_a_short_metrics_token_is_a_settings_problem() -> None:
    env = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "GOOGLE_CLOUD_PROJECT": "p",
           "VMBOT_METRICS_TOKEN": "short"}  # fmt: skip
    with pytest.raises(SettingsError) as error:
        Settings.from_env(env)
    assert any("VMBOT_METRICS_TOKEN" in problem and "short" not in problem for problem in error.value.problems)
    assert Settings.from_env({**env, "VMBOT_METRICS_TOKEN": METRICS_TOKEN}).metrics_token == METRICS_TOKEN
    assert METRICS_TOKEN not in repr(Settings.from_env({**env, "VMBOT_METRICS_TOKEN": METRICS_TOKEN}))


def test_schedule_runs_have_their_counter(running: Running) -> None:
    """The schedules' runner counts each run with ``bot.metrics.schedule_run(action, outcome)``."""
    running.bot.metrics.schedule_run("park", "started")
    running.bot.metrics.schedule_run("park", "skipped")
    running.bot.metrics.schedule_run("park", "started")
    samples = scrape(running.base_url)
    assert value(samples, "vmbot_schedule_runs_total", action="park", outcome="started") == 2
    assert value(samples, "vmbot_schedule_runs_total", action="park", outcome="skipped") == 1
