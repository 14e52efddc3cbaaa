"""Who may do what, in one place.

* Anyone may ask read-only questions (`list`, `status`, `history`, `help`) and `create` a VM.
* A VM's owner is the person who created it. Verbs that change or destroy an
  existing VM (OWNER_OR_ADMIN) are allowed to its owner and to admins
  (VMBOT_ADMINS).
* Verbs that act on all VMs (ADMIN_ONLY) are for admins; a handler for such a
  verb checks with one line: ``require_admin(settings, user, "sweep dirty images")``.
* A confirmation button may be pressed only by the person who asked for it, or an admin.
* With VMBOT_ALLOWED_CHANNELS set, the bot acts only in those channels.

Every check raises Refused naming who can (the owner, the admins), so each door
can tell the person refused whom to ask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from bot.core.errors import Reason, Refused
from storage.models import UNKNOWN_OWNER, VmState

if TYPE_CHECKING:
    from bot.settings import Settings
    from storage.models import Vm
    from storage.store import Store

OWNER_OR_ADMIN: frozenset[str] = frozenset(
    {"park", "restore", "delete", "stop", "start", "suspend", "resume", "schedule", "ttl"}
)
ADMIN_ONLY: frozenset[str] = frozenset({"sweep"})


def is_admin(settings: Settings, user: str) -> bool:
    return user in settings.admins and not is_placeholder(user)


def _admins(settings: Settings) -> list[str]:
    """The admins a refusal names: real principals only."""
    return sorted(admin for admin in settings.admins if not is_placeholder(admin))


def is_placeholder(owner: str | None) -> bool:
    """Whether ``owner`` names nobody: a VM reconcile adopted from GCP is owned by no principal,
    whatever a token or an admin happens to be called (settings refuse the name too)."""
    return not owner or owner == UNKNOWN_OWNER


def owns(user: str, vm: Vm) -> bool:
    """Whether ``user`` is ``vm``'s owner; nobody owns a VM whose owner is the placeholder."""
    return not is_placeholder(vm.owner) and user == vm.owner


def check_channel(settings: Settings, channel: str | None) -> None:
    """Refuse outside VMBOT_ALLOWED_CHANNELS (when it is set), naming the channels where the bot acts."""
    if not settings.allowed_channels or channel in settings.allowed_channels:
        return
    raise Refused(Reason.CHANNEL_NOT_ALLOWED, allowed=sorted(settings.allowed_channels))


class Request(Protocol):
    """What a permission check needs of a request: its verb and the VM it names (a parsed command)."""

    @property
    def verb(self) -> str: ...

    @property
    def name(self) -> str | None: ...


def check_command(settings: Settings, store: Store, user: str, command: Request) -> None:
    """The permission part of a request, before the verb runs; the VM's state is the verb's business."""
    if command.verb in ADMIN_ONLY and not is_admin(settings, user):
        raise Refused(Reason.ADMIN_ONLY, verb=command.verb, admins=_admins(settings))
    if command.verb in OWNER_OR_ADMIN and command.name:
        vm = store.vm(command.name)
        if vm is not None:
            require_owner_or_admin(settings, user, vm, command.verb)


def require_admin(settings: Settings, user: str, action: str) -> None:
    """Refuse unless ``user`` is an admin; ``action``, in the door's words, completes "Only admins may ..."."""
    if is_admin(settings, user):
        return
    raise Refused(Reason.ADMIN_ONLY, action=action, admins=_admins(settings))


def require_owner_or_admin(settings: Settings, user: str, vm: Vm, verb: str) -> None:
    """Refuse unless ``user`` owns ``vm`` or is an admin."""
    if owns(user, vm) or is_admin(settings, user):
        return
    raise Refused(Reason.NOT_OWNER, vm.name, owner=vm.owner, admins=_admins(settings), verb=verb)


def require_requester_or_admin(settings: Settings, user: str, requested_by: str | None, vm: Vm) -> None:
    """Refuse a button press unless ``user`` asked for the button, or is an admin.

    A button from before the requester was carried in its value (``requested_by``
    None) falls back to the VM's owner.
    """
    asker = requested_by or vm.owner
    if (user == asker and not is_placeholder(asker)) or is_admin(settings, user):
        return
    raise Refused(Reason.NOT_REQUESTER, vm.name, asker=asker, admins=_admins(settings))



def may_change(settings: Settings, user: str, vm: Vm) -> bool:
    """Whether ``user`` may run the OWNER_OR_ADMIN verbs on ``vm`` (what require_owner_or_admin lets through)."""
    return user == vm.owner or is_admin(settings, user)


def check_adopt(settings: Settings, store: Store, user: str, name: str, owner: str) -> Vm | None:
    """Who may adopt ``name`` for ``owner`` (only an admin for someone else), and whether it is free to:
    a VM the store holds (not deleted) is managed already. The VM row, if a deleted one is there."""
    if owner != user:
        require_admin(settings, user, "adopt a VM for someone else (`owner=`)")
    vm = store.vm(name)
    if vm is not None and vm.state is not VmState.DELETED:
        raise Refused(Reason.ALREADY_MANAGED, name, state=vm.state.value)
    return vm
