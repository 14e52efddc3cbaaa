"""When GCP says no: the thread names the failed step and GCP's words, and the record says where the VM is."""

from __future__ import annotations

from conftest import PROJECT, Running, create_vm, park_vm
from standins.compute import ComputeStandin
from standins.slack_api import SlackStandin
from standins.slack_driver import SlackDriver
from storage.models import ImageState, OperationState, VmState

ZONE = "us-central1-a"


def last_reply(slack: SlackStandin) -> str:
    root = slack.messages("C100")[-1]
    return slack.thread("C100", root.ts)[-1].text


def test_create_refused_by_quota_leaves_no_vm(driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running) -> None:
    gcp.fail_operation("POST", r"/instances$", code="QUOTA_EXCEEDED", message="Quota 'CPUS' exceeded. Limit: 8.0 in region us-central1.")
    create_vm(driver, running, "test-vm-22")
    assert last_reply(slack) == (
        "Create of `test-vm-22` failed while creating the instance. "
        "GCP said: _Quota 'CPUS' exceeded. Limit: 8.0 in region us-central1._. `test-vm-22` does not exist."
    )
    assert ":x:" in str(slack.messages("C100")[-1].blocks)
    assert gcp.instances(PROJECT) == [] and gcp.disks(PROJECT) == []
    vm = running.bot.store.vm("test-vm-22")
    assert vm.state is VmState.DELETED and vm.active_operation_id is None
    op = running.bot.store.operations_for("test-vm-22")[0]
    assert op.state is OperationState.FAILED and "Quota 'CPUS' exceeded" in (op.error or "")
    # the name is free again
    create_vm(driver, running, "test-vm-22")
    assert running.bot.store.vm("test-vm-22").state is VmState.RUNNING


def test_image_failure_leaves_the_vm_stopped_and_recorded(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    create_vm(driver, running, "test-vm-22")
    gcp.fail_operation("POST", r"/global/images$", code="QUOTA_EXCEEDED", message="Quota 'IMAGES' exceeded.")
    park_vm(driver, running, "test-vm-22")
    assert last_reply(slack) == (
        "Parking `test-vm-22` failed while imaging its boot disk. GCP said: _Quota 'IMAGES' exceeded._. "
        "`test-vm-22` is stopped and still exists; no image was kept. `/vm park test-vm-22` tries again."
    )
    assert gcp.instance(PROJECT, ZONE, "test-vm-22")["status"] == "TERMINATED"
    assert gcp.images(PROJECT) == []
    store = running.bot.store
    assert store.vm("test-vm-22").state is VmState.STOPPED
    assert [i.state for i in store.images("test-vm-22")] == [ImageState.FAILED]
    steps = store.operation(store.operations_for("test-vm-22")[0].id).steps
    assert [(s.name, s.state) for s in steps] == [("stop", OperationState.SUCCEEDED), ("image", OperationState.FAILED)]
    assert all(s.gcp_operation for s in steps), "each step records the GCP operation that carried it"

    # parking again from STOPPED skips the stop and finishes the job
    park_vm(driver, running, "test-vm-22")
    assert gcp.instance(PROJECT, ZONE, "test-vm-22") is None
    assert store.vm("test-vm-22").state is VmState.PARKED
    assert [i.state for i in store.images("test-vm-22")] == [ImageState.FAILED, ImageState.READY]


def test_a_transient_503_is_retried_by_the_adapter(driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running) -> None:
    gcp.fail_request("POST", r"/instances$", status=503, reason="backendError", times=2)
    create_vm(driver, running, "test-vm-22")
    assert "is created" in last_reply(slack)
    inserts = [r for r in gcp.requests if r.method == "POST" and r.path.endswith("/instances")]
    assert [r.status for r in inserts] == [503, 503, 200]
    assert len({r.query["requestId"] for r in inserts}) == 1, "a retried insert keeps its requestId"
    assert len(gcp.instances(PROJECT)) == 1


def test_restore_from_an_image_deleted_outside_the_bot(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    create_vm(driver, running, "test-vm-22")
    park_vm(driver, running, "test-vm-22")
    image = running.bot.store.newest_image("test-vm-22")
    running.bot.compute.delete_image(image.name).wait()  # someone cleaned up in the console
    driver.command("restore test-vm-22")
    running.settle()
    reply = last_reply(slack)
    assert reply.startswith("Restore of `test-vm-22` failed while creating the instance. GCP said: _")
    assert image.name in reply and reply.endswith("`test-vm-22` is still parked.")
    assert gcp.instances(PROJECT) == []
    assert running.bot.store.vm("test-vm-22").state is VmState.PARKED
