"""The Compute Engine stand-in, exercised through the real google-cloud-compute REST clients."""

from __future__ import annotations

import ipaddress
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

from standins.compute import MACHINE_TYPES, PUBLIC_IMAGE_FAMILIES, ZONES, ComputeStandin
from standins.compute_schema import method as discovery_method

PROJECT = "vmbot-test"
ZONE = "us-central1-a"
DEBIAN = "projects/debian-cloud/global/images/family/debian-12"
DONE = compute_v1.Operation.Status.DONE


@dataclass
class Clients:
    instances: compute_v1.InstancesClient
    images: compute_v1.ImagesClient
    disks: compute_v1.DisksClient
    machine_types: compute_v1.MachineTypesClient
    zone_ops: compute_v1.ZoneOperationsClient
    global_ops: compute_v1.GlobalOperationsClient

    def wait_zone(self, name: str, zone: str = ZONE) -> compute_v1.Operation:
        """Wait the way vmbot does: loop on the wait endpoint until DONE."""
        for _ in range(50):
            op = self.zone_ops.wait(project=PROJECT, zone=zone, operation=name)
            if op.status == DONE:
                return op
        raise AssertionError(f"{name} never finished")

    def wait_global(self, name: str) -> compute_v1.Operation:
        for _ in range(50):
            op = self.global_ops.wait(project=PROJECT, operation=name)
            if op.status == DONE:
                return op
        raise AssertionError(f"{name} never finished")


@pytest.fixture
def standin() -> Iterator[ComputeStandin]:
    with ComputeStandin() as running:
        yield running


@pytest.fixture
def gce(standin: ComputeStandin) -> Clients:
    kwargs = {"credentials": AnonymousCredentials(), "client_options": ClientOptions(api_endpoint=standin.url)}
    return Clients(
        compute_v1.InstancesClient(**kwargs),
        compute_v1.ImagesClient(**kwargs),
        compute_v1.DisksClient(**kwargs),
        compute_v1.MachineTypesClient(**kwargs),
        compute_v1.ZoneOperationsClient(**kwargs),
        compute_v1.GlobalOperationsClient(**kwargs),
    )


def vm_resource(name: str, *, zone: str = ZONE, machine_type: str = "e2-small", image: str = DEBIAN,
                labels: dict[str, str] | None = None) -> compute_v1.Instance:  # fmt: skip
    return compute_v1.Instance(
        name=name,
        machine_type=f"zones/{zone}/machineTypes/{machine_type}",
        labels=labels or {"managed-by": "vmbot"},
        tags=compute_v1.Tags(items=["vmbot-web"]),
        metadata=compute_v1.Metadata(items=[compute_v1.Items(key="startup-script", value="echo hi")]),
        disks=[
            compute_v1.AttachedDisk(
                boot=True,
                auto_delete=True,
                initialize_params=compute_v1.AttachedDiskInitializeParams(source_image=image, labels={"role": "boot"}),
            )
        ],
        network_interfaces=[
            compute_v1.NetworkInterface(
                network="global/networks/default",
                access_configs=[compute_v1.AccessConfig(name="External NAT", type_="ONE_TO_ONE_NAT")],
            )
        ],
    )


def insert(gce: Clients, name: str, *, request_id: str | None = None, **kwargs):  # type: ignore[no-untyped-def]
    """Insert as vmbot does: ``insert`` (an ExtendedOperation; only its fields are used, never ``result()``)."""
    zone = kwargs.get("zone", ZONE)
    request = compute_v1.InsertInstanceRequest(
        project=PROJECT, zone=zone, instance_resource=vm_resource(name, **kwargs), request_id=request_id or str(uuid.uuid4())
    )
    return gce.instances.insert(request=request)


def nat_ip(instance: compute_v1.Instance) -> str:
    return instance.network_interfaces[0].access_configs[0].nat_i_p


def reasons(error: exceptions.GoogleAPICallError) -> list[str]:
    return [e["reason"] for e in error.errors]


# ---- instances ----------------------------------------------------------------------------


