"""The create form (``/vm create`` with no name, the "Create a VM" global shortcut, the App Home's
button) and the "Park / restore this VM" message shortcut.

The form opens with ``views.open`` inside the ack path: a trigger_id is good for 3 seconds,
once, so it cannot wait for the job runner (a Slack call, kept to one; nothing waits on GCP).
Its submission is checked as ``/vm create`` is (GCP's name rule, the offered zones and machine
types): a bad field is answered with ``response_action: errors`` and the form stays open with
what was typed. A good one starts the same create as the slash command, reporting in a thread
in the channel the form was opened from; from a global shortcut or the App Home (no channel),
in the person's DM with the bot.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, App, Respond
from slack_sdk.errors import SlackApiError, SlackRequestError

from bot.core import audit, permissions, pricing, vm_costs
from bot.core.errors import InvalidInput, UserError
from bot.core.lifecycle import start_operation, verbs_allowed_now
from bot.core.names import check_name, check_option, explain
from bot.slack import views
from bot.slack.blocks import text_only
from bot.slack.refusals import slack_text
from storage.models import Operation, Verb, Verdict

if TYPE_CHECKING:
    from bot.deps import Deps
    from bot.settings import Settings

log = logging.getLogger(__name__)
Payload = dict[str, Any]
VM_ACTIONS_CALLBACK = "vm_actions"


def register(app: App, bot: Deps) -> None:
    def on_create_shortcut(ack: Ack, shortcut: Payload) -> None:
        open_create_form(bot, shortcut["trigger_id"], str(shortcut["user"]["id"]), channel=None)
        ack()

    def on_create_submission(ack: Ack, body: Payload, view: Payload) -> None:
        errors, follow_up = submit_create(bot, body, view)
        if errors:
            ack(response_action="errors", errors=errors)
            return
        if follow_up is not None:
            bot.runner.submit(follow_up)
        ack()

    def on_vm_actions(ack: Ack, shortcut: Payload, respond: Respond) -> None:
        message = vm_actions_card(bot, shortcut)
        bot.runner.submit(lambda: respond(**message.as_kwargs(), response_type="ephemeral", replace_original=False))
        ack()

    app.shortcut(views.CREATE_CALLBACK)(on_create_shortcut)
    app.view_submission(views.CREATE_CALLBACK)(on_create_submission)
    app.message_shortcut(VM_ACTIONS_CALLBACK)(on_vm_actions)


def price_table(bot: Deps) -> pricing.PriceTable:
    """The price table the surfaces show: VMBOT_PRICES's, else the bundled list prices."""
    return vm_costs.price_table(bot.settings.prices)


def open_dm(bot: Deps, user: str) -> str | None:
    """The person's DM with the bot (conversations.open, scope im:write); None if Slack would not open it."""
    try:
        return str(bot.client.conversations_open(users=user)["channel"]["id"])
    except (SlackApiError, SlackRequestError, OSError, KeyError, TypeError) as error:
        log.warning("could not open a DM with %s: %s", user, error)
        return None


def run_operation(bot: Deps, op: Operation) -> Future[Any]:
    """Hand an operation started by a surface to the job runner, which drives it holding no thread while
    it waits on GCP (bot.jobs.runner); first give it a channel (the requester's DM) if it has none, so
    its thread has somewhere to go. Its future is done when the operation has ended."""
    if op.channel is None:
        dm = open_dm(bot, op.requested_by)
        if dm is not None:
            bot.store.set_channel(op.id, dm)
    return bot.runner.submit(bot.workflows.run, op.id)


# ---- the create form ---------------------------------------------------------------


def zone_choices(settings: Settings) -> tuple[str, ...]:
    return settings.zones_offered or (settings.zone,)


def machine_type_choices(settings: Settings, table: pricing.PriceTable) -> list[tuple[str, str | None]]:
    """(machine type, price per day or None): VMBOT_MACHINE_TYPES as given, else the price table's types
    for the default zone's region, cheapest first, up to Slack's 100 options; the default type always."""
    region = pricing.region_of(settings.zone)
    if settings.machine_types_offered:
        names = list(settings.machine_types_offered)
    else:
        rates = table.machine_types.get(region, {})
        names = sorted(rates, key=lambda name: (rates[name], name))
    if settings.machine_type not in names:
        names.insert(0, settings.machine_type)
    names = names[: views.MAX_OPTIONS]

    def per_day(name: str) -> str | None:
        rate = table.machine_per_hour(name, settings.zone)
        return None if rate is None else pricing.format_per_day(24 * rate)

    return [(name, per_day(name)) for name in names]


def create_form_view(bot: Deps, channel: str | None) -> dict[str, Any]:
    settings, table = bot.settings, price_table(bot)
    region = pricing.region_of(settings.zone)
    return views.create_form(
        zones=zone_choices(settings),
        zone=settings.zone,
        machine_types=machine_type_choices(settings, table),
        machine_type=settings.machine_type,
        image_family=settings.image_family,
        channel=channel,
        price_note=f"Machine only, per day, in {region} ({table.label}); disks and other regions differ.",
    )


