"""The App Home dashboard, the create form, the VM-actions card and the help that fits the person,
built with ``slack_sdk.models`` so every view is checked against Slack's limits where it is made.

Handlers (handlers/home.py, handlers/shortcuts.py, handlers/commands.py) gather the facts;
this module only lays them out. Outside text (owner ids, GCP errors) enters mrkdwn through
bot.slack.text; VM names follow GCP's rule and need no escaping.

Action ids (the listeners in handlers/home.py):
* ``vm_<verb>`` (value: the VM's name): the same verb the slash command runs, for every verb in
  ``HOME_VERBS``; park and delete sit behind Slack's confirm dialog, as the slash command asks first.
* ``vm_open_thread``: a link button to the VM's last operation thread.
* ``home_page`` (value: the page number) and ``home_create`` (opens the create form).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    SectionBlock,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from bot.slack.blocks import Message, sections, vm_state_label
from bot.slack.text import actor, escape
from storage.models import Operation, Verb, Vm

JsonDict = dict[str, Any]

# The verbs a button offers, in this order. Stop/Start land with the schedules issue: add them here.
HOME_VERBS: tuple[Verb, ...] = (Verb.PARK, Verb.RESTORE, Verb.DELETE)
VERB_ACTION_PREFIX = "vm_"
# Slack's "are you sure?" in front of the verbs the slash command asks about first.
CONFIRMS: dict[Verb, tuple[str, str, str]] = {
    Verb.PARK: ("Park this VM?", "stops `{name}`, saves an image of its boot disk, then *deletes the VM*.", "Park it"),
    Verb.DELETE: ("Delete this VM?", "deletes `{name}` for good; its images are swept later. *No way back.*", "Delete it"),
}

MAX_VIEW_BLOCKS = 100  # Slack: blocks per home tab or modal
MAX_OPTIONS = 100  # Slack: options per static_select
HEADER_BLOCKS = 5  # header, notice, who, create button, divider
FOOTER_BLOCKS = 2  # page context, Previous/Next
BLOCKS_PER_VM = 4  # facts, context, buttons, divider
VMS_PER_PAGE = (MAX_VIEW_BLOCKS - HEADER_BLOCKS - FOOTER_BLOCKS) // BLOCKS_PER_VM

CREATE_CALLBACK = "create_vm"  # the global shortcut's callback_id and the form's
FORM_NAME, FORM_ZONE, FORM_MACHINE_TYPE, FORM_FAMILY = "name", "zone", "machine_type", "image_family"
FORM_ACTION = "value"


def verb_action(verb: Verb) -> str:
    return f"{VERB_ACTION_PREFIX}{verb.value}"


@dataclass(frozen=True)
class VmCard:
    """One VM as the dashboard shows it to one person."""

    vm: Vm
    active: Operation | None
    running_per_day: str  # "$0.40/day" or "price unknown"
    parked_per_month: str
    verbs: tuple[Verb, ...]  # what this person may do to it now
    thread_url: str | None
    next_action: str | None  # the next scheduled action (schedules), None: nothing scheduled


def thread_url(channel: str, ts: str) -> str:
    """A message's permalink built from its channel and ts, as Slack shapes them (``/archives/C…/p<ts without the dot>``):
    no chat.getPermalink call per VM on a 100-block page."""
    return f"https://slack.com/archives/{channel}/p{ts.replace('.', '')}"


def verb_button(verb: Verb, name: str) -> ButtonElement:
    confirm = None
    if verb in CONFIRMS:
        title, what, yes = CONFIRMS[verb]
        confirm = ConfirmObject(title=title, text=MarkdownTextObject(text=what.format(name=name)), confirm=yes, deny="Cancel", style="danger")
    return ButtonElement(
        text=verb.value.capitalize(),
        action_id=verb_action(verb),
        value=name,
        style="danger" if verb is Verb.DELETE else ("primary" if verb is Verb.RESTORE else None),
        confirm=confirm,
    )


def _vm_blocks(card: VmCard, *, show_owner: bool) -> list[Block]:
    vm = card.vm
    facts = f"*{vm.name}*  {vm_state_label(vm, card.active)}\n{vm.zone} · {vm.machine_type}"
    facts += f"\n{card.running_per_day} running · {card.parked_per_month} parked"
    notes = [f"Owner {actor(vm.owner)}"] if show_owner else []
    notes.append(f"Next scheduled: {escape(card.next_action)}" if card.next_action else "Nothing scheduled")
    elements: list[ButtonElement] = [verb_button(verb, vm.name) for verb in card.verbs]
    if card.thread_url:
        elements.append(ButtonElement(text="Open thread", action_id="vm_open_thread", url=card.thread_url, value=vm.name))
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=facts)), ContextBlock(elements=[MarkdownTextObject(text=" · ".join(notes))])]
    if elements:
        blocks.append(ActionsBlock(block_id=f"vm:{vm.name}", elements=elements))
    blocks.append(DividerBlock())
    return blocks


def home_view(
    cards: Sequence[VmCard],
    *,
    user: str,
    everyone: bool,
    page: int,
    pages: int,
    total: int,
    price_label: str,
    notice: str | None = None,
) -> JsonDict:
    """The App Home tab: one page of VMs (``VMS_PER_PAGE``, so a page stays under Slack's 100 blocks).
    ``notice`` (mrkdwn, escaped by its maker): the answer to the person's last press, on top."""
    whose = "Every VM I manage (you are an admin)" if everyone else "Your VMs"
    blocks: list[Block] = [
        HeaderBlock(text="vmbot"),
        SectionBlock(text=MarkdownTextObject(text=f"*{whose}*, for {actor(user)}: {total} VM{'s' if total != 1 else ''}.")),
        ActionsBlock(block_id="home_top", elements=[ButtonElement(text="Create a VM", action_id="home_create", style="primary")]),
        DividerBlock(),
    ]
    if notice:
        blocks.insert(1, SectionBlock(text=MarkdownTextObject(text=notice[:2900])))
    if not cards:
        blocks.append(SectionBlock(text=MarkdownTextObject(text="No VMs yet. *Create a VM* above, or type `/vm create NAME`.")))
    for card in cards:
        blocks.extend(_vm_blocks(card, show_owner=everyone))
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=f"Page {page} of {pages} · prices: {escape(price_label)}")]))
    pager = []
    if page > 1:
        pager.append(ButtonElement(text="Previous", action_id="home_page", value=str(page - 1)))
    if page < pages:
        pager.append(ButtonElement(text="Next", action_id="home_page", value=str(page + 1)))
    if pager:
        blocks.append(ActionsBlock(block_id="home_pager", elements=pager))
    return View(type="home", callback_id="vmbot_home", blocks=blocks, private_metadata=json.dumps({"page": page})).to_dict()


