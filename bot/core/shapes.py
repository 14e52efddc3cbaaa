"""Pure rules about a VM's shape (bot.gcp.shape.VmShape): what a park refuses, what a create's options ask
for, and what a restore could not keep. No GCP calls here: the workflows (bot.core.workflows) use them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.core.errors import Reason, Refused
from bot.core.names import check_create_options, check_option
from bot.gcp.compute import InstanceInfo
from bot.gcp.shape import DiskShape, VmShape


def check_parkable(name: str, shape: VmShape) -> None:
    """Refuse, before anything is touched, a VM a park would harm: deletion protection (vmbot never lifts it),
    a local SSD (it cannot be imaged), a disk other VMs use too."""
    if shape.deletion_protection:
        raise Refused(Reason.DELETION_PROTECTED, name, zone=shape.zone)
    for disk in (shape.boot_disk, *shape.data_disks):
        if disk is None:
            continue
        if disk.kind == "SCRATCH":
            raise Refused(Reason.DISK_NOT_IMAGEABLE, name, disk=disk.name, device=disk.device_name, why="local-ssd", users=1)
        if disk.users > 1:
            raise Refused(Reason.DISK_NOT_IMAGEABLE, name, disk=disk.name, device=disk.device_name, why="shared",
                          users=disk.users)  # fmt: skip


CREATE_OPTIONS = ("image_project", "image_family", "image", "disk_size", "disk_type", "spot", "network", "subnet",
                  "tags", "service_account")  # fmt: skip
DEFAULT_SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


def create_params(options: Mapping[str, str]) -> dict[str, str]:
    """A create's options as the workflow keeps them (underscored keys, the ones create_shape reads), from
    ``/vm create``'s ``disk-size=50`` or the API's ``disk_size``; other keys (zone, ttl ...) are left out.
    Each is checked by GCP's rules (bot.core.names), the same for every door; raises InvalidInput."""
    given = {key.replace("_", "-"): value for key, value in options.items() if key.replace("-", "_") in CREATE_OPTIONS}
    for key, value in given.items():
        check_option(key, value)
    check_create_options(given)
    return {key.replace("-", "_"): value for key, value in given.items()}


def create_shape(
    zone: str, machine_type: str, params: dict[str, Any], *, default_image: str, project: str
) -> VmShape | None:
    """The shape a create asks for with options (checked by bot.core.names before the operation was recorded);
    None when it has none, so a plain create sends what it always sent."""
    if not any(params.get(key) for key in CREATE_OPTIONS):
        return None
    image_project = params.get("image_project") or project
    if params.get("image_family"):
        image = f"projects/{image_project}/global/images/family/{params['image_family']}"
    elif params.get("image"):
        image = f"projects/{image_project}/global/images/{params['image']}"
    else:
        image = default_image
    boot = None
    if params.get("disk_size") or params.get("disk_type"):
        size = int(params["disk_size"]) if params.get("disk_size") else None
        boot = DiskShape(name="", device_name="", disk_type=params.get("disk_type"), size_gb=size, boot=True, auto_delete=True)
    spot = params.get("spot") == "yes"
    account = params.get("service_account")
    return VmShape(
        machine_type=machine_type,
        zone=zone,
        network=params.get("network") or "default",
        subnetwork=params.get("subnet"),
        network_tags=("vmbot-web", *(tag for tag in (params.get("tags") or "").split(",") if tag and tag != "vmbot-web")),
        service_account=account,
        scopes=DEFAULT_SCOPES if account else (),
        provisioning_model="SPOT" if spot else None,
        on_host_maintenance="TERMINATE" if spot else None,
        automatic_restart=False if spot else None,
        instance_termination_action="STOP" if spot else None,
        boot_disk=boot,
        source_image=image,
    )


def not_kept(shape: VmShape, instance: InstanceInfo) -> str:
    """What a restore could not keep, and why, for the thread's last reply."""
    if shape.external_access == "static":
        return f" It kept its reserved (static) external IP {shape.external_ip}."
    if shape.external_access == "ephemeral" and shape.external_ip and shape.external_ip != instance.external_ip:
        return (f" Its external IP changed from {shape.external_ip} to {instance.external_ip or 'none'}: it was "
                "ephemeral, and GCP hands out a new one each time (reserve a static address to keep one).")  # fmt: skip
    return ""