def test_insert_runs_through_provisioning_to_running(standin: ComputeStandin, gce: Clients) -> None:
    standin.operation_seconds = 0.2
    op = insert(gce, "vm-1")
    assert op.status != DONE and op.operation_type == "insert" and op.zone.endswith(f"/zones/{ZONE}")
    assert op.target_link == f"https://www.googleapis.com/compute/v1/projects/{PROJECT}/zones/{ZONE}/instances/vm-1"
    booting = gce.instances.get(project=PROJECT, zone=ZONE, instance="vm-1")
    assert booting.status in ("PROVISIONING", "STAGING") and not nat_ip(booting)

    done = gce.wait_zone(op.name)
    assert done.progress == 100 and done.end_time and not done.error.errors

    vm = gce.instances.get(project=PROJECT, zone=ZONE, instance="vm-1")
    assert vm.status == "RUNNING" and str(vm.id) == done.target_id.__str__()
    assert ipaddress.ip_address(nat_ip(vm)) in ipaddress.ip_network("203.0.113.0/24")
    assert ipaddress.ip_address(vm.network_interfaces[0].network_i_p) in ipaddress.ip_network("10.128.0.0/20")
    assert vm.machine_type.endswith(f"/zones/{ZONE}/machineTypes/e2-small")
    assert dict(vm.labels) == {"managed-by": "vmbot"} and vm.label_fingerprint
    assert [(i.key, i.value) for i in vm.metadata.items] == [("startup-script", "echo hi")] and vm.metadata.fingerprint
    assert list(vm.tags.items) == ["vmbot-web"]
    assert vm.creation_timestamp.startswith("20") and vm.creation_timestamp[-6] in "+-"

    disk = gce.disks.get(project=PROJECT, zone=ZONE, disk="vm-1")  # the boot disk is named after the instance
    assert disk.status == "READY" and disk.size_gb == 10 and dict(disk.labels) == {"role": "boot"}
    assert list(disk.users) == [vm.self_link] and vm.disks[0].source == disk.self_link
    newest_debian = PUBLIC_IMAGE_FAMILIES["debian-cloud"]["debian-12"][-1]
    assert disk.source_image.endswith(f"/projects/debian-cloud/global/images/{newest_debian}")


def test_insert_is_refused_synchronously_when_invalid(standin: ComputeStandin, gce: Clients) -> None:
    insert(gce, "taken")
    cases = [
        (dict(name="Bad_Name"), exceptions.BadRequest, "Invalid value for field 'resource.name': 'Bad_Name'"),
        (dict(name="vm-x", zone="us-central1-z"), exceptions.BadRequest, "Invalid value for field 'zone': 'us-central1-z'. Unknown zone."),
        (dict(name="vm-x", machine_type="e2-huge"), exceptions.BadRequest, "Machine type with name 'e2-huge' does not exist in zone 'us-central1-a'"),
        (dict(name="vm-x", image="projects/debian-cloud/global/images/family/debian-99"), exceptions.NotFound,
         "The resource 'projects/debian-cloud/global/images/family/debian-99' was not found"),
        (dict(name="vm-x", image="global/images/nope"), exceptions.NotFound, f"The resource 'projects/{PROJECT}/global/images/nope' was not found"),
        (dict(name="vm-x", labels={"Owner": "x"}), exceptions.BadRequest, "Invalid value for field 'resource.labels'"),
        (dict(name="taken"), exceptions.Conflict, f"The resource 'projects/{PROJECT}/zones/{ZONE}/instances/taken' already exists"),
    ]  # fmt: skip
    for kwargs, error_type, message in cases:
        with pytest.raises(error_type) as caught:
            insert(gce, **kwargs)
        assert message in caught.value.message, kwargs
    assert [vm["name"] for vm in standin.instances(PROJECT)] == ["taken"]
    assert len(standin.operations()) == 1


def test_machine_type_must_be_a_url(gce: Clients) -> None:
    vm = vm_resource("vm-1")
    vm.machine_type = "e2-small"
    with pytest.raises(exceptions.BadRequest, match="The URL is malformed"):
        gce.instances.insert_unary(project=PROJECT, zone=ZONE, instance_resource=vm)


def test_request_id_makes_insert_idempotent(standin: ComputeStandin, gce: Clients) -> None:
    request_id = str(uuid.uuid4())
    first = insert(gce, "vm-1", request_id=request_id)
    again = insert(gce, "vm-1", request_id=request_id)  # a retry: no 409, the same operation
    assert again.name == first.name and len(standin.operations()) == 1
    with pytest.raises(exceptions.BadRequest, match="requestId"):
        insert(gce, "vm-2", request_id="not-a-uuid")


