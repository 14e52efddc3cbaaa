"""Which verb may start from which VM state, in one table, checked in one function.

A refusal is data (bot.core.errors.Refused): each door words it, with what to do instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bot.core import audit
from bot.core.errors import AlreadyRequested, Reason, Refused
from storage.models import Operation, Verb, Vm, VmState
from storage.store import ClaimLost, DuplicateRequest, Store

# None stands for "the store knows no VM of that name".
ALLOWED_FROM: dict[Verb, frozenset[VmState | None]] = {
    Verb.CREATE: frozenset({None, VmState.DELETED}),
    Verb.PARK: frozenset({VmState.RUNNING, VmState.STOPPED}),
    Verb.RESTORE: frozenset({VmState.PARKED}),
    Verb.DELETE: frozenset({VmState.RUNNING, VmState.STOPPED, VmState.PARKED, VmState.SUSPENDED}),
    # The lighter pauses: stop keeps the disk, suspend keeps memory too (bot.core.workflows).
    Verb.STOP: frozenset({VmState.RUNNING}),
    Verb.START: frozenset({VmState.STOPPED}),
    Verb.SUSPEND: frozenset({VmState.RUNNING}),
    Verb.RESUME: frozenset({VmState.SUSPENDED}),
    Verb.ADOPT: frozenset({None, VmState.DELETED}),
}

def check_allowed(verb: Verb, name: str, vm: Vm | None) -> None:
    """Raise Refused, with the reason and its facts, unless ``verb`` may start on ``vm`` now."""
    state = vm.state if vm and vm.state is not VmState.DELETED else None
    if vm is not None and vm.active_operation is not None:
        raise Refused(Reason.VM_BUSY, name, operation=vm.active_operation)
    if state in ALLOWED_FROM[verb] or (state is None and None in ALLOWED_FROM[verb]):
        return
    if vm is not None and vm.state is VmState.DELETED:  # known, but gone: deleted, or its create failed
        raise Refused(Reason.VM_GONE, name)
    if state is None:
        raise Refused(Reason.VM_UNKNOWN, name)
    if verb is Verb.CREATE:
        raise Refused(Reason.VM_EXISTS, name, state=state.value)
    allowed = sorted(s.value for s in ALLOWED_FROM[verb] if s is not None)
    raise Refused(Reason.WRONG_STATE, name, verb=verb.value, state=state.value, allowed=allowed)


def verbs_allowed_now(vm: Vm, verbs: Iterable[Verb]) -> tuple[Verb, ...]:
    """Which of ``verbs`` the state table lets start on ``vm`` now (none while an operation holds it):
    the buttons a surface offers; pressing one still goes through ``start_operation``."""
    if vm.active_operation_id is not None or vm.state is VmState.DELETED:
        return ()
    return tuple(verb for verb in verbs if vm.state in ALLOWED_FROM.get(verb, frozenset()))


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
        raise AlreadyRequested(duplicate.operation) from None
    except ClaimLost:
        refuse_repeat(store, request_key)
        check_allowed(verb, name, store.vm(name))
        raise Refused(Reason.CLAIM_LOST, name) from None
    audit.operation_started(op.id, entry_written=entry is not None)
    return op


def refuse_repeat(store: Store, request_key: str | None) -> None:
    """A refusal may be this very request's own doing (a double click that lost to its twin):
    the twin's operation is committed before anyone can be refused because of it, so look again."""
    if request_key is not None and (earlier := store.operation_by_key(request_key)) is not None:
        raise AlreadyRequested(earlier) from None


def check_image_name_free(store: Store, image: str) -> None:
    """Refuse an image name the store already holds (the park workflow also asks GCP, off the ack path)."""
    known = store.image(image)
    if known is not None:
        raise Refused(Reason.IMAGE_EXISTS, known.vm.name, image=image, made_for=known.vm.name, image_state=known.state.value)
