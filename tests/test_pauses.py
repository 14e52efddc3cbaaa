"""`/vm stop|start|suspend|resume NAME`: the lighter pauses beside park, against the Compute stand-in.
Read like a chat transcript: stop and suspend ask first, start and resume do not."""

from __future__ import annotations

from dataclasses import replace

import pytest

from google.cloud import compute_v1

from bot.core.lifecycle import ALLOWED_FROM
from bot.gcp.compute import GceError, GceNotFound, new_request_id
from bot.settings import Settings
from conftest import PROJECT, Running, create_vm, fast_compute
from durable_support import mutations
from standins.compute import ComputeStandin
from standins.slack_api import SlackStandin
from standins.slack_driver import Reply, SlackDriver
from storage.models import AuditEntry, OperationState, Verb, VmState
from storage.store import Store

ZONE = "us-central1-a"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, admins=frozenset({"UADMIN"}))


def buttons(reply: Reply) -> list[str]:
    return [e["action_id"] for b in reply.blocks or [] if b["type"] == "actions" for e in b["elements"]]


def last_reply(slack: SlackStandin, channel: str = "C100") -> str:
    root = slack.messages(channel)[-1]
    return slack.thread(channel, root.ts)[-1].text


def test_stop_asks_first_then_start_brings_it_back(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    create_vm(driver, running)
    question = driver.command("stop vm-a")
    assert buttons(question) == ["stop_confirm", "stop_cancel"]
    assert "keeps its disk" in str(question.blocks)
    assert gcp.instance(PROJECT, ZONE, "vm-a")["status"] == "RUNNING", "asking changes nothing"

    driver.click("stop_confirm", blocks=question.blocks)
    running.settle()
    assert gcp.instance(PROJECT, ZONE, "vm-a")["status"] == "TERMINATED"
    vm = running.bot.store.vm("vm-a")
    assert vm.state is VmState.STOPPED and vm.external_ip is None and vm.active_operation_id is None
    assert slack.messages("C100")[-1].text == "Stop vm-a: done"
    assert "`/vm start vm-a` brings it back" in last_reply(slack)

    assert "wrong" not in driver.command("start vm-a").text
    running.settle()
    assert gcp.instance(PROJECT, ZONE, "vm-a")["status"] == "RUNNING"
    vm = running.bot.store.vm("vm-a")
    assert vm.state is VmState.RUNNING and vm.external_ip
    ops = running.bot.store.operations_for("vm-a")
    assert [(op.verb, op.state) for op in ops[:2]] == [(Verb.START, OperationState.SUCCEEDED),
                                                      (Verb.STOP, OperationState.SUCCEEDED)]
    verbs = [path.rsplit("/", 1)[-1] for path in (r.path for r in gcp.requests) if path.endswith(("/stop", "/start"))]
    assert verbs == ["stop", "start"]


def test_suspend_and_resume(driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running) -> None:
    create_vm(driver, running)
    question = driver.command("suspend vm-a")
    assert buttons(question) == ["suspend_confirm", "suspend_cancel"]
    driver.click("suspend_confirm", blocks=question.blocks)
    running.settle()
    assert gcp.instance(PROJECT, ZONE, "vm-a")["status"] == "SUSPENDED"
    assert running.bot.store.vm("vm-a").state is VmState.SUSPENDED
    assert ":zzz: suspended" in str(driver.command("list").blocks)

    refused = driver.command("start vm-a")
    assert "suspended" in refused.text and "resume" in refused.text.lower()
    driver.command("resume vm-a")
    running.settle()
    assert gcp.instance(PROJECT, ZONE, "vm-a")["status"] == "RUNNING"
    assert running.bot.store.vm("vm-a").state is VmState.RUNNING


def test_gcp_refusing_suspend_for_gpus_is_said_and_the_vm_stays_running(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    gpu = {"guestAccelerators": [{"acceleratorType": f"zones/{ZONE}/acceleratorTypes/nvidia-tesla-t4",
                                  "acceleratorCount": 1}], "scheduling": {"onHostMaintenance": "TERMINATE"}}
    gcp.seed_instance(PROJECT, ZONE, "gpu-vm", fields=gpu, labels={"managed-by": "vmbot", "vmbot-vm": "gpu-vm"})
    store = running.bot.store
    store.adopt_vm("gpu-vm", zone=ZONE, machine_type="e2-small", state=VmState.RUNNING, external_ip=None,
                   drift="seeded")
    store.update_vm("gpu-vm", owner="U100")
    driver.click("suspend_confirm", blocks=driver.command("suspend gpu-vm").blocks)
    running.settle()
    assert gcp.instance(PROJECT, ZONE, "gpu-vm")["status"] == "RUNNING"
    assert store.vm("gpu-vm").state is VmState.RUNNING
    reply = last_reply(slack)
    assert "failed while suspending the VM" in reply and "GPUs" in reply and "is still running" in reply


def test_only_the_owner_or_an_admin_may_stop(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    create_vm(driver, running)
    refused = driver.command("stop vm-a", user="U999")
    assert "<@U100>" in refused.text and buttons(refused) == []
    question = driver.command("stop vm-a", user="UADMIN")
    assert buttons(question) == ["stop_confirm", "stop_cancel"]
    bystander = driver.click("stop_confirm", blocks=question.blocks, user="U999")
    assert bystander.status == 200
    running.settle()
    assert gcp.instance(PROJECT, ZONE, "vm-a")["status"] == "RUNNING"
    with running.bot.store.sessions() as s:
        verdicts = [(e.verb, e.verdict.value) for e in s.query(AuditEntry).order_by(AuditEntry.id)]
    assert ("stop", "refused") in verdicts and ("stop", "allowed") in verdicts


def test_a_suspend_a_dead_process_sent_is_re_attached_by_name_not_sent_again(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    create_vm(driver, running)
    dead = Store.from_url(running.bot.settings.database_url, owner="dead-host:4242:cafebabe")
    dead.lease_seconds = 0  # it died: its lease has run out
    op = dead.begin(Verb.SUSPEND, "vm-a", allowed_from=ALLOWED_FROM[Verb.SUSPEND], requested_by="U100", zone=ZONE,
                    machine_type="e2-small", channel="C100")  # fmt: skip
    dead.mark_running(op.id)
    request_id = new_request_id()
    step = dead.step_started(op.id, "suspend", request_id=request_id)
    request = compute_v1.SuspendInstanceRequest(project=PROJECT, zone=ZONE, instance="vm-a", request_id=request_id)
    dead.step_gcp_operation(step, fast_compute(running.bot.settings).instances.suspend(request=request).name)
    running.bot.start()
    running.settle()
    assert len(mutations(gcp, "POST", "/instances/vm-a/suspend")) == 1, "not sent again"
    assert gcp.instance(PROJECT, ZONE, "vm-a")["status"] == "SUSPENDED"
    assert running.bot.store.vm("vm-a").state is VmState.SUSPENDED
    assert running.bot.store.operation(op.id).state is OperationState.SUCCEEDED
    dead.engine.dispose()


def test_the_adapter_raises_gcps_refusals(running: Running, gcp: ComputeStandin) -> None:
    compute = fast_compute(running.bot.settings)
    gcp.seed_instance(PROJECT, ZONE, "sleepy", status="SUSPENDED")
    with pytest.raises(GceError, match="not ready"):
        compute.start_instance(ZONE, "sleepy").wait()  # a suspended VM comes back with resume
    with pytest.raises(GceNotFound):
        compute.suspend_instance(ZONE, "no-such-vm").wait()
    compute.resume_instance(ZONE, "sleepy").wait()
    assert gcp.instance(PROJECT, ZONE, "sleepy")["status"] == "RUNNING"
    gcp.seed_instance(PROJECT, ZONE, "halted", status="TERMINATED")
    with pytest.raises(GceError, match="not ready"):
        compute.suspend_instance(ZONE, "halted").wait()
    compute.start_instance(ZONE, "halted").wait()
    assert gcp.instance(PROJECT, ZONE, "halted")["status"] == "RUNNING"