def test_stop_start_delete(standin: ComputeStandin, gce: Clients) -> None:
    gce.wait_zone(insert(gce, "vm-1").name)
    first_ip = nat_ip(gce.instances.get(project=PROJECT, zone=ZONE, instance="vm-1"))
    standin.operation_durations["stop"] = 0.1

    stop = gce.instances.stop_unary(project=PROJECT, zone=ZONE, instance="vm-1")
    assert stop.operation_type == "stop" and standin.instance(PROJECT, ZONE, "vm-1")["status"] == "STOPPING"
    gce.wait_zone(stop.name)
    stopped = gce.instances.get(project=PROJECT, zone=ZONE, instance="vm-1")
    assert stopped.status == "TERMINATED" and not nat_ip(stopped) and stopped.last_stop_timestamp

    gce.wait_zone(gce.instances.start_unary(project=PROJECT, zone=ZONE, instance="vm-1").name)
    started = gce.instances.get(project=PROJECT, zone=ZONE, instance="vm-1")
    assert started.status == "RUNNING" and nat_ip(started) and nat_ip(started) != first_ip
    assert started.network_interfaces[0].network_i_p == stopped.network_interfaces[0].network_i_p

    gce.wait_zone(gce.instances.delete_unary(project=PROJECT, zone=ZONE, instance="vm-1").name)
    assert standin.instance(PROJECT, ZONE, "vm-1") is None and standin.disk(PROJECT, ZONE, "vm-1") is None
    missing = f"The resource 'projects/{PROJECT}/zones/{ZONE}/instances/vm-1' was not found"
    for call in (gce.instances.get, gce.instances.stop, gce.instances.start, gce.instances.delete):
        with pytest.raises(exceptions.NotFound) as caught:
            call(project=PROJECT, zone=ZONE, instance="vm-1")
        assert missing in caught.value.message and reasons(caught.value) == ["notFound"]


def test_list_filters_and_pages(standin: ComputeStandin, gce: Clients) -> None:
    for index, owner in enumerate(["alice", "bob", "alice", "carol", "alice"]):
        standin.seed_instance(PROJECT, ZONE, f"vm-{index}", labels={"owner": owner, "managed-by": "vmbot"})
    standin.seed_instance(PROJECT, ZONE, "outsider", status="TERMINATED")

    def names(filter_: str = "", max_results: int = 0) -> list[str]:
        request = compute_v1.ListInstancesRequest(project=PROJECT, zone=ZONE, filter=filter_, max_results=max_results)
        return [vm.name for vm in gce.instances.list(request=request)]

    assert names() == ["outsider", "vm-0", "vm-1", "vm-2", "vm-3", "vm-4"]
    assert names('labels.owner = "alice"') == ["vm-0", "vm-2", "vm-4"]
    assert names("labels.owner=bob") == ["vm-1"]
    assert names('labels.owner = "alice" AND labels.managed-by = "vmbot"') == ["vm-0", "vm-2", "vm-4"]
    assert names('(labels.owner = "bob") OR (labels.owner = "carol")') == ["vm-1", "vm-3"]
    assert names("labels.managed-by:*") == ["vm-0", "vm-1", "vm-2", "vm-3", "vm-4"]
    assert names("NOT labels.managed-by:*") == ["outsider"]
    assert names("status = TERMINATED") == ["outsider"]
    assert names("name eq 'vm-[13]'") == ["vm-1", "vm-3"]

    standin.clear_requests()
    assert names(max_results=2) == ["outsider", "vm-0", "vm-1", "vm-2", "vm-3", "vm-4"]
    pages = [r for r in standin.requests if r.method == "GET"]
    assert len(pages) == 3 and "pageToken" not in pages[0].query and pages[1].query["pageToken"]

    with pytest.raises(exceptions.BadRequest, match="Invalid list filter expression"):
        names("labels.owner = (alice")


def test_aggregated_list(standin: ComputeStandin, gce: Clients) -> None:
    standin.seed_instance(PROJECT, "us-central1-a", "vm-a", labels={"owner": "alice"})
    standin.seed_instance(PROJECT, "europe-west1-b", "vm-b", labels={"owner": "alice"})
    standin.seed_instance(PROJECT, "asia-east1-a", "vm-c", labels={"owner": "bob"})
    request = compute_v1.AggregatedListInstancesRequest(project=PROJECT, filter='labels.owner = "alice"')
    scopes = dict(gce.instances.aggregated_list(request=request))
    assert set(scopes) == {f"zones/{zone}" for zone in ZONES}
    found = {scope: [vm.name for vm in scoped.instances] for scope, scoped in scopes.items() if scoped.instances}
    assert found == {"zones/us-central1-a": ["vm-a"], "zones/europe-west1-b": ["vm-b"]}
    assert scopes["zones/asia-east1-a"].warning.code == "NO_RESULTS_ON_PAGE"


