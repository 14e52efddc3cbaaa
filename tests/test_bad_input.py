"""Every bad input gets an ephemeral answer a person can act on, and changes nothing."""

from __future__ import annotations

import pytest

from conftest import PROJECT, Running, park_vm
from standins.compute import ComputeStandin
from standins.slack_api import SlackStandin
from standins.slack_driver import SlackDriver
from storage.models import OperationState, VmState

ZONE = "us-central1-a"


def make_vm(driver: SlackDriver, running: Running, name: str = "test-vm-22") -> None:
    driver.command(f"create {name}")
    running.settle()


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("create Test_VM", "is not a valid VM name: GCP allows lowercase letters"),
        ("create -x", "is not a valid VM name"),
        ("destroy test-vm-22", "I don't know `/vm destroy`"),
        ("create test-vm-22 size=huge", "has no option `size=`"),
        ("create test-vm-22 zone=mars", "is not a zone name"),
        ("park", "`/vm park` needs a VM name"),
        ("park ghost", "I don't know a VM called `ghost`"),
        ("restore ghost", "I don't know a VM called `ghost`"),
        ("status ghost", "I don't know a VM called `ghost`"),
    ],
)
def test_malformed_or_unknown_changes_nothing(
    text: str, answer: str, driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    reply = driver.command(text)
    assert reply.status == 200 and answer in reply.text
    assert reply.json is not None and reply.json.get("response_type", "ephemeral") == "ephemeral"
    running.bot.runner.drain(timeout=5)
    assert gcp.requests == [], "no GCP call for a refused command"
    assert slack.calls_to("chat.postMessage") == []
    assert running.bot.store.list_vms(include_deleted=True) == []


def test_create_of_a_name_the_store_knows(driver: SlackDriver, gcp: ComputeStandin, running: Running) -> None:
    make_vm(driver, running)
    gcp.clear_requests()
    reply = driver.command("create test-vm-22")
    assert "`test-vm-22` already exists (running)" in reply.text
    assert gcp.requests == []


def test_create_of_a_name_taken_in_gcp_is_refused_without_a_thread(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    gcp.seed_instance(PROJECT, ZONE, "someone-elses", labels={"team": "data"})
    before = gcp.instance(PROJECT, ZONE, "someone-elses")
    reply = driver.command("create someone-elses")
    assert reply.status == 200
    running.settle()

    refusal = slack.responses[-1]
    assert "already exists in project `vmbot-test`" in refusal["text"] and "Pick another name" in refusal["text"]
    assert refusal.get("response_type") == "ephemeral"
    assert slack.calls_to("chat.postMessage") == [], "no thread for a refused create"
    assert gcp.instance(PROJECT, ZONE, "someone-elses") == before
    assert [r.method for r in gcp.requests] == ["GET"]
    vm = running.bot.store.vm("someone-elses")
    assert vm is not None and vm.state is VmState.DELETED and vm.active_operation_id is None
    assert [o.state for o in running.bot.store.operations_for("someone-elses")] == [OperationState.REJECTED]
    assert running.bot.store.list_vms() == []


def test_park_of_a_parked_vm_and_restore_of_a_running_one(driver: SlackDriver, gcp: ComputeStandin, running: Running) -> None:
    make_vm(driver, running)
    reply = driver.command("restore test-vm-22")
    assert "`test-vm-22` is running, so there is nothing to restore. To park it: `/vm park test-vm-22`." in reply.text
    park_vm(driver, running, "test-vm-22")
    gcp.clear_requests()
    reply = driver.command("park test-vm-22")
    assert "`test-vm-22` is already parked. To bring it back: `/vm restore test-vm-22`." in reply.text
    assert reply.blocks is None or not any(b["type"] == "actions" for b in reply.blocks)
    assert gcp.requests == []


def test_park_or_restore_while_an_operation_runs(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    make_vm(driver, running)
    question = driver.command("park test-vm-22")
    gcp.hold_operations()  # the park's stop stays RUNNING in "GCP"
    driver.click("park_confirm", blocks=question.blocks)
    assert slack.wait_for(lambda: any("Stopping" in m.text for root in slack.messages("C100") for m in slack.thread("C100", root.ts)))

    busy = driver.command("park test-vm-22")  # its owner asks again (anyone else is refused first: tests/test_permissions.py)
    assert "`test-vm-22` is busy: <@U100> is running a park on it (see the thread in <#C100>)" in busy.text
    assert "is busy" in driver.command("restore test-vm-22").text
    second_click = driver.click("park_confirm", blocks=question.blocks)
    assert second_click.status == 200
    # The same question clicked again is a repeat, not a second park: it names the park under way.
    assert slack.wait_for(lambda: any("Already on it" in r.get("text", "") for r in slack.responses))

    gcp.release_operations()
    running.settle()
    ops = running.bot.store.operations_for("test-vm-22")
    assert [(o.verb.value, o.state) for o in ops] == [("park", OperationState.SUCCEEDED), ("create", OperationState.SUCCEEDED)]


def test_cancel_says_so_and_does_nothing(driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running) -> None:
    make_vm(driver, running)
    question = driver.command("park test-vm-22")
    gcp.clear_requests()
    reply = driver.click("park_cancel", blocks=question.blocks)
    assert reply.status == 200
    assert slack.wait_for(lambda: any("Cancelled" in r.get("text", "") for r in slack.responses))
    assert slack.responses[-1]["text"] == "Cancelled: `test-vm-22` stays as it is."
    assert slack.responses[-1].get("replace_original") is True
    assert gcp.requests == []
    assert running.bot.store.vm("test-vm-22").state is VmState.RUNNING


def test_a_command_that_says_payload_is_still_a_command(driver: SlackDriver, gcp: ComputeStandin, running: Running) -> None:
    """slack_bolt reads any form with the text "payload" in it as an interaction (bot.web.server.SlackFormHandler)."""
    ack = driver.command("create payload-api")
    assert ack.status == 200 and ack.text.startswith(":rocket: Creating `payload-api`")
    running.settle()
    assert gcp.instance(PROJECT, "us-central1-a", "payload-api")["status"] == "RUNNING"
    question = driver.command("park payload-api")
    assert driver.click("park_confirm", blocks=question.blocks).status == 200, "and a click still is a click"
    running.settle()
    assert running.bot.store.vm("payload-api").state is VmState.PARKED
