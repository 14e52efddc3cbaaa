"""Reconcile: bring the store in line with what GCP really has, found through our labels.

People also use the Cloud console. A VM may be deleted, stopped or started there,
an image deleted, or a VM made by hand with our labels (``managed-by=vmbot``,
``vmbot-vm=NAME``). Reconcile lists what GCP has with our labels, compares it
with the store, fixes the store (GCP is the truth for what exists), and writes
what it found on the VM's record (``vms.drift``) so ``/vm status NAME`` shows it.

It never touches a VM an operation holds (that operation, or its resumption,
owns the VM), and each fix is a compare-and-set on the state it read, so an
operation starting or ending meanwhile wins. It reads the store *before* GCP
for the same reason: whatever changes in between makes the compare-and-set fail.
Runs at start-up (``Deps.start``) and then every ``VMBOT_RECONCILE_INTERVAL``
seconds (``reconcile_job`` on bot.jobs.scheduler).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from bot.gcp.compute import MANAGED_LABEL, Compute, GceError, ImageInfo, InstanceInfo
from storage.models import Image, ImageState, Vm, VmState
from storage.store import Store

if TYPE_CHECKING:
    from bot.deps import Deps

log = logging.getLogger(__name__)

RUNNING_STATUSES = frozenset({"PROVISIONING", "STAGING", "RUNNING", "REPAIRING"})
OUTSIDE = "outside vmbot"


@dataclass(frozen=True)
class Finding:
    vm: str
    what: str


def vm_state_for(instance: InstanceInfo) -> VmState:
    """The store's word for a live instance's status."""
    return VmState.RUNNING if instance.status in RUNNING_STATUSES else VmState.STOPPED


def live_drift(vm: Vm, live: InstanceInfo | None) -> str | None:
    """How the store's view of ``vm`` differs from GCP right now (for ``/vm status``); None if it agrees."""
    if vm.active_operation_id is not None or vm.state is VmState.CREATING:
        return None  # mid-operation, the two are expected to differ
    exists = vm.state in (VmState.RUNNING, VmState.STOPPED)
    if exists and live is None:
        return f"my record says {vm.state.value}, but GCP has no instance `{vm.name}` in {vm.zone}"
    if not exists and live is not None:
        return f"my record says {vm.state.value}, but GCP has the instance ({live.status})"
    if live is not None and vm_state_for(live) is not vm.state:
        return f"my record says {vm.state.value}, but GCP says {live.status}"
    return None


def reconcile_job(bot: Deps) -> None:
    """The scheduled pass. Every process may run it: each fix is a compare-and-set, so two passes
    at once fix a drift once (the second finds nothing left to change)."""
    Reconciler(bot.store, bot.compute).run()


