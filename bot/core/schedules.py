"""Schedules as data, and the time rules that say when their runs happen.

Pure: no database, no Slack, no clock. Every function takes the time it works from,
so the scheduler's tick, the notices and the tests all share one set of rules.

Runs are computed in UTC with ``zoneinfo`` (not with APScheduler cron triggers, whose
DST handling has open bugs: agronholm/apscheduler#606, #980):

* A local time that does not exist (spring forward) runs at the first valid minute
  after it: 02:30 Europe/Berlin on the last Sunday of March runs at 03:00 CEST.
* An ambiguous local time (fall back) runs once, at its first occurrence (``fold=0``).

A run is identified by its side (``off`` or ``on``) and the local date it belongs to
(``RunKey``), so a replica that claims it, a snooze and a "skip today" all name it the
same way, whatever time it was moved to.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from heapq import merge
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

Side = Literal["off", "on"]
OFF_ACTIONS = ("park", "stop", "suspend")
ON_ACTIONS = ("restore", "start", "resume")
# The option that sets each action's time, e.g. park-at=19:00.
ACTION_OPTIONS: dict[str, str] = {f"{action}-at": action for action in OFF_ACTIONS + ON_ACTIONS}
SCHEDULE_OPTIONS = frozenset(ACTION_OPTIONS) | {"days", "tz", "skip"}
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_WORDS: dict[str, frozenset[int]] = {
    "daily": frozenset(range(7)),
    "weekdays": frozenset(range(5)),
    "weekends": frozenset({5, 6}),
}
FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
HHMM_RE = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])")
DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
DURATION_RE = re.compile(r"(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?")
TZ_EXAMPLES = "Europe/Berlin, America/New_York or UTC"
MAX_SKIP_DATES = 100
MIN_TTL = timedelta(minutes=1)
MAX_TTL = timedelta(days=365)


class ScheduleError(ValueError):
    """Input that does not make a schedule (or a TTL). ``str(error)`` is plain text for a person,
    saying what to type instead; ``option`` names the offending option when there is one.
    Callers escape it before it goes into mrkdwn (it may quote the person's input)."""

    def __init__(self, message: str, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


@dataclass(frozen=True, order=True)
class RunKey:
    """Names one run: its side and the local date it was scheduled for."""

    side: Side
    day: date

    def __str__(self) -> str:
        return f"{self.side}:{self.day.isoformat()}"

    @classmethod
    def parse(cls, text: str) -> RunKey:
        """Reads ``str(key)`` back (e.g. from a button's value); raises ScheduleError."""
        side, _, day = text.partition(":")
        if side not in ("off", "on") or not DATE_RE.fullmatch(day):
            raise ScheduleError(f"'{text}' does not name a scheduled run (expected e.g. off:2025-12-08)")
        return cls(side, date.fromisoformat(day))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Snooze:
    """One run moved to ``until`` (UTC)."""

    key: RunKey
    until: datetime


@dataclass(frozen=True)
class Schedule:
    """When a VM goes off (park/stop/suspend) and comes back (restore/start/resume).

    ``days`` are weekday numbers (Monday is 0) in the schedule's zone; ``skip_dates`` are
    local dates on which neither side runs (holidays); ``skipped_runs`` and ``snoozes`` are
    one-off changes to single runs (the notice's buttons)."""

    tz: str = "UTC"
    off_action: str | None = None
    off_at: time | None = None
    on_action: str | None = None
    on_at: time | None = None
    days: frozenset[int] = DAY_WORDS["daily"]
    skip_dates: frozenset[date] = frozenset()
    skipped_runs: frozenset[RunKey] = frozenset()
    snoozes: tuple[Snooze, ...] = field(default=())

    def __post_init__(self) -> None:
        # Built by parse_schedule from user input, or by the store from its rows: either way
        # a Schedule that cannot run is a bug, so say so at once instead of looping forever.
        if (self.off_action is None) != (self.off_at is None) or (self.on_action is None) != (self.on_at is None):
            raise ValueError("an action needs its time and a time its action")
        if self.off_action is None and self.on_action is None:
            raise ValueError("a schedule needs an off-action or an on-action")
        if self.off_action not in (None, *OFF_ACTIONS) or self.on_action not in (None, *ON_ACTIONS):
            raise ValueError(f"unknown action in {self.off_action!r}/{self.on_action!r}")
        if not self.days or not self.days <= DAY_WORDS["daily"]:
            raise ValueError(f"days must be a non-empty subset of 0..6, not {sorted(self.days)}")
        ZoneInfo(self.tz)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def action(self, side: Side) -> str | None:
        return self.off_action if side == "off" else self.on_action

    def at(self, side: Side) -> time | None:
        return self.off_at if side == "off" else self.on_at


@dataclass(frozen=True)
class Run:
    """One scheduled action. ``when`` is when it runs (UTC, after any snooze); ``scheduled`` is
    when the schedule itself put it (UTC)."""

    key: RunKey
    action: str
    when: datetime
    scheduled: datetime

    @property
    def side(self) -> Side:
        return self.key.side

    @property
    def snoozed(self) -> bool:
        return self.when != self.scheduled

    @property
    def gives_notice(self) -> bool:
        """Only off-actions (park, stop, suspend) warn the owner first."""
        return self.key.side == "off"


# --- parsing -----------------------------------------------------------------------------------


def parse_schedule(options: Mapping[str, str], default_tz: str = "UTC") -> Schedule:
    """Builds a Schedule from the options of ``/vm schedule NAME key=value ...`` (already split).

    ``days`` defaults to daily and ``tz`` to ``default_tz`` (VMBOT_TIMEZONE). The word ``off``
    (remove the schedule) is the caller's to handle. Raises ScheduleError."""
    unknown = sorted(set(options) - SCHEDULE_OPTIONS)
    if unknown:
        raise ScheduleError(_unknown_option_message(unknown[0]), unknown[0])
    off = [key for key in options if key in ACTION_OPTIONS and ACTION_OPTIONS[key] in OFF_ACTIONS]
    on = [key for key in options if key in ACTION_OPTIONS and ACTION_OPTIONS[key] in ON_ACTIONS]
    if not off and not on:
        raise ScheduleError(
            "say when: park-at=HH:MM, stop-at=HH:MM or suspend-at=HH:MM, and/or "
            "restore-at=HH:MM, start-at=HH:MM or resume-at=HH:MM (e.g. park-at=19:00 restore-at=08:00)"
        )
    for side in (off, on):
        if len(side) > 1:
            choices = " and ".join(sorted(side))
            raise ScheduleError(f"choose one of {choices}: a schedule has one action each way", side[1])
    _check_pairing(off[0] if off else None, on[0] if on else None)
    tz = parse_tz(options.get("tz", default_tz))
    return Schedule(
        tz=tz,
        off_action=ACTION_OPTIONS[off[0]] if off else None,
        off_at=parse_hhmm(options[off[0]], off[0]) if off else None,
        on_action=ACTION_OPTIONS[on[0]] if on else None,
        on_at=parse_hhmm(options[on[0]], on[0]) if on else None,
        days=parse_days(options.get("days", "daily")),
        skip_dates=parse_skip_dates(options.get("skip", "")),
    )


def _check_pairing(off_option: str | None, on_option: str | None) -> None:
    """A parked VM comes back with restore, a stopped one with start, a suspended one with resume."""
    if off_option is None or on_option is None:
        return
    pairs = dict(zip(OFF_ACTIONS, ON_ACTIONS, strict=True))
    off, on = ACTION_OPTIONS[off_option], ACTION_OPTIONS[on_option]
    if pairs[off] != on:
        message = f"a VM that was {off_action_past(off)} comes back with {pairs[off]}-at, not {on}-at"
        raise ScheduleError(message, on_option)


def off_action_past(action: str) -> str:
    return {"park": "parked", "stop": "stopped", "suspend": "suspended"}[action]


def _unknown_option_message(option: str) -> str:
    close = difflib.get_close_matches(option, sorted(SCHEDULE_OPTIONS), n=1)
    hint = f" Did you mean {close[0]}=?" if close else ""
    known = ", ".join(sorted(SCHEDULE_OPTIONS))
    return f"a schedule has no option '{option}'.{hint} Options: {known}"


def parse_hhmm(text: str, option: str = "time") -> time:
    """``19:00`` or ``7:05`` (24-hour clock, local to the schedule's zone)."""
    match = HHMM_RE.fullmatch(text.strip())
    if not match:
        raise ScheduleError(f"{option}={text}: write the time as HH:MM on a 24-hour clock, e.g. 19:00 or 08:30", option)
    return time(int(match[1]), int(match[2]))


def parse_days(text: str) -> frozenset[int]:
    """``daily``, ``weekdays``, ``weekends``, ``mon-fri``, ``mon,wed,fri``, ``fri-mon`` (wraps)."""
    words = text.strip().lower()
    if words in DAY_WORDS:
        return DAY_WORDS[words]
    days: set[int] = set()
    for part in words.split(","):
        first, dash, last = part.partition("-")
        start = _day_number(first, text)
        end = _day_number(last, text) if dash else start
        days.update((start + i) % 7 for i in range((end - start) % 7 + 1))
    return frozenset(days)


def _day_number(word: str, text: str) -> int:
    word = word.strip()
    for names in (DAY_NAMES, FULL_DAY_NAMES):
        if word in names:
            return names.index(word)
    raise ScheduleError(
        f"days={text}: '{word}' is not a day. Use daily, weekdays, weekends, a range such as mon-fri, "
        "or a list such as mon,wed,fri",
        "days",
    )


def parse_tz(name: str) -> str:
    """An IANA zone name (``Europe/Berlin``, ``UTC``), matched without regard to case.

    Returns the canonical spelling; raises ScheduleError naming an example for anything else."""
    name = name.strip()
    zones = _zone_names()
    canonical = zones.get(name.lower())
    if canonical is None:
        close = difflib.get_close_matches(name, list(zones.values()), n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        raise ScheduleError(f"tz={name} is not a time zone I know.{hint} Use an IANA name such as {TZ_EXAMPLES}", "tz")
    try:
        ZoneInfo(canonical)
    except (ZoneInfoNotFoundError, ValueError) as error:  # listed but unreadable: a broken tz database
        raise ScheduleError(f"tz={name} cannot be loaded here ({error}); try {TZ_EXAMPLES}", "tz") from error
    return canonical


@cache
def _zone_names() -> dict[str, str]:
    return {zone.lower(): zone for zone in available_timezones()} | {"utc": "UTC"}


def parse_skip_dates(text: str) -> frozenset[date]:
    """``2025-12-24,2025-12-25``: local dates on which the schedule does nothing."""
    dates: set[date] = set()
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        try:
            if not DATE_RE.fullmatch(part):
                raise ValueError(part)
            dates.add(date.fromisoformat(part))
        except ValueError:
            message = f"skip={text}: '{part}' is not a date; write YYYY-MM-DD, e.g. 2025-12-25"
            raise ScheduleError(message, "skip") from None
    if len(dates) > MAX_SKIP_DATES:
        raise ScheduleError(f"skip= takes at most {MAX_SKIP_DATES} dates", "skip")
    return frozenset(dates)


def schedule_options(schedule: Schedule) -> dict[str, str]:
    """The options that parse back into ``schedule`` (without its one-off snoozes and skips),
    for the API's answer, the CLI and a "you set:" echo."""
    options: dict[str, str] = {}
    for side in ("off", "on"):
        action, at = schedule.action(side), schedule.at(side)
        if action and at:
            options[f"{action}-at"] = at.strftime("%H:%M")
    options["days"] = ",".join(DAY_NAMES[d] for d in sorted(schedule.days))
    options["tz"] = schedule.tz
    if schedule.skip_dates:
        options["skip"] = ",".join(d.isoformat() for d in sorted(schedule.skip_dates))
    return options


def parse_duration(text: str, option: str = "ttl") -> timedelta:
    """``90m``, ``8h``, ``2d``, ``1w``, or combined such as ``1d12h``."""
    cleaned = text.strip().lower()
    match = DURATION_RE.fullmatch(cleaned)
    if not cleaned or not match:
        raise ScheduleError(f"{option}={text}: write a duration such as 90m, 8h, 2d or 1d12h", option)
    weeks, days, hours, minutes = (int(group or 0) for group in match.groups())
    return timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes)


def parse_ttl(text: str) -> timedelta | None:
    """A VM's time to live: a duration (``8h``, ``90m``, ``2d``), or ``off`` (None: no TTL)."""
    if text.strip().lower() == "off":
        return None
    ttl = parse_duration(text, "ttl")
    if not MIN_TTL <= ttl <= MAX_TTL:
        raise ScheduleError(f"ttl={text}: choose between 1m and 365d, or off", "ttl")
    return ttl


# --- when runs happen ----------------------------------------------------------------------------


def local_to_utc(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The instant (UTC) of wall-clock ``at`` on ``day`` in ``zone``.

    A time skipped by a DST change runs at the first valid minute after it; an ambiguous time
    takes its first occurrence (fold=0)."""
    wall = datetime.combine(day, at)
    while not _exists(wall, zone):  # at most the length of the gap, in minutes
        wall += timedelta(minutes=1)
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)


def _exists(wall: datetime, zone: ZoneInfo) -> bool:
    there_and_back = wall.replace(tzinfo=zone).astimezone(UTC).astimezone(zone)
    return there_and_back.replace(tzinfo=None) == wall


def next_runs(schedule: Schedule, after: datetime) -> Iterator[Run]:
    """Every run strictly after ``after`` (an aware datetime), in time order, forever.

    Skip dates and skipped runs are left out; a snoozed run comes at its snoozed time.
    ``next(next_runs(s, now), None)`` is the next one; ``itertools.islice`` takes a few."""
    after = _as_utc(after)
    snoozed = {snooze.key: snooze.until for snooze in schedule.snoozes}
    nominal = (_nominal(schedule, key) for key in snoozed)  # None: no such run (skipped, or days changed)
    moved = sorted((replace(run, when=snoozed[run.key]) for run in nominal if run), key=lambda run: run.when)
    on_time = (run for run in _runs_from(schedule, after) if run.key not in snoozed)
    for run in merge(on_time, moved, key=lambda run: run.when):
        if run.when > after:
            yield run


def next_run(schedule: Schedule, after: datetime) -> Run | None:
    return next(next_runs(schedule, after), None)


def _runs_from(schedule: Schedule, after: datetime) -> Iterator[Run]:
    """Unsnoozed runs day by day from the local day before ``after`` (a run never moves more than
    a DST gap from its own day, so this stays in time order)."""
    day = after.astimezone(schedule.zone).date() - timedelta(days=1)
    while True:
        todays = (_nominal(schedule, RunKey(side, day)) for side in ("off", "on"))
        yield from sorted((run for run in todays if run), key=lambda run: run.when)
        day += timedelta(days=1)


def _nominal(schedule: Schedule, key: RunKey) -> Run | None:
    """The run ``key`` names, at its scheduled time, or None if the schedule has no such run."""
    action, at = schedule.action(key.side), schedule.at(key.side)
    if action is None or at is None or key.day.weekday() not in schedule.days:
        return None
    if key.day in schedule.skip_dates or key in schedule.skipped_runs:
        return None
    when = local_to_utc(key.day, at, schedule.zone)
    return Run(key, action, when, when)


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("times must be timezone-aware (UTC)")
    return moment.astimezone(UTC)


# --- one-off changes -------------------------------------------------------------------------------


SNOOZE_CHOICES = {"1h": timedelta(hours=1), "4h": timedelta(hours=4)}


def snooze(schedule: Schedule, run: Run, by: timedelta) -> Schedule:
    """Moves that one run to its current time plus ``by`` (snoozing twice adds up)."""
    until = run.when + by
    kept = tuple(s for s in schedule.snoozes if s.key != run.key)
    return replace(schedule, snoozes=(*kept, Snooze(run.key, until)))


def skip_run(schedule: Schedule, run: Run) -> Schedule:
    """Leaves out that one run (the notice's "Skip today"); the other side still runs."""
    return replace(schedule, skipped_runs=schedule.skipped_runs | {run.key})


def forget_before(schedule: Schedule, moment: datetime) -> Schedule:
    """Drops one-off skips and snoozes that can no longer matter (their day is two days past)."""
    horizon = _as_utc(moment).astimezone(schedule.zone).date() - timedelta(days=2)
    return replace(
        schedule,
        skipped_runs=frozenset(k for k in schedule.skipped_runs if k.day >= horizon),
        snoozes=tuple(s for s in schedule.snoozes if s.key.day >= horizon or s.until > moment),
    )


# --- catch-up and notice ---------------------------------------------------------------------------

Due = Literal["not_yet", "run", "missed"]


def due(run_at: datetime, now: datetime, catchup: timedelta) -> Due:
    """What a tick at ``now`` does with a run due at ``run_at``: a run missed by less than
    ``catchup`` (VMBOT_SCHEDULE_CATCHUP) still runs, late; one missed by more is skipped
    and reported ("missed")."""
    late_by = _as_utc(now) - _as_utc(run_at)
    if late_by < timedelta(0):
        return "not_yet"
    return "run" if late_by < catchup else "missed"


def notice_at(run: Run, notice: timedelta) -> datetime | None:
    """When the owner is warned (VMBOT_SCHEDULE_NOTICE before the run), or None for
    restore/start/resume, which give no notice. It may already be past (a run snoozed less
    than ``notice`` ahead): then the notice goes at once."""
    return run.when - notice if run.gives_notice else None


# --- words -------------------------------------------------------------------------------------------


def format_local(moment: datetime, zone: str | ZoneInfo) -> str:
    """``Mon 8 Dec 19:00 CET``: a moment as a person in that zone reads it."""
    local = _as_utc(moment).astimezone(zone if isinstance(zone, ZoneInfo) else ZoneInfo(zone))
    return f"{local:%a} {local.day} {local:%b %H:%M %Z}"


def describe_days(days: frozenset[int]) -> str:
    """``every day``, ``Mon-Fri``, ``Sat-Sun``, ``Fri-Mon``, ``Mon, Wed, Fri``."""
    if days == DAY_WORDS["daily"]:
        return "every day"
    for start in sorted(days):
        run_of_days = [(start + i) % 7 for i in range(len(days))]
        if len(days) > 1 and set(run_of_days) == days:
            return f"{DAY_NAMES[start].title()}-{DAY_NAMES[run_of_days[-1]].title()}"
    return ", ".join(DAY_NAMES[d].title() for d in sorted(days))


def describe_run(run: Run, schedule: Schedule) -> str:
    """``park Mon 8 Dec 19:00 CET`` (with ``snoozed from 19:00`` when moved)."""
    text = f"{run.action} {format_local(run.when, schedule.zone)}"
    if run.snoozed:
        text += f" (snoozed from {run.scheduled.astimezone(schedule.zone):%H:%M})"
    return text


def describe(schedule: Schedule, after: datetime | None = None) -> str:
    """``parks at 19:00 and restores at 08:00 Europe/Berlin on Mon-Fri; next: park Mon 8 Dec 19:00 CET``.

    Plain text (it names a zone and dates, nothing from outside); pass ``after`` for the next run."""
    parts = [
        f"{action}s at {at:%H:%M}"
        for action, at in ((schedule.off_action, schedule.off_at), (schedule.on_action, schedule.on_at))
        if action and at
    ]
    text = f"{' and '.join(parts)} {schedule.tz} on {describe_days(schedule.days)}"
    if schedule.skip_dates:
        text += f", except {', '.join(d.isoformat() for d in sorted(schedule.skip_dates))}"
    if after is not None:
        run = next_run(schedule, after)
        text += f"; next: {describe_run(run, schedule)}" if run else "; nothing ahead"
    return text


def describe_ttl(ttl: timedelta) -> str:
    """A TTL written as ``parse_ttl`` reads it: ``8h``, ``1d12h``, ``1h30m`` (for 90 minutes)."""
    minutes = int(ttl.total_seconds()) // 60
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    text = "".join(f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m")) if n)
    return text or "0m"
