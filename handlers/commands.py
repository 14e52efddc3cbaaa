"""The ``/vm`` slash command.

Each verb function gets the parsed command and returns the acknowledgement to
show (ephemeral), plus optionally a follow-up that runs after the ack on the job
runner. Expected failures are UserErrors whose text becomes the ack.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, App, Respond

from bot.core import audit, permissions, shapes
from bot.slack import blocks
from bot.core.errors import Reason, Refused, UsageError, UserError
from bot.slack.refusals import slack_text
from bot.gcp.compute import GceError
from bot.core.lifecycle import check_allowed, check_image_name_free, start_operation
from bot.slack.parsing import LIST_STATES, SUBCOMMANDS, Command, mentioned_vm, parse
from bot.slack.threads import SweepThread
from bot.jobs.reconcile import live_drift
from bot.core.pricing import describe_costs, format_usd
from bot.core.schedules import ScheduleError, describe_ttl, parse_ttl
from bot.core.vm_costs import price_table, vm_costs, vm_savings
from handlers import help_text, schedule_commands, shortcuts
from storage.models import Image, ImageState, Operation, Verb, Verdict, Vm, VmState, utcnow

if TYPE_CHECKING:
    from bot.deps import Deps

Payload = dict[str, Any]
FollowUp = Callable[[], None] | None



class NothingToShow(UserError):
    """A read command with nothing to show; its text is Slack's words already."""

def register(app: App, bot: Deps) -> None:
    def vm_command(ack: Ack, command: Payload, respond: Respond) -> None:
        if wants_create_form(bot, command):
            trouble = shortcuts.open_create_form(bot, command["trigger_id"], command["user_id"], channel=command["channel_id"])
            request = audit.Request.of_command(command)
            request.verb = "create"
            audit.record(bot.store, request, Verdict.ALLOWED, detail=trouble or "opened the create form")
            ack(**(blocks.text_only(trouble).as_kwargs() if trouble else {}))
            return
        handle_vm_command(bot, command, ack, respond)

    app.command("/vm")(vm_command)


def wants_create_form(bot: Deps, payload: Payload) -> bool:
    """`/vm create` with no name, where the bot acts: the create form (handlers.shortcuts) asks for the rest."""
    if str(payload.get("text") or "").strip().lower() != "create" or not payload.get("trigger_id"):
        return False
    try:
        permissions.check_channel(bot.settings, payload.get("channel_id"))
    except UserError:
        return False  # the usual path says where the bot acts, and audits it
    return True


def handle_vm_command(bot: Deps, payload: Payload, ack: Ack, respond: Respond) -> None:
    """Check where, parse, check who, run the verb; record the verdict in the audit trail, then ack."""
    request = audit.Request.of_command(payload)
    with audit.recording(request) as recording:
        try:
            permissions.check_channel(bot.settings, request.channel_id)
            command = parse(request.text)
            request.verb, request.vm_name = command.verb, command.name
            permissions.check_command(bot.settings, bot.store, request.user_id, command)
            message, follow_up = VERBS[command.verb](bot, command, payload, respond)
            verdict, detail = Verdict.ALLOWED, None
        except UserError as error:
            message, follow_up = blocks.text_only(slack_text(error, with_icon=True)), None
            verdict, detail = audit.verdict_for(error), slack_text(error)
            request.vm_name = request.vm_name or mentioned_vm(request.text)
        except Exception:
            recording.record(bot.store, Verdict.ERROR, detail="internal error; see the bot's log")
            raise
        recording.record(bot.store, verdict, detail=detail)
    # Queue the follow-up before acking: once Slack has its answer the work is on the runner
    # (so `runner.drain()` sees it), never still on its way there.
    if follow_up is not None:
        bot.runner.submit(follow_up)
    ack(**message.as_kwargs())


def request_key(payload: Payload) -> str | None:
    """One key per slash command invocation: Slack sends the same trigger_id again when it redelivers."""
    trigger = payload.get("trigger_id")
    return f"command:{trigger}" if trigger else None


