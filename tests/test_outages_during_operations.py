"""Slack outages: GCP work never waits on Slack, and what Slack missed is posted once it answers again.

Slack is down (chat.postMessage and chat.update answer 500) or rate-limits with
``Retry-After: 30`` during a park: the park's GCP steps run on time, the store
is right, and the thread and its result appear once Slack answers again. And a
bot started while Slack is unreachable starts, says so on /healthz, resumes its
GCP work and posts when Slack comes back.
"""

from __future__ import annotations

import time

from conftest import SIGNING_SECRET, Running, create_vm, replace
from bot.settings import Settings
from storage.store import Store
from bot.web.health import health
from durable_support import CHANNEL, serve, thread_of, until
from standins.slack_api import SlackStandin
from standins.slack_driver import SlackDriver
from storage.models import OperationState, Verb



def _park(driver: SlackDriver) -> None:
    driver.click("park_confirm", blocks=driver.command("park vm-a").blocks)


def _the_park(running: Running):  # type: ignore[no-untyped-def]
    ops = [op for op in running.bot.store.operations_for("vm-a") if op.verb is Verb.PARK]
    return ops[0] if ops else None


def _park_ended(running: Running) -> bool:
    return _park_ended_in(running.bot.store)


def _park_in(store: Store):  # type: ignore[no-untyped-def]
    ops = [op for op in store.operations_for("vm-a") if op.verb is Verb.PARK]
    return ops[0] if ops else None


def _park_ended_in(store: Store) -> bool:
    op = _park_in(store)
    return op is not None and store.operation(op.id).state is OperationState.SUCCEEDED


def test_a_park_during_a_slack_outage_runs_on_time_and_its_thread_is_posted_when_slack_is_back(
    driver: SlackDriver, slack: SlackStandin, running: Running
) -> None:
    create_vm(driver, running)
    slack.outage("chat.postMessage", "chat.update")
    began = time.monotonic()
    _park(driver)

    assert until(lambda: _park_ended(running), timeout=20), "the park waited on Slack"
    assert time.monotonic() - began < 10
    op = running.bot.store.operation(_the_park(running).id)
    assert op.reported_at is None, "nothing reached Slack, so nothing is marked posted"
    assert running.bot.store.vm("vm-a").state.value == "parked"
    assert until(lambda: health(running.bot)[1]["slack"] == "unreachable", timeout=10)

    slack.outage_over()
    assert until(lambda: running.bot.store.operation(op.id).reported_at is not None, timeout=30)
    op = running.bot.store.operation(op.id)
    replies = [m.text for m in thread_of(slack, op)[1:]]
    assert sum("is parked:" in text for text in replies) == 1, replies
    assert slack.message(CHANNEL, op.thread_ts).text == "Park vm-a: done"
    assert health(running.bot)[1]["slack"] == "reachable"


def test_a_rate_limited_thread_root_does_not_hold_up_the_park(
    driver: SlackDriver, slack: SlackStandin, running: Running
) -> None:
    create_vm(driver, running)
    slack.rate_limit("chat.postMessage", times=1, retry_after=30)
    began = time.monotonic()
    _park(driver)
    assert until(lambda: _park_ended(running), timeout=20), "the park waited on Slack"
    assert time.monotonic() - began < 10, "the park waited out Slack's Retry-After"


def test_a_result_whose_thread_root_slack_never_took_is_posted_by_the_next_process(
    slack: SlackStandin, settings: Settings
) -> None:
    """The process stopped (its queue of Slack calls with it) before Slack answered: the next one
    posts the thread and its result."""
    settings = replace(settings, operation_lease=0.5)
    with serve(settings) as (first, events_url):
        driver = SlackDriver(events_url, SIGNING_SECRET, slack)
        driver.command("create vm-a")
        assert first.runner.drain(timeout=30) and first.outbox.drain(timeout=30)
        slack.outage("chat.postMessage", "chat.update")
        _park(driver)
        assert until(lambda: _park_ended_in(first.store), timeout=20)
        driver.close()
    op = _park_in(first.store)
    assert first.store.operation(op.id).thread_ts is None and first.store.operation(op.id).reported_at is None
    slack.outage_over()

    with serve(settings) as (second, _):
        second.start()
        assert until(lambda: second.store.operation(op.id).reported_at is not None, timeout=20)
        replies = [m.text for m in thread_of(slack, second.store.operation(op.id))[1:]]
        assert sum("is parked:" in text for text in replies) == 1, replies
        assert second.resumer.report_unreported() == []
