"""Every message the bot shows in Slack, built as Block Kit data.

Handlers and workflows decide *what* to say; this module decides how it looks.
Each builder returns a Message whose ``text`` is the plain fallback Slack shows
in notifications and whose ``blocks`` are the rich layout.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from bot.core.progress import duration
from bot.gcp.shape import VmShape
from bot.slack.text import actor, code, escape, from_core, is_slack_user
from storage.models import VmState

if TYPE_CHECKING:
    from bot.gcp.compute import InstanceInfo
    from bot.jobs.sweeper import SweepReport, Tally
    from storage.models import AuditEntry, Image, Operation, Vm
    from storage.store import VmSummary

Block = dict[str, Any]

MAX_BLOCKS = 50  # Slack refuses a message with more blocks

VERB_ING = {"create": "creating", "park": "parking", "restore": "restoring", "delete": "deleting", "adopt": "adopting",
            "stop": "stopping", "start": "starting", "suspend": "suspending", "resume": "resuming"}
STATE_EMOJI = {
    "running": ":large_green_circle:",
    "parked": ":parking:",
    "stopped": ":double_vertical_bar:",
    "suspended": ":zzz:",
    "creating": ":hourglass_flowing_sand:",
    "deleted": ":wastebasket:",
}


@dataclass(frozen=True)
class Message:
    text: str
    blocks: list[Block] = field(default_factory=list)

    def as_kwargs(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": self.blocks} if self.blocks else {"text": self.text}


SECTION_TEXT_LIMIT = 3000  # Slack refuses a section (or a context element) with a longer text


def fit(markdown: str, limit: int = SECTION_TEXT_LIMIT) -> str:
    """``markdown`` within ``limit`` characters: a long text (a GCP message can be) is cut, with "…",
    never inside an ``&entity;`` or a ``<...>``, and never leaving a code span open."""
    if len(markdown) <= limit:
        return markdown
    text = markdown[: limit - 1]
    for opener, closer in (("<", ">"), ("&", ";")):
        cut = text.rfind(opener)
        if cut > text.rfind(closer):
            text = text[:cut]
    if text.count("`") % 2:
        text = text[: text.rfind("`")]
    return text + "…"


def section(markdown: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": fit(markdown)}}


def sections(lines: Sequence[str], *, limit: int = 2900) -> list[Block]:
    """Lines as as few sections as fit: Slack refuses a section text over 3000 characters."""
    blocks: list[Block] = []
    chunk: list[str] = []
    for line in lines:
        if chunk and sum(len(x) + 1 for x in chunk) + len(line) > limit:
            blocks.append(section("\n".join(chunk)))
            chunk = []
        chunk.append(line)
    if chunk:
        blocks.append(section("\n".join(chunk)))
    return blocks


def context(*markdown: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": fit(item)} for item in markdown]}


def text_only(markdown: str) -> Message:
    return Message(markdown, [section(markdown)])


# ---- help ---------------------------------------------------------------------


def help_message() -> Message:
    from bot.slack.parsing import SUBCOMMANDS  # the table of subcommands is the help text

    lines = [f"`/vm {spec.usage}`  {spec.summary}" for spec in SUBCOMMANDS.values()]
    body = "\n".join(lines)
    return Message(
        "vmbot: create, park and restore GCP VMs from Slack.\n" + body,
        [
            section("*vmbot* creates, parks, restores and deletes Compute Engine VMs from Slack."),
            section(body),
            context(
                "Parking keeps only an image of the VM's disk (cheap) and deletes the VM; "
                "restoring recreates it from that image and runs its startup script again."
            ),
        ],
    )


# ---- park confirmation -------------------------------------------------------------


def button_value(args: str, requested_by: str) -> str:
    """A confirmation button's value: the rest of the command and who asked, so only they (or an admin) may press it."""
    return json.dumps({"args": args, "requested_by": requested_by}, separators=(",", ":"))


def read_button_value(value: str) -> tuple[str, str | None]:
    """(the rest of the command, requester) from a button's value; a plain value (older buttons) has no requester."""
    try:
        data = json.loads(value)
    except ValueError:
        return value, None
    if not isinstance(data, dict):
        return value, None
    return str(data.get("args") or ""), (str(data["requested_by"]) if data.get("requested_by") else None)


PARK_CONFIRMATION = "park_confirmation"
DELETE_CONFIRMATION = "delete_confirmation"


