"""Button presses: the ``*_confirm`` and ``*_cancel`` buttons of the questions that park and delete
start with, and ``operation_retry`` on a failed operation's last thread message.

A question's buttons carry the rest of the command and the person who asked
(``blocks.button_value``): only that person or an admin may press them, and every
press, allowed or refused, goes into the audit trail. A confirmation runs its verb
once however often it is pressed: its block_id names the question (``click_key``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, App, Respond

from bot.core import audit, permissions
from bot.slack import blocks
from bot.core.errors import Reason, Refused, UsageError, UserError
from bot.slack.refusals import slack_text
from bot.core.lifecycle import check_image_name_free, refuse_repeat, start_operation
from bot.slack.parsing import Command, parse
from storage.models import OperationState, Verb, Verdict, Vm

if TYPE_CHECKING:
    from bot.deps import Deps

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


QUESTION_VERBS = (Verb.PARK, Verb.DELETE, Verb.STOP, Verb.SUSPEND)  # verbs that ask first: VERB_confirm, VERB_cancel
ANSWERS = {Verb.PARK: ":parking: Parking", Verb.DELETE: ":wastebasket: Deleting",
           Verb.STOP: ":double_vertical_bar: Stopping", Verb.SUSPEND: ":zzz: Suspending"}


def register(app: App, bot: Deps) -> None:
    # Decide, record and queue the press, then ack (a few ms of store work): once Slack has its
    # answer, the outcome is settled and the work is on the job runner, never on its way. The reply
    # goes to the response_url from the job runner too: it is a call to Slack, and Slack has the
    # ack only when the listener returns (create_app: process_before_response).
    def on_confirm(ack: Ack, body: Payload, action: Payload, respond: Respond) -> None:
        reply = confirm(bot, body, action, _verb_of(action))
        bot.runner.submit(reply.send, respond)
        ack()

    def on_cancel(ack: Ack, body: Payload, action: Payload, respond: Respond) -> None:
        reply = cancel(bot, body, action, _verb_of(action))
        bot.runner.submit(reply.send, respond)
        ack()

    def on_operation_retry(ack: Ack, body: Payload, action: Payload, respond: Respond) -> None:
        reply = PressReply(retry_operation(bot, body, action), replaces_question=False)
        bot.runner.submit(reply.send, respond)
        ack()

    for verb in QUESTION_VERBS:
        app.action(f"{verb.value}_confirm")(on_confirm)
        app.action(f"{verb.value}_cancel")(on_cancel)
    app.action("operation_retry")(on_operation_retry)


def _verb_of(action: Payload) -> Verb:
    return Verb(str(action["action_id"]).rpartition("_")[0])


def click_key(body: Payload, action: Payload) -> str | None:
    """The request key of a confirmation: its question's nonce, so a double click or a redelivered
    click runs the verb once; failing that, the click's own trigger_id (redeliveries only)."""
    prefix, _, nonce = str(action.get("block_id") or "").partition(":")
    verb, _, question = prefix.rpartition("_")
    if question == "confirmation" and verb in {v.value for v in QUESTION_VERBS} and nonce:
        return f"{verb}_confirm:{nonce}"
    trigger = body.get("trigger_id")
    return f"action:{trigger}" if trigger else None


def read_press(body: Payload, action: Payload, verb: Verb) -> tuple[audit.Request, Command | None, str | None]:
    """The audit record of a press, the command its button carries, and who asked for the button."""
    args, requested_by = blocks.read_button_value(str(action.get("value") or ""))
    try:
        # The button carries "NAME [options]" (blocks.park_confirmation ...): the same parser checks it.
        command: Command | None = parse(f"{verb.value} {args}")
    except UsageError:
        command = None
    request = audit.Request.of_button(body, action, verb=verb.value, vm_name=command.name if command else None)
    return request, command, requested_by


def check_press(
    bot: Deps, request: audit.Request, command: Command | None, requested_by: str | None, verb: Verb
) -> Vm:
    """Where, what and who: the checks every press of a question's button passes before it counts."""
    permissions.check_channel(bot.settings, request.channel_id)
    if command is None or command.name is None:
        raise Refused(Reason.UNREADABLE_BUTTON, verb=verb.value)
    vm = bot.store.vm(command.name)
    if vm is None:
        raise Refused(Reason.VM_UNKNOWN, command.name)
    permissions.require_requester_or_admin(bot.settings, request.user_id, requested_by, vm)
    permissions.require_owner_or_admin(bot.settings, request.user_id, vm, verb.value)
    return vm


def confirm(bot: Deps, body: Payload, action: Payload, verb: Verb) -> PressReply:
    """Start what the button asks for (a park or a delete), if this person may; what to answer them."""
    request, command, requested_by = read_press(body, action, verb)
    with audit.recording(request) as recording:  # the operation it starts is written with its audit entry
        try:
            vm = check_press(bot, request, command, requested_by, verb)
        except UserError as refusal:
            recording.record(bot.store, audit.verdict_for(refusal), detail=slack_text(refusal))
            return PressReply(f":no_entry: {slack_text(refusal)}", replaces_question=False)
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
                verb,
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
            recording.record(bot.store, audit.verdict_for(refusal), detail=slack_text(refusal))
            return PressReply(slack_text(refusal, with_icon=True))
        recording.record(bot.store, Verdict.ALLOWED)
        bot.runner.submit(bot.workflows.run, op.id)
        return PressReply(f"{ANSWERS[verb]} `{name}`: follow the thread in <#{request.channel_id}>.")


def cancel(bot: Deps, body: Payload, action: Payload, verb: Verb) -> PressReply:
    request, command, requested_by = read_press(body, action, verb)
    try:
        check_press(bot, request, command, requested_by, verb)
    except UserError as refusal:
        audit.record(bot.store, request, audit.verdict_for(refusal), detail=slack_text(refusal))
        return PressReply(f":no_entry: {slack_text(refusal)}", replaces_question=False)
    audit.record(bot.store, request, Verdict.ALLOWED, detail="cancelled")
    return PressReply(f"Cancelled: `{request.vm_name}` stays as it is.")


def retry_operation(bot: Deps, body: Payload, action: Payload) -> str:
    """Ask again for what a failed operation asked, as the person who pressed retry, with every check a
    fresh request gets (channel, owner or admin, the VM's state); pressing one retry button twice makes
    one new operation. Audited like any press."""
    failed = bot.store.operation(int(action["value"])) if str(action.get("value", "")).isdigit() else None
    verb = failed.verb.value if failed else None
    request = audit.Request.of_button(body, action, verb=verb or "retry", vm_name=failed.vm_name if failed else None)
    with audit.recording(request) as recording:  # the operation it starts is written with its audit entry
        try:
            if failed is None or failed.state is not OperationState.FAILED:
                raise Refused(Reason.NOTHING_TO_RETRY)
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
            recording.record(bot.store, audit.verdict_for(refusal), detail=slack_text(refusal))
            return slack_text(refusal, with_icon=True)
        recording.record(bot.store, Verdict.ALLOWED)
        bot.runner.submit(bot.workflows.run, op.id)
        return (
            f":repeat: Retrying the {failed.verb.value} of `{failed.vm_name}` as operation #{op.id}: "
            f"follow the new thread in <#{op.channel}>."
        )
