"""A park whose VM delete failed (its image already READY), tried again: the retry deletes the VM and keeps
the image the first park made, instead of making a second image and marking the first dirty."""

from __future__ import annotations

from conftest import PROJECT, Running, create_vm, park_vm
from standins.compute import ComputeStandin
from standins.slack_driver import SlackDriver
from storage.models import ImageState, OperationState, Verb, VmState


def test_a_retried_park_after_a_failed_delete_reuses_the_ready_image(
    driver: SlackDriver, gcp: ComputeStandin, running: Running
) -> None:
    store = running.bot.store
    create_vm(driver, running)
    gcp.fail_operation("DELETE", r"/instances/vm-a$", code="RESOURCE_IN_USE_BY_ANOTHER_RESOURCE", message="in use")
    park_vm(driver, running)
    first = store.operations_for("vm-a")[0]
    assert first.verb is Verb.PARK and first.state is OperationState.FAILED
    assert store.vm("vm-a").state is VmState.STOPPED
    (image,) = store.images("vm-a")
    assert image.state is ImageState.READY

    park_vm(driver, running)

    assert store.operations_for("vm-a")[0].state is OperationState.SUCCEEDED
    assert store.vm("vm-a").state is VmState.PARKED
    assert [(i.name, i.state) for i in store.images("vm-a")] == [(image.name, ImageState.READY)]
    assert [i["name"] for i in gcp.images(PROJECT)] == [image.name]
    assert store.newest_image("vm-a").name == image.name
