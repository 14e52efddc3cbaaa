"""A VM's figures from the price table (bot.core.pricing): what it costs running and parked, and what
parking, stopping and suspending saved so far, from the operations the store recorded.

The store does not keep a VM's disks; vmbot makes one boot disk of the image's size (GCP's
default type, pd-standard), so that disk is priced: the newest image's disk size, else 10 GB.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path

from bot.core.pricing import Costs, Disk, Image, PriceTable, bundled_prices, costs, load_prices, savings
from bot.gcp.shape import VmShape
from storage.models import ImageState, Operation, Verb, Vm
from storage.models import Image as ImageRow

DEFAULT_BOOT_DISK_GB = 10
BOOT_DISK_TYPE = "pd-standard"  # what GCP gives a boot disk whose type the insert leaves out
OFF_VERBS = {Verb.PARK: "parked", Verb.STOP: "stopped", Verb.SUSPEND: "stopped"}  # suspended: machine not paid
ON_VERBS = frozenset({Verb.RESTORE, Verb.START, Verb.RESUME, Verb.DELETE})


def price_table(path: Path | None) -> PriceTable:
    """VMBOT_PRICES's table (read once), else the bundled list prices."""
    return _load(str(path)) if path else bundled_prices()


@cache
def _load(path: str) -> PriceTable:
    return load_prices(path)


def disks_of(vm: Vm, images: Sequence[ImageRow]) -> list[Disk]:
    """The disks a VM pays for while it runs: its recorded shape's (every disk, with its type), else one
    boot disk as large as its newest image (or the public images' 10 GB)."""
    shape = VmShape.from_json(vm.shape) if vm.shape else None
    recorded = [d for d in ((shape.boot_disk, *shape.data_disks) if shape else ()) if d and d.kind == "PERSISTENT"]
    if recorded:
        return [Disk(d.disk_type or BOOT_DISK_TYPE, float(d.size_gb or DEFAULT_BOOT_DISK_GB)) for d in recorded]
    sizes = [image.disk_size_gb for image in images if image.disk_size_gb]
    return [Disk(BOOT_DISK_TYPE, float(sizes[-1] if sizes else DEFAULT_BOOT_DISK_GB))]


def images_of(images: Sequence[ImageRow], disks: Sequence[Disk]) -> list[Image]:
    """What a park keeps: its READY images, or (never parked yet) the image its disks would make."""
    ready = [Image(float(i.disk_size_gb or DEFAULT_BOOT_DISK_GB), i.archive_size_bytes)
             for i in images if i.state is ImageState.READY]  # fmt: skip
    return ready or [Image(disk.size_gb) for disk in disks]


def vm_costs(table: PriceTable, vm: Vm, images: Sequence[ImageRow]) -> Costs:
    disks = disks_of(vm, images)
    return costs(table, vm.machine_type, vm.zone, disks, images_of(images, disks))


@dataclass(frozen=True)
class OffHours:
    parked: float = 0.0
    stopped: float = 0.0  # stopped or suspended: the machine is not paid, the disk is


def off_hours(operations: Iterable[Operation], now: datetime) -> OffHours:
    """Hours a VM spent parked and stopped, from its succeeded operations in the order they ended:
    from a park's (stop's, suspend's) end to the end of whatever brought it back or deleted it."""
    parked = stopped = 0.0
    since: datetime | None = None
    kind = ""
    for op in operations:
        if op.finished_at is None:
            continue
        if since is not None and (op.verb in ON_VERBS or op.verb in OFF_VERBS):
            hours = max(0.0, (op.finished_at - since).total_seconds() / 3600)
            parked, stopped = (parked + hours, stopped) if kind == "parked" else (parked, stopped + hours)
            since = None
        if op.verb in OFF_VERBS:
            since, kind = op.finished_at, OFF_VERBS[op.verb]
    if since is not None:
        hours = max(0.0, (now - since).total_seconds() / 3600)
        parked, stopped = (parked + hours, stopped) if kind == "parked" else (parked, stopped + hours)
    return OffHours(parked, stopped)


def vm_savings(table: PriceTable, vm: Vm, images: Sequence[ImageRow], operations: Iterable[Operation],
               now: datetime) -> tuple[OffHours, float | None]:  # fmt: skip
    """Hours off and dollars saved to date (None: the machine type is not in the table)."""
    hours = off_hours(operations, now)
    disks = disks_of(vm, images)
    saved = savings(table, vm.machine_type, vm.zone, disks, images_of(images, disks),
                    parked_hours=hours.parked, stopped_hours=hours.stopped)  # fmt: skip
    return hours, saved
