"""The schedule rules with explicit times: no clock, no sleeping."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from itertools import islice
from zoneinfo import ZoneInfo

import pytest

from bot.core.schedules import (
    RunKey,
    Schedule,
    ScheduleError,
    describe,
    describe_days,
    describe_ttl,
    due,
    forget_before,
    format_local,
    local_to_utc,
    next_run,
    next_runs,
    notice_at,
    parse_days,
    parse_schedule,
    parse_ttl,
    schedule_options,
    skip_run,
    snooze,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def runs(schedule: Schedule, after: datetime, count: int) -> list[tuple[str, str, datetime]]:
    return [(str(run.key), run.action, run.when) for run in islice(next_runs(schedule, after), count)]


# --- plain days -----------------------------------------------------------------------------------


def test_daily_park_runs_every_day_strictly_after_the_given_moment() -> None:
    schedule = parse_schedule({"park-at": "19:00"})
    assert schedule.tz == "UTC" and schedule.days == frozenset(range(7))
    assert runs(schedule, utc(2025, 12, 8, 18, 59), 2) == [
        ("off:2025-12-08", "park", utc(2025, 12, 8, 19)),
        ("off:2025-12-09", "park", utc(2025, 12, 9, 19)),
    ]
    # The tick that has just run the 19:00 park asks for what comes after it: tomorrow's.
    assert next_run(schedule, utc(2025, 12, 8, 19)).when == utc(2025, 12, 9, 19)


def test_mon_fri_in_berlin_skips_the_weekend_and_describes_itself_in_its_zone() -> None:
    schedule = parse_schedule({"park-at": "19:00", "days": "mon-fri", "tz": "Europe/Berlin"})
    friday_evening = utc(2025, 12, 5, 19)  # 20:00 CET, after Friday's park
    run = next_run(schedule, friday_evening)
    assert run is not None and run.key == RunKey("off", date(2025, 12, 8))
    assert run.when == utc(2025, 12, 8, 18)  # 19:00 CET is 18:00 UTC
    assert describe(schedule, friday_evening) == (
        "parks at 19:00 Europe/Berlin on Mon-Fri; next: park Mon 8 Dec 19:00 CET"
    )


def test_park_and_restore_alternate_in_time_order() -> None:
    schedule = parse_schedule({"park-at": "19:00", "restore-at": "08:00", "days": "mon,wed", "tz": "UTC"})
    assert runs(schedule, utc(2025, 12, 7), 4) == [  # Sunday 7 Dec
        ("on:2025-12-08", "restore", utc(2025, 12, 8, 8)),
        ("off:2025-12-08", "park", utc(2025, 12, 8, 19)),
        ("on:2025-12-10", "restore", utc(2025, 12, 10, 8)),
        ("off:2025-12-10", "park", utc(2025, 12, 10, 19)),
    ]


def test_skip_dates_leave_out_both_sides_on_those_local_days() -> None:
    schedule = parse_schedule(
        {
            "park-at": "19:00",
            "restore-at": "08:00",
            "days": "mon-fri",
            "tz": "Europe/Berlin",
            "skip": "2025-12-24,2025-12-25",
        }
    )
    assert [key for key, _, _ in runs(schedule, utc(2025, 12, 23, 12), 3)] == [
        "off:2025-12-23",
        "on:2025-12-26",
        "off:2025-12-26",
    ]
    assert "except 2025-12-24, 2025-12-25" in describe(schedule)


def test_local_days_are_the_schedules_not_utcs() -> None:
    """00:30 on Mondays in New York is Monday 05:30 UTC, and 23:30 on Mondays in Tokyo is Monday 14:30 UTC."""
    new_york = parse_schedule({"stop-at": "00:30", "days": "mon", "tz": "America/New_York"})
    assert next_run(new_york, utc(2025, 12, 7)).when == utc(2025, 12, 8, 5, 30)
    tokyo = parse_schedule({"stop-at": "23:30", "days": "mon", "tz": "Asia/Tokyo"})
    assert next_run(tokyo, utc(2025, 12, 7)).when == utc(2025, 12, 8, 14, 30)


@pytest.mark.parametrize(
    ("text", "days"),
    [
        ("daily", set(range(7))),
        ("weekdays", {0, 1, 2, 3, 4}),
        ("mon-fri", {0, 1, 2, 3, 4}),
        ("Mon-Fri", {0, 1, 2, 3, 4}),
        ("monday-friday", {0, 1, 2, 3, 4}),
        ("mon,wed", {0, 2}),
        ("weekends", {5, 6}),
        ("sat", {5}),
        ("fri-mon", {4, 5, 6, 0}),
        ("mon-wed,fri", {0, 1, 2, 4}),
    ],
)
def test_days(text: str, days: set[int]) -> None:
    assert parse_days(text) == days


def test_days_are_described_compactly() -> None:
    assert describe_days(frozenset(range(7))) == "every day"
    assert describe_days(parse_days("mon-fri")) == "Mon-Fri"
    assert describe_days(parse_days("weekends")) == "Sat-Sun"
    assert describe_days(parse_days("fri-mon")) == "Fri-Mon"
    assert describe_days(parse_days("mon,wed,fri")) == "Mon, Wed, Fri"
    assert describe_days(parse_days("tue")) == "Tue"


# --- daylight saving time -------------------------------------------------------------------------


def test_berlin_spring_forward_runs_a_missing_0230_at_0300() -> None:
    # 30 Mar 2025: clocks go 02:00 CET -> 03:00 CEST; 02:30 does not exist.
    schedule = parse_schedule({"park-at": "02:30", "tz": "Europe/Berlin"})
    assert runs(schedule, utc(2025, 3, 29, 12), 2) == [
        ("off:2025-03-30", "park", utc(2025, 3, 30, 1)),  # 03:00 CEST
        ("off:2025-03-31", "park", utc(2025, 3, 31, 0, 30)),  # 02:30 CEST
    ]
    assert format_local(utc(2025, 3, 30, 1), "Europe/Berlin") == "Sun 30 Mar 03:00 CEST"
    assert local_to_utc(date(2025, 3, 30), time(2, 0), BERLIN) == utc(2025, 3, 30, 1)
    assert local_to_utc(date(2025, 3, 30), time(3, 0), BERLIN) == utc(2025, 3, 30, 1)
    assert local_to_utc(date(2025, 3, 30), time(1, 59), BERLIN) == utc(2025, 3, 30, 0, 59)


def test_berlin_fall_back_runs_an_ambiguous_0230_once_at_its_first_occurrence() -> None:
    # 26 Oct 2025: clocks go 03:00 CEST -> 02:00 CET; 02:30 happens twice (00:30 and 01:30 UTC).
    schedule = parse_schedule({"park-at": "02:30", "tz": "Europe/Berlin"})
    assert runs(schedule, utc(2025, 10, 25, 12), 2) == [
        ("off:2025-10-26", "park", utc(2025, 10, 26, 0, 30)),
        ("off:2025-10-27", "park", utc(2025, 10, 27, 1, 30)),  # 02:30 CET
    ]
    # The tick that ran it at the first 02:30 does not find it again at the second.
    assert next_run(schedule, utc(2025, 10, 26, 0, 30)).when == utc(2025, 10, 27, 1, 30)


def test_new_york_spring_forward_runs_a_missing_0230_at_0300() -> None:
    # 9 Mar 2025: 02:00 EST -> 03:00 EDT.
    schedule = parse_schedule({"stop-at": "02:30", "start-at": "08:00", "tz": "America/New_York"})
    assert runs(schedule, utc(2025, 3, 8, 14), 4) == [
        ("off:2025-03-09", "stop", utc(2025, 3, 9, 7)),  # 03:00 EDT
        ("on:2025-03-09", "start", utc(2025, 3, 9, 12)),  # 08:00 EDT
        ("off:2025-03-10", "stop", utc(2025, 3, 10, 6, 30)),
        ("on:2025-03-10", "start", utc(2025, 3, 10, 12)),
    ]


def test_new_york_fall_back_runs_0130_once() -> None:
    # 2 Nov 2025: 02:00 EDT -> 01:00 EST; 01:30 happens at 05:30 and again at 06:30 UTC.
    schedule = parse_schedule({"suspend-at": "01:30", "tz": "America/New_York"})
    assert runs(schedule, utc(2025, 11, 1, 12), 2) == [
        ("off:2025-11-02", "suspend", utc(2025, 11, 2, 5, 30)),  # 01:30 EDT
        ("off:2025-11-03", "suspend", utc(2025, 11, 3, 6, 30)),  # 01:30 EST
    ]
    assert next_run(schedule, utc(2025, 11, 2, 5, 30)).key == RunKey("off", date(2025, 11, 3))
    assert format_local(utc(2025, 11, 2, 5, 30), "America/New_York") == "Sun 2 Nov 01:30 EDT"


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York"])
@pytest.mark.parametrize("at", ["00:00", "01:30", "02:00", "02:30", "03:00", "12:00", "23:59"])
def test_a_whole_year_has_exactly_one_run_a_day_at_the_local_time_or_just_after_a_gap(zone: str, at: str) -> None:
    schedule = parse_schedule({"park-at": at, "tz": zone})
    new_year = datetime(2025, 1, 1, tzinfo=ZoneInfo(zone)) - timedelta(seconds=1)
    year = list(islice(next_runs(schedule, new_year), 365))
    assert [run.key.day for run in year] == [date(2025, 1, 1) + timedelta(days=i) for i in range(365)]
    assert all(earlier.when < later.when for earlier, later in zip(year, year[1:], strict=False))
    wanted = time.fromisoformat(at)
    for run in year:
        local = run.when.astimezone(ZoneInfo(zone))
        assert local.date() == run.key.day
        gap_day = run.key.day in (date(2025, 3, 30), date(2025, 3, 9))
        assert local.time() == wanted or (gap_day and local.time() == time(3))


# --- one-off changes: snooze, skip ----------------------------------------------------------------


def test_snooze_moves_that_one_run_and_says_so() -> None:
    schedule = parse_schedule({"park-at": "19:00", "restore-at": "08:00", "tz": "Europe/Berlin"})
    run = next_run(schedule, utc(2025, 12, 8, 12))
    assert run is not None and run.when == utc(2025, 12, 8, 18)
    snoozed = snooze(schedule, run, timedelta(hours=1))
    moved = next_run(snoozed, utc(2025, 12, 8, 12))
    assert moved is not None and moved.key == run.key and moved.snoozed
    assert moved.when == utc(2025, 12, 8, 19) and moved.scheduled == utc(2025, 12, 8, 18)
    assert describe(snoozed, utc(2025, 12, 8, 12)).endswith("next: park Mon 8 Dec 20:00 CET (snoozed from 19:00)")
    # At the old time nothing is due; the run after the moved one is tomorrow's restore.
    assert next_run(snoozed, utc(2025, 12, 8, 18)).when == utc(2025, 12, 8, 19)
    assert next_run(snoozed, utc(2025, 12, 8, 19)).key == RunKey("on", date(2025, 12, 9))
    # The schedule itself is untouched.
    assert next_run(schedule, utc(2025, 12, 8, 12)).when == utc(2025, 12, 8, 18)


def test_snoozing_again_adds_up_and_keeps_runs_in_time_order() -> None:
    schedule = parse_schedule({"park-at": "07:00", "restore-at": "08:00", "tz": "UTC"})
    run = next_run(schedule, utc(2025, 12, 8))
    once = snooze(schedule, run, timedelta(hours=1))
    moved_park = next(r for r in next_runs(once, utc(2025, 12, 8)) if r.side == "off")
    assert moved_park.when == utc(2025, 12, 8, 8)
    twice = snooze(once, moved_park, timedelta(hours=4))
    assert len(twice.snoozes) == 1
    assert runs(twice, utc(2025, 12, 8), 3) == [
        ("on:2025-12-08", "restore", utc(2025, 12, 8, 8)),
        ("off:2025-12-08", "park", utc(2025, 12, 8, 12)),
        ("off:2025-12-09", "park", utc(2025, 12, 9, 7)),
    ]


def test_a_snooze_of_yesterdays_run_past_midnight_still_comes() -> None:
    schedule = parse_schedule({"park-at": "22:00", "tz": "UTC"})
    snoozed = snooze(schedule, next_run(schedule, utc(2025, 12, 8, 12)), timedelta(hours=4))
    assert runs(snoozed, utc(2025, 12, 9, 1), 2) == [
        ("off:2025-12-08", "park", utc(2025, 12, 9, 2)),
        ("off:2025-12-09", "park", utc(2025, 12, 9, 22)),
    ]


def test_skip_today_leaves_out_that_run_only() -> None:
    schedule = parse_schedule({"park-at": "19:00", "restore-at": "08:00", "tz": "UTC"})
    tonight = next_run(schedule, utc(2025, 12, 8, 12))
    skipped = skip_run(schedule, tonight)
    assert runs(skipped, utc(2025, 12, 8, 12), 2) == [
        ("on:2025-12-09", "restore", utc(2025, 12, 9, 8)),
        ("off:2025-12-09", "park", utc(2025, 12, 9, 19)),
    ]


def test_a_snoozed_then_skipped_run_does_not_come() -> None:
    schedule = parse_schedule({"park-at": "19:00", "tz": "UTC"})
    run = next_run(schedule, utc(2025, 12, 8, 12))
    both = skip_run(snooze(schedule, run, timedelta(hours=1)), run)
    assert next_run(both, utc(2025, 12, 8, 12)).key == RunKey("off", date(2025, 12, 9))


def test_forget_before_drops_only_stale_one_off_changes() -> None:
    schedule = parse_schedule({"park-at": "19:00", "tz": "UTC"})
    old = next_run(schedule, utc(2025, 12, 1, 12))
    recent = next_run(schedule, utc(2025, 12, 8, 12))
    changed = skip_run(snooze(schedule, old, timedelta(hours=1)), recent)
    pruned = forget_before(changed, utc(2025, 12, 8, 20))
    assert pruned.snoozes == () and pruned.skipped_runs == {recent.key}


def test_run_keys_read_back_from_text() -> None:
    key = RunKey("off", date(2025, 12, 8))
    assert str(key) == "off:2025-12-08" and RunKey.parse(str(key)) == key
    for bad in ("off", "sideways:2025-12-08", "on:2025-12-8", "on:2025-13-01x"):
        with pytest.raises(ScheduleError, match="does not name a scheduled run"):
            RunKey.parse(bad)


# --- catch-up and notice --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "verdict"),
    [
        (utc(2025, 12, 8, 18, 59, 59), "not_yet"),
        (utc(2025, 12, 8, 19), "run"),
        (utc(2025, 12, 8, 19, 0, 45), "run"),
        (utc(2025, 12, 8, 19, 14, 59), "run"),
        (utc(2025, 12, 8, 19, 15), "missed"),
        (utc(2025, 12, 9, 7), "missed"),
    ],
)
def test_catch_up_rule(now: datetime, verdict: str) -> None:
    assert due(utc(2025, 12, 8, 19), now, timedelta(minutes=15)) == verdict


def test_notice_comes_before_off_actions_only() -> None:
    schedule = parse_schedule({"park-at": "19:00", "restore-at": "08:00", "tz": "UTC"})
    park, restore = sorted(islice(next_runs(schedule, utc(2025, 12, 8, 7)), 2), key=lambda run: run.side)
    assert notice_at(park, timedelta(seconds=1800)) == utc(2025, 12, 8, 18, 30)
    assert notice_at(restore, timedelta(seconds=1800)) is None
    later = snooze(schedule, park, timedelta(hours=1))
    snoozed = next(r for r in next_runs(later, utc(2025, 12, 8, 7)) if r.side == "off")
    assert notice_at(snoozed, timedelta(seconds=1800)) == utc(2025, 12, 8, 19, 30)


def test_times_must_be_aware() -> None:
    schedule = parse_schedule({"park-at": "19:00"})
    with pytest.raises(ValueError, match="timezone-aware"):
        next_run(schedule, datetime(2025, 12, 8, 12))
    # Any zone is fine: it is the instant that counts.
    assert next_run(schedule, datetime(2025, 12, 8, 20, tzinfo=BERLIN)).when == utc(2025, 12, 9, 19)


# --- time to live ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ttl"),
    [
        ("8h", timedelta(hours=8)),
        ("90m", timedelta(minutes=90)),
        ("2d", timedelta(days=2)),
        ("1d12h", timedelta(hours=36)),
        ("1w", timedelta(days=7)),
        (" 8H ", timedelta(hours=8)),
        ("off", None),
        ("OFF", None),
    ],
)
def test_ttl(text: str, ttl: timedelta | None) -> None:
    assert parse_ttl(text) == ttl


@pytest.mark.parametrize("text", ["", "8", "h", "-1h", "8 hours", "1.5h", "8s", "0m", "366d", "never"])
def test_bad_ttl_says_what_to_type(text: str) -> None:
    with pytest.raises(ScheduleError) as error:
        parse_ttl(text)
    assert error.value.option == "ttl"
    assert "8h" in str(error.value) or "between 1m and 365d" in str(error.value)


def test_ttl_is_described_as_it_is_typed() -> None:
    for text in ("8h", "90m", "2d", "1d12h"):
        assert parse_ttl(describe_ttl(parse_ttl(text))) == parse_ttl(text)
    assert describe_ttl(timedelta(minutes=90)) == "1h30m"


# --- parsing: good and bad ------------------------------------------------------------------------


def test_time_zone_defaults_and_spelling() -> None:
    assert parse_schedule({"park-at": "19:00"}, default_tz="America/New_York").tz == "America/New_York"
    assert parse_schedule({"park-at": "19:00", "tz": "europe/berlin"}).tz == "Europe/Berlin"
    assert parse_schedule({"park-at": "19:00", "tz": "utc"}).tz == "UTC"
    assert parse_schedule({"park-at": "7:05"}).off_at == time(7, 5)


def test_options_read_back_into_the_same_schedule() -> None:
    options = {
        "suspend-at": "18:30",
        "resume-at": "07:45",
        "days": "mon,tue,thu",
        "tz": "Asia/Tokyo",
        "skip": "2026-01-01",
    }
    schedule = parse_schedule(options)
    assert schedule_options(schedule) == options
    assert parse_schedule(schedule_options(schedule)) == schedule


@pytest.mark.parametrize(
    ("options", "option", "words"),
    [
        ({}, None, "park-at=19:00 restore-at=08:00"),
        ({"days": "mon-fri"}, None, "say when"),
        ({"park-at": "19:00", "stop-at": "18:00"}, "stop-at", "choose one of park-at and stop-at"),
        ({"stop-at": "19:00", "restore-at": "08:00"}, "restore-at", "comes back with start-at"),
        ({"park-at": "25:00"}, "park-at", "HH:MM on a 24-hour clock"),
        ({"park-at": "7pm"}, "park-at", "e.g. 19:00"),
        ({"park-at": "19:00", "days": "funday"}, "days", "'funday' is not a day"),
        ({"park-at": "19:00", "days": "mon,,fri"}, "days", "mon-fri"),
        ({"park-at": "19:00", "tz": "Mars/Olympus"}, "tz", "such as Europe/Berlin"),
        ({"park-at": "19:00", "tz": "Europe/Berln"}, "tz", "Did you mean Europe/Berlin?"),
        ({"park-at": "19:00", "tz": "../../etc/passwd"}, "tz", "not a time zone"),
        ({"park-at": "19:00", "skip": "2025-13-01"}, "skip", "write YYYY-MM-DD"),
        ({"park-at": "19:00", "skip": "tomorrow"}, "skip", "'tomorrow' is not a date"),
        ({"park_at": "19:00"}, "park_at", "Did you mean park-at=?"),
    ],
)
def test_bad_schedules_say_what_to_type(options: dict[str, str], option: str | None, words: str) -> None:
    with pytest.raises(ScheduleError) as error:
        parse_schedule(options)
    assert words in str(error.value)
    assert error.value.option == option


def test_a_schedule_that_cannot_run_is_refused_at_construction() -> None:
    with pytest.raises(ValueError):
        Schedule()
    with pytest.raises(ValueError):
        Schedule(off_action="park", off_at=time(19), days=frozenset())
    with pytest.raises(ValueError):
        Schedule(off_action="restore", off_at=time(19))
