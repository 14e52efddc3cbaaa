"""The App Home tab: a dashboard of the person's VMs (an admin's: everyone's) with a button per
verb they may start now.

``app_home_opened`` publishes the tab from the job runner (views.publish is a Slack call; the
event's ack does not wait on it). A verb button (``vm_<verb>``, on the tab or on the message
shortcut's card) runs the same checks and the same operation as the slash command, is audited
as a button press, and the tab is published again when the operation has started and when it
has ended. A refused press is told on the tab itself (a notice on top), since a home tab has no
response_url.

Where the operation's thread goes: the channel the button was pressed in; from the tab, the
channel of the VM's last thread; failing both, the person's DM with the bot (conversations.open,
im:write), opened on the job runner before the operation starts.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, App, Respond
from slack_sdk.errors import SlackApiError, SlackRequestError

from bot.core import audit, permissions, pricing
from bot.core.errors import Reason, Refused, UserError
from bot.core.lifecycle import start_operation, verbs_allowed_now
from bot.core.schedule_records import schedule_of
from bot.core.schedules import format_local, next_run
from bot.core.vm_costs import vm_costs
from bot.slack import views
from bot.slack.refusals import slack_text
from handlers.shortcuts import open_create_form, price_table, run_operation
from storage.models import Operation, Verb, Verdict, Vm, utcnow

if TYPE_CHECKING:
    from bot.deps import Deps

log = logging.getLogger(__name__)
Payload = dict[str, Any]


def next_scheduled_action(bot: Deps, vm: Vm) -> str | None:
    """The VM's next scheduled action in its schedule's zone ("park Mon 8 Dec 19:00 CET"), or its time to live."""
    row = bot.store.vm_schedule(vm.name)
    run = next_run(schedule_of(row), utcnow()) if row is not None else None
    if run is not None:
        return f"{run.action} {format_local(run.when, row.tz)}"
    deadline = bot.store.ttl(vm.name)
    return f"park {format_local(deadline.park_at, bot.settings.timezone)} (time to live)" if deadline else None


def register(app: App, bot: Deps) -> None:
    home = HomeTab(bot)

    def on_home_opened(event: Payload) -> None:
        if event.get("tab", "home") == "home":
            bot.runner.submit(home.publish, str(event["user"]))

    def on_verb(ack: Ack, body: Payload, action: Payload, respond: Respond) -> None:
        press = VerbPress.of(body, action)
        outcome = start_from_press(bot, press)
        bot.runner.submit(home.after_press, press, outcome, respond)
        ack()

    def on_page(ack: Ack, body: Payload, action: Payload) -> None:
        page = int(action["value"]) if str(action.get("value", "")).isdigit() else 1
        bot.runner.submit(home.publish, str(body["user"]["id"]), page)
        ack()

    def on_link(ack: Ack) -> None:
        ack()  # a link button opens its URL in Slack; Slack still tells the app, which acks

    def on_create(ack: Ack, body: Payload) -> None:
        open_create_form(bot, body["trigger_id"], str(body["user"]["id"]), channel=None)
        ack()

    app.event("app_home_opened")(on_home_opened)
    for verb in views.HOME_VERBS:
        app.action(views.verb_action(verb))(on_verb)
    app.action("vm_open_thread")(on_link)
    app.action("home_page")(on_page)
    app.action("home_create")(on_create)


@dataclass(frozen=True)
class VerbPress:
    """A press of a ``vm_<verb>`` button: who, which verb on which VM, and where it was pressed."""

    body: Payload
    action: Payload
    user: str
    verb: Verb
    vm_name: str
    channel: str | None  # None: on the App Home tab
    page: int  # the home tab's page it was pressed on

    @classmethod
    def of(cls, body: Payload, action: Payload) -> VerbPress:
        verb = Verb(str(action["action_id"]).removeprefix(views.VERB_ACTION_PREFIX))
        container = body.get("container") or {}
        in_view = container.get("type") == "view"
        channel = None if in_view else (body.get("channel") or {}).get("id") or container.get("channel_id")
        try:
            page = int(json.loads((body.get("view") or {}).get("private_metadata") or "{}").get("page", 1))
        except (ValueError, AttributeError, TypeError):
            page = 1
        return cls(body, action, str(body["user"]["id"]), verb, str(action.get("value") or ""), channel, page)

    @property
    def on_home(self) -> bool:
        return self.channel is None


@dataclass(frozen=True)
class PressOutcome:
    text: str  # what the presser reads (mrkdwn)
    operation: Operation | None = None


def start_from_press(bot: Deps, press: VerbPress) -> PressOutcome:
    """Who, what and where, then the operation, as ``/vm VERB NAME`` (and its confirm button) would;
    audited as a button press. A few ms of store work, on the ack path."""
    request = audit.Request.of_button(press.body, press.action, verb=press.verb.value, vm_name=press.vm_name or None)
    with audit.recording(request) as recording:
        try:
            vm = bot.store.vm(press.vm_name) if press.vm_name else None
            if vm is None:
                raise Refused(Reason.VM_UNKNOWN, press.vm_name or "?")
            permissions.require_owner_or_admin(bot.settings, press.user, vm, press.verb.value)
            channel = press.channel or thread_channel(bot, vm)
            if channel is not None and not channel.startswith("D"):  # a DM is the person's own conversation
                permissions.check_channel(bot.settings, channel)
            trigger = press.body.get("trigger_id")
            op = start_operation(
                bot.store,
                press.verb,
                vm.name,
                requested_by=press.user,
                zone=vm.zone,
                machine_type=vm.machine_type,
                channel=channel,
                response_url=press.body.get("response_url"),
                request_key=f"action:{trigger}" if trigger else None,
            )
        except UserError as refusal:
            recording.record(bot.store, audit.verdict_for(refusal), detail=slack_text(refusal))
            return PressOutcome(slack_text(refusal, with_icon=True))
        recording.record(bot.store, Verdict.ALLOWED)
    where = f"<#{op.channel}>" if op.channel else "your direct messages with me"
    ing = {"park": ":parking: Parking", "restore": ":recycle: Restoring", "delete": ":wastebasket: Deleting"}
    lead = ing.get(press.verb.value, f":arrow_forward: {press.verb.value.capitalize()}")
    return PressOutcome(f"{lead} `{vm.name}`: follow the thread in {where}.", op)


def thread_channel(bot: Deps, vm: Vm) -> str | None:
    """Where a VM's story is told: the channel of its last operation thread (None: there is none)."""
    last = bot.store.last_threads([vm.name]).get(vm.name)
    return last.channel if last else None


