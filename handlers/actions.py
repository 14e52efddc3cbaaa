"""Button presses: the park confirmation's ``park_confirm`` and ``park_cancel``, and ``operation_retry``
on a failed operation's last thread message.

Both park buttons carry the rest of the park command and the person who asked
(``blocks.button_value``): only that person or an admin may press them, and every
press, allowed or refused, goes into the audit trail. A confirmation parks once
however often it is pressed: its block_id names the question (``click_key``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, App, Respond

from bot import audit, blocks, permissions
from bot.blocks import PARK_CONFIRMATION
from bot.errors import Refused, UsageError, UserError
from bot.lifecycle import check_image_name_free, refuse_repeat, start_operation
from bot.parsing import Command, parse
from storage.models import OperationState, Verb, Verdict, Vm

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
    # Decide, record and queue the press, then ack (a few ms of store work): once Slack has its
    # answer, the outcome is settled and a park is on the job runner, never on its way. The reply
    # goes to the response_url from the job runner too: it is a call to Slack, and Slack has the
    # ack only when the listener returns (create_app: process_before_response).
    def on_park_confirm(ack: Ack, body: Payload, action: Payload, respond: Respond) -> None:
        reply = confirm_park(bot, body, action)
        bot.runner.submit(reply.send, respond)
        ack()

    def on_park_cancel(ack: Ack, body: Payload, action: Payload, respond: Respond) -> None:
        reply = cancel_park(bot, body, action)
        bot.runner.submit(reply.send, respond)
        ack()

    def on_operation_retry(ack: Ack, body: Payload, action: Payload, respond: Respond) -> None:
        reply = PressReply(retry_operation(bot, body, action), replaces_question=False)
        bot.runner.submit(reply.send, respond)
        ack()

    app.action("park_confirm")(on_park_confirm)
    app.action("park_cancel")(on_park_cancel)
    app.action("operation_retry")(on_operation_retry)


def click_key(body: Payload, action: Payload) -> str | None:
    """The request key of a park confirmation: its question's nonce, so a double click or a
    redelivered click parks once; failing that, the click's own trigger_id (redeliveries only)."""
    prefix, _, nonce = str(action.get("block_id") or "").partition(":")
    if prefix == PARK_CONFIRMATION and nonce:
        return f"park_confirm:{nonce}"
    trigger = body.get("trigger_id")
    return f"action:{trigger}" if trigger else None


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
            try:
                check_image_name_free(bot.store, params["image"])
            except Refused:
                refuse_repeat(bot.store, click_key(body, action))  # taken by this very park, clicked twice?
                raise
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
            request_key=click_key(body, action),
        )
    except UserError as refusal:
        audit.record(bot.store, request, audit.verdict_for(refusal), detail=str(refusal))
        return PressReply(f"{refusal.icon} {refusal}")
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


def retry_operation(bot: VmBot, body: Payload, action: Payload) -> str:
    """Ask again for what a failed operation asked, as the person who pressed retry, with every check a
    fresh request gets (channel, owner or admin, the VM's state); pressing one retry button twice makes
    one new operation. Audited like any press."""
    failed = bot.store.operation(int(action["value"])) if str(action.get("value", "")).isdigit() else None
    verb = failed.verb.value if failed else None
    request = audit.Request.of_button(body, action, verb=verb or "retry", vm_name=failed.vm_name if failed else None)
    try:
        if failed is None or failed.state is not OperationState.FAILED:
            raise Refused("There is no failed operation to retry here.")
        permissions.check_channel(bot.settings, request.channel_id)
        vm = bot.store.vm(failed.vm_name)
        if vm is not None and verb in permissions.OWNER_OR_ADMIN:
            permissions.require_owner_or_admin(bot.settings, request.user_id, vm, verb)
        # An image name the failed park asked for is taken now (names are never reused): let it pick one.
        params = {k: v for k, v in failed.params.items() if not (k == "image" and bot.store.image(v) is not None)}
        op = start_operation(
            bot.store,
            failed.verb,
            failed.vm_name,
            requested_by=request.user_id,
            zone=vm.zone if vm else bot.settings.zone,
            machine_type=vm.machine_type if vm else bot.settings.machine_type,
            channel=failed.channel or request.channel_id,
            response_url=body.get("response_url"),
            params=params,
            request_key=f"retry:{failed.id}",
        )
    except UserError as refusal:
        audit.record(bot.store, request, audit.verdict_for(refusal), detail=str(refusal))
        return f"{refusal.icon} {refusal}"
    audit.record(bot.store, request, Verdict.ALLOWED, operation_id=op.id)
    bot.runner.submit(bot.workflows.run, op.id)
    return (
        f":repeat: Retrying the {failed.verb.value} of `{failed.vm_name}` as operation #{op.id}: "
        f"follow the new thread in <#{op.channel}>."
    )
