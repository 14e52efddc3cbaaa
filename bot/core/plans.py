"""Setting a VM's schedule and time to live, and adding up what pauses saved: what ``/vm schedule``,
``/vm ttl``, ``/vm savings`` (handlers.schedule_commands) and the HTTP API (handlers.api.schedules) share.

The doors parse and word; this module checks the VM, writes the store and does the sums.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from bot.core.errors import Reason, Refused
from bot.core.pricing import PriceTable
from bot.core.schedule_records import row_values
from bot.core.schedules import Schedule, parse_schedule
from bot.core.vm_costs import OffHours, vm_savings
from storage.models import Operation, Vm, VmState, utcnow

if TYPE_CHECKING:
    from storage.store import Store


def live_vm(store: Store, name: str) -> Vm:
    """The VM a schedule or a TTL may be set on: known and not deleted (else Refused)."""
    vm = store.vm(name)
    if vm is None:
        raise Refused(Reason.VM_UNKNOWN, name)
    if vm.state is VmState.DELETED:
        raise Refused(Reason.VM_GONE, name)
    return vm


def set_schedule(store: Store, name: str, options: Mapping[str, str], *, default_tz: str, set_by: str,
                 channel: str | None) -> Schedule:  # fmt: skip
    """Parse ``/vm schedule``'s options (``park-at=19:00`` ...) and store the schedule in place of any other.
    Raises ScheduleError (naming the option) and stores nothing when they do not make a schedule."""
    schedule = parse_schedule(options, default_tz)
    store.set_schedule(name, row_values(schedule), set_by=set_by, channel=channel)
    return schedule


def set_ttl(store: Store, name: str, duration: timedelta, *, set_by: str, channel: str | None) -> datetime:
    """Park ``name`` ``duration`` from now (to the minute); the moment it is parked, in UTC."""
    park_at = (utcnow() + duration).replace(second=0, microsecond=0)
    store.set_ttl(name, park_at, set_by=set_by, channel=channel)
    return park_at


@dataclass(frozen=True)
class VmSavings:
    vm: Vm
    hours: OffHours
    saved: float | None  # None: its machine type is not in the price table


def savings_by_vm(store: Store, table: PriceTable, now: datetime) -> list[VmSavings]:
    """Savings to date of every VM that was ever parked, stopped or suspended, by name."""
    history: dict[str, list[Operation]] = {}
    for op in store.pause_history():
        history.setdefault(op.vm_name, []).append(op)
    found = []
    for name, operations in sorted(history.items()):
        vm = store.vm(name)
        if vm is None:
            continue
        hours, saved = vm_savings(table, vm, store.images(name), operations, now)
        found.append(VmSavings(vm, hours, saved))
    return found
