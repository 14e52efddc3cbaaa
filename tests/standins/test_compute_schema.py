"""The Compute stand-in refuses what GCP refuses: bodies checked against Google's discovery schemas.

Each case goes through the real google-cloud-compute client where it can send the mistake, and through raw
HTTP where the client cannot (it would not serialize an unknown field or a string for a boolean)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

from standins.compute import ComputeStandin
from standins.compute_schema import discovery

PROJECT = "vmbot-test"
ZONE = "us-central1-a"
DEBIAN = "projects/debian-cloud/global/images/family/debian-12"
INSTANCES = f"/compute/v1/projects/{PROJECT}/zones/{ZONE}/instances"


@pytest.fixture
def standin() -> Iterator[ComputeStandin]:
    with ComputeStandin() as running:
        yield running


@pytest.fixture
def instances(standin: ComputeStandin) -> compute_v1.InstancesClient:
    opts = ClientOptions(api_endpoint=standin.url)
    return compute_v1.InstancesClient(credentials=AnonymousCredentials(), client_options=opts)


def body(**overrides: Any) -> dict[str, Any]:
    """A valid insert body in GCP's JSON, as the real client writes it."""
    return {
        "name": "vm-1",
        "machineType": f"zones/{ZONE}/machineTypes/e2-small",
        "disks": [{"boot": True, "autoDelete": True, "initializeParams": {"sourceImage": DEBIAN, "diskSizeGb": "20"}}],
        "networkInterfaces": [{"network": "global/networks/default",
                               "accessConfigs": [{"type": "ONE_TO_ONE_NAT", "name": "External NAT"}]}],
        **overrides,
    }  # fmt: skip


def post(standin: ComputeStandin, path: str, payload: Any) -> tuple[int, dict[str, Any]]:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    request = urllib.request.Request(standin.url + path, data=data, method="POST",
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def invalid(message: str, reason: str = "invalid") -> dict[str, Any]:
    return {"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT",
                      "errors": [{"message": message, "domain": "global", "reason": reason}]}}  # fmt: skip


def test_shipped_schemas_come_from_the_discovery_document() -> None:
    doc = discovery()
    assert doc["version"] == "v1" and doc["revision"].isdigit()
    assert doc["methods"]["instances.insert"]["request"] == "Instance"
    access_type = doc["schemas"]["AccessConfig"]["properties"]["type"]
    assert "ONE_TO_ONE_NAT" in access_type["enum"] and "FOO" not in access_type["enum"]
    for name in ("Instance", "AttachedDisk", "Scheduling", "ServiceAccount", "AcceleratorConfig", "Image", "Disk",
                 "InstancesSetLabelsRequest", "ShieldedInstanceConfig", "Metadata", "Tags"):  # fmt: skip
        assert doc["schemas"][name]["properties"], name


def test_a_valid_raw_body_passes_and_int64_may_be_a_string(standin: ComputeStandin) -> None:
    status, answer = post(standin, INSTANCES, body())
    assert status == 200 and answer["operationType"] == "insert"
    assert standin.disk(PROJECT, ZONE, "vm-1")["sizeGb"] == "20"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"fooBar": 1}, "Invalid JSON payload received. Unknown name \"fooBar\" at 'instance': Cannot find field."),
        ({"networkInterfaces": [{"accessConfigs": [{"type": "ONE_TO_ONE_NAT", "natIp": "1.2.3.4"}]}]},
         "Invalid JSON payload received. Unknown name \"natIp\" at 'instance.network_interfaces[0].access_configs[0]': "
         "Cannot find field."),
        ({"canIpForward": "true"}, "Invalid value at 'instance.can_ip_forward' (TYPE_BOOL), \"true\""),
        ({"scheduling": {"preemptible": "yes"}}, "Invalid value at 'instance.scheduling.preemptible' (TYPE_BOOL), \"yes\""),
        ({"disks": [{"boot": True, "initializeParams": {"sourceImage": DEBIAN, "diskSizeGb": "big"}}]},
         "Invalid value at 'instance.disks[0].initialize_params.disk_size_gb' (TYPE_INT64), \"big\""),
        ({"guestAccelerators": [{"acceleratorCount": "two"}]},
         "Invalid value at 'instance.guest_accelerators[0].accelerator_count' (TYPE_INT32), \"two\""),
        ({"tags": ["a"]}, "Invalid value at 'instance.tags' (type.googleapis.com/google.cloud.compute.v1.Tags), [\"a\"]"),
        ({"labels": {"env": 3}}, "Invalid value at 'instance.labels[env]' (TYPE_STRING), 3"),
    ],
)  # fmt: skip
def test_malformed_json_is_refused_by_the_front_end(standin: ComputeStandin, overrides: dict, message: str) -> None:
    status, answer = post(standin, INSTANCES, body(**overrides))
    assert (status, answer) == (400, invalid(message))
    assert standin.instances(PROJECT) == [] and standin.operations() == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"networkInterfaces": [{"accessConfigs": [{"type": "FOO"}]}]},
         "Invalid value for field 'resource.networkInterfaces[0].accessConfigs[0].type': 'FOO'. "
         "Value must be one of [DIRECT_IPV6, ONE_TO_ONE_NAT]."),
        ({"scheduling": {"onHostMaintenance": "SOMETIMES"}},
         "Invalid value for field 'resource.scheduling.onHostMaintenance': 'SOMETIMES'. Value must be one of [MIGRATE, TERMINATE]."),
        ({"disks": [{"boot": True, "mode": "RW", "initializeParams": {"sourceImage": DEBIAN}}]},
         "Invalid value for field 'resource.disks[0].mode': 'RW'. Value must be one of [READ_ONLY, READ_WRITE]."),
    ],
)  # fmt: skip
def test_enum_values_outside_the_schema_are_refused(standin: ComputeStandin, overrides: dict, message: str) -> None:
    assert post(standin, INSTANCES, body(**overrides)) == (400, invalid(message))


