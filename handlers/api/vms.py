"""``/api/v1/vms``: list and read VMs; create, park, restore, delete, stop, start, suspend, resume and adopt them.

Mutations take the very path a slash command takes (``bot.core.lifecycle.start_operation``
claims the VM in the store, ``bot.jobs.runner`` runs ``bot.core.workflows``) and answer
``202 Accepted`` at once with the operation and a ``Location`` to poll. The API has no state
checks of its own: the core refuses (Refused) and handlers.api.errors.refusal_error words it.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint

from bot.core import permissions, plans, shapes
from bot.core.errors import InvalidInput, Refused
from bot.core.names import explain
from bot.core.schedules import ScheduleError, parse_ttl
from bot.core.vm_costs import price_table, vm_costs
from bot.core.lifecycle import check_allowed, check_image_name_free, start_operation
from bot.gcp.compute import GceError
from handlers.api.errors import PREFIX, ApiError, refusal_error, schedule_error, unknown_vm
from handlers.api.inputs import actor, body, deps, query, vm_name
from handlers.api.models import (
    AdoptVm,
    Costs,
    CreateVm,
    ListQuery,
    LiveState,
    OneOperation,
    OneVm,
    ParkVm,
    RestoreVm,
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
    detail = VmDetail.of(deps().store, vm, _costs(vm))
    if live:
        detail.gcp = _live_state(vm)
    return dump(OneVm(vm=detail))


@vms.post("")
def create_vm() -> Answer:
    wait = query(WaitQuery).wait
    request = body(CreateVm)
    settings = deps().settings
    try:
        params = shapes.create_params(request.create_options())
    except InvalidInput as invalid:
        raise ApiError("invalid_option", explain(invalid, _quote)) from None
    try:
        ttl = parse_ttl(request.ttl) if request.ttl else None
    except ScheduleError as error:
        raise schedule_error(error) from None
    _check_allowed(Verb.CREATE, request.name)
    channel = _channel(request)
    op = _start(
        Verb.CREATE, request.name, channel=channel, params=params or None,
        zone=request.zone or settings.zone, machine_type=request.machine_type or settings.machine_type,
    )
    if ttl is not None:
        plans.set_ttl(deps().store, request.name, ttl, set_by=actor(), channel=channel)
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
    """From its newest image; ``machine_type`` restores it as another machine type (the rest of its shape kept)."""
    wait = query(WaitQuery).wait
    name = vm_name(name)
    request = body(RestoreVm)
    vm = _known_vm(Verb.RESTORE, name)
    params = {"machine_type": request.machine_type} if request.machine_type else None
    op = _start(Verb.RESTORE, name, zone=vm.zone, machine_type=vm.machine_type, channel=_channel(request), params=params)
    return _accepted(op, wait)


@vms.post("/<name>/stop")
def stop_vm(name: str) -> Answer:
    """No question asked, as for a delete: the caller has decided (Slack asks with stop_confirm)."""
    return _act_on(name, Verb.STOP)


@vms.post("/<name>/start")
def start_vm(name: str) -> Answer:
    return _act_on(name, Verb.START)


@vms.post("/<name>/suspend")
def suspend_vm(name: str) -> Answer:
    return _act_on(name, Verb.SUSPEND)


@vms.post("/<name>/resume")
def resume_vm(name: str) -> Answer:
    return _act_on(name, Verb.RESUME)


@vms.post("/<name>/adopt")
def adopt_vm(name: str) -> Answer:
    """Take an instance made outside vmbot under management; GCP is asked (and labels it) by the workflow."""
    wait = query(WaitQuery).wait
    name = vm_name(name)
    request = body(AdoptVm)
    owner = request.owner or actor()
    try:
        vm = permissions.check_adopt(deps().settings, deps().store, actor(), name, owner)
    except Refused as refusal:
        raise refusal_error(refusal) from None
    params = {"owner": owner, **({"family": request.family} if request.family else {})}
    op = _start(Verb.ADOPT, name, zone=request.zone or deps().settings.zone, channel=_channel(request), params=params,
                machine_type=vm.machine_type if vm else "unknown")  # fmt: skip
    return _accepted(op, wait)


@vms.post("/<name>/delete")
def delete_vm(name: str) -> Answer:
    """No question asked here: a script that calls this has decided (the CLI asks for --yes)."""
    return _act_on(name, Verb.DELETE)


def _act_on(name: str, verb: Verb) -> Answer:
    """A verb on a known VM that takes no options (delete, stop, start, suspend, resume), as its owner or an admin."""
    wait = query(WaitQuery).wait
    name = vm_name(name)
    request = body(VerbOnVm)
    vm = _known_vm(verb, name)
    op = _start(verb, name, zone=vm.zone, machine_type=vm.machine_type, channel=_channel(request))
    return _accepted(op, wait)


# ---- shared pieces ------------------------------------------------------------------------------------------


def _channel(request: CreateVm | ParkVm | VerbOnVm | RestoreVm | AdoptVm) -> str | None:
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


def _costs(vm: VmRow) -> Costs:
    """The figures ``/vm status`` shows (bot.core.vm_costs), with the price table's label."""
    table = price_table(deps().settings.prices)
    figures = vm_costs(table, vm, deps().store.images(vm.name))
    return Costs(running_per_day=figures.running_per_day, parked_per_month=figures.parked_per_month, label=table.label)


def _quote(value: str) -> str:
    return f"`{value}`"


def _live_state(vm: VmRow) -> LiveState:
    try:
        live = deps().compute.get_instance(vm.zone, vm.name)
    except GceError as error:
        raise ApiError("gcp_error", f"I could not ask GCP about {vm.name}: {error.message}") from None
    if live is None:
        return LiveState(exists=False)
    return LiveState(exists=True, status=live.status, external_ip=live.external_ip, machine_type=live.machine_type)
