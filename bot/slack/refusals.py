"""A UserError as the words a person reads in Slack (mrkdwn with mentions), from the core's data.

The core says *why* (bot.core.errors.Reason and its facts); this module says it
in Slack's words, with what to type instead. The HTTP API renders the same data
as JSON (handlers.api).
"""

from __future__ import annotations

from typing import Any

from bot.core.errors import AlreadyRequested, InvalidInput, Reason, Refused, UserError
from bot.core.names import explain
from bot.slack.text import actor, code, mentions
from storage.models import FINISHED_STATES, UNKNOWN_OWNER, Operation, Verb

NO_SUCH_VM = "I don't know a VM called {vm}. `/vm list` shows the VMs I manage."

# The words for a verb refused from a state, with what to type instead.
_WRONG_STATE: dict[tuple[str, str], str] = {
    ("park", "parked"): "{vm} is already parked. To bring it back: `/vm restore {name}`.",
    ("park", "creating"): "{vm} is still being created; park it once it is running.",
    ("restore", "running"): "{vm} is running, so there is nothing to restore. To park it: `/vm park {name}`.",
    ("restore", "stopped"): "{vm} still exists (stopped: its last park did not finish). Finish parking it with `/vm park {name}`.",
    ("restore", "creating"): "{vm} is still being created.",
    ("delete", "creating"): "{vm} is still being created; delete it once it is running.",
}
_EXISTS: dict[str, str] = {
    "creating": "{vm} is being created already. Pick another name, or see `/vm status {name}`.",
    "running": "{vm} already exists (running). Pick another name, or see `/vm status {name}`.",
    "stopped": "{vm} already exists (stopped). Pick another name, or see `/vm status {name}`.",
    "parked": "{vm} already exists (parked). To bring it back: `/vm restore {name}`.",
}


def icon(error: UserError) -> str:
    if isinstance(error, AlreadyRequested):
        return ":information_source:"
    return ":warning:"


def slack_text(error: UserError, *, with_icon: bool = False) -> str:
    """What Slack shows for ``error``, optionally after its icon."""
    text = _words(error)
    return f"{icon(error)} {text}" if with_icon else text


def _words(error: UserError) -> str:
    if isinstance(error, Refused):
        return refusal_text(error)
    if isinstance(error, AlreadyRequested):
        return already_requested(error.operation)
    if isinstance(error, InvalidInput):
        return explain(error, code)
    return str(error)  # a UsageError from the Slack parser: its words are Slack's already


def refusal_text(refusal: Refused) -> str:
    facts: dict[str, Any] = refusal.facts
    name = refusal.vm or ""
    vm = code(name)
    admins = frozenset(facts.get("admins", ()))
    or_admin = f" or an admin ({mentions(admins)})" if admins else ""
    match refusal.reason:
        case Reason.CHANNEL_NOT_ALLOWED:
            where = ", ".join(f"<#{channel}>" for channel in sorted(facts["allowed"]))
            return f"I don't act in this channel. Use `/vm` in {where}."
        case Reason.ADMIN_ONLY:
            action = facts.get("action") or f"use `/vm {facts['verb']}`"
            if not admins:
                return f"Only admins may {action}, and none are configured (VMBOT_ADMINS)."
            return f"Only admins may {action}: {mentions(admins)}."
        case Reason.NOT_OWNER if facts["owner"] == UNKNOWN_OWNER:
            who = f"only an admin ({mentions(admins)})" if admins else "only an admin (none are configured: VMBOT_ADMINS)"
            return f"{vm} has no owner (reconcile found it in GCP): {who} may {facts['verb']} it."
        case Reason.NOT_OWNER:
            return f"Only {vm}'s owner {actor(facts['owner'])}{or_admin} may {facts['verb']} it. Ask them to."
        case Reason.NOT_REQUESTER:
            asker = actor(facts["asker"])
            return f"This button is {asker}'s: only they{or_admin} may press it. Nothing was changed."
        case Reason.VM_UNKNOWN:
            return NO_SUCH_VM.format(vm=vm)
        case Reason.VM_GONE:
            return (
                f"There is no VM {vm} now (`/vm history {name}` shows what happened to it). "
                f"To make a new one: `/vm create {name}`."
            )
        case Reason.VM_BUSY:
            op: Operation = facts["operation"]
            where = f" (see the thread in <#{op.channel}>)" if op.channel else ""
            return (
                f"{vm} is busy: {actor(op.requested_by)} is running a {op.verb.value} on it{where}. "
                "Try again when it has finished."
            )
        case Reason.WRONG_STATE:
            verb, state = str(facts["verb"]), str(facts["state"])
            default = f"{vm} is {state}, so `/vm {verb} {name}` cannot run now."
            return _WRONG_STATE.get((verb, state), default).format(vm=vm, name=name)
        case Reason.VM_EXISTS:
            return _EXISTS[str(facts["state"])].format(vm=vm, name=name)
        case Reason.CLAIM_LOST:
            return f"Someone else just started an operation on {vm}. `/vm status {name}` shows it."
        case Reason.IMAGE_EXISTS:
            image = code(facts["image"])
            if "project" in facts:
                return (
                    f"An image named {image} already exists in project {code(facts['project'])}, and I did not "
                    "make it. Pick another image name; nothing was changed."
                )
            return (
                f"An image named {image} is already in my records (made for {code(facts['made_for'])}, now "
                f"{facts['image_state']}); image names are never reused. Pick another image name."
            )
        case Reason.VM_EXISTS_IN_GCP:
            if facts["verb"] == Verb.CREATE.value:
                return (
                    f"A VM named {vm} already exists in project {code(facts['project'])} ({facts['zone']}), and I did "
                    "not create it. Pick another name."
                )
            return (
                f"An instance named {vm} already exists in {facts['zone']} (made outside vmbot?), so I cannot restore "
                f"over it. Delete it in GCP first, or see `/vm status {name}`."
            )
        case Reason.NO_READY_IMAGE:
            return f"{vm} has no ready image to restore from. `/vm status {name}` shows its images."
        case Reason.UNREADABLE_BUTTON:
            return f"I cannot read this button. Ask again with `/vm {facts['verb']} NAME`."
        case Reason.NOTHING_TO_RETRY:
            return "There is no failed operation to retry here."
    raise AssertionError(f"no Slack words for {refusal!r}")


def already_requested(op: Operation) -> str:
    """What someone repeating a request (or pressing a button again) reads: the operation it made."""
    where = f"; its thread is in <#{op.channel}>" if op.channel else ""
    what = f"{actor(op.requested_by)} asked to {op.verb.value} {code(op.vm_name)}"
    if op.state in FINISHED_STATES:
        return f"Already done: that request was operation #{op.id} ({what}), which {op.state.value}{where}."
    return f"Already on it: that request is operation #{op.id} ({what}), under way{where}."

