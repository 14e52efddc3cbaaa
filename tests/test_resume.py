"""Resuming what a dead process left half-done, in-process and fast: each test writes the store and
GCP exactly as a bot killed at one point of a park or restore leaves them (its lease run out), then
starts a fresh bot on them. The real SIGKILL of a real `python -m bot` is in test_kill.py."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from google.cloud import compute_v1

from bot.gcp.compute import Compute, instance_resource, new_request_id
from bot.core.lifecycle import ALLOWED_FROM
from bot.settings import Settings, SettingsError
from bot.core.workflows import labels_for
from conftest import PROJECT, Running, fast_compute
from durable_support import CHANNEL, ZONE, assert_nothing_orphaned, gcp_operations, held, mutations, thread_of
from standins.compute import ComputeStandin
from standins.slack_api import SlackStandin
from standins.slack_driver import SlackDriver
from storage.models import ImageState, Operation, OperationState, Verb, VmState
from storage.store import Store


@dataclass
class DeadBot:
    """What a killed bot process leaves: its store rows (under its own, expired lease) and GCP calls."""

    store: Store
    compute: Compute
    running: Running

    def began(self, verb: Verb, name: str) -> Operation:
        op = self.store.begin(verb, name, allowed_from=ALLOWED_FROM[verb], requested_by="U100", zone=ZONE,
                              machine_type="e2-small", channel=CHANNEL)  # fmt: skip
        self.store.mark_running(op.id)
        root = self.running.bot.client.chat_postMessage(channel=CHANNEL, text=f"{verb.value} {name} (asked by <@U100>)")
        self.store.set_thread(op.id, CHANNEL, root["ts"])
        return op

    def step(self, op: Operation, name: str, call, *, recorded: bool = True) -> str:  # type: ignore[no-untyped-def]
        """Start a step as the workflow does: record it with a requestId, call GCP, maybe record the
        operation name (``recorded=False``: killed in between). Returns the GCP operation's name."""
        request_id = new_request_id()
        step_id = self.store.step_started(op.id, name, request_id=request_id)
        gcp_operation = call(request_id).name
        if recorded:
            self.store.step_gcp_operation(step_id, gcp_operation)
        return gcp_operation

    def stop(self, op: Operation, name: str, **kwargs: bool) -> str:
        instances = self.compute.instances
        return self.step(op, "stop", lambda rid: instances.stop(request=compute_v1.StopInstanceRequest(
            project=PROJECT, zone=ZONE, instance=name, request_id=rid)), **kwargs)

    def done(self, gcp_operation: str, *, zone: str | None = ZONE) -> None:
        self.compute.attach(gcp_operation, zone=zone).wait()


@pytest.fixture
def dead(running: Running) -> Iterator[DeadBot]:
    store = Store.from_url(running.bot.settings.database_url, owner="dead-host:4242:cafebabe")
    store.lease_seconds = 0  # it died: its leases have run out
    yield DeadBot(store, fast_compute(running.bot.settings), running)
    store.engine.dispose()


def created(driver: SlackDriver, running: Running, name: str = "vm-a") -> None:
    driver.command(f"create {name}")
    running.settle()


def restart(running: Running) -> None:
    """The restarted process: VmBot.start() as `python -m bot` calls it, then let the work end."""
    running.bot.start()
    running.settle()


def result_of(running: Running, slack: SlackStandin, op: Operation) -> list[str]:
    final = running.bot.store.operation(op.id)
    assert final is not None
    return [message.text for message in thread_of(slack, final)[1:]]


def test_a_stop_still_running_is_re_attached_by_name_not_sent_again(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running, dead: DeadBot
) -> None:
    created(driver, running)
    op = dead.began(Verb.PARK, "vm-a")
    with held(gcp):
        dead.stop(op, "vm-a")
        running.bot.start()
        assert slack.wait_for(lambda: any("Stopping" in m.text for m in slack.thread(CHANNEL, op_thread(dead, op))))
        assert gcp.instance(PROJECT, ZONE, "vm-a")["status"] == "STOPPING"
    running.settle()

    replies = result_of(running, slack, op)
    assert replies[0] == ":arrows_counterclockwise: Resumed after restart: carrying on from stopping the VM."
    assert "is parked" in replies[-1]
    assert len(mutations(gcp, "POST", "/instances/vm-a/stop")) == 1, "the stop was not sent again"
    assert running.bot.store.operation(op.id).state is OperationState.SUCCEEDED
    assert running.bot.store.vm("vm-a").state is VmState.PARKED
    assert_nothing_orphaned(gcp, running.bot.store)