class Reconciler:
    def __init__(self, store: Store, compute: Compute) -> None:
        self.store, self.compute = store, compute

    def run(self) -> list[Finding]:
        """One pass over every VM and image; returns what was found (and fixed). Never raises."""
        try:
            return self._run()
        except GceError as error:
            log.warning("reconcile skipped: could not list our resources in GCP: %s", error.message)
            return []

    def _run(self) -> list[Finding]:
        vms = [summary.vm for summary in self.store.list_vms(include_deleted=True)]  # the store first, then GCP
        images = self.store.all_images()
        instances = {i.name: i for i in self.compute.list_instances(MANAGED_LABEL)}
        live_images = {i.name: i for i in self.compute.list_images(MANAGED_LABEL)}
        findings = self._vms(vms, instances, images)
        findings += self._images(vms, images, live_images)
        for finding in findings:
            log.warning("reconcile: %s: %s", finding.vm, finding.what)
        return findings

    # ---- VMs -----------------------------------------------------------------------

    def _vms(self, vms: list[Vm], instances: dict[str, InstanceInfo], images: list[tuple[Image, str]]) -> list[Finding]:
        findings = []
        restorable = {vm_name for image, vm_name in images if image.state is ImageState.READY}
        known = set()
        for vm in vms:
            known.add(vm.name)
            if vm.active_operation_id is not None:
                continue
            fix = _vm_fix(vm, instances.get(vm.name), vm.name in restorable)
            if fix is not None:
                what, values = fix
                if self.store.reconcile_vm(vm.name, expected=vm.state, drift=what, **values):
                    findings.append(Finding(vm.name, what))
        for name, live in instances.items():
            if name in known and not _revivable(vms, name):
                continue
            if live.labels.get("vmbot-vm") != name:
                continue  # our managed-by label but not named for a VM: not ours to adopt
            what = f"found instance `{name}` ({live.status}) made {OUTSIDE} with our labels; recorded it"
            if self.store.adopt_vm(name, zone=live.zone, machine_type=live.machine_type, state=vm_state_for(live),
                                   external_ip=live.external_ip, drift=what):  # fmt: skip
                findings.append(Finding(name, what))
        return findings

    # ---- images --------------------------------------------------------------------

    def _images(
        self, vms: list[Vm], images: list[tuple[Image, str]], live_images: dict[str, ImageInfo]
    ) -> list[Finding]:
        findings = []
        busy = {vm.name for vm in vms if vm.active_operation_id is not None}
        has_ready = {vm_name for image, vm_name in images if image.state is ImageState.READY}
        for image, vm_name in images:
            live = live_images.pop(image.name, None)
            if vm_name in busy:
                continue
            if image.state in (ImageState.READY, ImageState.DIRTY) and live is None:
                what = f"image `{image.name}` was deleted {OUTSIDE}; recorded it as deleted"
                if self.store.set_image_state(image.name, ImageState.DELETED, expected=image.state, by=OUTSIDE):
                    findings.append(self._noted(vm_name, what))
            elif image.state in (ImageState.FAILED, ImageState.DELETED, ImageState.PENDING) and live is not None:
                what = f"image `{image.name}` exists in GCP but was recorded {image.state.value}; marked it dirty"
                if self.store.set_image_state(image.name, ImageState.DIRTY, expected=image.state):
                    findings.append(self._noted(vm_name, what))
        # Newest first (by creation time, in UTC): of several images found for one VM, the newest is the
        # one to restore from, the others are dirty.
        newest_first = sorted(live_images.items(), key=lambda item: _created_utc(item[1]), reverse=True)
        for name, live in newest_first:
            vm_name = live.labels.get("vmbot-vm")
            if not vm_name or vm_name in busy:
                continue
            state = ImageState.DIRTY if vm_name in has_ready else ImageState.READY
            what = f"found image `{name}` made {OUTSIDE} with our labels; recorded it as {state.value}"
            adopted = self.store.adopt_image(
                vm_name, name, family=live.family or vm_name, state=state, created_at=live.created,
                disk_size_gb=live.disk_size_gb, archive_size_bytes=live.archive_size_bytes,
            )  # fmt: skip
            if adopted:
                has_ready.add(vm_name)
                findings.append(self._noted(vm_name, what))
        return findings

    def _noted(self, vm_name: str, what: str) -> Finding:
        self.store.note_drift(vm_name, what)
        return Finding(vm_name, what)


def _revivable(vms: list[Vm], name: str) -> bool:
    return any(vm.name == name and vm.state is VmState.DELETED and vm.active_operation_id is None for vm in vms)


def _vm_fix(vm: Vm, live: InstanceInfo | None, restorable: bool) -> tuple[str, dict[str, Any]] | None:
    """What to record for a VM no operation holds, given its live instance; None if nothing."""
    name = vm.name
    if live is None:
        if vm.state not in (VmState.RUNNING, VmState.STOPPED, VmState.CREATING):
            return None
        if restorable:
            return (
                f"`{name}` was deleted {OUTSIDE}; recorded it as parked (its newest image remains; "
                f"`/vm restore {name}` brings it back)",
                {"state": VmState.PARKED, "external_ip": None},
            )
        return (
            f"`{name}` was deleted {OUTSIDE} and has no image; recorded it as deleted",
            {"state": VmState.DELETED, "external_ip": None},
        )
    now = vm_state_for(live)
    values: dict[str, Any] = {"state": now, "external_ip": live.external_ip}
    if vm.state is VmState.DELETED:
        return None  # a new instance under a deleted name: adopted by the caller if it carries our labels
    if vm.state in (VmState.PARKED, VmState.CREATING):
        values.update(zone=live.zone, machine_type=live.machine_type)
        return f"`{name}` exists in GCP ({live.status}), made {OUTSIDE}; recorded it as {now.value}", values
    if now is not vm.state:
        verb = "started" if now is VmState.RUNNING else "stopped"
        return f"`{name}` was {verb} {OUTSIDE} ({live.status}); recorded it as {now.value}", values
    if live.external_ip != vm.external_ip:
        return f"`{name}` has a new external IP ({live.external_ip or 'none'}); recorded it", values
    return None


def _created_utc(image: ImageInfo) -> datetime:
    """An image's creation time in UTC (GCP writes it with a local offset); unknown counts as oldest."""
    return image.created.astimezone(timezone.utc) if image.created else datetime.min.replace(tzinfo=timezone.utc)
