"""The schedule tick: notices before scheduled park/stop/suspend runs, the runs themselves, and
time-to-live deadlines. One APScheduler job calls ``schedule_job`` every TICK_SECONDS.

Per-VM schedules are not APScheduler cron triggers (their DST bugs: agronholm/apscheduler#606,
#980): each tick asks bot.core.schedules which runs are due, in UTC, and claims each with a
compare-and-set on its ``schedule_runs`` row (``Store.claim_run``), so every process may tick and
each notice is sent, and each run started, exactly once.

* A notice goes ``VMBOT_SCHEDULE_NOTICE`` seconds before an off-run (park, stop, suspend): a DM to the
  owner and a message in the schedule's channel, with Snooze 1h / Snooze 4h / Skip today / Park now.
  A snoozed run gives notice again before its new time.
* A due run starts through the same ``start_operation`` and workflow as a manual verb, requested by
  "the schedule", in a new thread in the schedule's channel. A run found late by more than
  ``VMBOT_SCHEDULE_CATCHUP`` (the bot was down) is skipped and reported there instead.
* A run whose VM is in the wrong state (already parked) or busy is skipped with a note: the refusal
  is recorded on the run, so it is never tried again.
* A time to live is a deadline, not a time of day: once it has passed the VM is parked, however late.
* With VMBOT_IDLE_HOURS set, a running VM with no schedule, no time to live and no operation for that
  long gets one reminder a day in its last operation's thread (Park now, Remind me tomorrow).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo
from typing import TYPE_CHECKING

from slack_sdk.errors import SlackApiError, SlackRequestError

from bot.core import audit
from bot.core.errors import UserError
from bot.core.lifecycle import start_operation
from bot.core.schedule_records import LOOKBACK, SCHEDULE_ACTOR, TTL_ACTOR, schedule_of
from bot.core.schedules import Run, Schedule, describe_ttl, due, format_local, next_runs, notice_at
from bot.slack import blocks
from bot.slack.refusals import slack_text
from bot.slack.text import is_slack_user
from storage.models import RunState, Verb, Verdict, VmSchedule, VmState, VmTtl, utcnow

if TYPE_CHECKING:
    from bot.deps import Deps

log = logging.getLogger(__name__)

TICK_SECONDS = 30
Clock = Callable[[], datetime]
NOTICE_FROM = (None, RunState.SNOOZED)
RUN_FROM = (None, RunState.NOTICED, RunState.SNOOZED)
SETTLED = frozenset({RunState.STARTED, RunState.SKIPPED, RunState.MISSED})


@dataclass
class TickReport:
    """What one tick did (for logs and tests): ``(vm, run key)`` per kind."""

    noticed: list[tuple[str, str]] = field(default_factory=list)
    started: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    missed: list[tuple[str, str]] = field(default_factory=list)


def schedule_job(bot: Deps) -> None:
    """The periodic job (bot.jobs.scheduler); every bot process runs it."""
    report = ScheduleRunner(bot).tick()
    if report.started or report.missed or report.skipped:
        log.info("schedule tick: started %s, skipped %s, missed %s", report.started, report.skipped, report.missed)


def ttl_key(park_at: datetime) -> str:
    """A deadline's run key: a snooze moves the deadline, so the moved run gives notice again."""
    return f"ttl:{park_at.isoformat(timespec='minutes')}"