def test_a_stop_sent_but_not_recorded_is_repeated_with_its_request_id_and_acts_once(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running, dead: DeadBot
) -> None:
    created(driver, running)
    op = dead.began(Verb.PARK, "vm-a")
    with held(gcp):
        dead.stop(op, "vm-a", recorded=False)  # killed before writing down the operation's name
        running.bot.start()
        assert slack.wait_for(lambda: any("Stopping" in m.text for m in slack.thread(CHANNEL, op_thread(dead, op))))
    running.settle()

    sent = mutations(gcp, "POST", "/instances/vm-a/stop")
    assert len(sent) == 2 and sent[0] == sent[1], "the same requestId went again"
    assert len(gcp_operations(gcp, "stop", "/instances/vm-a")) == 1, "GCP acted once"
    assert running.bot.store.vm("vm-a").state is VmState.PARKED
    assert_nothing_orphaned(gcp, running.bot.store)


def test_an_image_already_ready_in_gcp_is_recorded_not_made_again(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running, dead: DeadBot
) -> None:
    created(driver, running)
    op = dead.began(Verb.PARK, "vm-a")
    dead.done(dead.stop(op, "vm-a"))
    dead.store.step_finished(dead.store.operation(op.id).steps[-1].id)
    dead.store.add_image("vm-a", "vm-a-dead-1", "vm-a", op_id=op.id)
    boot_disk = gcp.instance(PROJECT, ZONE, "vm-a")["disks"][0]["source"]
    images = dead.compute.images
    image = compute_v1.Image(name="vm-a-dead-1", family="vm-a", source_disk=boot_disk, labels=labels_for("vm-a"))
    image_op = dead.step(op, "image", lambda rid: images.insert(request=compute_v1.InsertImageRequest(
        project=PROJECT, image_resource=image, request_id=rid)))  # fmt: skip
    dead.done(image_op, zone=None)  # READY in GCP; the dead bot never recorded it
    restart(running)

    assert len(mutations(gcp, "POST", "/global/images")) == 1, "no second image"
    assert [(i.name, i.state) for i in running.bot.store.images("vm-a")] == [("vm-a-dead-1", ImageState.READY)]
    assert running.bot.store.vm("vm-a").state is VmState.PARKED and gcp.instance(PROJECT, ZONE, "vm-a") is None
    assert "parked as image `vm-a-dead-1`" in str(slack.message(CHANNEL, op_thread(dead, op)).blocks)
    assert_nothing_orphaned(gcp, running.bot.store)


def test_a_vm_already_deleted_is_a_finished_delete(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running, dead: DeadBot
) -> None:
    created(driver, running)
    op = dead.began(Verb.PARK, "vm-a")
    dead.done(dead.stop(op, "vm-a"))
    boot_disk = gcp.instance(PROJECT, ZONE, "vm-a")["disks"][0]["source"]
    dead.store.add_image("vm-a", "vm-a-dead-1", "vm-a", op_id=op.id)
    dead.compute.create_image("vm-a-dead-1", family="vm-a", source_disk=boot_disk, labels=labels_for("vm-a")).wait()
    dead.store.image_ready("vm-a-dead-1", disk_size_gb=10, archive_size_bytes=1)
    instances = dead.compute.instances
    dead.done(dead.step(op, "delete", lambda rid: instances.delete(request=compute_v1.DeleteInstanceRequest(
        project=PROJECT, zone=ZONE, instance="vm-a", request_id=rid))))
    restart(running)

    assert len(mutations(gcp, "DELETE", "/instances/vm-a")) == 1, "no second delete"
    assert running.bot.store.operation(op.id).state is OperationState.SUCCEEDED
    assert running.bot.store.vm("vm-a").state is VmState.PARKED
    assert "is parked" in result_of(running, slack, op)[-1]
    assert_nothing_orphaned(gcp, running.bot.store)


def test_a_restore_insert_still_running_is_re_attached(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running, dead: DeadBot
) -> None:
    created(driver, running)
    driver.click("park_confirm", blocks=driver.command("park vm-a").blocks)
    running.settle()
    image = running.bot.store.newest_image("vm-a")
    op = dead.began(Verb.RESTORE, "vm-a")
    spec = running.bot.workflows._spec("vm-a", ZONE, "e2-small", f"projects/{PROJECT}/global/images/{image.name}")
    instances = dead.compute.instances
    with held(gcp):
        dead.step(op, "create", lambda rid: instances.insert(request=compute_v1.InsertInstanceRequest(
            project=PROJECT, zone=ZONE, instance_resource=instance_resource(spec), request_id=rid)))  # fmt: skip
        running.bot.start()
        assert slack.wait_for(lambda: any("Creating" in m.text for m in slack.thread(CHANNEL, op_thread(dead, op))))
        assert gcp.instance(PROJECT, ZONE, "vm-a")["status"] == "PROVISIONING"
    running.settle()

    assert len(gcp_operations(gcp, "insert", "/instances/vm-a")) == 2, "one create, one restore: no third"
    assert running.bot.store.vm("vm-a").state is VmState.RUNNING
    ip = gcp.instance(PROJECT, ZONE, "vm-a")["networkInterfaces"][0]["accessConfigs"][0]["natIP"]
    assert ip in result_of(running, slack, op)[-1]
    assert_nothing_orphaned(gcp, running.bot.store)