class HomeTab:
    """Builds and publishes one person's App Home tab."""

    def __init__(self, bot: Deps) -> None:
        self.bot = bot

    def publish(self, user: str, page: int = 1, *, notice: str | None = None) -> None:
        view = self.view(user, page, notice=notice)
        try:
            self.bot.client.views_publish(user_id=user, view=view)
        except (SlackApiError, SlackRequestError, OSError) as error:
            log.warning("could not publish the App Home of %s: %s", user, error)

    def view(self, user: str, page: int = 1, *, notice: str | None = None) -> dict[str, Any]:
        bot = self.bot
        everyone = permissions.is_admin(bot.settings, user)
        summaries = [s for s in bot.store.list_vms() if everyone or s.vm.owner == user]
        pages = max(1, -(-len(summaries) // views.VMS_PER_PAGE))
        page = min(max(1, page), pages)
        shown = summaries[(page - 1) * views.VMS_PER_PAGE : page * views.VMS_PER_PAGE]
        threads = bot.store.last_threads([s.vm.name for s in shown])
        table = price_table(bot)
        cards = [self.card(s.vm, s.active_operation, user, table, threads.get(s.vm.name)) for s in shown]
        view = views.home_view(
            cards, user=user, everyone=everyone, page=page, pages=pages, total=len(summaries), price_label=table.label,
            notice=notice,
        )
        return view

    def card(self, vm: Vm, active: Operation | None, user: str, table: pricing.PriceTable, thread: Operation | None) -> views.VmCard:
        figures = vm_costs(table, vm, self.bot.store.images(vm.name))
        verbs = verbs_allowed_now(vm, views.HOME_VERBS) if permissions.may_change(self.bot.settings, user, vm) else ()
        url = views.thread_url(thread.channel, thread.thread_ts) if thread and thread.channel and thread.thread_ts else None
        return views.VmCard(
            vm, active, pricing.format_per_day(figures.running_per_day), pricing.format_per_month(figures.parked_per_month),
            verbs, url, next_scheduled_action(self.bot, vm),
        )

    def after_press(self, press: VerbPress, outcome: PressOutcome, respond: Respond) -> None:
        """On the job runner: tell the presser, run the operation, and show the tab again when it has ended."""
        if press.on_home:
            self.publish(press.user, press.page, notice=outcome.text)
        else:
            respond(text=outcome.text, response_type="ephemeral", replace_original=False)
        if outcome.operation is None:
            return
        ended = run_operation(self.bot, outcome.operation)
        if press.on_home:
            self.bot.runner.after(ended, self.publish, press.user, press.page)