def test_seeded_instance_and_machine_type(standin: ComputeStandin, gce: Clients) -> None:
    seeded = standin.seed_instance(PROJECT, "europe-west4-a", "legacy", status="TERMINATED", machine_type="n1-standard-1")
    vm = gce.instances.get(project=PROJECT, zone="europe-west4-a", instance="legacy")
    assert vm.status == "TERMINATED" and not nat_ip(vm) and vm.self_link == seeded["selfLink"]
    assert gce.disks.get(project=PROJECT, zone="europe-west4-a", disk="legacy").users == [vm.self_link]
    disks = gce.disks.list(project=PROJECT, zone="europe-west4-a")
    assert [d.name for d in disks] == ["legacy"]

    machine = gce.machine_types.get(project=PROJECT, zone="europe-west4-a", machine_type="n1-standard-1")
    assert (machine.guest_cpus, machine.memory_mb) == (1, MACHINE_TYPES["n1-standard-1"]["memoryMb"])
    with pytest.raises(exceptions.NotFound):
        gce.machine_types.get(project=PROJECT, zone="europe-west4-a", machine_type="e2-huge")


# ---- images -------------------------------------------------------------------------------


def test_public_image_families(gce: Clients) -> None:
    for project, families in PUBLIC_IMAGE_FAMILIES.items():
        for family, names in families.items():
            image = gce.images.get_from_family(project=project, family=family)
            assert image.name == names[-1] and image.status == "READY" and image.family == family
            older = gce.images.get(project=project, image=names[0])
            assert older.deprecated.state == "DEPRECATED"
    with pytest.raises(exceptions.NotFound, match="projects/debian-cloud/global/images/family/debian-99"):
        gce.images.get_from_family(project="debian-cloud", family="debian-99")


def test_image_from_disk_of_running_instance_needs_force(standin: ComputeStandin, gce: Clients) -> None:
    gce.wait_zone(insert(gce, "vm-1").name)
    disk_url = gce.instances.get(project=PROJECT, zone=ZONE, instance="vm-1").disks[0].source
    image = compute_v1.Image(name="park-1", family="vmbot-parked", source_disk=disk_url, labels={"owner": "alice"})

    with pytest.raises(exceptions.BadRequest) as caught:
        gce.images.insert_unary(project=PROJECT, image_resource=image)
    assert reasons(caught.value) == ["resourceInUseByAnotherResource"]
    assert (f"The disk resource 'projects/{PROJECT}/zones/{ZONE}/disks/vm-1' is already being used by "
            f"'projects/{PROJECT}/zones/{ZONE}/instances/vm-1'") in caught.value.message  # fmt: skip

    forced = gce.images.insert_unary(request=compute_v1.InsertImageRequest(project=PROJECT, image_resource=image, force_create=True))
    assert gce.wait_global(forced.name).status == DONE
    assert standin.requests[-2].query["forceCreate"] == "true"


