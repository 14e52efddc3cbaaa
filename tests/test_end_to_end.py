"""The whole product through its real edges: signed Slack requests in, Slack Web API and
Compute Engine REST calls out (to local stand-ins), SQLite or PostgreSQL underneath.

Reads like a chat transcript: send `/vm ...`, read the ack, press the button, read the thread.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import PROJECT, Running
from standins.compute import ComputeStandin
from standins.slack_api import Message, SlackStandin
from standins.slack_driver import SlackDriver
from storage.models import ImageState, OperationState, VmState

ZONE = "us-central1-a"
CHANNEL = "C100"
STARTUP_SCRIPT = (Path(__file__).parent.parent / "startup-script.py").read_text()


def newest_thread(slack: SlackStandin, channel: str = CHANNEL) -> list[Message]:
    root = slack.messages(channel)[-1]
    return slack.thread(channel, root.ts)


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_create_park_restore_park_again(driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running) -> None:
    store = running.bot.store

    # --- /vm create ---------------------------------------------------------------
    ack = driver.command("create test-vm-22")
    assert ack.status == 200 and ack.in_time
    assert "Creating `test-vm-22`" in ack.text
    running.settle()

    root, *replies = newest_thread(slack)
    assert root.edits == 1, "the thread root is updated in place when the work ends"
    assert root.history[0].text == "Creating test-vm-22 (asked by <@U100>)"
    assert "RUNNING" in root.text or "RUNNING" in str(root.blocks)
    instance = gcp.instance(PROJECT, ZONE, "test-vm-22")
    assert instance is not None and instance["status"] == "RUNNING"
    ip = instance["networkInterfaces"][0]["accessConfigs"][0]["natIP"]
    assert [r.text.split("…")[0] for r in replies[:1]] == ["Creating `test-vm-22` from `projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64`"]
    assert ip in replies[-1].text and f"http://{ip}:8080/" in replies[-1].text
    assert instance["labels"] == {"managed-by": "vmbot", "vmbot-vm": "test-vm-22"}
    metadata = {item["key"]: item["value"] for item in instance["metadata"]["items"]}
    assert metadata["startup-script"] == STARTUP_SCRIPT
    disk = gcp.disk(PROJECT, ZONE, "test-vm-22")
    assert disk is not None and disk["labels"] == {"managed-by": "vmbot", "vmbot-vm": "test-vm-22"}
    vm = store.vm("test-vm-22")
    assert vm is not None and vm.state is VmState.RUNNING and vm.owner == "U100" and vm.external_ip == ip

    # --- /vm park: a question first, then the work --------------------------------
    question = driver.command("park test-vm-22")
    button = next(e for b in question.blocks or [] if b["type"] == "actions" for e in b["elements"] if e["action_id"] == "park_confirm")
    assert button["style"] == "danger" and "deletes the VM" in button["confirm"]["text"]["text"]
    assert gcp.instance(PROJECT, ZONE, "test-vm-22")["status"] == "RUNNING", "asking changes nothing"
    pressed = driver.click("park_confirm", blocks=question.blocks)
    assert pressed.status == 200 and pressed.in_time
    running.settle()

    assert gcp.instance(PROJECT, ZONE, "test-vm-22") is None
    first_images = gcp.images(PROJECT)
    assert len(first_images) == 1
    first = first_images[0]
    assert first["family"] == "test-vm-22" and first["status"] == "READY"
    assert first["sourceDisk"].endswith(f"/zones/{ZONE}/disks/test-vm-22")
    assert first["labels"] == {"managed-by": "vmbot", "vmbot-vm": "test-vm-22"}
    root, *replies = newest_thread(slack)
    steps = [r.text for r in replies]
    assert steps[0].startswith("Stopping `test-vm-22`")
    assert steps[1].startswith("Imaging its boot disk into `" + first["name"])
    assert steps[2].startswith("Image ready. Deleting the VM")
    assert "is parked" in steps[3] and "/vm restore test-vm-22" in steps[3]
    assert store.vm("test-vm-22").state is VmState.PARKED
    assert [(i.name, i.state) for i in store.images("test-vm-22")] == [(first["name"], ImageState.READY)]

    # --- /vm restore --------------------------------------------------------------------
    ack = driver.command("restore test-vm-22")
    assert "Restoring `test-vm-22`" in ack.text
    running.settle()
    instance = gcp.instance(PROJECT, ZONE, "test-vm-22")
    assert instance["status"] == "RUNNING" and instance["machineType"].endswith("/machineTypes/e2-small")
    assert gcp.disk(PROJECT, ZONE, "test-vm-22")["sourceImage"].endswith(f"/global/images/{first['name']}")
    metadata = {item["key"]: item["value"] for item in instance["metadata"]["items"]}
    assert metadata["startup-script"] == STARTUP_SCRIPT, "the restored VM runs the startup script again"
    root, *replies = newest_thread(slack)
    new_ip = instance["networkInterfaces"][0]["accessConfigs"][0]["natIP"]
    assert new_ip in replies[-1].text and "restored" in replies[-1].text

    # --- park again: the first image becomes dirty ------------------------------------------
    question = driver.command("park test-vm-22")
    driver.click("park_confirm", blocks=question.blocks)
    running.settle()
    names = sorted(image["name"] for image in gcp.images(PROJECT))
    assert len(names) == 2
    states = {i.name: i.state for i in store.images("test-vm-22")}
    assert states[first["name"]] is ImageState.DIRTY
    assert [s for n, s in states.items() if n != first["name"]] == [ImageState.READY]
    assert "is now dirty" in newest_thread(slack)[-1].text

    ops = store.operations_for("test-vm-22", limit=10)
    assert [(o.verb.value, o.state) for o in reversed(ops)] == [
        ("create", OperationState.SUCCEEDED),
        ("park", OperationState.SUCCEEDED),
        ("restore", OperationState.SUCCEEDED),
        ("park", OperationState.SUCCEEDED),
    ]
    assert all(o.requested_by == "U100" and o.channel == CHANNEL and o.thread_ts for o in ops)