class ScheduleRunner:
    def __init__(self, bot: Deps, now: Clock = utcnow) -> None:
        self.bot, self.now = bot, now
        self.notice = timedelta(seconds=bot.settings.schedule_notice)
        self.catchup = timedelta(seconds=bot.settings.schedule_catchup)

    def tick(self) -> TickReport:
        """One pass over every schedule and deadline; a failure on one VM is logged and the rest go on."""
        now, report = self.now(), TickReport()
        for row in self.bot.store.all_schedules():
            try:
                self._schedule(row, now, report)
            except Exception:  # one broken VM must not stop every other VM's schedule
                log.exception("the schedule of %s failed this tick", row.vm_name)
        for ttl in self.bot.store.all_ttls():
            try:
                self._ttl(ttl, now, report)
            except Exception:
                log.exception("the time to live of %s failed this tick", ttl.vm_name)
        if self.bot.settings.idle_hours:
            self._idle(now, report)
        return report

    # ---- idle reminders (VMBOT_IDLE_HOURS) --------------------------------------------------

    def _idle(self, now: datetime, report: TickReport) -> None:
        """One reminder a day, in its last thread, for a running VM nobody scheduled or touched for that long."""
        store, idle = self.bot.store, timedelta(hours=self.bot.settings.idle_hours)
        planned = {row.vm_name for row in store.all_schedules()} | {ttl.vm_name for ttl in store.all_ttls()}
        key = f"idle:{now.astimezone(ZoneInfo(self.bot.settings.timezone)).date().isoformat()}"
        for item in store.list_vms():
            vm = item.vm
            if vm.state is not VmState.RUNNING or item.active_operation is not None or vm.name in planned:
                continue
            last = next(iter(store.operations_for(vm.name, limit=1)), None)
            since = max(vm.created_at, (last.finished_at or last.created_at) if last else vm.created_at)
            if now - since < idle or not store.claim_run(vm.name, key, RunState.NOTICED, from_states=(None,)):
                continue
            report.noticed.append((vm.name, key))
            idle_for = describe_ttl(timedelta(hours=int((now - since).total_seconds() // 3600)))
            message = blocks.idle_reminder(vm.name, idle_for, key)
            channel = last.channel if last else None
            if channel:
                thread = last.thread_ts if last else None
                self._send(f"the idle reminder for {vm.name}",
                           lambda c=channel, t=thread, m=message: self.bot.client.chat_postMessage(channel=c, thread_ts=t, **m.as_kwargs()))  # fmt: skip

    # ---- schedules -----------------------------------------------------------------

    def _schedule(self, row: VmSchedule, now: datetime, report: TickReport) -> None:
        vm = self.bot.store.vm(row.vm_name)
        if vm is None or vm.state is VmState.DELETED:  # a schedule outlives no VM: it would only be refused daily
            if self.bot.store.delete_schedule(row.vm_name):
                self._say(row.channel, f":information_source: `{row.vm_name}` is gone, so I removed its schedule.")
            return
        schedule = schedule_of(row)
        missed: list[str] = []
        settled = {key for key, state in self.bot.store.run_states(row.vm_name).items() if state in SETTLED}
        for run, what in runs_to_handle(schedule, now, since=max(row.created_at, now - LOOKBACK),
                                        notice=self.notice, catchup=self.catchup):  # fmt: skip
            key = str(run.key)
            if key in settled:
                continue
            if what == "notice":
                if self.bot.store.claim_run(row.vm_name, key, RunState.NOTICED, from_states=NOTICE_FROM):
                    when = format_local(run.when, schedule.zone)
                    self._send_notice(row.vm_name, run.action, when, run.when - now, key, row.channel)
                    report.noticed.append((row.vm_name, key))
            elif what == "run":
                if self.bot.store.claim_run(row.vm_name, key, RunState.STARTED, from_states=RUN_FROM):
                    self._start(row.vm_name, run.action, key, row.channel, SCHEDULE_ACTOR, report)
            elif self.bot.store.claim_run(row.vm_name, key, RunState.MISSED, from_states=RUN_FROM):
                report.missed.append((row.vm_name, key))
                self.bot.metrics.schedule_run(run.action, "missed")
                missed.append(f"{run.action} at {format_local(run.when, schedule.zone)}")
        if missed:  # one message for however many runs a long outage missed
            self._say(row.channel, f":double_vertical_bar: I missed `{row.vm_name}`'s scheduled {', '.join(missed)} "
                      f"(I was not running within {int(self.catchup.total_seconds() // 60)} min of "
                      f"{'them' if len(missed) > 1 else 'it'}), so I skipped {'them' if len(missed) > 1 else 'it'}. "
                      "The next run goes ahead as planned.")  # fmt: skip

    # ---- time to live ------------------------------------------------------------------

    def _ttl(self, ttl: VmTtl, now: datetime, report: TickReport) -> None:
        key = ttl_key(ttl.park_at)
        if now < ttl.park_at:
            if now >= ttl.park_at - self.notice:
                if self.bot.store.claim_run(ttl.vm_name, key, RunState.NOTICED, from_states=NOTICE_FROM):
                    when = format_local(ttl.park_at, self.bot.settings.timezone)
                    self._send_notice(ttl.vm_name, "park", when, ttl.park_at - now, key, ttl.channel, is_ttl=True)
                    report.noticed.append((ttl.vm_name, key))
            return
        if self.bot.store.claim_run(ttl.vm_name, key, RunState.STARTED, from_states=RUN_FROM):
            self.bot.store.clear_ttl(ttl.vm_name)  # one deadline, one park (a refused one is reported)
            self._start(ttl.vm_name, "park", key, ttl.channel, TTL_ACTOR, report)

    # ---- doing it ------------------------------------------------------------------------

    def _start(self, vm_name: str, action: str, key: str, channel: str | None, actor: str, report: TickReport) -> None:
        """Start the run as a manual verb starts, or record why not (wrong state, busy) and say so once."""
        store = self.bot.store
        request = audit.Request("schedule", actor, channel, f"{action} {vm_name} ({key})", action, vm_name)
        with audit.recording(request) as recording:
            try:
                vm = store.vm(vm_name)
                op = start_operation(
                    store,
                    Verb(action),
                    vm_name,
                    requested_by=actor,
                    zone=vm.zone if vm else self.bot.settings.zone,
                    machine_type=vm.machine_type if vm else self.bot.settings.machine_type,
                    channel=channel,
                    request_key=f"schedule:{vm_name}:{key}",
                )
            except UserError as refusal:
                words = slack_text(refusal)
                recording.record(store, audit.verdict_for(refusal), detail=words)
                store.claim_run(vm_name, key, RunState.SKIPPED, from_states=(RunState.STARTED,), note=words)
                report.skipped.append((vm_name, key))
                self.bot.metrics.schedule_run(action, "skipped")
                who = "time to live" if actor == TTL_ACTOR else "schedule"
                self._say(channel, f":information_source: I skipped the {who}'s {action} of `{vm_name}`: {words}")
                return
            recording.record(store, Verdict.ALLOWED)
        store.run_started(vm_name, key, op.id)
        report.started.append((vm_name, key))
        self.bot.metrics.schedule_run(action, "started")
        self.bot.runner.submit(self.bot.workflows.run, op.id)

    def _send_notice(self, vm_name: str, action: str, when: str, ahead: timedelta, key: str, channel: str | None,
                     *, is_ttl: bool = False) -> None:  # fmt: skip
        """The owner's DM and the channel's message, each with the buttons; Slack failing is logged, not fatal."""
        minutes = max(0, round(ahead.total_seconds() / 60))
        message = blocks.schedule_notice(vm_name, action, when, minutes, key, ttl=is_ttl)
        vm = self.bot.store.vm(vm_name)
        if vm is not None and is_slack_user(vm.owner):
            owner = vm.owner

            def to_owner() -> None:
                dm = self.bot.client.conversations_open(users=owner)
                self.bot.client.chat_postMessage(channel=dm["channel"]["id"], **message.as_kwargs())

            self._send(f"{vm_name}'s owner the notice for {key}", to_owner)
        if channel:
            self._post(channel, message)

    def _say(self, channel: str | None, text: str) -> None:
        if channel:
            self._post(channel, blocks.text_only(text))
        else:
            log.info("%s", text)

    def _post(self, channel: str, message: blocks.Message) -> None:
        self._send(f"a message in {channel}", lambda: self.bot.client.chat_postMessage(channel=channel, **message.as_kwargs()))

    def _send(self, what: str, call: Callable[[], object]) -> None:
        """Make a Slack call on the job runner, not on the tick: a 429's Retry-After or Slack's 5xx retries
        must not hold up the runs due after it (each starts within 60 s of its minute). A failure is logged."""

        def send() -> None:
            try:
                call()
            except (SlackApiError, SlackRequestError, OSError) as exc:
                log.warning("could not send %s: %s", what, exc)

        self.bot.runner.submit(send)


def runs_to_handle(
    schedule: Schedule, now: datetime, *, since: datetime, notice: timedelta, catchup: timedelta
) -> Iterator[tuple[Run, str]]:
    """The runs after ``since`` a tick at ``now`` deals with: ``notice`` (an off-run within its notice,
    not due yet), ``run`` (due, within the catch-up window) or ``missed`` (due longer ago than that)."""
    for run in next_runs(schedule, since):
        if run.when > now + notice:
            return
        state = due(run.when, now, catchup)
        if state == "not_yet":
            warn_at = notice_at(run, notice)
            if warn_at is not None and warn_at <= now:
                yield run, "notice"
        else:
            yield run, state