def test_image_lifecycle(standin: ComputeStandin, gce: Clients) -> None:
    gce.wait_zone(insert(gce, "vm-1").name)
    gce.wait_zone(gce.instances.stop_unary(project=PROJECT, zone=ZONE, instance="vm-1").name)
    disk = gce.disks.get(project=PROJECT, zone=ZONE, disk="vm-1")
    standin.operation_seconds = 0.1

    op = gce.images.insert_unary(project=PROJECT, image_resource=compute_v1.Image(
        name="park-1", family="vmbot-parked", source_disk=disk.self_link, labels={"owner": "alice"}))  # fmt: skip
    assert not op.zone and op.self_link.endswith(f"/global/operations/{op.name}")
    assert gce.images.get(project=PROJECT, image="park-1").status == "PENDING"
    with pytest.raises(exceptions.NotFound):  # a PENDING image is not the family's image yet
        gce.images.get_from_family(project=PROJECT, family="vmbot-parked")
    gce.wait_global(op.name)

    image = gce.images.get(project=PROJECT, image="park-1")
    assert image.status == "READY" and image.source_disk == disk.self_link and image.source_disk_id == str(disk.id)
    assert image.disk_size_gb == 10 and image.archive_size_bytes > 0 and list(image.storage_locations) == ["us"]
    assert gce.images.get_from_family(project=PROJECT, family="vmbot-parked").name == "park-1"
    listed = gce.images.list(request=compute_v1.ListImagesRequest(project=PROJECT, filter='labels.owner = "alice"'))
    assert [i.name for i in listed] == ["park-1"]

    with pytest.raises(exceptions.Conflict):
        gce.images.insert_unary(project=PROJECT, image_resource=compute_v1.Image(name="park-1", source_disk=disk.self_link))
    with pytest.raises(exceptions.NotFound, match=f"projects/{PROJECT}/zones/{ZONE}/disks/gone"):
        gce.images.insert_unary(project=PROJECT, image_resource=compute_v1.Image(
            name="park-2", source_disk=f"projects/{PROJECT}/zones/{ZONE}/disks/gone"))  # fmt: skip

    # restore: a new instance from the parked image, by name
    gce.wait_zone(gce.instances.delete_unary(project=PROJECT, zone=ZONE, instance="vm-1").name)
    gce.wait_zone(insert(gce, "vm-1", image=f"projects/{PROJECT}/global/images/park-1").name)
    assert standin.disk(PROJECT, ZONE, "vm-1")["sourceImage"] == image.self_link

    gce.wait_global(gce.images.delete_unary(project=PROJECT, image="park-1").name)
    assert standin.image(PROJECT, "park-1") is None
    with pytest.raises(exceptions.NotFound):
        gce.images.delete(project=PROJECT, image="park-1")


def test_seeded_image_is_usable(standin: ComputeStandin, gce: Clients) -> None:
    standin.seed_image(PROJECT, "golden-1", family="golden", labels={"team": "web"}, disk_size_gb=20)
    assert gce.images.get_from_family(project=PROJECT, family="golden").disk_size_gb == 20
    gce.wait_zone(insert(gce, "vm-1", image="global/images/family/golden").name)
    assert standin.disk(PROJECT, ZONE, "vm-1")["sizeGb"] == "20"


# ---- operations ---------------------------------------------------------------------------


def test_wait_blocks_until_done(standin: ComputeStandin, gce: Clients) -> None:
    standin.operation_seconds = 0.3
    op = insert(gce, "vm-1")
    started = time.monotonic()
    done = gce.zone_ops.wait(project=PROJECT, zone=ZONE, operation=op.name)  # one call, no client-side polling
    assert done.status == DONE and 0.2 < time.monotonic() - started < 2
    assert gce.zone_ops.get(project=PROJECT, zone=ZONE, operation=op.name).status == DONE


def test_unknown_operations_are_not_found(gce: Clients) -> None:
    op = insert(gce, "vm-1")
    with pytest.raises(exceptions.NotFound):
        gce.zone_ops.get(project=PROJECT, zone=ZONE, operation="operation-123-abc")
    with pytest.raises(exceptions.NotFound):
        gce.zone_ops.wait(project=PROJECT, zone="us-east1-b", operation=op.name)
    with pytest.raises(exceptions.NotFound):
        gce.global_ops.wait(project=PROJECT, operation=op.name)


def op_names(pages: object) -> list[str]:
    return [op.name for op in pages]  # type: ignore[attr-defined]


def zone_ops(gce: Clients, filter_: str, *, zone: str = ZONE) -> list[compute_v1.Operation]:
    """The client's ``list`` flattens only project and zone: a filter goes in the request, as vmbot must send it."""
    request = compute_v1.ListZoneOperationsRequest(project=PROJECT, zone=zone, filter=filter_)
    return list(gce.zone_ops.list(request=request))


def global_ops(gce: Clients, filter_: str) -> list[compute_v1.Operation]:
    return list(gce.global_ops.list(request=compute_v1.ListGlobalOperationsRequest(project=PROJECT, filter=filter_)))


def op_status(standin: ComputeStandin, name: str) -> str:
    return next(op["status"] for op in standin.operations() if op["name"] == name)


