"""The buttons of a schedule's (or a time to live's) notice: ``schedule_snooze_1h``,
``schedule_snooze_4h``, ``schedule_skip`` and ``schedule_act_now``.

Only the VM's owner or an admin may press them; anyone else is told, privately, who can. Every
press, allowed or refused, goes into the audit trail. A button names its run (``blocks.schedule_notice``),
so a press on an old notice (the run has started, was skipped, or the schedule changed) says so and
changes nothing. A snooze says until when, in the schedule's zone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, App, Respond

from bot.core import audit, permissions
from bot.core.errors import Reason, Refused, UserError
from bot.core.lifecycle import start_operation
from bot.core.schedule_records import changes_of, find_run, schedule_of
from bot.core.schedules import (
    SNOOZE_CHOICES, RunKey, ScheduleError, format_local, forget_before, off_action_past, skip_run, snooze,
)
from bot.jobs.schedule_runner import RUN_FROM, ttl_key
from bot.slack import blocks
from bot.slack.refusals import slack_text
from handlers.actions import PressReply
from storage.models import RunState, Verb, Verdict, utcnow

if TYPE_CHECKING:
    from bot.deps import Deps

Payload = dict[str, Any]
SNOOZES = {"schedule_snooze_1h": SNOOZE_CHOICES["1h"], "schedule_snooze_4h": SNOOZE_CHOICES["4h"]}
BUTTONS = (*SNOOZES, "schedule_skip", "schedule_act_now", "idle_remind_tomorrow")


def register(app: App, bot: Deps) -> None:
    def on_press(ack: Ack, body: Payload, action: Payload, respond: Respond) -> None:
        reply = press(bot, body, action)
        bot.runner.submit(reply.send, respond)
        ack()

    for action_id in BUTTONS:
        app.action(action_id)(on_press)


class Stale(UserError):
    """The notice is out of date; its text is Slack's words already."""


def press(bot: Deps, body: Payload, action: Payload) -> PressReply:
    """Check who and which run, then snooze, skip or act; what to answer the person who pressed."""
    action_id = str(action.get("action_id"))
    named = blocks.read_schedule_value(str(action.get("value") or ""))
    vm_name, key = named if named else (None, "")
    request = audit.Request.of_button(body, action, verb="schedule", vm_name=vm_name)
    with audit.recording(request) as recording:
        try:
            if vm_name is None:
                raise Refused(Reason.UNREADABLE_BUTTON, verb="schedule")
            vm = bot.store.vm(vm_name)
            if vm is None:
                raise Refused(Reason.VM_UNKNOWN, vm_name)
            permissions.require_owner_or_admin(bot.settings, request.user_id, vm, "schedule")
            kinds = {"ttl": _ttl_press, "idle": _idle_press}
            text = kinds.get(key.partition(":")[0], _schedule_press)(bot, body, request, action_id, vm_name, key)
        except Stale as stale:
            recording.record(bot.store, Verdict.REFUSED, detail=str(stale))
            return PressReply(f":information_source: {stale}", replaces_question=False)
        except UserError as refusal:
            recording.record(bot.store, audit.verdict_for(refusal), detail=slack_text(refusal))
            return PressReply(f":no_entry: {slack_text(refusal)}", replaces_question=False)
        recording.record(bot.store, Verdict.ALLOWED, detail=f"{action_id} {key}")
        return PressReply(text)


def _schedule_press(bot: Deps, body: Payload, request: audit.Request, action_id: str, vm_name: str, key: str) -> str:
    row = bot.store.vm_schedule(vm_name)
    try:
        run_key = RunKey.parse(key)
    except ScheduleError:
        raise Refused(Reason.UNREADABLE_BUTTON, verb="schedule") from None
    schedule = schedule_of(row) if row else None
    run = find_run(schedule, run_key) if schedule else None
    if schedule is None or run is None:
        raise Stale(
            f"`{vm_name}` has no such run planned any more (its schedule changed); `/vm schedule {vm_name}` shows it."
        )
    _check_open(bot, vm_name, key)
    if action_id in SNOOZES:
        moved = snooze(schedule, run, SNOOZES[action_id])
        if not bot.store.claim_run(vm_name, key, RunState.SNOOZED, from_states=RUN_FROM):
            raise Stale(_too_late(bot, vm_name, key))
        bot.store.set_schedule_changes(vm_name, **changes_of(forget_before(moved, utcnow())))
        until = format_local(run.when + SNOOZES[action_id], schedule.zone)
        return f":zzz: Snoozed by {_mention(request)}: `{vm_name}` {run.action}s at {until} instead."
    if action_id == "schedule_skip":
        if not bot.store.claim_run(vm_name, key, RunState.SKIPPED, from_states=RUN_FROM, note="skipped from Slack"):
            raise Stale(_too_late(bot, vm_name, key))
        bot.store.set_schedule_changes(vm_name, **changes_of(forget_before(skip_run(schedule, run), utcnow())))
        return (f":fast_forward: Skipped by {_mention(request)}: `{vm_name}` is not {off_action_past(run.action)} "
                "this time; the schedule carries on after.")
    return _act_now(bot, body, request, vm_name, key, run.action, row.channel if row else None)


