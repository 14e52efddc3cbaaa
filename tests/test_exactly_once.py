"""Exactly once: a redelivered slash command, a storm of clicks on `park_confirm`, two people racing,
two bot processes on one PostgreSQL database: each yields one operation, and everyone else is told
(ephemerally) who is doing what and where the thread is."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest

from bot.core.lifecycle import ALLOWED_FROM
from bot.settings import Settings
from conftest import SIGNING_SECRET, Running
from durable_support import assert_nothing_orphaned, gcp_operations, held, response_text, serve
from standins.compute import ComputeStandin
from standins.slack_api import SlackStandin
from standins.slack_driver import Reply, SlackDriver
from storage.models import OperationState, Verb, VmState
from storage.store import DuplicateRequest, Store


# Everyone racing here may park and restore the VM: only its owner (U100) and admins may (test_permissions).
RACERS = frozenset({f"U{n}" for n in (*range(200, 210), 300, 301, *range(400, 405))})


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, admins=RACERS)


def create_vm(driver: SlackDriver, running: Running, name: str = "vm-a") -> None:
    driver.command(f"create {name}")
    running.settle()
    assert running.bot.store.vm(name).state is VmState.RUNNING


def click_all(events_url: str, slack: SlackStandin, clicks: list[tuple[str, list]]) -> list[Reply]:
    """Press ``park_confirm`` for each (user, blocks) at the same moment, each from its own connection."""

    def press(click: tuple[str, list]) -> Reply:
        with SlackDriver(events_url, SIGNING_SECRET, slack) as own:
            return own.click("park_confirm", blocks=click[1], user=click[0])

    with ThreadPoolExecutor(len(clicks)) as pool:
        return list(pool.map(press, clicks))


def test_a_redelivered_slash_command_makes_one_operation(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    with held(gcp):
        first = driver.command("create vm-a", trigger_id="111.222.abc")
        again = driver.command("create vm-a", trigger_id="111.222.abc", retry_num=1, retry_reason="http_timeout")
        assert "Creating `vm-a`" in first.text
        assert again.status == 200 and again.in_time
        assert "Already on it" in again.text and "<@U100> asked to create `vm-a`" in again.text
    running.settle()
    late = driver.command("create vm-a", trigger_id="111.222.abc", retry_num=2, retry_reason="http_timeout")
    assert "Already done" in late.text and "succeeded" in late.text
    ops = running.bot.store.operations_for("vm-a")
    assert [(op.verb, op.state) for op in ops] == [(Verb.CREATE, OperationState.SUCCEEDED)]
    assert len(gcp_operations(gcp, "insert", "/instances/vm-a")) == 1
    assert_nothing_orphaned(gcp, running.bot.store)


def test_ten_clicks_on_one_park_confirmation_park_once(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    create_vm(driver, running)
    question = driver.command("park vm-a")
    with held(gcp):  # the park stays under way while the other clicks arrive
        replies = click_all(running.events_url, slack, [("U100", question.blocks)] * 10)
        assert all(reply.status == 200 and reply.in_time for reply in replies)
        answers = [response_text(slack, reply) for reply in replies]
    assert sum("Parking `vm-a`" in answer for answer in answers) == 1, answers
    already = [answer for answer in answers if "Already on it" in answer]
    assert len(already) == 9, answers
    assert all("<@U100> asked to park `vm-a`" in a and "<#C100>" in a for a in already)
    running.settle()
    parks = [op for op in running.bot.store.operations_for("vm-a") if op.verb is Verb.PARK]
    assert [op.state for op in parks] == [OperationState.SUCCEEDED]
    assert len(gcp_operations(gcp, "stop", "/instances/vm-a")) == 1
    assert running.bot.store.vm("vm-a").state is VmState.PARKED
    late = click_all(running.events_url, slack, [("U100", question.blocks)])
    assert "Already done" in response_text(slack, late[0]), "an old confirmation cannot park twice"
    assert_nothing_orphaned(gcp, running.bot.store)


def test_ten_people_confirming_at_once_make_one_park_and_the_rest_are_told_who(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    create_vm(driver, running)
    users = [f"U{200 + i}" for i in range(10)]
    questions = [driver.command("park vm-a", user=user).blocks for user in users]
    with held(gcp):
        replies = click_all(running.events_url, slack, list(zip(users, questions)))
        answers = dict(zip(users, (response_text(slack, reply) for reply in replies)))
    winners = [user for user, answer in answers.items() if "Parking `vm-a`" in answer]
    assert len(winners) == 1, answers
    for user, answer in answers.items():
        if user != winners[0]:
            assert f"`vm-a` is busy: <@{winners[0]}> is running a park on it" in answer, answer
            assert "see the thread in <#C100>" in answer
    running.settle()
    parks = [op for op in running.bot.store.operations_for("vm-a") if op.verb is Verb.PARK]
    assert len(parks) == 1 and parks[0].requested_by == winners[0]
    assert_nothing_orphaned(gcp, running.bot.store)


def test_park_and_restore_racing_one_wins_the_other_is_refused(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    create_vm(driver, running)
    stale_question = driver.command("park vm-a", user="U300").blocks  # asked while it was running
    driver.click("park_confirm", blocks=driver.command("park vm-a").blocks)
    running.settle()
    assert running.bot.store.vm("vm-a").state is VmState.PARKED

    with held(gcp), ThreadPoolExecutor(2) as pool:
        restoring = pool.submit(driver.command, "restore vm-a", user="U301")
        parking = pool.submit(click_all, running.events_url, slack, [("U300", stale_question)])
        restore_ack, park_reply = restoring.result(), parking.result()[0]
        park_answer = response_text(slack, park_reply)
    assert "Restoring `vm-a`" in restore_ack.text
    assert "Parking" not in park_answer
    assert "is already parked" in park_answer or "<@U301> is running a restore on it" in park_answer, park_answer
    running.settle()
    ops = running.bot.store.operations_for("vm-a", limit=10)
    assert [(op.verb, op.state) for op in reversed(ops)] == [
        (Verb.CREATE, OperationState.SUCCEEDED),
        (Verb.PARK, OperationState.SUCCEEDED),
        (Verb.RESTORE, OperationState.SUCCEEDED),
    ]
    assert_nothing_orphaned(gcp, running.bot.store)


def test_two_bot_processes_on_one_postgresql_database_park_once(
    settings: Settings, postgres_url: str, slack: SlackStandin, gcp: ComputeStandin
) -> None:
    shared = replace(settings, database_url=postgres_url)
    with serve(shared) as (bot_a, url_a), serve(shared) as (bot_b, url_b):
        with SlackDriver(url_a, SIGNING_SECRET, slack) as driver:
            driver.command("create vm-a")
            assert bot_a.runner.drain(timeout=30)
            users = [f"U{400 + i}" for i in range(5)]
            questions = [driver.command("park vm-a", user=user).blocks for user in users]
        # Five people, each double-clicking: one click to each process.
        clicks = [(user, blocks) for user, blocks in zip(users, questions) for _ in range(2)]
        with held(gcp), ThreadPoolExecutor(10) as pool:
            futures = [
                pool.submit(click_all, url, slack, [click])
                for click, url in zip(clicks, [url_a, url_b] * 5)
            ]
            answers = [response_text(slack, future.result()[0]) for future in futures]
        assert sum("Parking `vm-a`" in a for a in answers) == 1, answers
        assert sum("Already on it" in a for a in answers) == 1, answers
        assert sum("is busy" in a for a in answers) == 8, answers
        assert bot_a.runner.drain(timeout=30) and bot_b.runner.drain(timeout=30)
        parks = [op for op in bot_a.store.operations_for("vm-a") if op.verb is Verb.PARK]
        assert [op.state for op in parks] == [OperationState.SUCCEEDED]
        assert len(gcp_operations(gcp, "stop", "/instances/vm-a")) == 1
        assert_nothing_orphaned(gcp, bot_b.store)


def test_one_request_key_makes_one_operation_under_concurrency(any_database_url: str) -> None:
    store = Store.from_url(any_database_url)

    def begin(i: int) -> int | None:
        try:
            return store.begin(Verb.CREATE, f"vm-{i}", allowed_from=ALLOWED_FROM[Verb.CREATE], requested_by="U1",
                               zone="us-central1-a", machine_type="e2-small", request_key="command:same").id  # fmt: skip
        except DuplicateRequest as duplicate:
            assert duplicate.operation.request_key == "command:same"
            return None

    with ThreadPoolExecutor(8) as pool:
        made = [op for op in pool.map(begin, range(8)) if op is not None]
    assert len(made) == 1
    assert [s.vm.name for s in store.list_vms()] == [store.operation(made[0]).vm_name]
    store.engine.dispose()