def test_zone_operation_list_filters_by_names_and_status(standin: ComputeStandin, gce: Clients) -> None:
    """vmbot watches many operations with one list call per zone: names OR-ed in the filter."""
    standin.hold_operations()
    ops = [insert(gce, f"vm-{i}") for i in range(3)]
    elsewhere = insert(gce, "vm-east", zone="us-east1-b")
    first, second, third = sorted(op.name for op in ops)

    listed = list(gce.zone_ops.list(project=PROJECT, zone=ZONE))
    assert [op.name for op in listed] == [first, second, third]  # sorted by name; the other zone's op is not here
    assert all(op.status == compute_v1.Operation.Status.RUNNING and op.operation_type == "insert" for op in listed)
    assert all(op.zone.endswith(f"/zones/{ZONE}") and op.self_link.endswith(f"/zones/{ZONE}/operations/{op.name}")
               for op in listed)  # fmt: skip

    wanted = f'(name = "{first}") OR (name = "{third}")'
    assert op_names(zone_ops(gce, wanted)) == [first, third]
    assert op_names(zone_ops(gce, "status != DONE")) == [first, second, third]
    assert op_names(zone_ops(gce, f'name = "{elsewhere.name}"', zone="us-east1-b")) == [elsewhere.name]
    assert op_names(zone_ops(gce, f'name = "{elsewhere.name}"')) == []

    standin.release_operations(first)
    assert standin.wait_for(lambda: op_status(standin, first) == "DONE")
    statuses = {op.name: op.status for op in zone_ops(gce, wanted)}
    assert statuses == {first: DONE, third: compute_v1.Operation.Status.RUNNING}
    assert op_names(zone_ops(gce, "status != DONE")) == [second, third]
    assert op_names(zone_ops(gce, "status = DONE")) == [first]

    standin.release_operations()
    assert op_names(zone_ops(gce, "status != DONE")) == []
    assert {op.status for op in gce.zone_ops.list(project=PROJECT, zone=ZONE)} == {DONE}


def test_operation_lists_page_with_max_results(standin: ComputeStandin, gce: Clients) -> None:
    names = sorted(insert(gce, f"vm-{i}").name for i in range(3))
    standin.clear_requests()
    request = compute_v1.ListZoneOperationsRequest(project=PROJECT, zone=ZONE, max_results=1)
    assert op_names(gce.zone_ops.list(request=request)) == names
    pages = [r for r in standin.requests if r.path.endswith(f"/zones/{ZONE}/operations")]
    assert len(pages) == 3 and "pageToken" not in pages[0].query and all(p.query["maxResults"] == "1" for p in pages)
    assert [p.status for p in pages] == [200, 200, 200]

    filtered = compute_v1.ListZoneOperationsRequest(
        project=PROJECT, zone=ZONE, max_results=1, filter=f'(name = "{names[0]}") OR (name = "{names[2]}")'
    )
    assert op_names(gce.zone_ops.list(request=filtered)) == [names[0], names[2]]


def test_operation_lists_refuse_bad_filters_and_unknown_zones(gce: Clients) -> None:
    insert(gce, "vm-1")
    for bad in ('name = "operation-1" OR', "(status = DONE", "status = (DONE"):
        with pytest.raises(exceptions.BadRequest, match="Invalid list filter expression") as caught:
            zone_ops(gce, bad)
        assert reasons(caught.value) == ["invalid"]
    with pytest.raises(exceptions.BadRequest, match="Invalid list filter expression"):
        global_ops(gce, "name = (x")

    refusals = []
    for call in (gce.zone_ops.list, gce.instances.list, gce.disks.list):
        with pytest.raises(exceptions.BadRequest) as caught:
            list(call(project=PROJECT, zone="us-central1-z"))
        refusals.append(caught.value.response.json())  # the whole error body, as GCP sent it
    assert refusals[0] == refusals[1] == refusals[2]
    assert refusals[0]["error"]["message"] == "Invalid value for field 'zone': 'us-central1-z'. Unknown zone."
    assert reasons(caught.value) == ["invalid"]


