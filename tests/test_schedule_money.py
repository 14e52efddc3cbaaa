"""The money in Slack (list prices, before discounts): the park/stop card, /vm status and /vm list show
running per day and parked per month, an unknown machine type says "price unknown", /vm savings adds
up parked and stopped hours; and the schedule tick's pure rules on DST days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.core.pricing import bundled_prices, format_usd
from bot.core.schedule_records import changes_of, find_run, row_values, schedule_of
from bot.core.schedules import RunKey, parse_schedule, skip_run, snooze
from bot.core.vm_costs import off_hours
from bot.jobs.schedule_runner import runs_to_handle
from conftest import Running, create_vm, park_vm
from standins.slack_api import SlackStandin
from standins.slack_driver import SlackDriver
from storage.models import Operation, Verb, VmSchedule

NOTICE, CATCHUP = timedelta(minutes=30), timedelta(minutes=15)


def e2_small_per_day(disk_gb: float = 10) -> float:
    """From the table's raw figures: the machine's hourly rate and pd-standard's GB-month, for a day."""
    table = bundled_prices()
    machine = table.machine_types["us-central1"]["e2-small"]
    disk = table.disks["us-central1"]["pd-standard"] * disk_gb / table.hours_per_month
    return 24 * (machine + disk)


def test_the_park_and_stop_cards_status_and_list_show_the_money(
    driver: SlackDriver, slack: SlackStandin, running: Running
) -> None:
    create_vm(driver, running)
    running_line = f"~{format_usd(e2_small_per_day())}/day running"
    parked_line = f"~{format_usd(10 * bundled_prices().image_storage)}/month parked"
    for question in (driver.command("park vm-a"), driver.command("stop vm-a"), driver.command("suspend vm-a")):
        shown = str(question.blocks)
        assert running_line in shown and parked_line in shown and "list price, before discounts" in shown
    assert running_line in str(driver.command("list").blocks)
    driver.command("status vm-a")
    running.settle()
    assert running_line in str(slack.responses[-1]) and "list price, before discounts" in str(slack.responses[-1])


def test_an_unknown_machine_type_says_price_unknown(driver: SlackDriver, running: Running) -> None:
    create_vm(driver, running)
    running.bot.store.update_vm("vm-a", machine_type="x9-mega-1")
    shown = str(driver.command("park vm-a").blocks)
    assert "running: price unknown" in shown and "$" in shown.split("price unknown")[1], "parked is still priced"


def test_savings_add_up_the_parked_hours(driver: SlackDriver, running: Running) -> None:
    assert "Nothing saved yet" in driver.command("savings").text
    create_vm(driver, running)
    park_vm(driver, running)
    reply = driver.command("savings")
    assert reply.text.startswith("Saved so far: ~") and "vm-a" in str(reply.blocks) and "h parked" in str(reply.blocks)
    assert "list price, before discounts" in str(reply.blocks)
    listed = str(driver.command("list").blocks)
    assert "saved so far" in listed and "Saved so far by parking" in listed


def test_status_shows_the_schedule_and_the_time_to_live(
    driver: SlackDriver, slack: SlackStandin, running: Running
) -> None:
    create_vm(driver, running)
    driver.command("schedule vm-a park-at=19:00 days=mon-fri tz=Europe/Berlin")
    driver.command("ttl vm-a 8h")
    driver.command("status vm-a")
    running.settle()
    shown = str(slack.responses[-1])
    assert "Schedule: parks at 19:00 Europe/Berlin on Mon-Fri; next: park " in shown
    assert "Time to live: parked at" in shown


def op(verb: Verb, hour: float) -> Operation:
    return Operation(verb=verb, vm_name="vm-a", finished_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=hour))


def test_off_hours_from_the_operations_history() -> None:
    history = [op(Verb.CREATE, 0), op(Verb.PARK, 1), op(Verb.RESTORE, 9), op(Verb.STOP, 10), op(Verb.PARK, 12),
               op(Verb.RESTORE, 14), op(Verb.SUSPEND, 20)]
    hours = off_hours(history, now=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=23))
    assert (hours.parked, hours.stopped) == (8 + 2, 2 + 3)
    deleted = off_hours([op(Verb.PARK, 1), op(Verb.DELETE, 5)], now=datetime(2026, 2, 1, tzinfo=UTC))
    assert deleted.parked == 4, "a deleted VM stops saving"


def test_a_schedule_survives_the_store_with_its_snoozes_and_skips() -> None:
    schedule = parse_schedule({"park-at": "19:00", "restore-at": "08:00", "days": "mon-fri", "tz": "Europe/Berlin",
                               "skip": "2026-12-24"})
    run = find_run(schedule, RunKey("off", datetime(2026, 12, 8).date()))
    assert run is not None
    changed = skip_run(snooze(schedule, run, timedelta(hours=1)), find_run(schedule, RunKey("on", run.key.day)))
    row = VmSchedule(vm_name="vm-a", set_by="U1", **row_values(changed), **changes_of(changed))
    assert schedule_of(row) == changed


@pytest.mark.parametrize(
    ("tz", "day", "local", "utc"),
    [
        ("Europe/Berlin", "2027-03-28", "02:30", "01:00"),  # spring forward: 02:30 does not exist, runs at 03:00 CEST
        ("America/New_York", "2027-03-14", "02:30", "07:00"),  # 03:00 EDT
        ("Europe/Berlin", "2027-10-31", "02:30", "00:30"),  # fall back: the first 02:30 (CEST), once
        ("America/New_York", "2027-11-07", "01:30", "05:30"),  # the first 01:30 (EDT), once
    ],
)
def test_the_tick_on_dst_days_runs_once_at_the_right_instant(tz: str, day: str, local: str, utc: str) -> None:
    schedule = parse_schedule({"park-at": local, "tz": tz})
    instant = datetime.fromisoformat(f"{day}T{utc}:00+00:00")
    since = instant - timedelta(hours=6)
    seen = []
    for seconds in range(0, 4 * 3600, 30):  # a tick every 30 s for four hours around it
        now = instant - timedelta(hours=1) + timedelta(seconds=seconds)
        seen += [(now, run.when) for run, what in runs_to_handle(schedule, now, since=since, notice=NOTICE,
                                                                 catchup=CATCHUP) if what == "run"]  # fmt: skip
    assert {when for _, when in seen} == {instant}, "one instant, whatever the wall clock did"
    assert timedelta(0) <= seen[0][0] - instant < timedelta(seconds=30), "the first tick after its minute runs it"


def test_a_skip_date_has_no_run_and_no_notice() -> None:
    schedule = parse_schedule({"park-at": "19:00", "tz": "UTC", "skip": "2027-01-05"})
    now = datetime(2027, 1, 5, 18, 45, tzinfo=UTC)
    assert list(runs_to_handle(schedule, now, since=now - timedelta(hours=1), notice=NOTICE, catchup=CATCHUP)) == []
    assert [what for _, what in runs_to_handle(schedule, now + timedelta(days=1), since=now, notice=NOTICE,
                                               catchup=CATCHUP)] == ["notice"]  # fmt: skip