def park_confirmation(
    vm: Vm, requested_by: str, *, image: str | None = None, family: str | None = None, nonce: str | None = None,
    costs: str | None = None,
) -> Message:
    """The ephemeral question a park starts with (see ``_question``); its buttons carry the park's options."""

    def what(cut: int) -> str:
        named = f" as image {code(_cut(image, cut))}" if image else ""
        return (
            f"Parking {code(_cut(vm.name, cut))} stops it, saves an image of its boot disk{named} into image family "
            f"{code(_cut(family or vm.name, cut))}, then *deletes the VM*. Its external IP will change when it is restored."
        )

    args = " ".join([vm.name] + [f"{key}={item}" for key, item in (("image", image), ("family", family)) if item])
    return _question(
        "park", vm.name, args, requested_by, what(63) + (f"\n{costs}" if costs else ""), dialog=_fitting(what),
        nonce=nonce,
        summary=f"Park {vm.name}? It will be stopped, imaged and deleted.",
        confirm=("Park this VM?", "Park it", "Keep it running"),
    )


def delete_confirmation(vm: Vm, requested_by: str, *, images: int, grace: float, nonce: str | None = None) -> Message:
    """The ephemeral question a delete starts with (see ``_question``)."""
    after = f"after a grace period of {duration(grace)}" if grace else "at the next sweep"
    parts = [] if vm.state is VmState.PARKED else ["deletes the VM and its boot disk"]
    if images:
        several = images != 1
        parts.append(f"marks its {_images(images)} dirty: the sweeper deletes {'them' if several else 'it'} {after}")
    else:
        parts.append("keeps nothing: it has no images")

    def what(cut: int) -> str:
        name = code(_cut(vm.name, cut))
        return (
            f"Deleting {name} {', and '.join(parts)}. "
            f"*There is no way back*: `/vm restore {_cut(vm.name, cut)}` will not work afterwards."
        )

    return _question(
        "delete", vm.name, vm.name, requested_by, what(63), dialog=_fitting(what), nonce=nonce,
        summary=f"Delete {vm.name}? It cannot be restored afterwards.",
        confirm=("Delete this VM?", "Delete it", "Keep it"),
    )


# Slack refuses a confirm dialog whose text is longer than this (its "are you sure?" box is small).
CONFIRM_TEXT_LIMIT = 300