def test_global_operation_list(standin: ComputeStandin, gce: Clients) -> None:
    standin.seed_disk(PROJECT, ZONE, "d-1")
    zone_op = insert(gce, "vm-1")
    standin.hold_operations()
    images = [gce.images.insert_unary(project=PROJECT, image_resource=compute_v1.Image(
        name=f"img-{i}", source_disk=f"projects/{PROJECT}/zones/{ZONE}/disks/d-1")) for i in range(3)]  # fmt: skip
    names = sorted(op.name for op in images)

    listed = list(gce.global_ops.list(project=PROJECT))
    assert [op.name for op in listed] == names  # the zone operation is not a global one
    assert all(not op.zone and op.self_link.endswith(f"/global/operations/{op.name}") for op in listed)
    assert zone_op.name not in op_names(global_ops(gce, f'name = "{zone_op.name}"'))

    wanted = f'(name = "{names[0]}") OR (name = "{names[1]}")'
    assert {op.name: op.status for op in global_ops(gce, wanted)} == {
        names[0]: compute_v1.Operation.Status.RUNNING, names[1]: compute_v1.Operation.Status.RUNNING}
    standin.release_operations()
    assert {op.name: op.status for op in global_ops(gce, wanted)} == {names[0]: DONE, names[1]: DONE}
    assert op_names(global_ops(gce, "status != DONE")) == []
    paged = compute_v1.ListGlobalOperationsRequest(project=PROJECT, max_results=1)
    assert op_names(gce.global_ops.list(request=paged)) == names
    assert op_names(gce.global_ops.list(project="another-project")) == []


def test_operation_list_raw_answer_and_query_parameters(standin: ComputeStandin) -> None:
    """GCP's operationList shape; the query parameters are the discovery document's, no others."""
    standin.hold_operations()
    standin.seed_instance(PROJECT, ZONE, "vm-1")
    ops = f"/compute/v1/projects/{PROJECT}/zones/{ZONE}/operations"

    def fetch(path: str) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(standin.url + path) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    scope = f"projects/{PROJECT}/zones/{ZONE}/operations"
    status, body = fetch(ops)
    assert status == 200 and body == {
        "kind": "compute#operationList", "id": scope, "selfLink": f"https://www.googleapis.com/compute/v1/{scope}"}
    stop = json.load(urllib.request.urlopen(urllib.request.Request(
        standin.url + f"/compute/v1/projects/{PROJECT}/zones/{ZONE}/instances/vm-1/stop", method="POST")))  # fmt: skip
    status, body = fetch(ops + "?maxResults=1&orderBy=creationTimestamp%20desc&filter=status%20%21%3D%20DONE")
    assert status == 200 and body["items"] == [stop] and "nextPageToken" not in body
    status, body = fetch(f"/compute/v1/projects/{PROJECT}/global/operations")
    assert status == 200 and body["kind"] == "compute#operationList" and "items" not in body

    parameters = discovery_method("zoneOperations.list")["parameters"]
    query_names = {name for name, spec in parameters.items() if spec["location"] == "query"}
    assert query_names == {"filter", "maxResults", "orderBy", "pageToken"}  # no returnPartialSuccess in the document
    for query in ("returnPartialSuccess=true", "fooBar=1"):
        status, body = fetch(f"{ops}?{query}")
        name = query.split("=")[0]
        assert status == 400, query
        assert f'Unknown name "{name}": Cannot bind query parameter.' in body["error"]["message"]
    assert fetch(ops + "?maxResults=ten")[0] == 400
    assert fetch(ops + "?maxResults=501")[0] == 400
    assert fetch(f"/compute/v1/projects/{PROJECT}/global/operations?fooBar=1")[0] == 400


def test_hold_keeps_operations_running_and_wait_times_out(standin: ComputeStandin, gce: Clients) -> None:
    standin.wait_timeout_seconds = 0.05
    standin.hold_operations()
    op = insert(gce, "vm-1")
    assert gce.zone_ops.wait(project=PROJECT, zone=ZONE, operation=op.name).status != DONE
    assert standin.instance(PROJECT, ZONE, "vm-1")["status"] == "PROVISIONING"

    standin.release_operations()
    standin.wait_timeout_seconds = 5
    assert gce.zone_ops.wait(project=PROJECT, zone=ZONE, operation=op.name).status == DONE
    assert standin.instance(PROJECT, ZONE, "vm-1")["status"] == "RUNNING"


def test_failed_operation_changes_nothing(standin: ComputeStandin, gce: Clients) -> None:
    standin.fail_operation("POST", r"/instances$", code="QUOTA_EXCEEDED", message="Quota 'CPUS' exceeded.  Limit: 8.0 in region us-central1.")
    op = gce.wait_zone(insert(gce, "vm-1").name)
    assert [(e.code, e.message) for e in op.error.errors] == [("QUOTA_EXCEEDED", "Quota 'CPUS' exceeded.  Limit: 8.0 in region us-central1.")]
    assert op.http_error_status_code == 403 and op.http_error_message == "FORBIDDEN"
    assert standin.instance(PROJECT, ZONE, "vm-1") is None and standin.disk(PROJECT, ZONE, "vm-1") is None
    assert gce.wait_zone(insert(gce, "vm-1").name).error.errors == []  # the fault was used up