def _allowed_vm(bot: Deps, verb: Verb, name: str) -> Vm:
    """The VM ``verb`` may start on now (the state table's check; Refused, with what to do instead, if not)."""
    vm = bot.store.vm(name)
    check_allowed(verb, name, vm)
    assert vm is not None, "only a create starts without a VM"
    return vm


def _start(bot: Deps, verb: Verb, name: str, payload: Payload, *, zone: str, machine_type: str,
           params: dict[str, Any] | None = None) -> Operation:  # fmt: skip
    """Record and claim through the lifecycle as this slash command: its user, channel, response_url and
    redelivery key (Slack resends a command with the same trigger_id)."""
    return start_operation(
        bot.store, verb, name, requested_by=payload["user_id"], zone=zone, machine_type=machine_type,
        channel=payload["channel_id"], response_url=payload.get("response_url"), request_key=request_key(payload),
        params=params,
    )


def create(bot: Deps, command: Command, payload: Payload, respond: Respond) -> tuple[blocks.Message, FollowUp]:
    assert command.name
    zone = command.option("zone", bot.settings.zone)
    machine_type = command.option("machine-type", bot.settings.machine_type)
    try:
        ttl = parse_ttl(command.options["ttl"]) if "ttl" in command.options else None
    except ScheduleError as error:
        raise schedule_commands.schedule_usage_error(error) from None
    op = _start(bot, Verb.CREATE, command.name, payload, zone=zone, machine_type=machine_type,
                params=create_params(command))
    ack = f":rocket: Creating `{command.name}` ({machine_type} in {zone}). I'll report in a thread in this channel."
    if ttl is not None:
        schedule_commands.set_ttl(bot, command.name, ttl, payload)
        ack += f" It is parked when its time to live ({describe_ttl(ttl)}) is up; you'll be warned first."
    return blocks.text_only(ack), functools.partial(bot.workflows.run, op.id)


def create_params(command: Command) -> dict[str, str]:
    """The create options the workflow needs (bot.core.workflows.create_shape), checked by the parser already
    and again by the function the HTTP API shares (bot.core.shapes.create_params)."""
    return shapes.create_params(command.options)


def park(bot: Deps, command: Command, payload: Payload, respond: Respond) -> tuple[blocks.Message, FollowUp]:
    """Only asks: the park itself starts when the requester presses ``park_confirm`` (handlers.actions)."""
    assert command.name
    vm = _allowed_vm(bot, Verb.PARK, command.name)
    image, family = command.options.get("image"), command.options.get("family")
    if image:
        check_image_name_free(bot.store, image)  # GCP is asked as the park's first step, off the ack path
    costs = vm_costs_line(bot, vm)
    return blocks.park_confirmation(vm, payload["user_id"], image=image, family=family, costs=costs), None


def delete(bot: Deps, command: Command, payload: Payload, respond: Respond) -> tuple[blocks.Message, FollowUp]:
    """Only asks: the delete itself starts when the requester presses ``delete_confirm`` (handlers.actions)."""
    assert command.name
    vm = _allowed_vm(bot, Verb.DELETE, command.name)
    ready = bot.store.count_images(command.name, ImageState.READY)  # they become dirty
    return blocks.delete_confirmation(vm, payload["user_id"], images=ready, grace=bot.settings.sweep_grace), None


def restore(bot: Deps, command: Command, payload: Payload, respond: Respond) -> tuple[blocks.Message, FollowUp]:
    assert command.name
    vm = _allowed_vm(bot, Verb.RESTORE, command.name)
    params = {"machine_type": command.options["machine-type"]} if "machine-type" in command.options else None
    op = _start(bot, Verb.RESTORE, command.name, payload, zone=vm.zone, machine_type=vm.machine_type, params=params)
    other = f" as {command.options['machine-type']}" if "machine-type" in command.options else ""
    ack = f":recycle: Restoring `{command.name}`{other} from its newest image. I'll report in a thread in this channel."
    return blocks.text_only(ack), functools.partial(bot.workflows.run, op.id)