def _cut(name: str, limit: int) -> str:
    """A name cut to ``limit`` characters, its end kept (names differ at the end: dates, numbers)."""
    return name if len(name) <= limit else name[: limit // 2 - 1] + "…" + name[-(limit - limit // 2) :]


def _fitting(text_for: Callable[[int], str]) -> str:
    """The text ``text_for(cut)`` with names cut just short enough for a confirm dialog.

    The full names stay in the message the dialog belongs to."""
    for cut in (63, 40, 32, 24, 16):
        text = text_for(cut)
        if len(text) <= CONFIRM_TEXT_LIMIT:
            return text
    return text[: CONFIRM_TEXT_LIMIT - 1] + "…"


PAUSE_WORDS = {
    "stop": ("stops it and keeps its disk (the disk is still paid for; the machine is not)", "start", "Stop"),
    "suspend": (
        "suspends it, keeping its memory and disk (both still paid for; the machine is not)", "resume", "Suspend"
    ),
}


def pause_confirmation(
    vm: Vm, requested_by: str, verb: str, *, costs: str | None = None, nonce: str | None = None
) -> Message:
    """The ephemeral question ``/vm stop`` and ``/vm suspend`` start with (see ``_question``)."""
    does, back, title = PAUSE_WORDS[verb]

    def what(cut: int) -> str:
        name = _cut(vm.name, cut)
        return f"{VERB_ING[verb].capitalize()} {code(name)} {does}. `/vm {back} {name}` brings it back."

    return _question(
        verb, vm.name, vm.name, requested_by, what(63) + (f"\n{costs}" if costs else ""), dialog=_fitting(what), nonce=nonce,
        summary=f"{title} {vm.name}?",
        confirm=(f"{title} this VM?", f"{title} it", "Keep it running"),
    )


def confirm_dialog(title: str, text: str, yes: str, no: str) -> Block:
    """Slack's "are you sure?" dialog in front of a dangerous button."""
    return {
        "title": {"type": "plain_text", "text": title},
        "text": {"type": "mrkdwn", "text": text},
        "confirm": {"type": "plain_text", "text": yes},
        "deny": {"type": "plain_text", "text": no},
        "style": "danger",
    }


def _question(
    verb: str,
    name: str,
    args: str,
    requested_by: str,
    what: str,
    *,
    summary: str,
    confirm: tuple[str, str, str],
    nonce: str | None,
    dialog: str | None = None,
) -> Message:
    """A destructive verb's question: two buttons, the dangerous one behind a confirm dialog.

    The buttons' value holds the rest of the command (``NAME [options]``), so the
    confirmation re-parses it with the same parser, and the person who asked, who
    alone (with the admins) may press them. The block_id carries a nonce naming
    this one question, so however often its confirm button is pressed (or Slack
    delivers the press), the verb runs once.
    """
    title, yes, no = confirm
    value = button_value(args, requested_by)
    return Message(
        summary,
        [
            section(f":warning: {what}"),
            {
                "type": "actions",
                "block_id": f"{verb}_confirmation:{nonce or uuid.uuid4().hex}",
                "elements": [
                    {
                        "type": "button",
                        "action_id": f"{verb}_confirm",
                        "text": {"type": "plain_text", "text": f"{verb.capitalize()} {name}"[:75]},
                        "style": "danger",
                        "value": value,
                        "confirm": confirm_dialog(title, dialog or what, yes, no),
                    },
                    {
                        "type": "button",
                        "action_id": f"{verb}_cancel",
                        "text": {"type": "plain_text", "text": "Cancel"},
                        "value": value,
                    },
                ],
            },
        ],
    )


# ---- an operation's thread -------------------------------------------------------------


def operation_started(op: Operation, detail: str) -> Message:
    who = actor(op.requested_by)
    headline = f":hourglass_flowing_sand: {who} is {VERB_ING[op.verb.value]} {code(op.vm_name)}"
    return Message(
        f"{VERB_ING[op.verb.value].capitalize()} {escape(op.vm_name)} (asked by {who})",
        [section(headline), context(f"{from_core(detail)} · operation #{op.id} · progress in the thread")],
    )


def operation_queued(op: Operation, ahead: int, slots: int) -> Message:
    """The thread root of an operation waiting for a slot: every one of the ``slots`` is taken and
    ``ahead`` more operations wait before it (bot.jobs.runner). The workflow's start replaces it."""
    who = actor(op.requested_by)
    behind = f"queued behind {ahead} other{'s' if ahead != 1 else ''}" if ahead else "queued: next in line"
    return Message(
        f"{VERB_ING[op.verb.value].capitalize()} {escape(op.vm_name)} ({behind}; asked by {who})",
        [section(f":hourglass: {who} asked to {op.verb.value} {code(op.vm_name)}: {behind}"),
         context(f"{slots} operations run at once; this one starts when one of them ends · operation #{op.id}")],
    )


def operation_progress(op: Operation, detail: str, step_text: str) -> Message:
    """The thread root while its channel is too busy for a reply per step: the current step is shown on it."""
    started = operation_started(op, detail)
    return Message(started.text, [*started.blocks, context(f":arrow_forward: {from_core(step_text)}")])


def operation_finished(op: Operation, *, ok: bool, headline: str, took: float) -> Message:
    icon = ":white_check_mark:" if ok else ":x:"
    return Message(
        f"{op.verb.value.capitalize()} {op.vm_name}: {'done' if ok else 'failed'}",
        [
            section(f"{icon} {from_core(headline)}"),
            context(f"{actor(op.requested_by)} asked to {op.verb.value} `{op.vm_name}` · operation #{op.id} · {_duration(took)}"),
        ],
    )


def invite_me(op: Operation) -> str:
    """Whispered when an operation's thread cannot be posted because the bot is not in the channel."""
    return (
        f":wave: I can't post in <#{op.channel}>, so I can't report on the {op.verb.value} of `{op.vm_name}` "
        f"(operation #{op.id}) in a thread here. It goes on anyway: `/vm status {op.vm_name}` shows how it is going. "
        "Invite me to this channel (`/invite @vmbot`) to get threads next time."
    )


def operation_refused(op: Operation, reason: str) -> Message:
    """A refusal told in the channel, for a requester with no Slack user to whisper to (an API script)."""
    return text_only(f":warning: {actor(op.requested_by)} asked to {op.verb.value} `{op.vm_name}`: refused. {reason}")


def step(text: str) -> Message:
    """A step of an operation, as a thread reply (``text`` is the core's: see ``from_core``)."""
    return Message(from_core(text))


def operation_succeeded_reply(detail: str) -> Message:
    """A finished operation's last thread reply (``detail`` is the core's: see ``from_core``)."""
    return text_only(from_core(detail))


def operation_failed_reply(op: Operation, detail: str, *, retry: bool = True) -> Message:
    """A failed operation's last thread reply: what happened, and a ``retry`` button that asks again
    (with the same checks as a fresh request, and a confirm dialog for the destructive park).

    No button when trying again can only fail the same way (GCP refused the request as invalid).
    """
    if not retry:
        return operation_succeeded_reply(detail)
    button: Block = {
        "type": "button",
        "action_id": "operation_retry",
        "text": {"type": "plain_text", "text": f"Retry {op.verb.value}"},
        "value": str(op.id),
    }
    if op.verb.value == "park":
        what = f"This parks `{op.vm_name}` again: stop, image, *delete the VM*."
        button["confirm"] = confirm_dialog("Park again?", what, "Park it", "Cancel")
    elif op.verb.value == "delete":
        what = f"This tries again to *delete `{op.vm_name}` for good*."
        button["confirm"] = confirm_dialog("Delete again?", what, "Delete it", "Cancel")
    detail = from_core(detail)
    return Message(detail, [section(detail), {"type": "actions", "block_id": f"retry:{op.id}", "elements": [button]}])


# ---- list and status -------------------------------------------------------------------


def vm_state_label(vm: Vm, active: Operation | None) -> str:
    if active is not None:
        return f":hourglass_flowing_sand: busy: {VERB_ING[active.verb.value]}"
    return f"{STATE_EMOJI.get(vm.state.value, '')} {vm.state.value}".strip()


LIST_PAGE_SIZE = 50  # VMs a `/vm list` page shows at most (fewer only if Slack's limits need it: vm_list counts)
LIST_NEXT = "vm_list_next"  # the next-page button's action_id (handlers.list_pages)


@dataclass(frozen=True)
class ListPage:
    """Where one page of ``/vm list`` sits: its number (from 1), how many VMs match in all, where its
    first VM stands among them (from 0), the filter words as typed (``mine parked``) and who asked."""

    number: int = 1
    total: int | None = None  # None: the summaries given are all there is
    first: int = 0
    filters: str = ""
    requested_by: str = ""


def vm_list(
    summaries: Sequence[VmSummary],
    *,
    deleted: int = 0,
    costs: dict[str, str] | None = None,
    footer: str | None = None,
    page: ListPage | None = None,
) -> Message:
    """``/vm list``: one page of the VMs, each with its costs when known; with none, how many were deleted,
    and where to read about them. ``footer`` (the savings so far) closes the list.

    A page shows at most LIST_PAGE_SIZE VMs, and fewer if their lines would take more than Slack's
    MAX_BLOCKS blocks (sections of at most 2,900 characters): the count is computed from the lines
    themselves. When VMs remain, a button asks for the next page after the last one shown (a keyset:
    the value names it), so every VM is reachable exactly once however the pages fall."""
    page = page or ListPage(total=len(summaries))
    total = len(summaries) if page.total is None else page.total
    command = f"/vm list {page.filters}".strip()
    if not summaries and page.first:
        pages = max(1, -(-total // LIST_PAGE_SIZE))
        return text_only(
            f"`{command}` has {pages} page{'s' if pages != 1 else ''} ({_vms(total)}); "
            f"try `{command} page={pages}`."
        )
    if not summaries and page.filters:
        return text_only(f"No VMs match `{command}`. `/vm list` shows them all.")
    if not summaries and deleted:
        gone = f"the {deleted} I managed are deleted" if deleted != 1 else "the one I managed is deleted"
        return text_only(
            f"No VMs are live: {gone}. `/vm history NAME` shows what happened to one; "
            "`/vm create NAME` makes a new one."
        )
    if not summaries:
        return text_only("I don't manage any VMs yet. Create one with `/vm create NAME`.")
    candidates = list(summaries[:LIST_PAGE_SIZE])
    lines = []
    for item in candidates:
        vm = item.vm
        image = f"`{item.newest_image}`" if item.newest_image else "no image"
        ip = f" · {vm.external_ip}" if vm.external_ip else ""
        lines.append(
            f"*{vm.name}*  {vm_state_label(vm, item.active_operation)}{ip}\n"
            f"      {actor(vm.owner)} · {vm.zone} · {vm.machine_type} · {image}"
            + (f"\n      {costs[vm.name]}" if costs and vm.name in costs else "")
        )
    tail = [context(footer)] if footer else []
    room = MAX_BLOCKS - 1 - len(tail) - 1  # the header, the footer, the next-page button
    shown = len(lines)
    while len(sections(lines[:shown])) > room:
        shown -= 1
    body = sections(lines[:shown])
    more = total - page.first - shown
    if page.number == 1 and more <= 0:
        header = f"*{_vms(total)}*" + (f" matching `{command}`" if page.filters else "")
    else:
        header = (f"*{_vms(total)}*" + (f" matching `{command}`" if page.filters else "")
                  + f" · page {page.number} of {max(page.number, -(-total // LIST_PAGE_SIZE))}"
                  + f" · {page.first + 1}–{page.first + shown}")
    blocks = [section(header), *body, *tail]
    names = ", ".join(s.vm.name for s in candidates[:shown])
    if more > 0:
        after = candidates[shown - 1].vm.name
        value = json.dumps({"args": f"list {page.filters} page={page.number + 1}".replace("  ", " "),
                            "requested_by": page.requested_by, "after": after}, separators=(",", ":"))
        blocks.append({
            "type": "actions",
            "block_id": f"vm_list_page:{page.number}",
            "elements": [{
                "type": "button", "action_id": LIST_NEXT, "value": value,
                "text": {"type": "plain_text", "text": f"Next {min(more, LIST_PAGE_SIZE)} of {more} more"},
            }],
        })
        return Message(f"{_vms(total)}, page {page.number} ({more} more): {names}"[:3000], blocks)
    return Message(f"{_vms(total)}: {names}"[:3000], blocks)


def _vms(count: int) -> str:
    return f"{count} VM{'s' if count != 1 else ''}"


def vm_status(
    vm: Vm,
    live: InstanceInfo | None,
    images: Sequence[Image],
    operations: Sequence[Operation],
    *,
    live_drift: str | None = None,
    costs: str | None = None,
    plans: Sequence[str] = (),
) -> Message:
    gcp = f"{live.status}" + (f" at {live.external_ip}" if live and live.external_ip else "") if live else "no instance"
    image = next((img.name for img in reversed(images) if img.state.value == "ready" and img.device_name is None), None)
    facts = [
        f"*{vm.name}*  {vm_state_label(vm, vm.active_operation)}",
        f"GCP now: {gcp}",
        f"Owner {actor(vm.owner)} · {vm.zone} · {vm.machine_type}",
        f"Newest image: `{image}`" if image else
        f"No ready image; {_images(len(images))} ({_image_states(images)}): `/vm images {vm.name}` shows them" if images else
        "No image yet",
    ]
    if vm.shape:  # what a restore brings back, as the last park (or the adopt) read it
        facts.append(f"Shape: {escape(VmShape.from_json(vm.shape).summary())}")
    if costs:
        facts.append(costs)
    facts.extend(plans)
    ops = [
        f"#{op.id} {op.verb.value} by {actor(op.requested_by)}: {op.state.value}"
        + (f" ({op.step})" if op.state.value == "running" and op.step else "")
        + (f": {escape(op.error)[:200]}" if op.error else "")
        + f" · {_ago(op.created_at)}"
        for op in operations
    ]
    # Drift texts are ours (bot.jobs.reconcile), built from GCP resource names and statuses: shown as they are.
    drift = [f":warning: Drift now: {live_drift}"] if live_drift else []
    if vm.drift and vm.drift_at:
        drift.append(f":mag: Reconcile found {_ago(vm.drift_at)}: {vm.drift}")
    blocks = [section("\n".join(facts + drift))]
    if ops:
        blocks.append(context("*Last operations*\n" + "\n".join(ops)))
    return Message(f"{vm.name}: {vm.state.value}, GCP: {gcp}", blocks)


# ---- the sweeper -------------------------------------------------------------------

IMAGE_STATE_EMOJI = {
    "ready": ":large_green_circle:",
    "dirty": ":broom:",
    "deleted": ":wastebasket:",
    "pending": ":hourglass_flowing_sand:",
    "failed": ":x:",
}


def sweep_started(report: SweepReport) -> Message:
    what = "a dry run of the image sweep (nothing will be deleted)" if report.dry_run else "an image sweep"
    number = f" #{report.sweep_id}" if report.sweep_id else ""
    if report.requested_by:
        headline = f":broom: <@{report.requested_by}> started {what}{number}…"
    else:
        headline = f":broom: {report.trigger.capitalize()} image sweep{number} running…"
    return Message(headline.replace(":broom: ", ""), [section(headline), context("The report follows in this thread.")])


def sweep_headline(report: SweepReport) -> Message:
    """The sweep's root message once it has ended: one line of totals."""
    name = "Dry run of the image sweep" if report.dry_run else f"Image sweep #{report.sweep_id}" if report.sweep_id else "Image sweep"
    verb = "would delete" if report.dry_run else "deleted"
    parts = [f"{verb} {_images(report.deleted.count)} ({report.freed_gb:.1f} GB)"]
    if report.already_gone.count:
        parts.append(f"{report.already_gone.count} already gone")
    if report.failed.count:
        parts.append(f"{report.failed.count} failed")
    parts.append(f"{sum(t.count for t in report.kept.values()) + report.untouched} kept")
    if report.orphans.count:
        parts.append(f"{report.orphans.count} orphan{'s' if report.orphans.count != 1 else ''}")
    icon = ":warning:" if report.failed.count or report.stopped or report.orphans_error else ":broom:"
    headline = f"{icon} {name}: " + ", ".join(parts)
    who = f"started by <@{report.requested_by}>" if report.requested_by else f"{report.trigger} sweep"
    return Message(f"{name}: " + ", ".join(parts), [section(headline), context(f"{who} · {_duration(report.took)}")])


def sweep_report(report: SweepReport) -> Message:
    """The details, for the sweep's thread: deleted, kept and why, failed, orphans, storage freed."""
    verb = "Would delete" if report.dry_run else "Deleted"
    blocks = [section(_tally_text(f"*{verb}* ({report.freed_gb:.1f} GB {'to free' if report.dry_run else 'freed'})", report.deleted))]
    if report.already_gone.count:
        what = "would be marked deleted" if report.dry_run else "marked deleted"
        blocks.append(section(_tally_text(f"*Already gone from GCP*, {what}", report.already_gone)))
    if report.failed.count:
        blocks.append(section(_tally_text("*Failed*: left dirty, the next sweep tries again", report.failed)))
    if report.stopped:
        blocks.append(section(f":warning: Stopped early: {escape(report.stopped)}."))
    if report.untouched:
        several = report.untouched != 1
        blocks.append(section(
            f"*Kept*: not dirty (each a VM's way back, or in use): {report.untouched} image{'s' if several else ''}"
        ))
    for reason, tally in report.kept.items():
        note = ""
        if reason.startswith("in its grace") and report.next_eligible:
            note = f"; the first may go from {_when(report.next_eligible)}"
        blocks.append(section(_tally_text(f"*Kept*: {reason}{note}", tally)))
    if report.orphans.count:
        blocks.append(
            section(_tally_text("*Orphans*: labelled `managed-by=vmbot` in GCP but unknown to me; not deleted", report.orphans))
        )
    if report.orphans_error:
        blocks.append(section(f":warning: I could not list GCP's images to look for orphans: {escape(report.orphans_error)}"))
    grace = f"a grace period of {duration(report.grace)}" if report.grace else "no grace period"
    footer = [f"Keeping the newest {report.keep} image{'s' if report.keep != 1 else ''} per VM, {grace}"]
    footer.append("Dry run: nothing was changed." if report.dry_run else f"Sweep #{report.sweep_id}")
    blocks.append(context(" · ".join(footer)))
    text = sweep_headline(report).text
    return Message(text, blocks[:50])


def sweep_skipped(report: SweepReport) -> Message:
    return text_only(f":hourglass_flowing_sand: I did not sweep: {escape(report.skipped or 'nothing to do')}. Try again later.")


def image_list(vm_name: str, images: Sequence[Image], total: int, *, grace: float) -> Message:
    """``/vm images NAME``: newest first, with each image's state (ready, dirty since when, deleted)."""
    if not images:
        return text_only(f"`{vm_name}` has no images yet: `/vm park {vm_name}` makes one.")
    lines = [_image_line(image, grace) for image in images]
    header = f"*Images of `{vm_name}`*, newest first"
    if total > len(images):
        header += f" (the newest {len(images)} of {total})"
    blocks = [section(header)]
    blocks.extend(sections(lines))
    return Message(f"{total} image{'s' if total != 1 else ''} of {vm_name}", blocks[:50])


def _image_line(image: Image, grace: float) -> str:
    state = image.state.value
    size = f" · {image.archive_size_bytes / 2**30:.1f} GB" if image.archive_size_bytes else ""
    line = f"`{image.name}`  {IMAGE_STATE_EMOJI.get(state, '')} {state}"
    if state == "dirty" and image.dirty_since:
        line += f" since {_when(image.dirty_since)} ({_ago(image.dirty_since)})"
        line += f" · may be swept from {_when(image.dirty_since + timedelta(seconds=grace))}"
    elif state == "deleted" and image.deleted_at:
        line += f" {_when(image.deleted_at)}" + (f" by {escape(image.deleted_by)}" if image.deleted_by else "")
    else:
        line += f"{size} · created {_when(image.created_at)}"
    if image.delete_error and state == "dirty":
        line += f"\n      :warning: the last sweep could not delete it: {escape(image.delete_error)[:200]}"
    if image.disk_name:
        of = "boot disk" if image.device_name is None else f"disk `{image.device_name}`"
        gone = f", deleted by me {_when(image.disk_deleted_at)}" if image.disk_deleted_at else ""
        again = f", made again by a restore {_when(image.disk_restored_at)}" if image.disk_restored_at else ""
        line += f"\n      of its {of} (`{image.disk_name}`{gone}{again})"
    return line


def _tally_text(title: str, tally: Tally) -> str:
    if not tally.count:
        return f"{title}: none"
    items = "\n".join(f"• {code(name)}" + (f" ({escape(note)})" if note else "") for name, note in tally.samples)
    more = f"\n… and {tally.count - len(tally.samples)} more" if tally.count > len(tally.samples) else ""
    return f"{title}: {tally.count}\n{items}{more}"[:2990]


def _image_states(images: Sequence[Image]) -> str:
    """``2 dirty, 1 deleted``: how many images are in each state."""
    counts: dict[str, int] = {}
    for image in images:
        counts[image.state.value] = counts.get(image.state.value, 0) + 1
    return ", ".join(f"{count} {state}" for state, count in counts.items())


def _images(count: int) -> str:
    return f"{count} image{'s' if count != 1 else ''}"


def _when(when: datetime) -> str:
    return f"{when.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC"


# ---- the audit trail -------------------------------------------------------------------

VERDICT_ICON = {"allowed": ":white_check_mark:", "refused": ":no_entry:", "invalid": ":grey_question:", "error": ":x:"}


# A button's action_id as the person who pressed it saw it.
BUTTON_WORDS = {
    "park_confirm": "Park", "park_cancel": "Cancel (park)", "delete_confirm": "Delete", "delete_cancel": "Cancel (delete)",
    "operation_retry": "Retry",
}  # fmt: skip


def _pressed(text: str) -> str:
    """``park_confirm test-vm-22`` (as the trail records a press) -> ``Park test-vm-22``."""
    action, _, rest = text.partition(" ")
    return " ".join(part for part in (BUTTON_WORDS.get(action, action), rest) if part)


def _outcome(op: Operation) -> str:
    """How an operation a request started ended, on one line."""
    said = op.result if op.state.value == "succeeded" else op.error
    if not said:
        return op.state.value
    # A rejected operation's error is the bot's own Slack words (escaped when written); the rest is the core's text.
    shown = said if op.state.value == "rejected" else from_core(said)
    return f"{op.state.value}: {_summary(shown, 160)}"


def audit_history(
    vm_name: str,
    entries: Sequence[AuditEntry],
    *,
    page: int,
    pages: int,
    total: int,
    operations: Mapping[int, Operation] | None = None,
) -> Message:
    """One page of a VM's audit trail, newest first. Every user-typed text is escaped.

    ``operations`` are the operations the entries started, by id: an allowed request shows how its work ended.
    """
    operations = operations or {}
    lines = []
    for entry in entries:
        text = _pressed(entry.text) if entry.kind == "button" else entry.text
        what = escape(text[:120]) or " "
        prefix = {"command": "/vm ", "button": "pressed "}.get(entry.kind, "")
        line = f"{VERDICT_ICON.get(entry.verdict.value, '')} {_when(entry.at)} · {actor(entry.user_id)}"
        line += f" in <#{entry.channel_id}>" if entry.channel_id else ""
        line += f" · `{prefix}{what}` · {entry.verdict.value}"
        if entry.operation_id:
            line += f" · operation #{entry.operation_id}"
            op = operations.get(entry.operation_id)
            if op is not None and entry.verdict.value == "allowed":
                line += f"\n      {_outcome(op)}"
        if entry.detail and entry.verdict.value != "allowed":
            # The detail is the bot's own reply, whose user text was escaped when it was written.
            line += f"\n      {_summary(entry.detail, 200)}"
        lines.append(line)
    more = f" Next: `/vm history {vm_name} page={page + 1}`." if page < pages else ""
    blocks = [section(f"*History of `{vm_name}`* (newest first)")]
    chunk: list[str] = []
    for line in lines:  # a section holds at most 3000 characters
        if sum(len(x) + 1 for x in chunk) + len(line) > 2900:
            blocks.append(section("\n".join(chunk)))
            chunk = []
        chunk.append(line)
    if chunk:
        blocks.append(section("\n".join(chunk)))
    blocks.append(context(f"Page {page} of {pages} · {total} entr{'ies' if total != 1 else 'y'}.{more}"))
    return Message(f"History of {vm_name}: page {page} of {pages}", blocks)


def _summary(reply: str, limit: int) -> str:
    """A stored reply on one line, at most ``limit`` characters, never cut inside a <...> or an &entity;."""
    return fit(" ".join(reply.split()), limit)



def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"took {minutes}m {secs:02d}s" if minutes else f"took {secs}s"


def _ago(when: datetime) -> str:
    seconds = int((datetime.now(timezone.utc) - when).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return "just now"


# ---- schedules, time to live and notices ------------------------------------------------------

SCHEDULE_BUTTONS = (
    ("schedule_snooze_1h", "Snooze 1h"),
    ("schedule_snooze_4h", "Snooze 4h"),
    ("schedule_skip", "Skip today"),
    ("schedule_act_now", "{action} now"),
)
ACTION_VERBS = {"park": "parks", "stop": "stops", "suspend": "suspends"}


def schedule_notice(
    vm_name: str, action: str, when: str, in_minutes: int, run_key: str, *, ttl: bool = False
) -> Message:
    """The warning before a scheduled park/stop/suspend (or a time to live running out), with its buttons.

    ``when`` is the local time in the schedule's zone; the buttons' value names the VM and the run."""
    why = "its time to live runs out" if ttl else "its schedule says so"
    soon = f"in {in_minutes} min" if in_minutes > 0 else "now"
    what = f":alarm_clock: `{vm_name}` {ACTION_VERBS[action]} {soon} ({when}): {why}."
    value = json.dumps({"vm": vm_name, "run": run_key}, separators=(",", ":"))
    skip = "Keep it" if ttl else "Skip today"
    labels = [(action_id, skip if action_id == "schedule_skip" else label.format(action=action.capitalize()))
              for action_id, label in SCHEDULE_BUTTONS]  # fmt: skip
    elements = [
        {"type": "button", "action_id": action_id, "text": {"type": "plain_text", "text": label}, "value": value}
        for action_id, label in labels
    ]
    return Message(
        f"{vm_name} {ACTION_VERBS[action]} {soon} ({when})",
        [
            section(what),
            {"type": "actions", "block_id": f"schedule_notice:{uuid.uuid4().hex}", "elements": elements},
            context("Only its owner or an admin may press these."),
        ],
    )


def read_schedule_value(value: str) -> tuple[str, str] | None:
    """(VM name, run key) from a notice button's value; None if it is not one of ours."""
    try:
        data = json.loads(value)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("vm"), str) or not isinstance(data.get("run"), str):
        return None
    return data["vm"], data["run"]


def schedule_list(lines: Sequence[tuple[str, str]]) -> Message:
    """``/vm schedules``: (VM name, its schedule in words with the next action) per schedule."""
    if not lines:
        example = "`/vm schedule NAME park-at=19:00 restore-at=08:00 days=mon-fri`"
        return text_only(f"No VM has a schedule. Set one with {example}.")
    rendered = [f"*{escape(name)}*  {escape(text)}" for name, text in lines]
    blocks = [section(f"*{len(lines)} schedule{'s' if len(lines) != 1 else ''}*"), *sections(rendered)]
    return Message(f"{len(lines)} schedules: " + ", ".join(name for name, _ in lines), blocks[:50])


def idle_reminder(vm_name: str, idle_for: str, run_key: str, costs: str | None = None) -> Message:
    """The once-a-day reminder (VMBOT_IDLE_HOURS) for a running VM with no schedule and no recent operation."""
    value = json.dumps({"vm": vm_name, "run": run_key}, separators=(",", ":"))
    text = f":bulb: `{vm_name}` has been running for {idle_for} with nothing asked of it. Park it?"
    what = f"This parks `{vm_name}`: stop, image, *delete the VM*."
    elements = [
        {"type": "button", "action_id": "schedule_act_now", "text": {"type": "plain_text", "text": "Park now"},
         "value": value, "confirm": confirm_dialog("Park this VM?", what, "Park it", "Keep it running")},
        {"type": "button", "action_id": "idle_remind_tomorrow",
         "text": {"type": "plain_text", "text": "Remind me tomorrow"}, "value": value},
    ]  # fmt: skip
    blocks = [section(text)] + ([context(costs)] if costs else [])
    blocks.append({"type": "actions", "block_id": f"idle_reminder:{uuid.uuid4().hex}", "elements": elements})
    return Message(f"{vm_name} has been running for {idle_for} with nothing asked of it", blocks)