# ---- faults and errors --------------------------------------------------------------------


def test_injected_errors_become_typed_exceptions(standin: ComputeStandin, gce: Clients) -> None:
    standin.fail_request("POST", r"/instances$", status=503, reason="backendError", message="Internal error. Please try again.")
    with pytest.raises(exceptions.ServiceUnavailable) as caught:
        insert(gce, "vm-1")
    assert "Internal error. Please try again." in caught.value.message and reasons(caught.value) == ["backendError"]
    assert standin.instance(PROJECT, ZONE, "vm-1") is None

    standin.fail_request("POST", r"/instances$", status=429, reason="rateLimitExceeded")
    with pytest.raises(exceptions.TooManyRequests):
        insert(gce, "vm-1")
    gce.wait_zone(insert(gce, "vm-1").name)  # faults are used up

    standin.fail_request("GET", r"/instances/vm-1$", times=2)
    with pytest.raises(exceptions.ServiceUnavailable):
        gce.instances.get(project=PROJECT, zone=ZONE, instance="vm-1", retry=None)
    # the client's default retry for GETs absorbs a 503 on its own
    assert gce.instances.get(project=PROJECT, zone=ZONE, instance="vm-1").status == "RUNNING"
    statuses = [r.status for r in standin.requests if r.path.endswith("/instances/vm-1")]
    assert statuses[-3:] == [503, 503, 200]


def test_random_failures_are_reproducible(standin: ComputeStandin, gce: Clients) -> None:
    standin.seed_instance(PROJECT, ZONE, "vm-1")

    def outcomes() -> list[bool]:
        results = []
        for _ in range(40):
            try:
                gce.instances.get(project=PROJECT, zone=ZONE, instance="vm-1", retry=None)
                results.append(True)
            except exceptions.ServiceUnavailable:
                results.append(False)
        return results

    standin.fail_randomly(0.5, seed=7)
    first = outcomes()
    standin.fail_randomly(0.5, seed=7)
    assert outcomes() == first and 5 < first.count(False) < 35
    standin.clear_faults()
    assert all(outcomes())


def test_raw_error_bodies(standin: ComputeStandin) -> None:
    def fetch(path: str, method: str = "GET") -> tuple[int, dict]:
        request = urllib.request.Request(standin.url + path, method=method)
        try:
            with urllib.request.urlopen(request) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    status, body = fetch(f"/compute/v1/projects/{PROJECT}/zones/{ZONE}/instances/nope")
    assert status == 404 and body == {"error": {
        "code": 404, "message": f"The resource 'projects/{PROJECT}/zones/{ZONE}/instances/nope' was not found",
        "errors": [{"message": f"The resource 'projects/{PROJECT}/zones/{ZONE}/instances/nope' was not found",
                    "domain": "global", "reason": "notFound"}]}}  # fmt: skip
    assert fetch("/compute/v1/projects/p/zones/us-central1-a/widgets")[0] == 404
    assert fetch(f"/compute/v1/projects/{PROJECT}/zones/{ZONE}/instances", method="PUT")[0] == 404
    status, body = fetch(f"/compute/v1/projects/{PROJECT}/zones/{ZONE}/instances")
    assert status == 200 and body["kind"] == "compute#instanceList" and "items" not in body
    assert [r.status for r in standin.requests] == [404, 404, 404, 200]


def test_inspection_returns_copies_and_concurrent_inserts(standin: ComputeStandin, gce: Clients) -> None:
    standin.seed_instance(PROJECT, ZONE, "vm-0")
    standin.instance(PROJECT, ZONE, "vm-0")["status"] = "MANGLED"
    assert standin.instance(PROJECT, ZONE, "vm-0")["status"] == "RUNNING"

    errors: list[BaseException] = []

    def create(index: int) -> None:
        try:
            gce.wait_zone(insert(gce, f"vm-{index}").name)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    vms = standin.instances(PROJECT)
    assert len(vms) == 9 and all(vm["status"] == "RUNNING" for vm in vms)
    assert len({vm["networkInterfaces"][0]["networkIP"] for vm in vms}) == 9