def test_enum_mistakes_through_the_real_client(standin: ComputeStandin, instances: compute_v1.InstancesClient) -> None:
    vm = compute_v1.Instance(**{**_client_fields(), "network_interfaces": [compute_v1.NetworkInterface(
        access_configs=[compute_v1.AccessConfig(type_="FOO")])]})  # fmt: skip
    with pytest.raises(exceptions.BadRequest) as caught:
        instances.insert(project=PROJECT, zone=ZONE, instance_resource=vm)
    assert caught.value.errors[0]["message"].startswith("Invalid value for field 'resource.networkInterfaces[0].accessConfigs[0].type': 'FOO'.")
    assert [e["reason"] for e in caught.value.errors] == ["invalid"]


def _client_fields() -> dict[str, Any]:
    return {
        "name": "vm-1", "machine_type": f"zones/{ZONE}/machineTypes/e2-small",
        "disks": [compute_v1.AttachedDisk(boot=True, auto_delete=True,
                  initialize_params=compute_v1.AttachedDiskInitializeParams(source_image=DEBIAN))],
        "network_interfaces": [compute_v1.NetworkInterface(access_configs=[compute_v1.AccessConfig(type_="ONE_TO_ONE_NAT")])],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"network_interfaces": []}, "Invalid value for field 'resource.networkInterfaces': ''. At least one network interface must be specified."),
        ({"machine_type": ""}, "Required field 'resource.machineType' not specified"),
        ({"disks": [compute_v1.AttachedDisk(auto_delete=True, initialize_params=compute_v1.AttachedDiskInitializeParams(source_image=DEBIAN))]},
         "Invalid value for field 'resource.disks': ''. Boot disk must be specified."),
        ({"disks": [compute_v1.AttachedDisk(boot=True, initialize_params=compute_v1.AttachedDiskInitializeParams(
            source_image=DEBIAN, disk_type=f"zones/{ZONE}/diskTypes/pd-turbo"))]},
         f"Invalid value for field 'resource.disks[0].initializeParams.diskType': 'zones/{ZONE}/diskTypes/pd-turbo'. "
         "The referenced diskType resource cannot be found."),
        ({"disks": [compute_v1.AttachedDisk(boot=True, initialize_params=compute_v1.AttachedDiskInitializeParams(
            source_image=DEBIAN, disk_type="zones/us-east1-b/diskTypes/pd-ssd"))]},
         "Invalid value for field 'resource.disks[0].initializeParams.diskType': 'zones/us-east1-b/diskTypes/pd-ssd'. "
         "The referenced diskType resource cannot be found."),
        ({"machine_type": "machineTypes/e2-small"},
         "Invalid value for field 'resource.machineType': 'machineTypes/e2-small'. The URL is malformed."),
        ({"guest_accelerators": [compute_v1.AcceleratorConfig(accelerator_count=1, accelerator_type=f"zones/{ZONE}/acceleratorTypes/nvidia-tesla-t4")]},
         "Invalid value for field 'resource.scheduling.onHostMaintenance': 'MIGRATE'. Instances with guest accelerators do not support live migration."),
        ({"scheduling": compute_v1.Scheduling(provisioning_model="SPOT", automatic_restart=True)},
         "Invalid value for field 'resource.scheduling.automaticRestart': 'true'. Preemptible and Spot instances cannot be automatically restarted."),
        ({"tags": compute_v1.Tags(items=["Web"])},
         "Invalid value for field 'resource.tags.items[0]': 'Web'. Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'"),
    ],
)  # fmt: skip
def test_compute_engine_field_checks(standin: ComputeStandin, instances: compute_v1.InstancesClient,
                                     change: dict, message: str) -> None:  # fmt: skip
    with pytest.raises(exceptions.BadRequest) as caught:
        instances.insert(project=PROJECT, zone=ZONE, instance_resource=compute_v1.Instance(**{**_client_fields(), **change}))
    assert caught.value.errors[0]["message"] == message  # .message is prefixed with the method and URL
    assert standin.instances(PROJECT) == [] and standin.disks(PROJECT) == []


