"""A VM's shape as plain data: its JSON survives the store, and a create's options become the shape GCP is sent."""

from __future__ import annotations

import json

import pytest

from bot.core.errors import Refused
from bot.core.shapes import check_parkable, create_shape
from bot.gcp.shape import DiskShape, VmShape

BOOT = DiskShape(name="app", device_name="boot", disk_type="pd-ssd", size_gb=20, boot=True, auto_delete=True,
                 source="projects/p/zones/us-central1-a/disks/app")  # fmt: skip
DATA = DiskShape(name="app-data", device_name="data", disk_type="pd-balanced", size_gb=50,
                 source="projects/p/zones/us-central1-a/disks/app-data")  # fmt: skip


def test_the_shape_survives_json() -> None:
    shape = VmShape(machine_type="n1-standard-1", zone="us-central1-a", network_tags=("web", "ssh"), labels={"team": "data"},
                    metadata={"enable-oslogin": "TRUE"}, service_account="a@p.iam.gserviceaccount.com", scopes=("s",),
                    provisioning_model="SPOT", automatic_restart=False, accelerators=(("nvidia-tesla-t4", 1),),
                    secure_boot=True, boot_disk=BOOT, data_disks=(DATA,))  # fmt: skip
    assert VmShape.from_json(json.loads(json.dumps(shape.to_json()))) == shape
    assert VmShape.from_json({**shape.to_json(), "added_later": 1}) == shape, "a newer bot's field is ignored"


@pytest.mark.parametrize(("disk", "why"), [
    (DiskShape(name="scratch", device_name="scratch", kind="SCRATCH"), "local-ssd"),
    (DiskShape(name="ref", device_name="ref", users=3, mode="READ_ONLY"), "shared"),
])  # fmt: skip
def test_a_disk_park_cannot_image_is_refused(disk: DiskShape, why: str) -> None:
    with pytest.raises(Refused) as refused:
        check_parkable("app", VmShape(machine_type="e2-small", zone="us-central1-a", boot_disk=BOOT, data_disks=(DATA, disk)))
    assert (refused.value.reason.value, refused.value.facts["disk"], refused.value.facts["why"]) == (
        "disk_not_imageable", disk.name, why)


def test_deletion_protection_is_refused_first() -> None:
    with pytest.raises(Refused) as refused:
        check_parkable("app", VmShape(machine_type="e2-small", zone="us-central1-a", deletion_protection=True, boot_disk=BOOT))
    assert refused.value.reason.value == "deletion_protected"


def test_a_create_without_options_has_no_shape() -> None:
    assert create_shape("us-central1-a", "e2-small", {}, default_image="img", project="p") is None


def test_create_options_become_a_shape() -> None:
    shape = create_shape("europe-west1-b", "e2-small", {
        "image_project": "debian-cloud", "image_family": "debian-12", "disk_size": "30", "disk_type": "pd-ssd",
        "spot": "yes", "network": "prod", "subnet": "prod-eu", "tags": "db,vmbot-web,ssh",
        "service_account": "runner@p1-test.iam.gserviceaccount.com",
    }, default_image="img", project="p1-test")  # fmt: skip
    assert shape is not None
    assert shape.source_image == "projects/debian-cloud/global/images/family/debian-12"
    assert (shape.boot_disk.disk_type, shape.boot_disk.size_gb, shape.boot_disk.name) == ("pd-ssd", 30, "")
    assert shape.spot and shape.automatic_restart is False and shape.on_host_maintenance == "TERMINATE"
    assert (shape.network, shape.subnetwork, shape.network_tags) == ("prod", "prod-eu", ("vmbot-web", "db", "ssh"))
    assert shape.scopes == ("https://www.googleapis.com/auth/cloud-platform",)
    one = create_shape("europe-west1-b", "e2-small", {"image": "golden-1"}, default_image="img", project="p1-test")
    assert one is not None and one.source_image == "projects/p1-test/global/images/golden-1"
