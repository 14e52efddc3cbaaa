"""Button presses: the park confirmation's ``park_confirm`` and ``park_cancel``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, App, Respond

from bot.blocks import escape
from bot.errors import UserError
from bot.lifecycle import check_image_name_free, start_operation
from bot.parsing import parse
from storage.models import Verb

if TYPE_CHECKING:
    from bot.app import VmBot

Payload = dict[str, Any]


def register(app: App, bot: VmBot) -> None:
    def on_park_confirm(ack: Ack, body: Payload, action: Payload, respond: Respond) -> None:
        # Claim the VM and queue the park before acking (a few ms of store work): once Slack
        # has its answer, the park is recorded and on the job runner, never still on its way.
        reply = confirm_park(bot, body, action)
        ack()
        respond(replace_original=True, text=reply)

    def on_park_cancel(ack: Ack, action: Payload, respond: Respond) -> None:
        ack()
        name = action["value"].split()[0]
        respond(replace_original=True, text=f"Cancelled: `{escape(name)}` stays as it is.")

    app.action("park_confirm")(on_park_confirm)
    app.action("park_cancel")(on_park_cancel)


def confirm_park(bot: VmBot, body: Payload, action: Payload) -> str:
    """Start the park the button asks for; the text that replaces the question."""
    channel = (body.get("channel") or {}).get("id") or body.get("container", {}).get("channel_id")
    try:
        # The button's value is "NAME [image=..] [family=..]" (blocks.park_confirmation): the same parser checks it.
        command = parse(f"park {action['value']}")
        assert command.name
        name = command.name
        vm = bot.store.vm(name)
        params = {key: command.options[key] for key in ("image", "family") if key in command.options}
        if "image" in params:
            check_image_name_free(bot.store, params["image"])
        op = start_operation(
            bot.store,
            Verb.PARK,
            name,
            requested_by=body["user"]["id"],
            zone=vm.zone if vm else bot.settings.zone,
            machine_type=vm.machine_type if vm else bot.settings.machine_type,
            channel=channel,
            response_url=body.get("response_url"),
            params=params,
        )
    except UserError as refusal:
        return f":warning: {refusal}"
    bot.runner.submit(bot.workflows.run, op.id)
    return f":parking: Parking `{name}`: follow the thread in <#{channel}>."
