"""``/vm schedule``, ``/vm schedules``, ``/vm ttl`` and ``/vm savings``: verb functions that
handlers.commands lists in its VERBS table (same signature: bot, command, payload, respond).

Setting a schedule or a TTL is for the VM's owner or an admin (bot.core.permissions.OWNER_OR_ADMIN,
checked before the verb runs); reading them is for anyone.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from slack_bolt import Respond

from bot.core import plans
from bot.core.errors import UsageError
from bot.core.pricing import format_usd
from bot.core.schedule_records import schedule_of
from bot.core.schedules import ScheduleError, describe, describe_ttl, format_local, parse_ttl
from bot.core.vm_costs import price_table
from bot.slack import blocks
from bot.slack.parsing import Command
from bot.slack.text import actor, escape
from storage.models import Vm, utcnow

if TYPE_CHECKING:
    from bot.deps import Deps

Payload = dict[str, Any]


def schedule_usage_error(error: ScheduleError) -> UsageError:
    """A schedule or TTL the parser refused, in Slack's words (the message may quote the input)."""
    return UsageError(f"{escape(str(error))}. `/vm help` shows the whole command.")


def _live_vm(bot: Deps, name: str) -> Vm:
    return plans.live_vm(bot.store, name)


def schedule(bot: Deps, command: Command, payload: Payload, respond: Respond) -> tuple[blocks.Message, None]:
    """Set, show (no options) or remove (``off``) a VM's schedule."""
    assert command.name
    name = command.name
    vm = _live_vm(bot, name)
    if "off" in command.flags:
        if command.options:
            raise UsageError(f"`off` removes the schedule; give it alone: `/vm schedule {name} off`.")
        removed = bot.store.delete_schedule(name)
        text = f":calendar: `{name}` has no schedule now." if removed else f"`{name}` had no schedule."
        return blocks.text_only(text), None
    if not command.options:
        row = bot.store.vm_schedule(name)
        if row is None:
            example = f"`/vm schedule {name} park-at=19:00 restore-at=08:00 days=mon-fri`"
            raise UsageError(f"`{name}` has no schedule. Set one: {example}.")
        return blocks.text_only(f":calendar: `{name}` {escape(describe(schedule_of(row), utcnow()))}."), None
    try:
        parsed = plans.set_schedule(bot.store, name, command.options, default_tz=bot.settings.timezone,
                                    set_by=payload["user_id"], channel=payload.get("channel_id"))  # fmt: skip
    except ScheduleError as error:
        raise schedule_usage_error(error) from None
    minutes = int(bot.settings.schedule_notice // 60)
    warn = (f" I'll warn {actor(vm.owner)} {minutes} min before each {parsed.off_action}, here and by DM."
            if parsed.off_action else "")  # fmt: skip
    return blocks.text_only(f":calendar: `{name}` {escape(describe(parsed, utcnow()))}.{warn}"), None


def schedules(bot: Deps, command: Command, payload: Payload, respond: Respond) -> tuple[blocks.Message, None]:
    now = utcnow()
    lines = [(row.vm_name, describe(schedule_of(row), now)) for row in bot.store.all_schedules()]
    ttl_lines = [
        (ttl.vm_name, f"parks when its time to live runs out: {format_local(ttl.park_at, bot.settings.timezone)}")
        for ttl in bot.store.all_ttls()
    ]
    return blocks.schedule_list(lines + ttl_lines), None


def plans_of(bot: Deps, name: str) -> list[str]:
    """A VM's schedule and time to live in words, for ``/vm status`` (escaped: mrkdwn-safe)."""
    plans = []
    row = bot.store.vm_schedule(name)
    if row is not None:
        plans.append(f":calendar: Schedule: {escape(describe(schedule_of(row), utcnow()))}")
    deadline = bot.store.ttl(name)
    if deadline is not None:
        plans.append(f":hourglass: Time to live: parked at {format_local(deadline.park_at, bot.settings.timezone)}")
    return plans


def ttl(bot: Deps, command: Command, payload: Payload, respond: Respond) -> tuple[blocks.Message, None]:
    """``/vm ttl NAME 8h`` parks the VM 8 hours from now (warned first); ``off`` removes the deadline."""
    assert command.name
    name = command.name
    _live_vm(bot, name)
    try:
        duration = parse_ttl(command.options.get("ttl", ""))
    except ScheduleError as error:
        raise schedule_usage_error(error) from None
    if duration is None:
        removed = bot.store.clear_ttl(name)
        return blocks.text_only(f":hourglass: `{name}` has no time to live now." if removed else
                                f"`{name}` had no time to live."), None  # fmt: skip
    park_at = set_ttl(bot, name, duration, payload)
    when = format_local(park_at, bot.settings.timezone)
    text = f":hourglass: `{name}` is parked in {describe_ttl(duration)}, at {when}; its owner is warned first."
    return blocks.text_only(text), None


def set_ttl(bot: Deps, name: str, duration: timedelta, payload: Payload) -> Any:
    return plans.set_ttl(bot.store, name, duration, set_by=payload["user_id"], channel=payload.get("channel_id"))


def savings(bot: Deps, command: Command, payload: Payload, respond: Respond) -> tuple[blocks.Message, None]:
    """Savings to date per VM and in total, from the parked and stopped hours the store recorded."""
    table = price_table(bot.settings.prices)
    lines, total, unknown = [], 0.0, 0
    for found in plans.savings_by_vm(bot.store, table, utcnow()):
        vm, name, hours, saved = found.vm, found.vm.name, found.hours, found.saved
        if saved is None:
            unknown += 1
            lines.append(f"*{escape(name)}*  price unknown ({escape(vm.machine_type)} is not in the price table)")
            continue
        total += saved
        hours_text = f"{hours.parked:.1f} h parked · {hours.stopped:.1f} h stopped"
        lines.append(f"*{escape(name)}*  ~{format_usd(saved)} saved · {hours_text}")
    if not lines:
        return blocks.text_only("Nothing saved yet: no VM has been parked, stopped or suspended."), None
    head = f"*Saved so far: ~{format_usd(total)}* ({table.label}, prices as of {table.as_of})"
    if unknown:
        head += f"; {unknown} VM{'s' if unknown != 1 else ''} not priced"
    shown = [blocks.section(head), *blocks.sections(lines)][:50]
    return blocks.Message(f"Saved so far: ~{format_usd(total)}", shown), None
