"""Button presses: the park confirmation's ``park_confirm`` and ``park_cancel``.

Both buttons carry the rest of the park command and the person who asked
(``blocks.button_value``): only that person or an admin may press them, and every
press, allowed or refused, goes into the audit trail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, App, Respond

from bot import audit, blocks, permissions
from bot.errors import Refused, UsageError, UserError
from bot.lifecycle import check_image_name_free, start_operation
from bot.parsing import Command, parse
from storage.models import Verb, Verdict, Vm

if TYPE_CHECKING:
    from bot.app import VmBot

Payload = dict[str, Any]


@dataclass(frozen=True)
class PressReply:
    """What a press answers: it replaces the question, or (a refused press) goes to the presser alone."""

    text: str
    replaces_question: bool = True

    def send(self, respond: Respond) -> None:
        if self.replaces_question:
            respond(replace_original=True, text=self.text)
        else:  # the question stays as it is, for the person it belongs to
            respond(replace_original=False, response_type="ephemeral", text=self.text)


def register(app: App, bot: VmBot) -> None:
    # Decide, record and queue the press before acking (a few ms of store work): once Slack
    # has its answer, the outcome is settled and a park is on the job runner, never on its way.
    def on_park_confirm(ack: Ack, body: Payload, action: Payload, respond: Respond) -> None:
        reply = confirm_park(bot, body, action)
        ack()
        reply.send(respond)

    def on_park_cancel(ack: Ack, body: Payload, action: Payload, respond: Respond) -> None:
        reply = cancel_park(bot, body, action)
        ack()
        reply.send(respond)

    app.action("park_confirm")(on_park_confirm)
    app.action("park_cancel")(on_park_cancel)


def read_press(body: Payload, action: Payload) -> tuple[audit.Request, Command | None, str | None]:
    """The audit record of a press, the park command its button carries, and who asked for the button."""
    args, requested_by = blocks.read_button_value(str(action.get("value") or ""))
    try:
        # The button carries "NAME [image=..] [family=..]" (blocks.park_confirmation): the same parser checks it.
        command: Command | None = parse(f"park {args}")
    except UsageError:
        command = None
    request = audit.Request.of_button(body, action, verb=Verb.PARK.value, vm_name=command.name if command else None)
    return request, command, requested_by


def check_press(bot: VmBot, request: audit.Request, command: Command | None, requested_by: str | None) -> Vm:
    """Where, what and who: the checks every press of a park button passes before it counts."""
    permissions.check_channel(bot.settings, request.channel_id)
    if command is None or command.name is None:
        raise Refused("I cannot read this button. Ask again with `/vm park NAME`.")
    vm = bot.store.vm(command.name)
    if vm is None:
        raise Refused(f"I don't know a VM called `{command.name}`. `/vm list` shows the VMs I manage.")
    permissions.require_requester_or_admin(bot.settings, request.user_id, requested_by, vm)
    permissions.require_owner_or_admin(bot.settings, request.user_id, vm, "park")
    return vm


def confirm_park(bot: VmBot, body: Payload, action: Payload) -> PressReply:
    """Start the park the button asks for, if this person may; what to answer them."""
    request, command, requested_by = read_press(body, action)
    try:
        vm = check_press(bot, request, command, requested_by)
    except UserError as refusal:
        audit.record(bot.store, request, audit.verdict_for(refusal), detail=str(refusal))
        return PressReply(f":no_entry: {refusal}", replaces_question=False)
    assert command is not None and command.name is not None
    name = command.name
    params = {key: command.options[key] for key in ("image", "family") if key in command.options}
    try:
        if "image" in params:
            check_image_name_free(bot.store, params["image"])
        op = start_operation(
            bot.store,
            Verb.PARK,
            name,
            requested_by=request.user_id,
            zone=vm.zone,
            machine_type=vm.machine_type,
            channel=request.channel_id,
            response_url=body.get("response_url"),
            params=params,
        )
    except UserError as refusal:
        audit.record(bot.store, request, audit.verdict_for(refusal), detail=str(refusal))
        return PressReply(f":warning: {refusal}")
    audit.record(bot.store, request, Verdict.ALLOWED, operation_id=op.id)
    bot.runner.submit(bot.workflows.run, op.id)
    return PressReply(f":parking: Parking `{name}`: follow the thread in <#{request.channel_id}>.")


def cancel_park(bot: VmBot, body: Payload, action: Payload) -> PressReply:
    request, command, requested_by = read_press(body, action)
    try:
        check_press(bot, request, command, requested_by)
    except UserError as refusal:
        audit.record(bot.store, request, audit.verdict_for(refusal), detail=str(refusal))
        return PressReply(f":no_entry: {refusal}", replaces_question=False)
    audit.record(bot.store, request, Verdict.ALLOWED, detail="cancelled")
    return PressReply(f"Cancelled: `{request.vm_name}` stays as it is.")
