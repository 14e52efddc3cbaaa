"""``/api/v1/vms/{name}/schedule``, ``/api/v1/vms/{name}/ttl`` (set, read, remove), ``/api/v1/schedules`` and ``/api/v1/savings``:
what ``/vm schedule``, ``/vm ttl``, ``/vm schedules`` and ``/vm savings`` do (handlers.schedule_commands),
through the same core (bot.core.plans, bot.core.schedules). Setting or removing is for the VM's owner or an admin.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint
from pydantic import BaseModel

from bot.core import permissions, plans
from bot.core.errors import Refused
from bot.core.schedule_records import schedule_of
from bot.core.schedules import Schedule, ScheduleError, describe, format_local, next_run, parse_ttl, schedule_options
from bot.core.vm_costs import price_table
from handlers.api.errors import PREFIX, ApiError, refusal_error, schedule_error
from handlers.api.inputs import actor, body, deps, query, vm_name
from handlers.api.models import (
    NextRun,
    NoQuery,
    Savings,
    ScheduleList,
    SetSchedule,
    SetTtl,
    VmSaving,
    VmSchedule,
    VmTtl,
    dump,
)
from storage.models import Vm as VmRow
from storage.models import VmSchedule as ScheduleRow
from storage.models import VmTtl as TtlRow
from storage.models import utcnow

schedules = Blueprint("schedules", __name__, url_prefix=PREFIX)
_Row = TypeVar("_Row")


@schedules.put("/vms/<name>/schedule")
def set_schedule(name: str) -> Any:
    query(NoQuery)
    name = vm_name(name)
    request = body(SetSchedule)
    _changeable(name, "schedule")
    channel = request.channel if "channel" in request.model_fields_set else deps().settings.api_notify_channel
    try:
        plans.set_schedule(deps().store, name, request.options(), default_tz=deps().settings.timezone,
                           set_by=actor(), channel=channel)  # fmt: skip
    except ScheduleError as error:
        raise schedule_error(error) from None
    row = deps().store.vm_schedule(name)
    assert row is not None, "just stored"
    return dump(_schedule(row))


@schedules.get("/vms/<name>/schedule")
def get_schedule(name: str) -> Any:
    """One VM's schedule with its next run, as PUT answered it; any caller may read it, as ``GET /schedules``."""
    return _read_one(name, "schedule", deps().store.vm_schedule, _schedule)


@schedules.delete("/vms/<name>/schedule")
def delete_schedule(name: str) -> Any:
    query(NoQuery)
    name = vm_name(name)
    _changeable(name, "schedule")
    if not deps().store.delete_schedule(name):
        raise _none_set(name, "schedule")
    return "", 204


@schedules.put("/vms/<name>/ttl")
def set_ttl(name: str) -> Any:
    query(NoQuery)
    name = vm_name(name)
    request = body(SetTtl)
    _changeable(name, "ttl")
    try:
        duration = parse_ttl(request.ttl)
    except ScheduleError as error:
        raise schedule_error(error) from None
    if duration is None:
        raise ApiError("invalid_schedule", f"To remove the time to live, DELETE {PREFIX}/vms/{name}/ttl.", option="ttl")
    plans.set_ttl(deps().store, name, duration, set_by=actor(), channel=deps().settings.api_notify_channel)
    row = deps().store.ttl(name)
    assert row is not None, "just stored"
    return dump(_ttl(row))


@schedules.get("/vms/<name>/ttl")
def get_ttl(name: str) -> Any:
    """One VM's time to live (when it will be parked), as PUT answered it."""
    return _read_one(name, "ttl", deps().store.ttl, _ttl)


@schedules.delete("/vms/<name>/ttl")
def delete_ttl(name: str) -> Any:
    query(NoQuery)
    name = vm_name(name)
    _changeable(name, "ttl")
    if not deps().store.clear_ttl(name):
        raise _none_set(name, "ttl")
    return "", 204


@schedules.get("/schedules")
def list_schedules() -> Any:
    query(NoQuery)
    store = deps().store
    return dump(ScheduleList(schedules=[_schedule(row) for row in store.all_schedules()],
                             ttls=[_ttl(row) for row in store.all_ttls()]))  # fmt: skip


@schedules.get("/savings")
def savings() -> Any:
    """Savings to date per VM and in total, from the parked and stopped hours the store recorded."""
    query(NoQuery)
    table = price_table(deps().settings.prices)
    found = plans.savings_by_vm(deps().store, table, utcnow())
    rows = [VmSaving(vm=item.vm.name, parked_hours=round(item.hours.parked, 2), stopped_hours=round(item.hours.stopped, 2),
                     saved=None if item.saved is None else round(item.saved, 2)) for item in found]  # fmt: skip
    total = round(sum(item.saved or 0.0 for item in found), 2)
    unpriced = sum(item.saved is None for item in found)
    return dump(Savings(vms=rows, total=total, unpriced=unpriced, label=table.label, as_of=str(table.as_of)))


def _changeable(name: str, verb: str) -> VmRow:
    """A live VM the caller owns or administers (bot.core.permissions), as for ``/vm schedule`` and ``/vm ttl``."""
    try:
        vm = plans.live_vm(deps().store, name)
        permissions.require_owner_or_admin(deps().settings, actor(), vm, verb)
    except Refused as refusal:
        raise refusal_error(refusal) from None
    return vm


_SET = {"schedule": "schedule", "ttl": "time to live"}  # what each path sets, in words


def _read_one(name: str, kind: str, find: Callable[[str], _Row | None], render: Callable[[_Row], BaseModel]) -> Any:
    """A live VM's schedule or time to live (``kind``), for any caller; 404 when the VM or it is missing."""
    query(NoQuery)
    name = vm_name(name)
    try:
        plans.live_vm(deps().store, name)
    except Refused as refusal:
        raise refusal_error(refusal) from None
    row = find(name)
    if row is None:
        raise _none_set(name, kind)
    return dump(render(row))


def _none_set(name: str, kind: str) -> ApiError:
    return ApiError(f"{kind}_not_found", f"{name} has no {_SET[kind]}. PUT {PREFIX}/vms/{name}/{kind} sets one.")


def _schedule(row: ScheduleRow) -> VmSchedule:
    schedule = schedule_of(row)
    now = utcnow()
    options = {key.replace("-", "_"): value for key, value in schedule_options(schedule).items()}
    return VmSchedule(vm=row.vm_name, schedule=options, description=describe(schedule, now), next=_next(schedule, now),
                      channel=row.channel, set_by=row.set_by)  # fmt: skip


def _next(schedule: Schedule, now: Any) -> NextRun | None:
    run = next_run(schedule, now)
    return None if run is None else NextRun(action=run.action, at=run.when, local=format_local(run.when, schedule.zone))


def _ttl(row: TtlRow) -> VmTtl:
    return VmTtl(vm=row.vm_name, park_at=row.park_at, local=format_local(row.park_at, deps().settings.timezone),
                 channel=row.channel, set_by=row.set_by)  # fmt: skip
