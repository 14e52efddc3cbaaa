"""The ``/vm list`` next-page button (blocks.LIST_NEXT).

A press passes the checks the slash command passes (where, who, the command its button carries,
parsed by the same parser), is written to the audit trail, and replaces the list the person is
looking at with the next page through the press's ``response_url``. The button names the last VM
its page showed, so the next page starts right after it (a keyset read in SQL: no VM is shown
twice or skipped when others come and go between presses).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, App, Respond

from bot.core import audit, permissions
from bot.core.errors import Reason, Refused, UserError
from bot.slack import blocks
from bot.slack.parsing import parse
from bot.slack.refusals import slack_text
from handlers.commands import list_page
from storage.models import Verdict

if TYPE_CHECKING:
    from bot.deps import Deps

Payload = dict[str, Any]


def register(app: App, bot: Deps) -> None:
    def on_next_page(ack: Ack, body: Payload, action: Payload, respond: Respond) -> None:
        message, replaces = next_page(bot, body, action)
        extra = {} if replaces else {"response_type": "ephemeral"}  # a refusal: to the presser, the list stays
        bot.runner.submit(lambda: respond(replace_original=replaces, **extra, **message.as_kwargs()))
        ack()

    app.action(blocks.LIST_NEXT)(on_next_page)


def next_page(bot: Deps, body: Payload, action: Payload) -> tuple[blocks.Message, bool]:
    """The page the button asks for (and True: it replaces the list), or the refusal (False: it goes
    to the presser alone and the list stays)."""
    value = str(action.get("value") or "")
    args, _ = blocks.read_button_value(value)
    after = _after(value)
    request = audit.Request.of_button(body, action, verb="list", vm_name=None)
    with audit.recording(request) as recording:
        try:
            permissions.check_channel(bot.settings, request.channel_id)
            command = parse(args)
            if command.verb != "list" or after is None:
                raise Refused(Reason.UNREADABLE_BUTTON, verb="list")
            permissions.check_command(bot.settings, bot.store, request.user_id, command)
            # The list is ephemeral: only its asker sees the button, and "mine" is whoever presses it.
            message = list_page(bot, command, request.user_id, after=after)
        except UserError as error:
            recording.record(bot.store, audit.verdict_for(error), detail=slack_text(error))
            return blocks.text_only(slack_text(error, with_icon=True)), False
        recording.record(bot.store, Verdict.ALLOWED)
    return message, True


def _after(value: str) -> str | None:
    """The VM name the pressed page ended with (None for a value that does not carry one)."""
    try:
        data = json.loads(value)
    except ValueError:
        return None
    after = data.get("after") if isinstance(data, dict) else None
    return after if isinstance(after, str) and after else None