def _ttl_press(bot: Deps, body: Payload, request: audit.Request, action_id: str, vm_name: str, key: str) -> str:
    ttl = bot.store.ttl(vm_name)
    if ttl is None or ttl_key(ttl.park_at) != key:
        raise Stale(f"`{vm_name}`'s time to live changed or ended since this notice; `/vm schedules` shows it.")
    _check_open(bot, vm_name, key)
    if action_id in SNOOZES:
        park_at = ttl.park_at + SNOOZES[action_id]
        if not bot.store.claim_run(vm_name, key, RunState.SNOOZED, from_states=RUN_FROM) or not bot.store.move_ttl(
            vm_name, expected=ttl.park_at, park_at=park_at
        ):
            raise Stale(_too_late(bot, vm_name, key))
        until = format_local(park_at, bot.settings.timezone)
        return f":zzz: Snoozed by {_mention(request)}: `{vm_name}` parks at {until} instead."
    if action_id == "schedule_skip":
        if not bot.store.claim_run(vm_name, key, RunState.SKIPPED, from_states=RUN_FROM, note="kept from Slack"):
            raise Stale(_too_late(bot, vm_name, key))
        bot.store.clear_ttl(vm_name)
        return (f":ok_hand: Kept by {_mention(request)}: `{vm_name}` has no time to live now "
                f"(`/vm ttl {vm_name} 8h` sets one).")
    text = _act_now(bot, body, request, vm_name, key, "park", ttl.channel)
    bot.store.clear_ttl(vm_name)
    return text


def _idle_press(bot: Deps, body: Payload, request: audit.Request, action_id: str, vm_name: str, key: str) -> str:
    """An idle reminder's buttons: park now, or be reminded tomorrow (a reminder's key is its day)."""
    _check_open(bot, vm_name, key)
    if action_id == "idle_remind_tomorrow":
        if not bot.store.claim_run(vm_name, key, RunState.SKIPPED, from_states=RUN_FROM, note="remind tomorrow"):
            raise Stale(_too_late(bot, vm_name, key))
        return f":ok_hand: I'll remind {_mention(request)} about `{vm_name}` again tomorrow if it is still idle."
    if action_id != "schedule_act_now":
        raise Refused(Reason.UNREADABLE_BUTTON, verb="schedule")
    last = next(iter(bot.store.operations_for(vm_name, limit=1)), None)
    return _act_now(bot, body, request, vm_name, key, "park", last.channel if last else None)


def _act_now(
    bot: Deps, body: Payload, request: audit.Request, vm_name: str, key: str, action: str, channel: str | None
) -> str:
    """Start the run now, as the person who pressed; the run is then settled (the tick leaves it)."""
    vm = bot.store.vm(vm_name)
    assert vm is not None
    if not bot.store.claim_run(vm_name, key, RunState.STARTED, from_states=RUN_FROM):
        raise Stale(_too_late(bot, vm_name, key))
    try:
        op = start_operation(
            bot.store,
            Verb(action),
            vm_name,
            requested_by=request.user_id,
            zone=vm.zone,
            machine_type=vm.machine_type,
            channel=channel or request.channel_id,
            response_url=body.get("response_url"),
            request_key=f"schedule:{vm_name}:{key}",
        )
    except UserError as refusal:
        bot.store.claim_run(vm_name, key, RunState.SKIPPED, from_states=(RunState.STARTED,), note=slack_text(refusal))
        raise
    bot.store.run_started(vm_name, key, op.id)
    bot.runner.submit(bot.workflows.run, op.id)
    where = f" in <#{op.channel}>" if op.channel else ""
    return f":arrow_forward: {_past(action).capitalize()} now, as {_mention(request)} asked: follow the thread{where}."


def _check_open(bot: Deps, vm_name: str, key: str) -> None:
    run = bot.store.schedule_run(vm_name, key)
    if run is not None and run.state not in (RunState.NOTICED, RunState.SNOOZED):
        raise Stale(_too_late(bot, vm_name, key))


def _too_late(bot: Deps, vm_name: str, key: str) -> str:
    run = bot.store.schedule_run(vm_name, key)
    state = run.state.value if run else "gone"
    return f"Too late for this notice: that run of `{vm_name}` is {state} already. `/vm status {vm_name}` shows the VM."


def _past(action: str) -> str:
    return {"park": "parking", "stop": "stopping", "suspend": "suspending"}.get(action, action)


def _mention(request: audit.Request) -> str:
    return f"<@{request.user_id}>"

