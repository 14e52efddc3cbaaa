"""Two real `python -m bot` processes on PostgreSQL: one is frozen (SIGSTOP) past its lease in the middle
of a park, the other takes the park over and ends it; when the frozen one wakes up it stops at its next
write, so GCP sees each step once and the thread gets one result."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import PROJECT, SIGNING_SECRET
from durable_support import CHANNEL, gcp_operations, mutations, until
from standins.bot_process import bot_environment, free_port
from standins.compute import ComputeStandin
from standins.slack_api import SlackStandin
from standins.slack_driver import SlackDriver
from storage.models import OperationState, Verb, VmState
from storage.store import Store
from test_kill import BotProcess, held_op, waited_on


def _process(slack: SlackStandin, gcp: ComputeStandin, database_url: str, tmp_path: Path) -> BotProcess:
    port = free_port()
    env = bot_environment(
        slack=slack, gcp=gcp, database=tmp_path / "unused.db", port=port, project=PROJECT,
        signing_secret=SIGNING_SECRET, VMBOT_OPERATION_LEASE="1", VMBOT_SLACK_CHANNEL_RATE="off",
        DATABASE_URL=database_url,
    )  # fmt: skip
    process = BotProcess(env)
    process.port = port  # type: ignore[attr-defined]
    return process


@pytest.fixture
def replicas(gcp: ComputeStandin, slack: SlackStandin, postgres_url: str, tmp_path: Path) -> Iterator[list[BotProcess]]:
    processes = [_process(slack, gcp, postgres_url, tmp_path) for _ in range(2)]
    try:
        yield processes
    finally:
        for process in processes:
            if process.proc is not None and process.proc.poll() is None:
                process.proc.send_signal(signal.SIGCONT)
            process.stop()
        gcp.release_operations()



def test_a_replica_frozen_past_its_lease_does_not_run_the_park_a_second_time(
    replicas: list[BotProcess], gcp: ComputeStandin, slack: SlackStandin, postgres_url: str
) -> None:
    frozen, other = replicas
    gcp.operation_seconds = 0.01
    store = Store.from_url(postgres_url)
    frozen.start()
    driver = SlackDriver(f"http://127.0.0.1:{frozen.port}/slack/events", SIGNING_SECRET, slack)  # type: ignore[attr-defined]
    try:
        driver.command("create vm-a")
        assert until(lambda: store.vm("vm-a") is not None and store.vm("vm-a").state is VmState.RUNNING, 30)
        gcp.hold_operations()
        driver.click("park_confirm", blocks=driver.command("park vm-a").blocks)
        stop = held_op(gcp, "stop", "/instances/vm-a")
        waited_on(gcp, stop)
        assert frozen.proc is not None
        frozen.proc.send_signal(signal.SIGSTOP)
        frozen_at = time.monotonic()  # a stopped process looks at nothing
        time.sleep(1.5)  # past its lease
        other.start()
        waited_on(gcp, stop, since=frozen_at)  # the other replica took the park over and re-attached to the stop
        gcp.release_operations()
        park = next(op for op in store.operations_for("vm-a") if op.verb is Verb.PARK)
        assert until(lambda: store.operation(park.id).state is OperationState.SUCCEEDED, 30), other.log()
        assert until(lambda: store.operation(park.id).reported_at is not None, 30), other.log()
        frozen.proc.send_signal(signal.SIGCONT)
        assert frozen.wait_for_line(r"taken over by another bot process", timeout=30), frozen.log()
        time.sleep(0.5)  # whatever it would still do, it would do now
    finally:
        driver.close()

    assert store.vm("vm-a").state is VmState.PARKED
    assert len(gcp_operations(gcp, "stop", "/instances/vm-a")) == 1
    assert len(gcp_operations(gcp, "delete", "/instances/vm-a")) == 1
    assert len(mutations(gcp, "DELETE", "/instances/vm-a")) == 1
    replies = [m.text for m in slack.thread(CHANNEL, store.operation(park.id).thread_ts)[1:]]
    assert sum("is parked:" in text for text in replies) == 1, replies
    store.engine.dispose()