def adopt(bot: Deps, command: Command, payload: Payload, respond: Respond) -> tuple[blocks.Message, FollowUp]:
    """Take an instance made outside vmbot under management; GCP is asked (and labels it) off the ack path."""
    assert command.name
    user = payload["user_id"]
    owner = command.options.get("owner", user)
    vm = permissions.check_adopt(bot.settings, bot.store, user, command.name, owner)
    zone = command.option("zone", bot.settings.zone)
    params = {"owner": owner, **({"family": command.options["family"]} if "family" in command.options else {})}
    op = _start(bot, Verb.ADOPT, command.name, payload, zone=zone, machine_type=vm.machine_type if vm else "unknown",
                params=params)
    ack = f":inbox_tray: Adopting `{command.name}` in {zone}. I'll report in a thread in this channel."
    return blocks.text_only(ack), functools.partial(bot.workflows.run, op.id)


def stop(bot: Deps, command: Command, payload: Payload, respond: Respond) -> tuple[blocks.Message, FollowUp]:
    """Only asks: the stop itself starts when the requester presses ``stop_confirm`` (handlers.actions)."""
    return _ask_to_pause(bot, command, payload, Verb.STOP)


def suspend(bot: Deps, command: Command, payload: Payload, respond: Respond) -> tuple[blocks.Message, FollowUp]:
    """Only asks: the suspend itself starts when the requester presses ``suspend_confirm`` (handlers.actions)."""
    return _ask_to_pause(bot, command, payload, Verb.SUSPEND)


def _ask_to_pause(bot: Deps, command: Command, payload: Payload, verb: Verb) -> tuple[blocks.Message, FollowUp]:
    assert command.name
    vm = _allowed_vm(bot, verb, command.name)
    return blocks.pause_confirmation(vm, payload["user_id"], verb.value, costs=vm_costs_line(bot, vm)), None


def start(bot: Deps, command: Command, payload: Payload, respond: Respond) -> tuple[blocks.Message, FollowUp]:
    return _come_back(bot, command, payload, Verb.START, ":arrow_forward: Starting")


def resume(bot: Deps, command: Command, payload: Payload, respond: Respond) -> tuple[blocks.Message, FollowUp]:
    return _come_back(bot, command, payload, Verb.RESUME, ":arrow_forward: Resuming")


def _come_back(
    bot: Deps, command: Command, payload: Payload, verb: Verb, doing: str
) -> tuple[blocks.Message, FollowUp]:
    """start and resume need no question: they only bring a VM back."""
    assert command.name
    vm = _allowed_vm(bot, verb, command.name)
    op = _start(bot, verb, command.name, payload, zone=vm.zone, machine_type=vm.machine_type)
    ack = f"{doing} `{command.name}`. I'll report in a thread in this channel."
    return blocks.text_only(ack), functools.partial(bot.workflows.run, op.id)


def vm_costs_line(bot: Deps, vm: Vm, images: list[Image] | None = None) -> str:
    """``~$0.40/day running · ~$0.50/month parked (list price, before discounts)``: a confirm card's,
    ``/vm status``'s and ``/vm list``'s money line ("price unknown" for a machine type not in the table)."""
    table = price_table(bot.settings.prices)
    figures = vm_costs(table, vm, bot.store.images(vm.name) if images is None else images)
    return f":moneybag: {describe_costs(figures)} ({table.label})"


def list_vms(bot: Deps, command: Command, payload: Payload, respond: Respond) -> tuple[blocks.Message, FollowUp]:
    """One page (``page=N``) of the VMs, narrowed by ``mine`` and a state; the next page is a button."""
    return list_page(bot, command, payload["user_id"]), None


