"""Which verb may start from which VM state, in one table, checked in one function.

The refusal is the message the user reads, so it says what to do instead.
"""

from __future__ import annotations

from typing import Any

from bot.core import audit
from bot.slack.blocks import actor
from bot.core.errors import AlreadyRequested, Refused
from storage.models import FINISHED_STATES, Operation, Verb, Vm, VmState
from storage.store import ClaimLost, DuplicateRequest, Store

# None stands for "the store knows no VM of that name".
ALLOWED_FROM: dict[Verb, frozenset[VmState | None]] = {
    Verb.CREATE: frozenset({None, VmState.DELETED}),
    Verb.PARK: frozenset({VmState.RUNNING, VmState.STOPPED}),
    Verb.RESTORE: frozenset({VmState.PARKED}),
    Verb.DELETE: frozenset({VmState.RUNNING, VmState.STOPPED, VmState.PARKED}),
}

_REFUSALS: dict[tuple[Verb, VmState | None], str] = {
    (Verb.PARK, None): "I don't know a VM called `{name}`. `/vm list` shows the VMs I manage.",
    (Verb.RESTORE, None): "I don't know a VM called `{name}`. `/vm list` shows the VMs I manage.",
    (Verb.DELETE, None): "I don't know a VM called `{name}`. `/vm list` shows the VMs I manage.",
    (Verb.PARK, VmState.PARKED): "`{name}` is already parked. To bring it back: `/vm restore {name}`.",
    (Verb.PARK, VmState.CREATING): "`{name}` is still being created; park it once it is running.",
    (Verb.RESTORE, VmState.RUNNING): "`{name}` is running, so there is nothing to restore. To park it: `/vm park {name}`.",
    (Verb.RESTORE, VmState.STOPPED): (
        "`{name}` still exists (stopped: its last park did not finish). Finish parking it with `/vm park {name}`."
    ),
    (Verb.RESTORE, VmState.CREATING): "`{name}` is still being created.",
    (Verb.DELETE, VmState.CREATING): "`{name}` is still being created; delete it once it is running.",
    (Verb.CREATE, VmState.CREATING): "`{name}` is being created already. Pick another name, or see `/vm status {name}`.",
    (Verb.CREATE, VmState.RUNNING): "`{name}` already exists (running). Pick another name, or see `/vm status {name}`.",
    (Verb.CREATE, VmState.STOPPED): "`{name}` already exists (stopped). Pick another name, or see `/vm status {name}`.",
    (Verb.CREATE, VmState.PARKED): "`{name}` already exists (parked). To bring it back: `/vm restore {name}`.",
}


def check_allowed(verb: Verb, name: str, vm: Vm | None) -> None:
    """Raise Refused, with what to do instead, unless ``verb`` may start on ``vm`` now."""
    state = vm.state if vm and vm.state is not VmState.DELETED else None
    if vm is not None and vm.active_operation is not None:
        op = vm.active_operation
        where = " (see the thread in <#{}>)".format(op.channel) if op.channel else ""
        raise Refused(
            f"`{name}` is busy: {actor(op.requested_by)} is running a {op.verb.value} on it{where}. "
            "Try again when it has finished."
        )
    if state in ALLOWED_FROM[verb] or (state is None and None in ALLOWED_FROM[verb]):
        return
    if vm is not None and vm.state is VmState.DELETED:  # known, but gone: deleted, or its create failed
        raise Refused(
            f"There is no VM `{name}` now (`/vm history {name}` shows what happened to it). "
            f"To make a new one: `/vm create {name}`."
        )
    default = f"`{name}` is {state.value if state else 'unknown'}, so `/vm {verb.value} {name}` cannot run now."
    raise Refused(_REFUSALS.get((verb, state), default).format(name=name))


def start_operation(
    store: Store,
    verb: Verb,
    name: str,
    *,
    requested_by: str,
    zone: str,
    machine_type: str,
    channel: str | None = None,
    response_url: str | None = None,
    params: dict[str, Any] | None = None,
    request_key: str | None = None,
) -> Operation:
    """Record the operation and claim the VM, or raise Refused saying why not and what to do instead.

    The claim in the store decides, in one transaction (``store.begin``); only
    when it is lost does this read the VM, to give the user the precise reason
    from the table. A ``request_key`` seen before (a redelivery, a second click)
    raises AlreadyRequested naming the operation it made, whether the store's
    unique key or the lost claim notices first.
    """
    # No reads before the claim: on the ack path of every create, park, restore and delete, the usual
    # request pays for one write transaction, its audit entry included, and nothing else (`python -m bench`, row 1).
    entry = audit.entry_for_new_operation()
    try:
        op = store.begin(
            verb,
            name,
            allowed_from=ALLOWED_FROM[verb],
            requested_by=requested_by,
            zone=zone,
            machine_type=machine_type,
            channel=channel,
            response_url=response_url,
            params=params,
            request_key=request_key,
            audit_entry=entry,
        )
    except DuplicateRequest as duplicate:
        raise AlreadyRequested(already_requested(duplicate.operation)) from None
    except ClaimLost:
        refuse_repeat(store, request_key)
        check_allowed(verb, name, store.vm(name))
        raise Refused(f"Someone else just started an operation on `{name}`. `/vm status {name}` shows it.") from None
    audit.operation_started(op.id, entry_written=entry is not None)
    return op


def refuse_repeat(store: Store, request_key: str | None) -> None:
    """A refusal may be this very request's own doing (a double click that lost to its twin):
    the twin's operation is committed before anyone can be refused because of it, so look again."""
    if request_key is not None and (earlier := store.operation_by_key(request_key)) is not None:
        raise AlreadyRequested(already_requested(earlier)) from None


def already_requested(op: Operation) -> str:
    """What someone repeating a request (or pressing a button again) reads: the operation it made."""
    where = f"; its thread is in <#{op.channel}>" if op.channel else ""
    what = f"{actor(op.requested_by)} asked to {op.verb.value} `{op.vm_name}`"
    if op.state in FINISHED_STATES:
        return f"Already done: that request was operation #{op.id} ({what}), which {op.state.value}{where}."
    return f"Already on it: that request is operation #{op.id} ({what}), under way{where}."


def check_image_name_free(store: Store, image: str) -> None:
    """Refuse an image name the store already holds (the park workflow also asks GCP, off the ack path)."""
    known = store.image(image)
    if known is not None:
        raise Refused(
            f"An image named `{image}` is already in my records (made for `{known.vm.name}`, now {known.state.value}); "
            "image names are never reused. Pick another image name."
        )