def test_an_operation_a_live_process_holds_is_left_to_it_until_its_lease_runs_out(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running, dead: DeadBot
) -> None:
    created(driver, running)
    dead.store.lease_seconds = 3600  # alive and renewing
    op = dead.began(Verb.PARK, "vm-a")
    assert running.bot.resumer.resume_unfinished() == []
    assert running.bot.store.claim_operation(op.id) is None
    dead.store.lease_seconds = 0
    dead.store.renew_leases()  # its last renewal; then it died
    assert running.bot.resumer.resume_unfinished() == [op.id]
    running.settle()
    assert running.bot.store.vm("vm-a").state is VmState.PARKED
    assert_nothing_orphaned(gcp, running.bot.store)


def op_thread(dead: DeadBot, op: Operation) -> str:
    ts = dead.store.operation(op.id).thread_ts
    assert ts
    return ts


def test_one_process_at_a_time_holds_an_operation_on_either_database(any_database_url: str) -> None:
    alive = Store.from_url(any_database_url, owner="host-a:1:aaaa")
    other = Store.from_url(any_database_url, owner="host-b:2:bbbb")
    op = alive.begin(Verb.CREATE, "vm-a", allowed_from=ALLOWED_FROM[Verb.CREATE], requested_by="U1", zone=ZONE,
                     machine_type="e2-small")  # fmt: skip
    assert other.claim_operation(op.id) is None, "leased to its creator"
    assert alive.claim_operation(op.id) is not None and alive.renew_leases() == 1
    alive.lease_seconds = 0
    alive.renew_leases()  # the last renewal before it died
    taken = other.claim_operation(op.id)
    assert taken is not None and taken.lease_owner == "host-b:2:bbbb"
    assert alive.claim_operation(op.id) is None, "the old owner cannot take it back while the new one lives"
    other.finish(op.id, OperationState.SUCCEEDED, vm_values={"state": VmState.RUNNING})
    assert other.claim_operation(op.id) is None, "a finished operation is nobody's"
    alive.engine.dispose()
    other.engine.dispose()


def test_lease_and_reconcile_settings_from_the_environment() -> None:
    base = {"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": "y", "GOOGLE_CLOUD_PROJECT": "p"}
    defaults = Settings.from_env(base)
    assert (defaults.operation_lease, defaults.reconcile_interval) == (60, 600)
    custom = Settings.from_env({**base, "VMBOT_OPERATION_LEASE": "0.5", "VMBOT_RECONCILE_INTERVAL": "120"})
    assert (custom.operation_lease, custom.reconcile_interval) == (0.5, 120)
    with pytest.raises(SettingsError) as error:
        Settings.from_env({**base, "VMBOT_OPERATION_LEASE": "0", "VMBOT_RECONCILE_INTERVAL": "hourly"})
    assert error.value.problems == [
        "VMBOT_OPERATION_LEASE='0' must be greater than 0; see README > Configuration",
        "VMBOT_RECONCILE_INTERVAL='hourly' is not a number; see README > Configuration",
    ]


class Died(BaseException):
    """The process dies here (BaseException: nothing on the way catches it)."""


def test_a_result_recorded_but_never_posted_is_posted_after_a_restart_once(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.slack.threads import SlackThread

    def dies(self: SlackThread, **_: object) -> None:
        raise Died

    with monkeypatch.context() as patched:
        patched.setattr(SlackThread, "finished", dies)
        driver.command("create vm-a")
        running.settle(timeout=30)  # the job dies at its result; the thread root it posted is in Slack
    op = running.bot.store.operations_for("vm-a")[0]
    assert op.state is OperationState.SUCCEEDED and op.reported_at is None
    replies = [m.text for m in thread_of(slack, op)[1:]]
    assert not any("is created" in text for text in replies), "it died before saying so"

    restart(running)

    replies = [m.text for m in thread_of(slack, op)[1:]]
    assert replies[-2] == ":arrows_counterclockwise: Resumed after restart: the work had ended. Its result:"
    assert "`vm-a` is created" in replies[-1]
    assert slack.messages(CHANNEL)[-1].text == "Create vm-a: done"
    assert running.bot.store.operation(op.id).reported_at is not None
    assert running.bot.resumer.report_unreported() == [], "posted once"


def test_results_posted_as_they_ended_are_not_posted_again(
    driver: SlackDriver, slack: SlackStandin, running: Running
) -> None:
    created(driver, running)
    before = len(slack.calls)
    restart(running)
    assert running.bot.resumer.report_unreported() == []
    assert [c.method for c in slack.calls[before:] if c.method.startswith("chat.")] == []
