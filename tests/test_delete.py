"""`/vm delete NAME`: asks first, then deletes the VM and its boot disk for good; its images become
dirty and the sweeper deletes them after the grace period. Read like a chat transcript."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.settings import Settings
from bot.jobs.sweeper import Sweeper
from conftest import PROJECT, Running, create_vm, park_vm
from standins.compute import ComputeStandin
from standins.slack_api import SlackStandin
from standins.slack_driver import Reply, SlackDriver
from storage.models import ImageState, OperationState, VmState

ZONE = "us-central1-a"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, admins=frozenset({"UADMIN"}))


def last_reply(slack: SlackStandin, channel: str = "C100") -> str:
    root = slack.messages(channel)[-1]
    return slack.thread(channel, root.ts)[-1].text


def buttons(reply: Reply) -> list[str]:
    return [e["action_id"] for b in reply.blocks or [] if b["type"] == "actions" for e in b["elements"]]


def test_delete_a_running_vm_after_confirming_then_reuse_its_name(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    create_vm(driver, running)
    park_vm(driver, running)
    driver.command("restore vm-a")
    running.settle()
    image = running.bot.store.newest_image("vm-a")

    question = driver.command("delete vm-a")
    assert buttons(question) == ["delete_confirm", "delete_cancel"]
    assert "1 image" in str(question.blocks) and "no way back" in str(question.blocks)
    assert gcp.instance(PROJECT, ZONE, "vm-a") is not None, "asking changes nothing"

    pressed = driver.click("delete_confirm", blocks=question.blocks)
    assert pressed.status == 200
    running.settle()

    assert gcp.instance(PROJECT, ZONE, "vm-a") is None and gcp.disk(PROJECT, ZONE, "vm-a") is None
    vm = running.bot.store.vm("vm-a")
    assert vm.state is VmState.DELETED and vm.active_operation_id is None and vm.external_ip is None
    assert running.bot.store.image(image.name).state is ImageState.DIRTY
    assert gcp.image(PROJECT, image.name) is not None, "the sweeper deletes images, after their grace period"
    assert slack.messages("C100")[-1].text == "Delete vm-a: done"
    assert last_reply(slack).startswith("`vm-a` and its boot disk are deleted. Its image `" + image.name + "` is dirty")
    assert "the sweeper deletes it after its grace period" in last_reply(slack)
    assert any("Deleting `vm-a`: follow the thread" in r.get("text", "") for r in slack.responses)
    assert driver.command("restore vm-a").text == (
        ":warning: There is no VM `vm-a` now (`/vm history vm-a` shows what happened to it). "
        "To make a new one: `/vm create vm-a`."
    ), "no way back"
    assert "There is no VM `vm-a` now" in driver.command("delete vm-a").text
    assert "vm-a" not in driver.command("list").text

    # The sweeper takes the deleted VM's last image too: retention is for VMs that may come back.
    report = Sweeper(running.bot.store, running.bot.compute, keep=1, grace=0).sweep()
    assert [name for name, _ in report.deleted.samples] == [image.name] and gcp.images(PROJECT) == []

    create_vm(driver, running)
    assert running.bot.store.vm("vm-a").state is VmState.RUNNING


def test_delete_a_parked_vm_lets_its_images_go_and_touches_no_instance(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    create_vm(driver, running)
    park_vm(driver, running)
    gcp.clear_requests()

    driver.click("delete_confirm", blocks=driver.command("delete vm-a").blocks)
    running.settle()

    assert [r for r in gcp.requests if r.method == "DELETE"] == []
    assert running.bot.store.vm("vm-a").state is VmState.DELETED
    assert [i.state for i in running.bot.store.images("vm-a")] == [ImageState.DIRTY]
    assert last_reply(slack).startswith("`vm-a` was parked; I no longer keep it.")


def test_cancel_changes_nothing(driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running) -> None:
    create_vm(driver, running)
    question = driver.command("delete vm-a")
    assert driver.click("delete_cancel", blocks=question.blocks).status == 200
    running.settle()
    assert gcp.instance(PROJECT, ZONE, "vm-a")["status"] == "RUNNING"
    assert running.bot.store.vm("vm-a").state is VmState.RUNNING
    assert any(r.get("text") == "Cancelled: `vm-a` stays as it is." for r in slack.responses)


def test_a_double_click_deletes_once(driver: SlackDriver, gcp: ComputeStandin, running: Running) -> None:
    create_vm(driver, running)
    question = driver.command("delete vm-a")
    first = driver.click("delete_confirm", blocks=question.blocks)
    second = driver.click("delete_confirm", blocks=question.blocks)
    running.settle()
    assert first.status == second.status == 200
    deletes = [op for op in running.bot.store.operations_for("vm-a") if op.verb.value == "delete"]
    assert len(deletes) == 1 and deletes[0].state is OperationState.SUCCEEDED


def test_only_the_owner_or_an_admin_may_delete(driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running) -> None:
    create_vm(driver, running)  # owned by U100
    refused = driver.command("delete vm-a", user="U999")
    assert refused.text == ":warning: Only `vm-a`'s owner <@U100> or an admin (<@UADMIN>) may delete it. Ask them to."
    question = driver.command("delete vm-a")
    bystander = driver.click("delete_confirm", blocks=question.blocks, user="U999")
    running.settle()
    assert bystander.status == 200 and gcp.instance(PROJECT, ZONE, "vm-a") is not None
    assert any(r.get("text", "").startswith(":no_entry:") for r in slack.responses)

    admin_question = driver.command("delete vm-a", user="UADMIN")
    driver.click("delete_confirm", blocks=admin_question.blocks, user="UADMIN")
    running.settle()
    assert running.bot.store.vm("vm-a").state is VmState.DELETED


def test_what_cannot_be_deleted_is_refused_with_what_to_do(driver: SlackDriver, gcp: ComputeStandin, running: Running) -> None:
    assert driver.command("delete nope").text == ":warning: I don't know a VM called `nope`. `/vm list` shows the VMs I manage."
    assert driver.command("delete").text == ":warning: `/vm delete` needs a VM name. Usage: `/vm delete NAME`"
    gcp.hold_operations()  # the create stays under way
    driver.command("create vm-b")
    busy = driver.command("delete vm-b").text
    gcp.release_operations()
    running.settle()
    assert busy.startswith(":warning: `vm-b` is busy: <@U100> is running a create on it")
    assert "delete" in driver.command("help").text


def test_gcp_refusing_the_delete_leaves_the_vm_running_with_a_retry_button(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    create_vm(driver, running)
    gcp.fail_operation("DELETE", r"/instances/vm-a$", code="PERMISSION_DENIED", message="Required 'compute.instances.delete' permission")
    driver.click("delete_confirm", blocks=driver.command("delete vm-a").blocks)
    running.settle()

    assert gcp.instance(PROJECT, ZONE, "vm-a") is not None
    assert running.bot.store.vm("vm-a").state is VmState.RUNNING
    reply = slack.thread("C100", slack.messages("C100")[-1].ts)[-1]
    assert reply.text.startswith("Deleting `vm-a` failed while deleting the VM. GCP said: _Required 'compute.instances.delete'")
    retry = next(e for b in reply.blocks if b["type"] == "actions" for e in b["elements"])
    assert retry["action_id"] == "operation_retry" and "for good" in retry["confirm"]["text"]["text"]

    driver.click("operation_retry", blocks=reply.blocks, is_ephemeral=False)
    running.settle()
    assert gcp.instance(PROJECT, ZONE, "vm-a") is None
    assert running.bot.store.vm("vm-a").state is VmState.DELETED
