"""Issue 18's shared pieces: a VM made outside vmbot with every field a restore keeps, and that VM as comparable data."""

from __future__ import annotations

from typing import Any

from conftest import PROJECT
from standins.compute import ComputeStandin

ZONE = "us-central1-a"
DEBIAN = "projects/debian-cloud/global/images/family/debian-12"
ACCOUNT = "runner@vmbot-test.iam.gserviceaccount.com"
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


def console_vm(gcp: ComputeStandin, name: str, **extra: Any) -> dict[str, Any]:
    """A VM someone made in the console: every field issue 18 keeps, and a data disk that outlives the VM."""
    fields: dict[str, Any] = {
        "tags": {"items": ["web", "ssh"]},
        "metadata": {"items": [{"key": "enable-oslogin", "value": "TRUE"}, {"key": "startup-script", "value": "echo theirs"}]},
        "serviceAccounts": [{"email": ACCOUNT, "scopes": SCOPES}],
        "scheduling": {"provisioningModel": "SPOT", "onHostMaintenance": "TERMINATE", "automaticRestart": False,
                       "instanceTerminationAction": "STOP"},
        "guestAccelerators": [{"acceleratorType": f"zones/{ZONE}/acceleratorTypes/nvidia-tesla-t4", "acceleratorCount": 1}],
        "minCpuPlatform": "Intel Skylake",
        "shieldedInstanceConfig": {"enableSecureBoot": True, "enableVtpm": True, "enableIntegrityMonitoring": False},
        "disks": [
            {"boot": True, "autoDelete": True, "deviceName": "boot", "initializeParams": {
                "sourceImage": DEBIAN, "diskSizeGb": "20", "diskType": f"zones/{ZONE}/diskTypes/pd-ssd"}},
            {"autoDelete": False, "deviceName": "data", "mode": "READ_WRITE", "initializeParams": {
                "diskName": f"{name}-data", "diskSizeGb": "50", "diskType": f"zones/{ZONE}/diskTypes/pd-balanced"}},
        ],
        "networkInterfaces": [{"network": "global/networks/default", "subnetwork": "regions/us-central1/subnetworks/default",
                               "accessConfigs": [{"type": "ONE_TO_ONE_NAT", "name": "External NAT", "networkTier": "STANDARD"}]}],
        **extra,
    }  # fmt: skip
    return gcp.seed_instance(PROJECT, ZONE, name, labels={"team": "data"}, machine_type="n1-standard-1", fields=fields)


# What an instance is, field by field, apart from what GCP assigns anew to every instance it makes.
KEPT = ("machineType", "zone", "tags", "labels", "serviceAccounts", "scheduling", "guestAccelerators", "minCpuPlatform",
        "shieldedInstanceConfig", "deletionProtection", "canIpForward", "status")  # fmt: skip


def comparable(gcp: ComputeStandin, instance: dict[str, Any]) -> dict[str, Any]:
    shape = {key: instance.get(key) for key in KEPT}
    shape["tags"] = instance["tags"].get("items")
    shape["metadata"] = sorted((item["key"], item["value"]) for item in instance["metadata"].get("items", []))
    shape["network"] = [(nic["network"], nic["subnetwork"], [(c["type"], c["name"], c["networkTier"]) for c in nic.get("accessConfigs", [])])
                        for nic in instance["networkInterfaces"]]  # fmt: skip
    disks = []
    for attached in instance["disks"]:
        disk = gcp.disk(PROJECT, ZONE, attached["source"].rsplit("/", 1)[-1])
        assert disk is not None
        disks.append({key: attached[key] for key in ("deviceName", "boot", "autoDelete", "mode", "interface", "type", "diskSizeGb")}
                     | {"name": disk["name"], "diskType": disk["type"].rsplit("/", 1)[-1]})  # fmt: skip
    shape["disks"] = disks
    return shape