def list_page(bot: Deps, command: Command, user_id: str, *, after: str | None = None) -> blocks.Message:
    """The page of ``/vm list`` that ``command`` asks for (its flags and ``page=``), read from the store in
    SQL: from ``after`` a VM name when the next-page button gives one (keyset), else from page N's offset.
    Shared by the slash command and the button (handlers.list_pages), so both check and show the same."""
    states = sorted(command.flags & set(LIST_STATES))
    if len(states) > 1:
        raise UsageError(f"`/vm list` takes one state at a time (you gave {', '.join(states)}). "
                         f"Usage: `/vm {SUBCOMMANDS['list'].usage}`")
    state = VmState(states[0]) if states else None
    owner = user_id if "mine" in command.flags else None
    number = int(command.options.get("page", "1"))
    filters = " ".join(word for word in ("mine", *states) if word in command.flags)
    size = blocks.LIST_PAGE_SIZE
    if after is None:
        summaries = bot.store.list_vms_page(limit=size, offset=(number - 1) * size, state=state, owner=owner)
        first = (number - 1) * size
    else:
        summaries = bot.store.list_vms_page(limit=size, after=after, state=state, owner=owner)
        first = bot.store.count_vms(state=state, owner=owner, before=summaries[0].vm.name) if summaries else 0
    total = bot.store.count_vms(state=state, owner=owner)
    deleted = 0
    if not total and not filters:
        deleted = bot.store.count_vms(state=VmState.DELETED)
    costs, footer = _list_costs(bot, summaries)
    page = blocks.ListPage(number=number, total=total, first=first, filters=filters, requested_by=user_id)
    return blocks.vm_list(summaries, deleted=deleted, costs=costs, footer=footer, page=page)


def _list_costs(bot: Deps, summaries: list[Any]) -> tuple[dict[str, str], str | None]:
    """Each listed VM's money line, and the savings footer: summed over every VM that was ever paused
    (only those can have saved), not just this page's."""
    table, now = price_table(bot.settings.prices), utcnow()
    history: dict[str, list[Any]] = {}
    for op in bot.store.pause_history():
        history.setdefault(op.vm_name, []).append(op)
    costs: dict[str, str] = {}
    total = 0.0
    shown = {item.vm.name for item in summaries}
    rows = bot.store.vms_with_images(shown | set(history))
    for item in summaries:
        costs[item.vm.name] = vm_costs_line(bot, item.vm, rows[item.vm.name][1] if item.vm.name in rows else None)
    for name, ops in history.items():
        if name not in rows or rows[name][0].state is VmState.DELETED:
            continue
        vm, images = rows[name]
        _, saved = vm_savings(table, vm, images, ops, now)
        if saved is not None:
            total += saved
            if name in shown:
                costs[name] += f" · ~{format_usd(saved)} saved so far"
    footer = None
    if total:
        footer = f"Saved so far by parking, stopping and suspending: ~{format_usd(total)} ({table.label})"
    return costs, footer


def status(bot: Deps, command: Command, payload: Payload, respond: Respond) -> tuple[blocks.Message, FollowUp]:
    """Answers from the store at once; the live GCP state follows when GCP has answered."""
    assert command.name
    name = command.name
    vm = bot.store.vm(name)
    if vm is None:
        raise Refused(Reason.VM_UNKNOWN, name)

    def with_live_state() -> None:
        try:
            live = bot.compute.get_instance(vm.zone, name)
        except GceError as error:
            respond(text=f":warning: I could not ask GCP about `{name}`: {blocks.escape(error.message)}", response_type="ephemeral")
            return
        now = bot.store.vm(name) or vm
        drift = live_drift(now, live)
        images = bot.store.images(name)
        message = blocks.vm_status(
            now, live, images, bot.store.operations_for(name), live_drift=drift,
            costs=vm_costs_line(bot, now, images), plans=schedule_commands.plans_of(bot, name),
        )  # fmt: skip
        respond(**message.as_kwargs(), response_type="ephemeral")

    return blocks.text_only(f":mag: Looking up `{name}` in GCP…"), with_live_state


