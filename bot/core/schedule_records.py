"""A schedule as the store keeps it (``storage.models.VmSchedule``) and as the time rules read it
(``bot.core.schedules.Schedule``), and finding one run again by its key (a button's value)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from bot.core.schedules import RunKey, Run, Schedule, Snooze, next_runs
from storage.models import VmSchedule

# Who asks for a scheduled run, in operations.requested_by and the audit trail: not a Slack user id and
# not an API token's name (those are lowercase letters, digits, '.', '_', '-'), so it can be neither.
SCHEDULE_ACTOR = "vmbot:schedule"
TTL_ACTOR = "vmbot:ttl"
SYSTEM_ACTORS = {SCHEDULE_ACTOR: "the schedule", TTL_ACTOR: "the time to live"}

# How far back a run is looked for: a snooze moves a run at most a few hours, a DST gap one.
LOOKBACK = timedelta(days=2)
SEARCH_DAYS = timedelta(days=5)  # a run lies within a DST gap and a snooze of its own day


def schedule_of(row: VmSchedule) -> Schedule:
    return Schedule(
        tz=row.tz,
        off_action=row.off_action,
        off_at=time.fromisoformat(row.off_at) if row.off_at else None,
        on_action=row.on_action,
        on_at=time.fromisoformat(row.on_at) if row.on_at else None,
        days=frozenset(int(day) for day in row.days.split(",") if day),
        skip_dates=frozenset(date.fromisoformat(day) for day in row.skip_dates or ()),
        skipped_runs=frozenset(RunKey.parse(key) for key in row.skipped_runs or ()),
        snoozes=tuple(Snooze(RunKey.parse(key), datetime.fromisoformat(until)) for key, until in row.snoozes or ()),
    )


def row_values(schedule: Schedule) -> dict[str, Any]:
    """The columns of ``schedule`` (without its one-off changes, which a new schedule starts without)."""
    return {
        "tz": schedule.tz,
        "off_action": schedule.off_action,
        "off_at": schedule.off_at.strftime("%H:%M") if schedule.off_at else None,
        "on_action": schedule.on_action,
        "on_at": schedule.on_at.strftime("%H:%M") if schedule.on_at else None,
        "days": ",".join(str(day) for day in sorted(schedule.days)),
        "skip_dates": [day.isoformat() for day in sorted(schedule.skip_dates)],
    }


def changes_of(schedule: Schedule) -> dict[str, Any]:
    """The one-off changes, as ``Store.set_schedule_changes`` takes them."""
    return {
        "skipped_runs": sorted(str(key) for key in schedule.skipped_runs),
        "snoozes": [[str(item.key), item.until.isoformat()] for item in schedule.snoozes],
    }


def find_run(schedule: Schedule, key: RunKey) -> Run | None:
    """The run ``key`` names, as it stands now (snoozed or not); None if it no longer exists (skipped,
    or the schedule changed). Searched around its own day, so it needs no clock."""
    start = datetime.combine(key.day - timedelta(days=2), time(), tzinfo=timezone.utc)
    for run in next_runs(schedule, start):
        if run.key == key:
            return run
        if run.when > start + SEARCH_DAYS:
            return None
    return None