def create_form(
    *,
    zones: Sequence[str],
    zone: str,
    machine_types: Sequence[tuple[str, str | None]],
    machine_type: str,
    image_family: str,
    channel: str | None,
    price_note: str,
) -> JsonDict:
    """The create form. ``machine_types``: (type, its price per day or None); ``channel``: where the
    operation's thread goes (None: the person's DM), carried in private_metadata to the submission."""

    def option(value: str, label: str | None = None) -> Option:
        return Option(value=value, text=(label or value)[:75])

    type_options = [option(t, f"{t} · {price}" if price else t) for t, price in machine_types][:MAX_OPTIONS]
    zone_options = [option(z) for z in zones][:MAX_OPTIONS]
    initial_type = next((o for o in type_options if o.value == machine_type), None)
    initial_zone = next((o for o in zone_options if o.value == zone), None)
    where = f"The thread goes in <#{channel}>." if channel else "The thread goes in your direct messages with me."
    blocks: list[Block] = [
        InputBlock(
            block_id=FORM_NAME,
            label="Name",
            element=PlainTextInputElement(action_id=FORM_ACTION, placeholder="test-vm-22", max_length=63),
            hint="Lowercase letters, digits and hyphens; starts with a letter.",
        ),
        InputBlock(block_id=FORM_ZONE, label="Zone", element=StaticSelectElement(action_id=FORM_ACTION, options=zone_options, initial_option=initial_zone)),
        InputBlock(
            block_id=FORM_MACHINE_TYPE,
            label="Machine type",
            element=StaticSelectElement(action_id=FORM_ACTION, options=type_options, initial_option=initial_type),
            hint=price_note[:150],
        ),
        InputBlock(
            block_id=FORM_FAMILY,
            label="Image family",
            optional=True,
            element=PlainTextInputElement(action_id=FORM_ACTION, placeholder=image_family[:150], max_length=63),
            hint=f"Empty: {image_family}"[:150],
        ),
        ContextBlock(elements=[MarkdownTextObject(text=where)]),
    ]
    return View(
        type="modal",
        callback_id=CREATE_CALLBACK,
        title="Create a VM",
        submit="Create",
        close="Cancel",
        blocks=blocks,
        private_metadata=json.dumps({"channel": channel}),
    ).to_dict()


def form_channel(view: JsonDict) -> str | None:
    """The channel a create form was opened from (``create_form``'s private_metadata)."""
    try:
        data = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        return None
    channel = data.get("channel") if isinstance(data, dict) else None
    return str(channel) if channel else None


def form_values(view: JsonDict) -> dict[str, str]:
    """What the person filled in: {block_id: text or the chosen option's value}; empty fields left out."""
    values: dict[str, str] = {}
    for block_id, actions in ((view.get("state") or {}).get("values") or {}).items():
        field = (actions or {}).get(FORM_ACTION) or {}
        value = field.get("value") if field.get("type") == "plain_text_input" else (field.get("selected_option") or {}).get("value")
        if isinstance(value, str) and value.strip():
            values[block_id] = value.strip()
    return values


def vm_actions(vm: Vm, active: Operation | None, verbs: Sequence[Verb], *, refusal: str | None = None) -> Message:
    """The message shortcut's answer (only to the person who used it): the VM's state and the verbs
    they may start now, as buttons that run the same checks as the slash command."""
    lines = [f"*{vm.name}*  {vm_state_label(vm, active)} · {vm.zone} · {vm.machine_type}"]
    if refusal:
        lines.append(refusal)
    elif not verbs:
        lines.append("Nothing to do to it right now.")
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text="\n".join(lines)))]
    if verbs:
        blocks.append(ActionsBlock(block_id=f"vm:{vm.name}", elements=[verb_button(verb, vm.name) for verb in verbs]))
    return Message(f"{vm.name}: {vm.state.value}", [block.to_dict() for block in blocks])


@dataclass(frozen=True)
class HelpLine:
    usage: str
    summary: str
    example: str


def help_for(lines: Sequence[HelpLine], notes: Sequence[str]) -> Message:
    """`/vm help` for one person: the verbs they may run, one example each, and what is for others."""
    items = [f"`/vm {line.usage}`  {line.summary}\n      e.g. `{line.example}`" for line in lines]
    intro = SectionBlock(text=MarkdownTextObject(text="*vmbot* creates, parks, restores and deletes Compute Engine VMs from Slack."))
    blocks: list[JsonDict] = [intro.to_dict(), *sections(items)]
    if notes:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=note) for note in notes][:10]).to_dict())
    return Message("vmbot: create, park and restore GCP VMs from Slack.\n" + "\n".join(items), blocks)
