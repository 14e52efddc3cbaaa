"""`/vm park NAME [image=IMAGE] [family=FAMILY]` in Slack: the options ride on the confirm button,
are checked before any GCP call, and a taken image name is refused before the VM is touched."""

from __future__ import annotations

from collections.abc import Callable

from bot.slack.blocks import read_button_value
from conftest import PROJECT, Running
from standins.compute import ComputeStandin
from standins.slack_api import SlackStandin
from standins.slack_driver import SlackDriver, find_button
from storage.models import OperationState, VmState

ZONE = "us-central1-a"


def confirm(driver: SlackDriver, slack: SlackStandin, running: Running, blocks: list, seen: Callable[[], bool]) -> None:
    """Press park_confirm and wait for the park to end.

    Bolt answers the click (ack) before the listener hands the job to the runner,
    so first wait for a sign of the job (``seen``), then drain the runner.
    """
    assert driver.click("park_confirm", blocks=blocks).status == 200
    assert slack.wait_for(seen, timeout=30)
    running.settle()


def gcp_mutations(gcp: ComputeStandin) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in gcp.requests if r.method != "GET" and not r.path.endswith("/wait")]


def test_park_with_an_image_name_and_family(driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running) -> None:
    driver.command("create test-vm-22")
    running.settle()

    question = driver.command("park test-vm-22 image=image-224 family=segmind-fam")
    _, button = find_button(question.blocks or [], "park_confirm")
    assert read_button_value(button["value"]) == ("test-vm-22 image=image-224 family=segmind-fam", "U100")
    assert "as image `image-224` into image family `segmind-fam`" in button["confirm"]["text"]["text"]
    assert driver.click("park_cancel", blocks=question.blocks).status == 200
    assert slack.wait_for(lambda: any(r.get("text") == "Cancelled: `test-vm-22` stays as it is." for r in slack.responses))
    assert gcp.instance(PROJECT, ZONE, "test-vm-22")["status"] == "RUNNING"

    question = driver.command("park test-vm-22 image=image-224 family=segmind-fam")
    threads = len(slack.messages("C100"))
    confirm(driver, slack, running, question.blocks, lambda: len(slack.messages("C100")) > threads)
    image = gcp.image(PROJECT, "image-224")
    assert image["family"] == "segmind-fam" and image["status"] == "READY"
    root, *replies = slack.thread("C100", slack.messages("C100")[-1].ts)
    assert replies[1].text.startswith("Imaging its boot disk into `image-224` (family `segmind-fam`)")
    assert running.bot.store.operations_for("test-vm-22")[0].params == {"image": "image-224", "family": "segmind-fam"}

    # the same image name again: refused at once from the store, nothing asked
    driver.command("restore test-vm-22")
    running.settle()
    before = gcp_mutations(gcp)
    again = driver.command("park test-vm-22 image=image-224")
    assert "An image named `image-224` is already in my records (made for `test-vm-22`, now ready)" in again.text
    assert again.blocks is None or not any(b["type"] == "actions" for b in again.blocks)
    bad = driver.command("park test-vm-22 image=Image_224")
    assert "`Image_224` is not a valid image name" in bad.text
    assert gcp_mutations(gcp) == before
    assert running.bot.store.vm("test-vm-22").state is VmState.RUNNING


def test_an_image_name_taken_in_gcp_is_refused_before_stopping(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    driver.command("create test-vm-22")
    running.settle()
    gcp.seed_image(PROJECT, "taken-image", family="other")
    before = gcp_mutations(gcp)

    question = driver.command("park test-vm-22 image=taken-image")
    confirm(driver, slack, running, question.blocks, lambda: any("already exists" in r.get("text", "") for r in slack.responses))

    refusal = next(r for r in slack.responses if "already exists" in r.get("text", ""))
    assert refusal["response_type"] == "ephemeral"
    assert "An image named `taken-image` already exists in project `vmbot-test`" in refusal["text"]
    assert gcp_mutations(gcp) == before, "the VM was not stopped"
    assert gcp.instance(PROJECT, ZONE, "test-vm-22")["status"] == "RUNNING"
    vm = running.bot.store.vm("test-vm-22")
    assert vm.state is VmState.RUNNING and vm.active_operation_id is None
    assert running.bot.store.operations_for("test-vm-22")[0].state is OperationState.REJECTED
    assert running.bot.store.images("test-vm-22") == [], "no image was recorded"
