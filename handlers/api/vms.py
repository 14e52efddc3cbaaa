"""``/api/v1/vms``: list and read VMs; create, park, restore and delete them.

Mutations take the very path a slash command takes (``bot.core.lifecycle.start_operation``
claims the VM in the store, ``bot.jobs.runner`` runs ``bot.core.workflows``) and answer
``202 Accepted`` at once with the operation and a ``Location`` to poll. The API has no state
checks of its own: the core refuses (Refused) and handlers.api.errors.refusal_error words it.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint

from bot.core import permissions
from bot.core.errors import Refused
from bot.core.lifecycle import check_allowed, check_image_name_free, start_operation
from bot.gcp.compute import GceError
from handlers.api.errors import PREFIX, ApiError, refusal_error, unknown_vm
from handlers.api.inputs import actor, body, deps, query, vm_name
from handlers.api.models import (
    CreateVm,
    ListQuery,
    LiveState,
    OneOperation,
    OneVm,
    ParkVm,
    VerbOnVm,
    Vm,
    VmDetail,
    VmList,
    VmQuery,
    WaitQuery,
    dump,
    encode_cursor,
)
from handlers.api.operations import wait_for
from storage.models import FINISHED_STATES, Verb
from storage.models import Operation as OperationRow
from storage.models import Vm as VmRow

log = logging.getLogger(__name__)
vms = Blueprint("vms", __name__, url_prefix=f"{PREFIX}/vms")
Answer = tuple[dict[str, Any], int, list[tuple[str, str]]]


@vms.get("")
def list_vms() -> Any:
    """A page of live VMs in name order, read in SQL after the cursor's name (keyset), one more than
    asked for to know whether another page follows."""
    asked = query(ListQuery)
    page = deps().store.list_vms_page(limit=asked.limit + 1, after=asked.cursor or None)
    more = len(page) > asked.limit
    page = page[: asked.limit]
    listed = VmList(vms=[Vm.of(item.vm, item.newest_image) for item in page])
    if more:  # only then: a list that fits one page keeps the shape it always had, {"vms": [...]}
        listed.next_cursor = encode_cursor(page[-1].vm.name)
    return dump(listed)


@vms.get("/<name>")
def get_vm(name: str) -> Any:
    live = query(VmQuery).live
    vm = deps().store.vm(vm_name(name))
    if vm is None:
        raise unknown_vm(name)
    detail = VmDetail.of(deps().store, vm)
    if live:
        detail.gcp = _live_state(vm)
    return dump(OneVm(vm=detail))


@vms.post("")
def create_vm() -> Answer:
    wait = query(WaitQuery).wait
    request = body(CreateVm)
    settings = deps().settings
    _check_allowed(Verb.CREATE, request.name)
    op = _start(
        Verb.CREATE, request.name, channel=_channel(request),
        zone=request.zone or settings.zone, machine_type=request.machine_type or settings.machine_type,
    )
    return _accepted(op, wait)


@vms.post("/<name>/park")
def park_vm(name: str) -> Answer:
    wait = query(WaitQuery).wait
    name = vm_name(name)
    request = body(ParkVm)
    params = {key: value for key in ("image", "family") if (value := getattr(request, key))}
    vm = _known_vm(Verb.PARK, name)
    if request.image:
        try:
            check_image_name_free(deps().store, request.image)
        except Refused as refusal:
            raise refusal_error(refusal) from None
    op = _start(Verb.PARK, name, zone=vm.zone, machine_type=vm.machine_type, channel=_channel(request), params=params)
    return _accepted(op, wait)


@vms.post("/<name>/restore")
def restore_vm(name: str) -> Answer:
    return _act_on(name, Verb.RESTORE)


@vms.post("/<name>/delete")
def delete_vm(name: str) -> Answer:
    """No question asked here: a script that calls this has decided (the CLI asks for --yes)."""
    return _act_on(name, Verb.DELETE)


def _act_on(name: str, verb: Verb) -> Answer:
    """A verb on a known VM that takes no options (restore, delete), as its owner or an admin."""
    wait = query(WaitQuery).wait
    name = vm_name(name)
    request = body(VerbOnVm)
    vm = _known_vm(verb, name)
    op = _start(verb, name, zone=vm.zone, machine_type=vm.machine_type, channel=_channel(request))
    return _accepted(op, wait)


# ---- shared pieces ------------------------------------------------------------------------------------------


def _channel(request: CreateVm | ParkVm | VerbOnVm) -> str | None:
    """Where the operation's thread goes: the field, else VMBOT_API_NOTIFY_CHANNEL; null means nowhere."""
    if "notify_channel" in request.model_fields_set:
        return request.notify_channel
    return deps().settings.api_notify_channel


def _check_allowed(verb: Verb, name: str) -> VmRow | None:
    """The lifecycle table's verdict (bot.core.lifecycle); the VM (None only for a create)."""
    vm = deps().store.vm(name)
    try:
        check_allowed(verb, name, vm)
    except Refused as refusal:
        raise refusal_error(refusal) from None
    return vm


def _known_vm(verb: Verb, name: str) -> VmRow:
    """The VM, if the verb may start on it and the caller may act on it (its owner or an admin, bot.core.permissions)."""
    vm = _check_allowed(verb, name)
    assert vm is not None, "only a create starts without a VM"
    try:
        permissions.require_owner_or_admin(deps().settings, actor(), vm, verb.value)
    except Refused as refusal:
        raise refusal_error(refusal) from None
    return vm


def _start(verb: Verb, name: str, *, channel: str | None, **kwargs: Any) -> OperationRow:
    """Record and claim through the same lifecycle as Slack, then hand the work to the job runner."""
    bot = deps()
    try:
        op = start_operation(bot.store, verb, name, requested_by=actor(), channel=channel, **kwargs)
    except Refused as refusal:  # lost a race since _check_allowed: the core says why, from the fresh state
        raise refusal_error(refusal) from None
    log.info("API: %s asked to %s %s (operation %s)", actor(), verb.value, name, op.id)
    bot.runner.submit(bot.workflows.run, op.id)
    return op


def _accepted(op: OperationRow, wait: float) -> Answer:
    """202 with the operation as it is now; 200 only when asked to ``wait`` and it has ended."""
    op = wait_for(op, wait)
    status = 200 if wait > 0 and op.state in FINISHED_STATES else 202
    return dump(OneOperation(operation=op)), status, [("Location", f"{PREFIX}/operations/{op.id}")]


def _live_state(vm: VmRow) -> LiveState:
    try:
        live = deps().compute.get_instance(vm.zone, vm.name)
    except GceError as error:
        raise ApiError("gcp_error", f"I could not ask GCP about {vm.name}: {error.message}") from None
    if live is None:
        return LiveState(exists=False)
    return LiveState(exists=True, status=live.status, external_ip=live.external_ip, machine_type=live.machine_type)
