"""Who may do what, in one place.

* Anyone may ask read-only questions (`list`, `status`, `history`, `help`) and `create` a VM.
* A VM's owner is the person who created it. Verbs that change or destroy an
  existing VM (OWNER_OR_ADMIN) are allowed to its owner and to admins
  (VMBOT_ADMINS).
* Verbs that act on all VMs (ADMIN_ONLY) are for admins; a handler for such a
  verb checks with one line: ``require_admin(settings, user, "sweep dirty images")``.
* A confirmation button may be pressed only by the person who asked for it, or an admin.
* With VMBOT_ALLOWED_CHANNELS set, the bot acts only in those channels.

Every check raises Refused with a message that says who can, so the person
refused knows whom to ask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.slack.blocks import actor
from bot.core.errors import Refused

if TYPE_CHECKING:
    from bot.slack.parsing import Command
    from bot.settings import Settings
    from storage.models import Vm
    from storage.store import Store

OWNER_OR_ADMIN: frozenset[str] = frozenset({"park", "restore", "delete"})
ADMIN_ONLY: frozenset[str] = frozenset({"sweep"})


def is_admin(settings: Settings, user: str) -> bool:
    return user in settings.admins


def check_channel(settings: Settings, channel: str | None) -> None:
    """Refuse outside VMBOT_ALLOWED_CHANNELS (when it is set), naming the channels where the bot acts."""
    if not settings.allowed_channels or channel in settings.allowed_channels:
        return
    where = ", ".join(f"<#{allowed}>" for allowed in sorted(settings.allowed_channels))
    raise Refused(f"I don't act in this channel. Use `/vm` in {where}.")


def check_command(settings: Settings, store: Store, user: str, command: Command) -> None:
    """The permission part of a command, before the verb runs; the VM's state is the verb's business."""
    if command.verb in ADMIN_ONLY:
        require_admin(settings, user, f"use `/vm {command.verb}`")
    if command.verb in OWNER_OR_ADMIN and command.name:
        vm = store.vm(command.name)
        if vm is not None:
            require_owner_or_admin(settings, user, vm, command.verb)


def require_admin(settings: Settings, user: str, action: str) -> None:
    """Refuse unless ``user`` is an admin; ``action`` completes "Only admins may ..."."""
    if is_admin(settings, user):
        return
    if not settings.admins:
        raise Refused(f"Only admins may {action}, and none are configured (VMBOT_ADMINS).")
    raise Refused(f"Only admins may {action}: {_mentions(settings.admins)}.")


def require_owner_or_admin(settings: Settings, user: str, vm: Vm, verb: str) -> None:
    """Refuse unless ``user`` owns ``vm`` or is an admin."""
    if user == vm.owner or is_admin(settings, user):
        return
    admins = f" or an admin ({_mentions(settings.admins)})" if settings.admins else ""
    raise Refused(f"Only `{vm.name}`'s owner {actor(vm.owner)}{admins} may {verb} it. Ask them to.")


def require_requester_or_admin(settings: Settings, user: str, requested_by: str | None, vm: Vm) -> None:
    """Refuse a button press unless ``user`` asked for the button, or is an admin.

    A button from before the requester was carried in its value (``requested_by``
    None) falls back to the VM's owner.
    """
    asker = requested_by or vm.owner
    if user == asker or is_admin(settings, user):
        return
    admins = f" or an admin ({_mentions(settings.admins)})" if settings.admins else ""
    raise Refused(f"This button is {actor(asker)}'s: only they{admins} may press it. Nothing was changed.")


def _mentions(users: frozenset[str]) -> str:
    return ", ".join(actor(user) for user in sorted(users))