def test_a_second_boot_disk_or_a_boot_disk_not_first_is_refused(standin: ComputeStandin) -> None:
    data = {"initializeParams": {"diskSizeGb": "10"}}
    status, answer = post(standin, INSTANCES, body(disks=[data, {"boot": True, "initializeParams": {"sourceImage": DEBIAN}}]))
    assert status == 400 and answer["error"]["message"] == (
        "Invalid value for field 'resource.disks[1].boot': 'true'. Boot disk must be the first disk attached to the instance.")


def test_empty_body_and_unknown_query_parameter(standin: ComputeStandin) -> None:
    assert post(standin, INSTANCES, b"") == (400, invalid("Required field 'resource' not specified", "required"))
    status, answer = post(standin, INSTANCES + "?fooBar=1", body())
    assert status == 400 and "Unknown name \"fooBar\": Cannot bind query parameter." in answer["error"]["message"]
    status, answer = post(standin, INSTANCES + "/vm-1/suspend?discardLocalSsd=yes", b"")
    assert (status, answer) == (400, invalid("Invalid value at 'discard_local_ssd' (TYPE_BOOL), \"yes\""))


def test_snake_case_names_are_accepted_like_the_proto_names(standin: ComputeStandin) -> None:
    payload = body()
    payload["machine_type"] = payload.pop("machineType")
    assert post(standin, INSTANCES, payload)[0] == 200
    assert standin.instance(PROJECT, ZONE, "vm-1")["machineType"].endswith("/machineTypes/e2-small")


def test_other_bodies_are_checked_too(standin: ComputeStandin) -> None:
    standin.seed_instance(PROJECT, ZONE, "vm-1")
    disks = f"/compute/v1/projects/{PROJECT}/zones/{ZONE}/disks"
    assert post(standin, disks, {"name": "d-1", "sizeGb": "ten"}) == (
        400, invalid("Invalid value at 'disk.size_gb' (TYPE_INT64), \"ten\""))
    assert post(standin, disks, {"name": "d-1", "type": f"zones/{ZONE}/diskTypes/pd-fast"}) == (400, invalid(
        f"Invalid value for field 'resource.type': 'zones/{ZONE}/diskTypes/pd-fast'. The referenced diskType resource cannot be found."))
    assert post(standin, disks, {"sizeGb": "10"}) == (400, invalid("Required field 'resource.name' not specified"))
    assert post(standin, f"/compute/v1/projects/{PROJECT}/global/images", {"name": "i", "sourceDisk": 7}) == (
        400, invalid("Invalid value at 'image.source_disk' (TYPE_STRING), 7"))
    assert post(standin, INSTANCES + "/vm-1/setLabels", {"labels": {"a": "b"}, "fingerprint": "x"}) == (400, invalid(
        "Invalid JSON payload received. Unknown name \"fingerprint\" at 'instances_set_labels_request': Cannot find field."))
    assert post(standin, INSTANCES + "/vm-1/attachDisk", {"source": "x", "autoDelete": "no"}) == (
        400, invalid("Invalid value at 'attached_disk.auto_delete' (TYPE_BOOL), \"no\""))
    assert standin.disks(PROJECT) == [standin.disk(PROJECT, ZONE, "vm-1")]