IMAGES_SHOWN = 40  # newest first; a long-lived VM may have hundreds of deleted ones


def images(bot: Deps, command: Command, payload: Payload, respond: Respond) -> tuple[blocks.Message, FollowUp]:
    assert command.name
    if bot.store.vm(command.name) is None:
        raise Refused(Reason.VM_UNKNOWN, command.name)
    recent, total = bot.store.recent_images(command.name, limit=IMAGES_SHOWN)
    return blocks.image_list(command.name, recent, total, grace=bot.settings.sweep_grace), None


def may_sweep(bot: Deps, user_id: str) -> None:
    """`/vm sweep` acts on every VM's images: admins only (also checked up front, bot.core.permissions.ADMIN_ONLY)."""
    permissions.require_admin(bot.settings, user_id, "use `/vm sweep`")


def sweep(bot: Deps, command: Command, payload: Payload, respond: Respond) -> tuple[blocks.Message, FollowUp]:
    """Sweep now on the job runner; the report goes in a thread in this channel (root posted once the lease is ours)."""
    user, channel = payload["user_id"], payload["channel_id"]
    may_sweep(bot, user)
    dry_run = "dry-run" in command.flags

    def run() -> None:
        thread = SweepThread(bot.client, channel)
        report = bot.sweeper.sweep(dry_run=dry_run, trigger="manual", requested_by=user, on_started=thread.started)
        if report.skipped:
            respond(**blocks.sweep_skipped(report).as_kwargs(), response_type="ephemeral")
            return
        thread.finished(report)

    what = "Looking for dirty images to sweep (dry run: I delete nothing)" if dry_run else "Sweeping dirty images now"
    return blocks.text_only(f":broom: {what}. The report follows in a thread in this channel."), run


HISTORY_PAGE_SIZE = 10


def history(bot: Deps, command: Command, payload: Payload, respond: Respond) -> tuple[blocks.Message, FollowUp]:
    """A VM's audit trail, newest first, ``page=N`` at a time."""
    assert command.name
    name, page = command.name, int(command.option("page", "1"))
    entries, total = bot.store.audit_trail(name, offset=(page - 1) * HISTORY_PAGE_SIZE, limit=HISTORY_PAGE_SIZE)
    if total == 0:
        raise NothingToShow(f"I have no history for `{name}`. `/vm list` shows the VMs I manage.")
    pages = -(-total // HISTORY_PAGE_SIZE)
    if not entries:
        raise NothingToShow(f"`{name}` has {pages} page{'s' if pages != 1 else ''} of history; try `/vm history {name} page={pages}`.")
    started = {entry.operation_id for entry in entries if entry.operation_id}
    operations = {op.id: op for op in map(bot.store.operation, sorted(started)) if op is not None}
    return blocks.audit_history(name, entries, page=page, pages=pages, total=total, operations=operations), None


def help_(bot: Deps, command: Command, payload: Payload, respond: Respond) -> tuple[blocks.Message, FollowUp]:
    """Only the verbs this person may run, one example each (handlers.help_text)."""
    return help_text.help_for(bot.settings, payload["user_id"]), None


VERBS: dict[str, Callable[[Deps, Command, Payload, Respond], tuple[blocks.Message, FollowUp]]] = {
    "create": create,
    "park": park,
    "restore": restore,
    "adopt": adopt,
    "delete": delete,
    "stop": stop,
    "start": start,
    "suspend": suspend,
    "resume": resume,
    "schedule": schedule_commands.schedule,
    "schedules": schedule_commands.schedules,
    "ttl": schedule_commands.ttl,
    "savings": schedule_commands.savings,
    "list": list_vms,
    "status": status,
    "images": images,
    "sweep": sweep,
    "history": history,
    "help": help_,
}
