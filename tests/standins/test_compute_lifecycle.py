"""Suspend/resume, labels, disks and the full instance shape in the Compute stand-in, via the real client."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

from standins.compute import PROJECT_NUMBER, ComputeStandin

PROJECT = "vmbot-test"
ZONE = "us-central1-a"
DEBIAN = "projects/debian-cloud/global/images/family/debian-12"
DONE = compute_v1.Operation.Status.DONE
T4 = f"zones/{ZONE}/acceleratorTypes/nvidia-tesla-t4"


@dataclass
class Gce:
    instances: compute_v1.InstancesClient
    disks: compute_v1.DisksClient
    images: compute_v1.ImagesClient
    zone_ops: compute_v1.ZoneOperationsClient
    global_ops: compute_v1.GlobalOperationsClient

    def done(self, op: compute_v1.Operation) -> compute_v1.Operation:
        """Wait the way vmbot does: loop on the wait endpoint until DONE."""
        for _ in range(50):
            if op.zone:
                op = self.zone_ops.wait(project=PROJECT, zone=op.zone.rsplit("/", 1)[-1], operation=op.name)
            else:
                op = self.global_ops.wait(project=PROJECT, operation=op.name)
            if op.status == DONE:
                return op
        raise AssertionError(f"{op.name} never finished")

    def get(self, name: str) -> compute_v1.Instance:
        return self.instances.get(project=PROJECT, zone=ZONE, instance=name)


@pytest.fixture
def standin() -> Iterator[ComputeStandin]:
    with ComputeStandin(operation_seconds=0.05) as running:
        yield running


@pytest.fixture
def gce(standin: ComputeStandin) -> Gce:
    kwargs = {"credentials": AnonymousCredentials(), "client_options": ClientOptions(api_endpoint=standin.url)}
    return Gce(compute_v1.InstancesClient(**kwargs), compute_v1.DisksClient(**kwargs), compute_v1.ImagesClient(**kwargs),
               compute_v1.ZoneOperationsClient(**kwargs), compute_v1.GlobalOperationsClient(**kwargs))  # fmt: skip


def full_instance(name: str, *, data_disk_source: str | None = None) -> compute_v1.Instance:
    """Every field issue 18 keeps: tags, labels, metadata, service account, spot, GPU, CPU platform, shielded VM,
    deletion protection, a boot disk, a new data disk and (optionally) an existing disk."""
    disks = [
        compute_v1.AttachedDisk(boot=True, auto_delete=True, device_name="boot", initialize_params=compute_v1.AttachedDiskInitializeParams(
            source_image=DEBIAN, disk_size_gb=20, disk_type=f"zones/{ZONE}/diskTypes/pd-ssd")),
        compute_v1.AttachedDisk(auto_delete=False, device_name="data", initialize_params=compute_v1.AttachedDiskInitializeParams(
            disk_name=f"{name}-data", disk_size_gb=50, disk_type=f"zones/{ZONE}/diskTypes/pd-balanced")),
    ]  # fmt: skip
    if data_disk_source:
        disks.append(compute_v1.AttachedDisk(source=data_disk_source, device_name="old", mode="READ_WRITE"))
    return compute_v1.Instance(
        name=name, machine_type=f"zones/{ZONE}/machineTypes/n1-standard-1", labels={"team": "data"},
        tags=compute_v1.Tags(items=["web", "ssh"]),
        metadata=compute_v1.Metadata(items=[compute_v1.Items(key="enable-oslogin", value="TRUE")]),
        service_accounts=[compute_v1.ServiceAccount(email="runner@vmbot-test.iam.gserviceaccount.com",
                                                    scopes=["https://www.googleapis.com/auth/cloud-platform"])],
        scheduling=compute_v1.Scheduling(provisioning_model="SPOT", on_host_maintenance="TERMINATE", automatic_restart=False,
                                         instance_termination_action="STOP"),
        guest_accelerators=[compute_v1.AcceleratorConfig(accelerator_type=T4, accelerator_count=1)],
        min_cpu_platform="Intel Skylake",
        shielded_instance_config=compute_v1.ShieldedInstanceConfig(enable_secure_boot=True),
        deletion_protection=True, disks=disks,
        network_interfaces=[compute_v1.NetworkInterface(
            network="global/networks/default", subnetwork="regions/us-central1/subnetworks/default",
            access_configs=[compute_v1.AccessConfig(name="External NAT", type_="ONE_TO_ONE_NAT", network_tier="STANDARD")])],
    )  # fmt: skip


def test_get_returns_the_whole_shape_stored_at_insert(standin: ComputeStandin, gce: Gce) -> None:
    old = gce.done(gce.disks.insert(project=PROJECT, zone=ZONE, disk_resource=compute_v1.Disk(
        name="old-disk", size_gb=30, type_=f"zones/{ZONE}/diskTypes/pd-standard")))  # fmt: skip
    assert not old.error.errors
    source = f"projects/{PROJECT}/zones/{ZONE}/disks/old-disk"
    gce.done(gce.instances.insert(project=PROJECT, zone=ZONE, instance_resource=full_instance("vm-1", data_disk_source=source)))

    vm = gce.get("vm-1")
    assert vm.status == "RUNNING" and list(vm.tags.items) == ["web", "ssh"] and vm.tags.fingerprint
    assert dict(vm.labels) == {"team": "data"} and vm.label_fingerprint
    assert [(i.key, i.value) for i in vm.metadata.items] == [("enable-oslogin", "TRUE")] and vm.metadata.fingerprint
    assert vm.service_accounts[0].email == "runner@vmbot-test.iam.gserviceaccount.com"
    assert list(vm.service_accounts[0].scopes) == ["https://www.googleapis.com/auth/cloud-platform"]
    assert (vm.scheduling.provisioning_model, vm.scheduling.on_host_maintenance, vm.scheduling.automatic_restart,
            vm.scheduling.instance_termination_action) == ("SPOT", "TERMINATE", False, "STOP")  # fmt: skip
    assert vm.guest_accelerators[0].accelerator_type.endswith(f"/{T4}") and vm.guest_accelerators[0].accelerator_count == 1
    assert vm.min_cpu_platform == "Intel Skylake" and vm.deletion_protection is True
    assert vm.shielded_instance_config.enable_secure_boot and vm.shielded_instance_config.enable_vtpm
    assert vm.network_interfaces[0].access_configs[0].network_tier == "STANDARD"
    shape = [(d.device_name, d.mode, d.type_, d.boot, d.auto_delete, d.source.rsplit("/", 1)[-1], d.disk_size_gb) for d in vm.disks]
    assert shape == [
        ("boot", "READ_WRITE", "PERSISTENT", True, True, "vm-1", 20),
        ("data", "READ_WRITE", "PERSISTENT", False, False, "vm-1-data", 50),
        ("old", "READ_WRITE", "PERSISTENT", False, False, "old-disk", 30),
    ]
    boot = gce.disks.get(project=PROJECT, zone=ZONE, disk="vm-1")
    assert boot.type_.endswith("/diskTypes/pd-ssd") and boot.status == "READY"
    assert gce.disks.get(project=PROJECT, zone=ZONE, disk="vm-1-data").type_.endswith("/diskTypes/pd-balanced")
    assert list(gce.disks.get(project=PROJECT, zone=ZONE, disk="old-disk").users) == [vm.self_link]


def test_deletion_protection_refuses_delete(standin: ComputeStandin, gce: Gce) -> None:
    gce.done(gce.instances.insert(project=PROJECT, zone=ZONE, instance_resource=full_instance("vm-1")))
    with pytest.raises(exceptions.BadRequest) as caught:
        gce.instances.delete(project=PROJECT, zone=ZONE, instance="vm-1")
    assert caught.value.errors == [{"message": "Invalid resource usage: 'Resource cannot be deleted if it's protected "
                                    "against deletion.'.", "domain": "global", "reason": "invalidResourceUsage"}]  # fmt: skip
    assert standin.instance(PROJECT, ZONE, "vm-1")["status"] == "RUNNING"


def test_a_disk_in_use_cannot_be_attached_twice_or_deleted(standin: ComputeStandin, gce: Gce) -> None:
    standin.seed_disk(PROJECT, ZONE, "shared", size_gb=10)
    standin.seed_instance(PROJECT, ZONE, "vm-a", fields={"disks": [
        {"boot": True, "autoDelete": True, "initializeParams": {"sourceImage": DEBIAN}},
        {"source": f"zones/{ZONE}/disks/shared"}]})  # fmt: skip
    with pytest.raises(exceptions.BadRequest) as caught:
        gce.instances.insert(project=PROJECT, zone=ZONE, instance_resource=compute_v1.Instance(
            name="vm-b", machine_type=f"zones/{ZONE}/machineTypes/e2-small",
            disks=[compute_v1.AttachedDisk(boot=True, initialize_params=compute_v1.AttachedDiskInitializeParams(source_image=DEBIAN)),
                   compute_v1.AttachedDisk(source=f"zones/{ZONE}/disks/shared")],
            network_interfaces=[compute_v1.NetworkInterface()]))  # fmt: skip
    in_use = f"The disk resource 'projects/{PROJECT}/zones/{ZONE}/disks/shared' is already being used by 'projects/{PROJECT}/zones/{ZONE}/instances/vm-a'"
    assert caught.value.errors == [{"message": in_use, "domain": "global", "reason": "resourceInUseByAnotherResource"}]
    with pytest.raises(exceptions.BadRequest) as caught:
        gce.disks.delete(project=PROJECT, zone=ZONE, disk="shared")
    assert caught.value.errors[0]["reason"] == "resourceInUseByAnotherResource"
    assert standin.instance(PROJECT, ZONE, "vm-b") is None and standin.disk(PROJECT, ZONE, "shared")["users"]


def test_detach_attach_and_delete_a_data_disk(standin: ComputeStandin, gce: Gce) -> None:
    standin.seed_instance(PROJECT, ZONE, "vm-1")
    gce.done(gce.disks.insert(project=PROJECT, zone=ZONE, disk_resource=compute_v1.Disk(name="extra", size_gb=25)))
    attach = compute_v1.AttachedDisk(source=f"projects/{PROJECT}/zones/{ZONE}/disks/extra", device_name="scratch-space")
    op = gce.done(gce.instances.attach_disk(project=PROJECT, zone=ZONE, instance="vm-1", attached_disk_resource=attach))
    assert op.operation_type == "attachDisk" and not op.error.errors
    assert [d.device_name for d in gce.get("vm-1").disks] == ["vm-1", "scratch-space"]
    with pytest.raises(exceptions.BadRequest, match="No attached disk found with device name 'nope'"):
        gce.instances.detach_disk(project=PROJECT, zone=ZONE, instance="vm-1", device_name="nope")
    with pytest.raises(exceptions.BadRequest, match="boot disk can only be detached from a stopped instance"):
        gce.instances.detach_disk(project=PROJECT, zone=ZONE, instance="vm-1", device_name="vm-1")

    gce.done(gce.instances.detach_disk(project=PROJECT, zone=ZONE, instance="vm-1", device_name="scratch-space"))
    assert [d.device_name for d in gce.get("vm-1").disks] == ["vm-1"]
    assert "users" not in standin.disk(PROJECT, ZONE, "extra")
    gce.done(gce.disks.delete(project=PROJECT, zone=ZONE, disk="extra"))
    assert standin.disk(PROJECT, ZONE, "extra") is None
    assert [d.name for d in gce.disks.list(project=PROJECT, zone=ZONE)] == ["vm-1"]


def test_disk_from_an_image_and_the_size_rules(gce: Gce) -> None:
    request = compute_v1.InsertDiskRequest(project=PROJECT, zone=ZONE, source_image=DEBIAN, disk_resource=compute_v1.Disk(name="from-image"))
    gce.done(gce.disks.insert(request=request))  # sourceImage as the query parameter
    disk = gce.disks.get(project=PROJECT, zone=ZONE, disk="from-image")
    assert disk.size_gb == 10 and disk.source_image.endswith("debian-12-bookworm-v20241009") and disk.type_.endswith("/pd-standard")
    with pytest.raises(exceptions.BadRequest, match="cannot be smaller than the image size"):
        gce.disks.insert(project=PROJECT, zone=ZONE, disk_resource=compute_v1.Disk(name="tiny", size_gb=5, source_image=DEBIAN))


def test_set_labels_checks_the_fingerprint(standin: ComputeStandin, gce: Gce) -> None:
    standin.seed_instance(PROJECT, ZONE, "vm-1", labels={"team": "data"})
    fingerprint = gce.get("vm-1").label_fingerprint
    request = compute_v1.InstancesSetLabelsRequest(labels={"team": "data", "managed-by": "vmbot"}, label_fingerprint=fingerprint)
    op = gce.done(gce.instances.set_labels(project=PROJECT, zone=ZONE, instance="vm-1", instances_set_labels_request_resource=request))
    assert op.operation_type == "setLabels"
    vm = gce.get("vm-1")
    assert dict(vm.labels) == {"team": "data", "managed-by": "vmbot"} and vm.label_fingerprint != fingerprint

    with pytest.raises(exceptions.PreconditionFailed) as caught:  # the same, now stale, fingerprint
        gce.instances.set_labels(project=PROJECT, zone=ZONE, instance="vm-1", instances_set_labels_request_resource=request)
    assert caught.value.code == 412 and caught.value.errors == [{
        "message": "Labels fingerprint either invalid or resource labels have changed", "domain": "global",
        "reason": "conditionNotMet"}]  # fmt: skip
    with pytest.raises(exceptions.BadRequest, match="Required field 'resource.labelFingerprint' not specified"):
        gce.instances.set_labels(project=PROJECT, zone=ZONE, instance="vm-1",
                                 instances_set_labels_request_resource=compute_v1.InstancesSetLabelsRequest(labels={"a": "b"}))  # fmt: skip
    assert dict(gce.get("vm-1").labels) == {"team": "data", "managed-by": "vmbot"}


def test_suspend_and_resume(standin: ComputeStandin, gce: Gce) -> None:
    standin.seed_instance(PROJECT, ZONE, "vm-1")
    standin.operation_seconds = 0.3
    op = gce.instances.suspend(project=PROJECT, zone=ZONE, instance="vm-1")
    assert op.operation_type == "suspend" and gce.get("vm-1").status == "SUSPENDING"
    gce.done(op)
    vm = gce.get("vm-1")
    assert vm.status == "SUSPENDED" and vm.last_suspended_timestamp
    with pytest.raises(exceptions.BadRequest, match="is not ready"):  # a suspended VM is resumed, not started
        gce.instances.start(project=PROJECT, zone=ZONE, instance="vm-1")
    gce.done(gce.instances.resume(project=PROJECT, zone=ZONE, instance="vm-1"))
    assert gce.get("vm-1").status == "RUNNING"

    gce.done(gce.instances.stop(project=PROJECT, zone=ZONE, instance="vm-1"))
    with pytest.raises(exceptions.BadRequest, match="is not ready"):
        gce.instances.suspend(project=PROJECT, zone=ZONE, instance="vm-1")
    with pytest.raises(exceptions.BadRequest, match="is not ready"):
        gce.instances.resume(project=PROJECT, zone=ZONE, instance="vm-1")
    assert gce.get("vm-1").status == "TERMINATED"


def test_suspend_is_refused_with_gpus_and_needs_discard_local_ssd(standin: ComputeStandin, gce: Gce) -> None:
    standin.seed_instance(PROJECT, ZONE, "gpu-vm", fields={
        "guestAccelerators": [{"acceleratorType": T4, "acceleratorCount": 1}], "scheduling": {"onHostMaintenance": "TERMINATE"}})
    standin.seed_instance(PROJECT, ZONE, "ssd-vm", fields={"disks": [
        {"boot": True, "autoDelete": True, "initializeParams": {"sourceImage": DEBIAN}},
        {"type": "SCRATCH", "autoDelete": True, "interface": "NVME", "initializeParams": {"diskType": f"zones/{ZONE}/diskTypes/local-ssd"}}]})  # fmt: skip
    with pytest.raises(exceptions.BadRequest) as caught:
        gce.instances.suspend(project=PROJECT, zone=ZONE, instance="gpu-vm")
    assert caught.value.errors == [{"message": f"Instance 'projects/{PROJECT}/zones/{ZONE}/instances/gpu-vm' has guest "
                                    "accelerators (GPUs) attached and cannot be suspended.", "domain": "global",
                                    "reason": "unsupportedOperation"}]  # fmt: skip
    with pytest.raises(exceptions.BadRequest, match="discardLocalSsd must be set"):
        gce.instances.suspend(project=PROJECT, zone=ZONE, instance="ssd-vm")
    assert {vm["name"]: vm["status"] for vm in standin.instances(PROJECT)} == {"gpu-vm": "RUNNING", "ssd-vm": "RUNNING"}
    request = compute_v1.SuspendInstanceRequest(project=PROJECT, zone=ZONE, instance="ssd-vm", discard_local_ssd=True)
    gce.done(gce.instances.suspend(request=request))
    assert gce.get("ssd-vm").status == "SUSPENDED"
    local = gce.get("ssd-vm").disks[1]
    assert (local.type_, local.interface, local.disk_size_gb, local.source) == ("SCRATCH", "NVME", 375, "")


def test_images_from_boot_and_data_disks_but_never_a_local_ssd(standin: ComputeStandin, gce: Gce) -> None:
    standin.seed_instance(PROJECT, ZONE, "vm-1", status="TERMINATED", fields={"disks": [
        {"boot": True, "autoDelete": True, "initializeParams": {"sourceImage": DEBIAN}},
        {"deviceName": "data", "initializeParams": {"diskName": "vm-1-data", "diskSizeGb": "40"}},
        {"type": "SCRATCH", "autoDelete": True, "deviceName": "fast", "initializeParams": {"diskType": f"zones/{ZONE}/diskTypes/local-ssd"}}]})  # fmt: skip
    for disk, image in (("vm-1", "vm-1-boot-img"), ("vm-1-data", "vm-1-data-img")):
        source = f"projects/{PROJECT}/zones/{ZONE}/disks/{disk}"
        op = gce.done(gce.images.insert(project=PROJECT, image_resource=compute_v1.Image(name=image, source_disk=source)))
        assert not op.error.errors
    assert gce.images.get(project=PROJECT, image="vm-1-data-img").disk_size_gb == 40
    # A local SSD is no disk resource: there is nothing to name as a source disk.
    with pytest.raises(exceptions.NotFound):
        gce.images.insert(project=PROJECT, image_resource=compute_v1.Image(
            name="fast-img", source_disk=f"projects/{PROJECT}/zones/{ZONE}/disks/fast"))  # fmt: skip
    assert [d["name"] for d in standin.disks(PROJECT)] == ["vm-1", "vm-1-data"]


def test_seeded_member_of_a_managed_instance_group(standin: ComputeStandin, gce: Gce) -> None:
    standin.seed_instance(PROJECT, ZONE, "web-abcd", group="web-mig", fields={"tags": {"items": ["web"]}})
    items = {i.key: i.value for i in gce.get("web-abcd").metadata.items}
    assert items == {"created-by": f"projects/{PROJECT_NUMBER}/zones/{ZONE}/instanceGroupManagers/web-mig"}
    with pytest.raises(ValueError, match="Unknown name \"bogus\""):
        standin.seed_instance(PROJECT, ZONE, "bad", fields={"bogus": 1})
    with pytest.raises(ValueError, match="Instances with guest accelerators do not support live migration"):
        standin.seed_instance(PROJECT, ZONE, "bad", fields={"guestAccelerators": [{"acceleratorType": T4, "acceleratorCount": 1}]})
