"""`/vm help` that fits the person: only the verbs they may run, one example each, and a word on
what is for others (parsing.SUBCOMMANDS stays the one list of verbs; permissions decides)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from bot.core import permissions
from bot.slack import views
from bot.slack.blocks import Message
from bot.slack.parsing import SUBCOMMANDS, Subcommand
from bot.slack.text import mentions

if TYPE_CHECKING:
    from bot.settings import Settings

EXAMPLE_VM = "test-vm-22"


def example(verb: str, spec: Subcommand) -> str:
    """One command to copy: the usage with NAME filled in and its optional parts left out."""
    text = re.sub(r"\s*\[[^\]]*\]", "", spec.usage).replace("NAME", EXAMPLE_VM)
    return f"/vm {text}".strip()


def help_for(settings: Settings, user: str) -> Message:
    admin = permissions.is_admin(settings, user)
    lines = [
        views.HelpLine(spec.usage, spec.summary, example(verb, spec))
        for verb, spec in SUBCOMMANDS.items()
        if admin or verb not in permissions.ADMIN_ONLY
    ]
    owner_verbs = ", ".join(f"`{verb}`" for verb in sorted(permissions.OWNER_OR_ADMIN))
    if admin:
        notes = [f"You are an admin: {owner_verbs} work on anyone's VM, and `/vm sweep` is yours to run."]
    else:
        admins = mentions(sorted(settings.admins)) if settings.admins else "the admins"
        notes = [f"{owner_verbs} work on the VMs you created; on someone else's VM they are for its owner and admins ({admins})."]
    notes.append(
        "Parking keeps only an image of the VM's disk (cheap) and deletes the VM; "
        "restoring recreates it from that image and runs its startup script again."
    )
    notes.append("The app's *Home* tab lists your VMs with buttons; the *Create a VM* shortcut (or `/vm create`) opens a form.")
    return views.help_for(lines, notes)