def open_create_form(bot: Deps, trigger_id: str, user: str, *, channel: str | None) -> str | None:
    """Open the form now (the trigger_id runs out 3 s after Slack made it); None when it opened,
    else what to tell the person instead."""
    try:
        bot.client.views_open(trigger_id=trigger_id, view=create_form_view(bot, channel))
    except (SlackApiError, SlackRequestError, OSError) as error:
        log.warning("could not open the create form for %s: %s", user, error)
        return ":warning: I could not open the create form in time. Try again, or type `/vm create NAME`."
    return None


def submit_create(bot: Deps, body: Payload, view: Payload) -> tuple[dict[str, str], Any]:
    """Check the form as `/vm create` checks its text; start the create. Returns (errors by block_id, the follow-up)."""
    settings = bot.settings
    user = str(body["user"]["id"])
    values = views.form_values(view)
    name, zone = values.get(views.FORM_NAME, ""), values.get(views.FORM_ZONE, settings.zone)
    machine_type, family = values.get(views.FORM_MACHINE_TYPE, settings.machine_type), values.get(views.FORM_FAMILY)
    errors: dict[str, str] = {}
    for block_id, check in (
        (views.FORM_NAME, lambda: check_name(name, what="VM name")),
        (views.FORM_ZONE, lambda: check_option("zone", zone)),
        (views.FORM_MACHINE_TYPE, lambda: check_option("machine-type", machine_type)),
        (views.FORM_FAMILY, lambda: check_option("family", family) if family else None),
    ):
        try:
            check()
        except InvalidInput as invalid:
            errors[block_id] = plain(explain(invalid, lambda value: f'"{value}"'))
    if zone not in zone_choices(settings):
        errors.setdefault(views.FORM_ZONE, f'"{zone[:80]}" is not one of the zones offered here.')
    offered = [t for t, _ in machine_type_choices(settings, price_table(bot))]
    if machine_type not in offered:
        errors.setdefault(views.FORM_MACHINE_TYPE, f'"{machine_type[:80]}" is not one of the machine types offered here.')
    channel = views.form_channel(view)
    text = f"create {name[:80]} zone={zone[:63]} machine-type={machine_type[:63]}" + (f" family={family[:63]}" if family else "")
    request = audit.Request("form", user, channel, text, "create", name[:63] if not errors.get(views.FORM_NAME) else None)
    with audit.recording(request) as recording:
        if errors:
            recording.record(bot.store, Verdict.INVALID, detail="; ".join(errors.values()))
            return errors, None
        try:
            if channel is not None and not channel.startswith("D"):
                permissions.check_channel(settings, channel)
            op = start_operation(
                bot.store,
                Verb.CREATE,
                name,
                requested_by=user,
                zone=zone,
                machine_type=machine_type,
                channel=channel,
                params={"image_family": family} if family else None,
                request_key=f"view:{view.get('id')}:{view.get('hash')}",
            )
        except UserError as refusal:
            recording.record(bot.store, audit.verdict_for(refusal), detail=slack_text(refusal))
            return {views.FORM_NAME: plain(slack_text(refusal))}, None
        recording.record(bot.store, Verdict.ALLOWED)
    return {}, lambda: run_operation(bot, op)


def plain(mrkdwn: str) -> str:
    """A form field's error is plain text: no code spans, entities as characters, within Slack's length."""
    return mrkdwn.replace("`", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")[:300]


# ---- the message shortcut ------------------------------------------------------------


def vm_actions_card(bot: Deps, shortcut: Payload) -> Any:
    """What "Park / restore this VM" on a message answers: the operation thread it starts (channel + ts),
    its VM, and the verbs this person may start on it now."""
    user = str(shortcut["user"]["id"])
    channel = str((shortcut.get("channel") or {}).get("id") or "")
    message = shortcut.get("message") or {}
    root = str(message.get("thread_ts") or shortcut.get("message_ts") or message.get("ts") or "")
    op: Operation | None = bot.store.operation_by_thread(channel, root) if channel and root else None
    vm = bot.store.vm(op.vm_name) if op is not None else None
    if op is None or vm is None:
        return text_only(
            ":information_source: That message does not start one of my operation threads. "
            "Use the shortcut on the first message of a thread I posted, or type `/vm list`."
        )
    refusal = None
    if permissions.may_change(bot.settings, user, vm):
        verbs = verbs_allowed_now(vm, views.HOME_VERBS)
    else:
        verbs = ()
        refusal = "Only its owner and admins may park, restore or delete it."
    return views.vm_actions(vm, vm.active_operation, verbs, refusal=refusal)
