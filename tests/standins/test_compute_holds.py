"""The stand-in's finer hold: release one operation by name while the rest stay frozen, and see
who is waiting on an operation (what the kill tests stand on)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

from standins.compute import ComputeStandin

PROJECT, ZONE = "p", "us-central1-a"


@pytest.fixture
def standin() -> Iterator[ComputeStandin]:
    with ComputeStandin() as gcp:
        gcp.seed_instance(PROJECT, ZONE, "vm-1")
        gcp.seed_instance(PROJECT, ZONE, "vm-2")
        yield gcp


def test_release_by_name_lets_one_operation_finish_and_keeps_holding_the_rest(standin: ComputeStandin) -> None:
    options = ClientOptions(api_endpoint=standin.url)
    instances = compute_v1.InstancesClient(credentials=AnonymousCredentials(), client_options=options)
    operations = compute_v1.ZoneOperationsClient(credentials=AnonymousCredentials(), client_options=options)
    standin.hold_operations()
    first = instances.stop(project=PROJECT, zone=ZONE, instance="vm-1").name
    second = instances.stop(project=PROJECT, zone=ZONE, instance="vm-2").name
    assert {op["name"] for op in standin.held_operations("stop")} == {first, second}

    waiter = threading.Thread(target=lambda: operations.wait(project=PROJECT, zone=ZONE, operation=first))
    waiter.start()
    assert standin.wait_for(lambda: standin.waits(first) == 1, timeout=5)
    standin.release_operations(first)
    waiter.join(timeout=5)
    assert not waiter.is_alive()
    assert standin.instance(PROJECT, ZONE, "vm-1")["status"] == "TERMINATED"
    assert standin.instance(PROJECT, ZONE, "vm-2")["status"] == "STOPPING"
    third = instances.stop(project=PROJECT, zone=ZONE, instance="vm-1").name  # accepted later: held too
    assert {op["name"] for op in standin.held_operations()} == {second, third}

    standin.release_operations()
    assert standin.held_operations() == []
    assert standin.instance(PROJECT, ZONE, "vm-2")["status"] == "TERMINATED"
