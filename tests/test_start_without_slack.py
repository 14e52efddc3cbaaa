"""A deploy during a Slack incident: the real `python -m bot`, started while every Slack call answers 500,
starts, resumes the park a killed process left half-done, runs its GCP steps, and posts the thread's
result once Slack answers again."""

from __future__ import annotations

import time

from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import PROJECT, SIGNING_SECRET
from durable_support import CHANNEL, until
from standins.bot_process import bot_environment, free_port
from standins.compute import ComputeStandin
from standins.slack_api import SlackStandin
from standins.slack_driver import SlackDriver
from storage.models import OperationState, Verb, VmState
from storage.store import Store
from test_kill import LEASE, BotProcess, held_op, waited_on


@pytest.fixture
def bot(gcp: ComputeStandin, slack: SlackStandin, tmp_path: Path) -> Iterator[BotProcess]:
    port = free_port()
    env = bot_environment(
        slack=slack, gcp=gcp, database=tmp_path / "vmbot.db", port=port, project=PROJECT,
        signing_secret=SIGNING_SECRET, VMBOT_OPERATION_LEASE=LEASE, VMBOT_SLACK_CHANNEL_RATE="off",
    )  # fmt: skip
    process = BotProcess(env)
    process.port = port  # type: ignore[attr-defined]
    try:
        yield process
    finally:
        process.stop()
        gcp.release_operations()



def test_the_bot_starts_while_slack_is_down_resumes_its_gcp_work_and_posts_when_slack_is_back(
    bot: BotProcess, gcp: ComputeStandin, slack: SlackStandin
) -> None:
    gcp.operation_seconds = 0.01
    store = Store.from_url(bot.env["DATABASE_URL"])
    bot.start()
    driver = SlackDriver(f"http://127.0.0.1:{bot.port}/slack/events", SIGNING_SECRET, slack)  # type: ignore[attr-defined]
    try:
        driver.command("create vm-k")
        assert until(lambda: (store.vm("vm-k") or None) and store.vm("vm-k").state is VmState.RUNNING, 30), bot.log()
        gcp.hold_operations()
        driver.click("park_confirm", blocks=driver.command("park vm-k").blocks)
        stop = held_op(gcp, "stop", "/instances/vm-k")
        waited_on(gcp, stop)
        bot.kill()
        killed = time.monotonic()

        slack.outage()  # every Slack method, auth.test included, answers 500
        bot.start()  # before the fix: Bolt's auth.test raised and the process exited
        waited_on(gcp, stop, since=killed)
        gcp.release_operations()
        park = next(op for op in store.operations_for("vm-k") if op.verb is Verb.PARK)
        assert until(lambda: store.operation(park.id).state is OperationState.SUCCEEDED, 30), bot.log()
        assert store.vm("vm-k").state is VmState.PARKED
        assert store.operation(park.id).reported_at is None

        slack.outage_over()
        assert until(lambda: store.operation(park.id).reported_at is not None, 30), bot.log()
        thread = slack.thread(CHANNEL, store.operation(park.id).thread_ts)
        assert sum("is parked:" in m.text for m in thread[1:]) == 1, [m.text for m in thread]
        assert any(call.method == "auth.test" and call.ok for call in slack.calls), "the token was checked once Slack was back"
    finally:
        driver.close()
        store.engine.dispose()
