"""A VM's whole shape, as plain data: what a park keeps so a restore brings back the same VM.

Built from ``instances.get`` (and ``disks.get`` for each disk) by the Compute adapter
(bot.gcp.compute.read_shape) right before a park, stored as JSON on the VM record, and
turned back into an insert body by the adapter (``shape_resource``) on restore. It holds
short names ("e2-small", "pd-ssd"), never compute_v1 types, so the core and the store
can keep it without touching the client library.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

# Metadata keys vmbot itself puts on the VMs it makes; a shape keeps the rest.
VMBOT_METADATA = ("startup-script", "vmbot-web-port")
VMBOT_LABELS = ("managed-by", "vmbot-vm")


@dataclass(frozen=True)
class DiskShape:
    """One attached disk. ``kind`` is PERSISTENT or SCRATCH (a local SSD); ``users`` is how many
    instances use the disk (a disk shared by several VMs cannot be imaged for one of them)."""

    name: str
    device_name: str
    disk_type: str | None = None  # None: GCP's default (pd-standard), for a create that names none
    size_gb: int | None = None
    mode: str = "READ_WRITE"
    boot: bool = False
    auto_delete: bool = False
    interface: str = "SCSI"
    kind: str = "PERSISTENT"
    source: str = ""  # the disk's URL, as an image's sourceDisk wants it
    users: int = 1


@dataclass(frozen=True)
class VmShape:
    """What makes a VM this VM, besides its disks' contents."""

    machine_type: str
    zone: str
    network: str = "default"
    subnetwork: str | None = None  # None: the network's own (auto mode) subnetwork
    network_tags: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)  # its own, without vmbot's
    metadata: dict[str, str] = field(default_factory=dict)  # its own, without vmbot's startup script
    vmbot_startup_script: bool = True  # vmbot's script (and web port) go on it again at restore
    service_account: str | None = None
    scopes: tuple[str, ...] = ()
    preemptible: bool = False
    provisioning_model: str | None = None  # STANDARD or SPOT
    on_host_maintenance: str | None = None  # MIGRATE or TERMINATE
    automatic_restart: bool | None = None
    instance_termination_action: str | None = None  # STOP or DELETE (spot VMs)
    accelerators: tuple[tuple[str, int], ...] = ()  # (type, count)
    min_cpu_platform: str | None = None
    secure_boot: bool | None = None
    vtpm: bool | None = None
    integrity_monitoring: bool | None = None
    deletion_protection: bool = False
    can_ip_forward: bool = False
    external_ip: str | None = None  # the address it had when the shape was read
    external_access: str = "ephemeral"  # ephemeral, static (reserved: kept) or none
    network_tier: str | None = None
    boot_disk: DiskShape | None = None
    data_disks: tuple[DiskShape, ...] = ()
    source_image: str | None = None  # only for a create: the image its boot disk starts from

    @property
    def spot(self) -> bool:
        return self.preemptible or self.provisioning_model == "SPOT"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VmShape:
        values = {key: value for key, value in data.items() if key in cls.__dataclass_fields__}
        values["network_tags"] = tuple(values.get("network_tags", ()))
        values["scopes"] = tuple(values.get("scopes", ()))
        values["accelerators"] = tuple((str(kind), int(count)) for kind, count in values.get("accelerators", ()))
        if values.get("boot_disk"):
            values["boot_disk"] = _disk(values["boot_disk"])
        values["data_disks"] = tuple(_disk(disk) for disk in values.get("data_disks", ()))
        return cls(**values)

    def with_machine_type(self, machine_type: str) -> VmShape:
        return replace(self, machine_type=machine_type)

    def summary(self) -> str:
        """One or two plain lines for ``/vm status`` (the door escapes them)."""
        parts = [f"{self.machine_type} in {self.zone}", f"network {self.network}" + (f"/{self.subnetwork}" if self.subnetwork else "")]
        if self.spot:
            parts.append("spot")
        if self.accelerators:
            parts.append(", ".join(f"{count}× {kind}" for kind, count in self.accelerators))
        if self.boot_disk:
            parts.append(f"boot {self.boot_disk.disk_type} {self.boot_disk.size_gb or '?'} GB")
        for disk in self.data_disks:
            parts.append(f"disk {disk.device_name} ({disk.disk_type} {disk.size_gb or '?'} GB{', read-only' if disk.mode == 'READ_ONLY' else ''})")
        if self.network_tags:
            parts.append("tags " + ",".join(self.network_tags))
        if self.service_account:
            parts.append(f"service account {self.service_account}")
        if self.labels:
            parts.append(f"{len(self.labels)} label{'s' if len(self.labels) != 1 else ''}")
        if self.metadata:
            parts.append(f"{len(self.metadata)} metadata item{'s' if len(self.metadata) != 1 else ''}")
        parts.append(f"{self.external_access} external IP" if self.external_access != "none" else "no external IP")
        if self.deletion_protection:
            parts.append("deletion protection on")
        return " · ".join(parts)


def _disk(data: dict[str, Any]) -> DiskShape:
    return DiskShape(**{key: value for key, value in data.items() if key in DiskShape.__dataclass_fields__})
