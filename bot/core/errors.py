"""Errors in two tiers, as data.

A UserError is an expected failure: a stable ``reason`` code and the facts a
door needs to say it. The core never writes the words a person reads; each
door renders them (Slack as mrkdwn in bot.slack.refusals, the HTTP API as JSON
with its ``code`` in handlers.api). Anything else is a bug, logged once with
its traceback by the app's global error handler.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from storage.models import Operation


class Reason(StrEnum):
    """Why a request was refused. The values are stable: the audit trail and scripts may branch on them."""

    CHANNEL_NOT_ALLOWED = "channel_not_allowed"  # facts: allowed (channel ids)
    ADMIN_ONLY = "admin_only"  # facts: action (what was asked, in the door's words), admins
    NOT_OWNER = "not_owner"  # facts: owner, admins, verb
    NOT_REQUESTER = "not_requester"  # a button pressed by someone else; facts: asker, admins
    VM_UNKNOWN = "vm_unknown"  # the store knows no VM of that name
    VM_GONE = "vm_gone"  # known, but deleted (or its create failed)
    VM_BUSY = "vm_busy"  # facts: operation (the one holding the VM)
    WRONG_STATE = "wrong_state"  # facts: verb, state, allowed
    VM_EXISTS = "vm_exists"  # a create of a name the store holds; facts: state
    CLAIM_LOST = "claim_lost"  # a race lost to another request a moment ago
    IMAGE_EXISTS = "image_exists"  # facts: image, and made_for + image_state (store) or project (found in GCP)
    VM_EXISTS_IN_GCP = "vm_exists_in_gcp"  # an instance vmbot did not make; facts: verb, zone, project
    NO_READY_IMAGE = "no_ready_image"
    UNREADABLE_BUTTON = "unreadable_button"  # facts: verb
    NOTHING_TO_RETRY = "nothing_to_retry"
    ALREADY_MANAGED = "already_managed"  # an adopt of a VM vmbot manages already; facts: zone or state
    IN_MANAGED_GROUP = "in_managed_group"  # an adopt of a managed instance group's member; facts: group
    NO_PERMISSION = "no_permission"  # GCP answered 403 for the VM; facts: zone, gcp (GCP's message)
    NOT_IN_GCP = "not_in_gcp"  # an adopt of an instance GCP does not have; facts: zone, project
    DELETION_PROTECTED = "deletion_protected"  # a park of a VM with deletion protection; facts: zone
    DISK_NOT_IMAGEABLE = "disk_not_imageable"  # a park of a VM with a disk it cannot image; facts: disk, device, why, users


class UserError(Exception):
    """An expected failure; a door renders it for the person who asked."""


class InvalidInput(UserError):
    """A value breaks a rule (a name, a zone, a page number); nothing was recorded or changed.

    ``what`` names the value ("VM name", "zone", ...), ``value`` is it as given, and
    ``suggestion`` is a valid value close to it, when there is one.
    """

    def __init__(self, what: str, value: str, *, suggestion: str | None = None) -> None:
        super().__init__(f"{value[:80]!r} is not a valid {what}")
        self.what, self.value, self.suggestion = what, value, suggestion


class Refused(UserError):
    """Understood, but not allowed now: the reason, the VM it concerns, and the facts that explain it."""

    def __init__(self, reason: Reason, vm: str | None = None, **facts: Any) -> None:
        super().__init__(f"{reason.value}: {vm}" if vm else reason.value)
        self.reason, self.vm, self.facts = reason, vm, facts

    def __repr__(self) -> str:
        return f"Refused({self.reason.value!r}, vm={self.vm!r}, {self.facts!r})"


class AlreadyRequested(UserError):
    """The same request (redelivered by Slack, or a button pressed twice) already made ``operation``.
    Not a failure: nothing is wrong, and the door says which operation it was and where its thread is."""

    def __init__(self, operation: Operation) -> None:
        super().__init__(f"already requested: operation {operation.id}")
        self.operation = operation


class UsageError(UserError):
    """A door could not read a request in its own syntax (a slash command's text); ``str()`` is that
    door's own message, in its own markup, saying what to type instead."""
