"""Schedules and time to live, end to end with a controllable clock (no sleeping): `/vm schedule` sets
one, the tick warns the owner first, the notice's buttons snooze, skip or act, the run parks the VM
in a new thread, a missed run follows the catch-up rule, and two replicas run each run once."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta

import pytest

from bot.core.workflows import Workflows
from bot.deps import Deps
from bot.slack.threads import progress_for
from bot.jobs.schedule_runner import ScheduleRunner, runs_to_handle, ttl_key
from bot.core.schedules import parse_schedule
from bot.settings import Settings
from conftest import PROJECT, Running, create_vm
from standins.compute import ComputeStandin
from standins.slack_api import SlackStandin
from standins.slack_driver import SlackDriver
from storage.models import OperationState, RunState, Verb, VmState
from storage.store import Store

ZONE = "us-central1-a"
DAY = (datetime.now(UTC) + timedelta(days=2)).date()  # after the schedule is set, whatever the date


def at(hh: int, mm: int, ss: int = 0, day: date = DAY) -> datetime:
    return datetime.combine(day, time(hh, mm, ss), tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, admins=frozenset({"UADMIN"}))


def tick(running: Running, when: datetime):
    report = ScheduleRunner(running.bot, now=Clock(when)).tick()
    running.settle()
    return report


def runs_counted(running: Running, action: str, outcome: str) -> float:
    """vmbot_schedule_runs_total{action, outcome} as /metrics would serve it."""
    sample = running.bot.metrics.registry.get_sample_value("vmbot_schedule_runs_total", {"action": action, "outcome": outcome})
    return sample or 0.0


def notices(slack: SlackStandin, channel: str) -> list:
    return [m for m in slack.messages(channel) if m.blocks and "schedule_notice" in str(m.blocks)]


def scheduled_vm(driver: SlackDriver, running: Running, options: str = "park-at=19:00 restore-at=08:00 tz=UTC") -> None:
    create_vm(driver, running)
    reply = driver.command(f"schedule vm-a {options}")
    assert reply.text.startswith(":calendar: `vm-a` "), reply.text
    assert " at 19:00" in reply.text and "I'll warn <@U100> 30 min before each" in reply.text


def test_the_notice_comes_first_to_the_owner_then_the_park_runs_once_in_a_thread(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    scheduled_vm(driver, running)
    assert "vm-a" in driver.command("schedules").text
    assert tick(running, at(18, 29)).noticed == []
    assert tick(running, at(18, 30, 5)).noticed == [("vm-a", f"off:{DAY}")]
    dm = next(channel for channel, users in slack.opened_conversations().items() if users == ["U100"])
    [to_owner] = notices(slack, dm)
    [in_channel] = notices(slack, "C100")
    assert "`vm-a` parks in 30 min" in to_owner.text or "parks in 30 min" in str(to_owner.blocks)
    labels = [e["text"]["text"] for b in to_owner.blocks if b["type"] == "actions" for e in b["elements"]]
    assert labels == ["Snooze 1h", "Snooze 4h", "Skip today", "Park now"]
    assert tick(running, at(18, 31)).noticed == [], "one notice per run"

    report = tick(running, at(19, 0, 10))
    assert report.started == [("vm-a", f"off:{DAY}")]
    assert tick(running, at(19, 0, 40)).started == [], "a run starts once"
    assert runs_counted(running, "park", "started") == 1
    assert running.bot.store.vm("vm-a").state is VmState.PARKED
    root = slack.messages("C100")[-1]
    assert root.text == "Park vm-a: done"
    assert "the schedule" in str(root.blocks)
    op = running.bot.store.operations_for("vm-a")[0]
    assert op.verb is Verb.PARK and op.requested_by == "vmbot:schedule" and op.state is OperationState.SUCCEEDED

    # The other side: restore at 08:00 the next morning, no notice.
    tomorrow = DAY + timedelta(days=1)
    assert tick(running, at(7, 45, day=tomorrow)).noticed == []
    assert tick(running, at(8, 0, 5, day=tomorrow)).started == [("vm-a", f"on:{tomorrow}")]
    assert running.bot.store.vm("vm-a").state is VmState.RUNNING


def test_snooze_moves_the_run_and_says_until_when(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    scheduled_vm(driver, running, "park-at=19:00 tz=Europe/Berlin")
    run = parse_schedule({"park-at": "19:00", "tz": "Europe/Berlin"})
    first = next(r for r, _ in runs_to_handle(run, at(0, 0), since=at(0, 0), notice=timedelta(days=1),
                                               catchup=timedelta(minutes=15)))
    tick(running, first.when - timedelta(minutes=29))
    [notice] = notices(slack, "C100")
    pressed = driver.click("schedule_snooze_1h", blocks=notice.blocks, is_ephemeral=False)
    assert pressed.status == 200
    running.settle()
    said = slack.responses[-1]["text"]
    assert "Snoozed" in said and "20:00 CET" in said, said
    assert tick(running, first.when + timedelta(seconds=10)).started == []
    assert running.bot.store.vm("vm-a").state is VmState.RUNNING
    assert tick(running, first.when + timedelta(minutes=31)).noticed == [("vm-a", str(first.key))], "warned again"
    assert tick(running, first.when + timedelta(hours=1, seconds=5)).started == [("vm-a", str(first.key))]
    assert running.bot.store.vm("vm-a").state is VmState.PARKED


def test_skip_today_skips_that_run_only(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    scheduled_vm(driver, running)
    tick(running, at(18, 30, 5))
    [notice] = notices(slack, "C100")
    driver.click("schedule_skip", blocks=notice.blocks, is_ephemeral=False)
    running.settle()
    assert "Skipped" in slack.responses[-1]["text"]
    assert tick(running, at(19, 0, 10)).started == []
    assert running.bot.store.vm("vm-a").state is VmState.RUNNING
    assert running.bot.store.schedule_run("vm-a", f"off:{DAY}").state is RunState.SKIPPED
    tomorrow = DAY + timedelta(days=1)
    assert tick(running, at(19, 0, 10, day=tomorrow)).started == [("vm-a", f"off:{tomorrow}")]


def test_a_bystanders_press_is_refused_privately(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    scheduled_vm(driver, running)
    tick(running, at(18, 30, 5))
    [notice] = notices(slack, "C100")
    driver.click("schedule_act_now", blocks=notice.blocks, user="U999", is_ephemeral=False)
    running.settle()
    refusal = slack.responses[-1]
    assert refusal["response_type"] == "ephemeral" and refusal["replace_original"] is False
    assert "<@U100>" in refusal["text"]
    assert running.bot.store.vm("vm-a").state is VmState.RUNNING
    assert running.bot.store.schedule_run("vm-a", f"off:{DAY}").state is RunState.NOTICED
    driver.click("schedule_act_now", blocks=notice.blocks, user="UADMIN", is_ephemeral=False)
    running.settle()
    assert running.bot.store.vm("vm-a").state is VmState.PARKED
    assert tick(running, at(19, 0, 10)).started == [], "acted on already"


def test_a_missed_run_follows_the_catch_up_rule(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    scheduled_vm(driver, running)
    report = tick(running, at(19, 16))  # 16 min late: past VMBOT_SCHEDULE_CATCHUP (15 min)
    assert ("vm-a", f"off:{DAY}") in report.missed and report.started == []
    assert runs_counted(running, "park", "missed") >= 1 and runs_counted(running, "park", "started") == 0
    said = slack.messages("C100")[-1].text
    assert said.startswith(":double_vertical_bar: I missed `vm-a`'s scheduled ") and "skipped them" in said
    assert running.bot.store.vm("vm-a").state is VmState.RUNNING
    tomorrow = DAY + timedelta(days=1)
    assert tick(running, at(19, 14, day=tomorrow)).started == [("vm-a", f"off:{tomorrow}")], "late, but within it"


def test_a_run_on_a_vm_in_the_wrong_state_is_skipped_with_a_note(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    scheduled_vm(driver, running, "stop-at=19:00 tz=UTC")
    driver.click("stop_confirm", blocks=driver.command("stop vm-a").blocks)
    running.settle()
    report = tick(running, at(19, 0, 10))
    assert report.skipped == [("vm-a", f"off:{DAY}")]
    assert any("I skipped the schedule's stop of `vm-a`" in m.text for m in slack.messages("C100"))
    assert tick(running, at(19, 0, 40)).skipped == [], "noted once, never an error loop"
    assert runs_counted(running, "stop", "skipped") == 1


def test_only_the_owner_or_an_admin_sets_a_schedule_and_bad_input_says_what_to_type(
    driver: SlackDriver, slack: SlackStandin, running: Running
) -> None:
    create_vm(driver, running)
    assert "<@U100>" in driver.command("schedule vm-a park-at=19:00", user="U999").text
    bad = driver.command("schedule vm-a park-at=25:00").text
    assert "HH:MM" in bad
    assert "Did you mean" in driver.command("schedule vm-a tz=Europe/Berlinn park-at=19:00").text
    assert "restore-at" in driver.command("schedule vm-a park-at=19:00 start-at=08:00").text
    assert running.bot.store.vm_schedule("vm-a") is None
    driver.command("schedule vm-a park-at=19:00 days=mon-fri skip=2026-12-24")
    assert "Mon-Fri" in driver.command("schedule vm-a").text
    assert "no schedule now" in driver.command("schedule vm-a off").text
    assert running.bot.store.vm_schedule("vm-a") is None


def test_a_ttl_parks_the_vm_when_its_time_is_up(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    reply = driver.command("create vm-b ttl=2h")
    assert "time to live (2h)" in reply.text
    running.settle()
    ttl = running.bot.store.ttl("vm-b")
    assert ttl is not None and timedelta(hours=1, minutes=58) < ttl.park_at - datetime.now(UTC) <= timedelta(hours=2)
    assert "bad" not in driver.command("ttl vm-b 3h").text
    park_at = running.bot.store.ttl("vm-b").park_at
    assert tick(running, park_at - timedelta(minutes=29)).noticed == [("vm-b", ttl_key(park_at))]
    [notice] = notices(slack, "C100")
    driver.click("schedule_snooze_4h", blocks=notice.blocks, is_ephemeral=False)
    running.settle()
    assert "parks at" in slack.responses[-1]["text"]
    later = running.bot.store.ttl("vm-b").park_at
    assert later == park_at + timedelta(hours=4)
    assert tick(running, park_at + timedelta(seconds=10)).started == []
    assert tick(running, later + timedelta(seconds=10)).started == [("vm-b", ttl_key(later))]
    assert running.bot.store.vm("vm-b").state is VmState.PARKED and running.bot.store.ttl("vm-b") is None
    assert "1m and 365d" in driver.command("ttl vm-b 400d").text
    assert "no time to live" in driver.command("ttl vm-b off").text


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_park_at_fires_once_across_two_replicas(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running, database_url: str
) -> None:
    scheduled_vm(driver, running)
    bot = running.bot
    store = Store.from_url(database_url, create=False)  # a second replica: its own store (and lease owner)
    workflows = Workflows(store, bot.compute, bot.settings, lambda op: progress_for(bot.client, store, op))
    other = Deps(bot.settings, bot.client, store, bot.compute, bot.runner, workflows, bot.sweeper)
    reports = []
    barrier = threading.Barrier(2)

    def replica(deps: Deps, when: datetime) -> None:
        barrier.wait()
        reports.append(ScheduleRunner(deps, now=Clock(when)).tick())

    for when in (at(18, 30, 5), at(19, 0, 5)):
        threads = [threading.Thread(target=replica, args=(deps, when)) for deps in (bot, other)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    running.settle()
    assert sum(len(r.noticed) for r in reports) == 1 and sum(len(r.started) for r in reports) == 1
    assert len(notices(slack, "C100")) == 1
    parks = [op for op in bot.store.operations_for("vm-a") if op.verb is Verb.PARK]
    assert len(parks) == 1 and bot.store.vm("vm-a").state is VmState.PARKED


def test_an_idle_vm_is_reminded_once_a_day_in_its_thread(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    running.bot.settings = replace(running.bot.settings, idle_hours=2)
    create_vm(driver, running)
    create_vm(driver, running, "vm-b")
    driver.command("schedule vm-b park-at=19:00")  # a scheduled VM is not idle: its schedule looks after it
    later = datetime.now(UTC) + timedelta(hours=3)
    assert tick(running, datetime.now(UTC) + timedelta(hours=1)).noticed == []
    key = f"idle:{later.date()}"
    assert ("vm-a", key) in tick(running, later).noticed
    assert all(vm != "vm-b" for vm, run in tick(running, later).noticed if run.startswith("idle:"))
    root = next(m for m in slack.messages("C100") if m.text.startswith("Create vm-a"))
    reminder = slack.thread("C100", root.ts)[-1]
    assert reminder.text == "vm-a has been running for 3h with nothing asked of it"
    same_day = min(later + timedelta(minutes=30), later.replace(hour=23, minute=59, second=59))  # run near midnight too
    assert tick(running, same_day).noticed == [], "one reminder a day"
    driver.click("idle_remind_tomorrow", blocks=reminder.blocks, is_ephemeral=False)
    running.settle()
    assert "again tomorrow" in slack.responses[-1]["text"]
    tomorrow = later + timedelta(days=1)
    assert ("vm-a", f"idle:{tomorrow.date()}") in tick(running, tomorrow).noticed
    reminder = slack.thread("C100", root.ts)[-1]
    driver.click("schedule_act_now", blocks=reminder.blocks, is_ephemeral=False)
    running.settle()
    assert running.bot.store.vm("vm-a").state is VmState.PARKED
