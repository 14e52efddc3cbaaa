"""GCP faults, injected in the Compute stand-in: transient ones are retried on every call (the
operation waits included) and the work ends as if nothing happened; permanent ones stop the
operation with GCP's message, a consistent record, and a `retry` button that works."""

from __future__ import annotations

from datetime import timedelta, timezone

import pytest

from bot.core.workflows import image_name_for
from bot.gcp.compute import Compute
from bot.settings import Settings
from conftest import PROJECT, Running, create_vm, park_vm, restore_vm
from durable_support import CHANNEL, ZONE, assert_nothing_orphaned, serve
from standins.compute import ComputeStandin
from standins.slack_api import Message, SlackStandin
from standins.slack_driver import SlackDriver, find_button
from storage.models import ImageState, OperationState, Verb, VmState

QUOTA = "Quota 'CPUS' exceeded.  Limit: 8.0 in region us-central1."


def last_thread(slack: SlackStandin) -> list[Message]:
    root = slack.messages(CHANNEL)[-1]
    return slack.thread(CHANNEL, root.ts)


def press_retry(driver: SlackDriver, slack: SlackStandin, running: Running, user: str = "U100") -> str:
    """Press `retry` on the failed operation's last thread message; return what the presser was told."""
    final = last_thread(slack)[-1]
    reply = driver.click("operation_retry", blocks=final.blocks, user=user, is_ephemeral=False, message_ts=final.ts)
    running.settle()
    url_id = (reply.response_url or "").rsplit("/", 1)[-1]
    assert slack.wait_for(lambda: any(r.get("url_id") == url_id for r in slack.responses))
    return next(r["text"] for r in slack.responses if r.get("url_id") == url_id)


def states(running: Running, name: str = "vm-a") -> list[tuple[Verb, OperationState]]:
    return [(op.verb, op.state) for op in reversed(running.bot.store.operations_for(name, limit=20))]


# ---- transient faults: retried, invisible in the result ---------------------------------------


def test_a_fifth_of_all_calls_failing_with_503_changes_nothing_in_the_outcome(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    gcp.operation_seconds = 0.01  # so every operation is waited for, and the waits fail too
    gcp.fail_randomly(0.2, seed=20, status=503, reason="backendError")
    create_vm(driver, running)
    park_vm(driver, running)
    restore_vm(driver, running)
    park_vm(driver, running)
    gcp.fail_randomly(0)

    failed = [r for r in gcp.requests if r.status == 503]
    assert len(failed) >= 0.1 * len(gcp.requests), "the faults really happened"
    assert all(state is OperationState.SUCCEEDED for _, state in states(running))
    images = running.bot.store.images("vm-a")
    assert [i.state for i in images] == [ImageState.DIRTY, ImageState.READY]
    assert running.bot.store.vm("vm-a").state is VmState.PARKED
    assert_nothing_orphaned(gcp, running.bot.store)


@pytest.mark.parametrize(
    "status,reason",
    [(429, "rateLimitExceeded"), (403, "rateLimitExceeded"), (500, "backendError"), (502, "badGateway"),
     (503, "backendError"), (504, "backendError"), (403, "userRateLimitExceeded")],
)  # fmt: skip
def test_a_burst_of_transient_errors_on_every_kind_of_call_is_ridden_out(
    status: int, reason: str, driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    gcp.operation_seconds = 0.01  # so every operation is waited for
    for method, path in (("GET", r"/instances/vm-a$"), ("POST", r"/instances$"), ("GET", r"/operations$"),
                         ("POST", r"/stop$"), ("POST", r"/global/images$"), ("DELETE", r"/instances/vm-a$")):  # fmt: skip
        gcp.fail_request(method, path, status=status, reason=reason, times=3)
    create_vm(driver, running)
    park_vm(driver, running)
    assert states(running) == [(Verb.CREATE, OperationState.SUCCEEDED), (Verb.PARK, OperationState.SUCCEEDED)]
    assert sum(r.status == status for r in gcp.requests) == 18
    assert_nothing_orphaned(gcp, running.bot.store)


def test_a_transient_error_that_outlasts_the_retry_deadline_fails_cleanly(
    settings: Settings, slack: SlackStandin, gcp: ComputeStandin
) -> None:
    with serve(settings) as (bot, events_url), SlackDriver(events_url, settings.slack_signing_secret, slack) as driver:
        bot.compute.retry = bot.compute.retry.with_timeout(0.3)
        gcp.fail_request("*", r"/instances", status=503, reason="backendError", times=10_000)
        driver.command("create vm-a")
        assert bot.runner.drain(timeout=30) and bot.outbox.drain(timeout=30)
        gcp.clear_faults()
        final = last_thread(slack)[-1]
        assert "Create of `vm-a` failed while checking GCP" in final.text
        assert "still failing after retrying" in final.text
        assert bot.store.vm("vm-a").state is VmState.DELETED and bot.store.vm("vm-a").active_operation_id is None
        find_button(final.blocks, "operation_retry")
        assert_nothing_orphaned(gcp, bot.store)


def test_the_adapter_bounds_every_call_in_time() -> None:
    compute = Compute("p", endpoint="http://127.0.0.1:9", retry_deadline=0.2, retry_initial=0.01)
    from bot.gcp.compute import GceError

    with pytest.raises(GceError, match="did not answer in time"):
        compute.get_instance(ZONE, "vm-a")  # nothing listens there: connection refused, retried, given up


# ---- permanent faults: a clear message, a consistent record, a working retry ------------------


def test_create_refused_for_quota_leaves_nothing_and_retry_creates(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    gcp.fail_operation("POST", r"/instances$", code="QUOTA_EXCEEDED", message=QUOTA)
    create_vm(driver, running)
    final = last_thread(slack)[-1]
    assert final.text == (
        f"Create of `vm-a` failed while creating the instance. GCP said: _{QUOTA}_. `vm-a` does not exist."
    )
    assert running.bot.store.vm("vm-a").state is VmState.DELETED
    assert_nothing_orphaned(gcp, running.bot.store)

    told = press_retry(driver, slack, running, user="U200")
    assert "Retrying the create of `vm-a` as operation #2" in told
    assert states(running) == [(Verb.CREATE, OperationState.FAILED), (Verb.CREATE, OperationState.SUCCEEDED)]
    assert running.bot.store.vm("vm-a").owner == "U200"
    assert "is created" in last_thread(slack)[-1].text
    assert_nothing_orphaned(gcp, running.bot.store)


@pytest.mark.parametrize(
    "method,path,step,leaves,state",
    [
        ("POST", r"/stop$", "stopping the VM", "is still running; nothing was changed", VmState.RUNNING),
        ("POST", r"/global/images$", "imaging its boot disk", "is stopped and still exists; no image was kept", VmState.STOPPED),
        ("DELETE", r"/instances/vm-a$", "deleting the VM", "is stopped and still exists; its image", VmState.STOPPED),
    ],
)  # fmt: skip
def test_each_park_step_failing_once_leaves_a_true_record_and_retry_finishes_the_park(
    method: str, path: str, step: str, leaves: str, state: VmState,
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running,
) -> None:  # fmt: skip
    create_vm(driver, running)
    gcp.fail_operation(method, path, code="QUOTA_EXCEEDED", message=QUOTA)
    park_vm(driver, running)
    final = last_thread(slack)[-1]
    assert f"Parking `vm-a` failed while {step}. GCP said: _{QUOTA}_. `vm-a` {leaves}" in final.text
    assert running.bot.store.vm("vm-a").state is state
    assert running.bot.store.vm("vm-a").active_operation_id is None
    live = gcp.instance(PROJECT, ZONE, "vm-a")
    assert live is not None and live["status"] == ("RUNNING" if state is VmState.RUNNING else "TERMINATED")
    assert_nothing_orphaned(gcp, running.bot.store)

    assert "Retrying the park of `vm-a`" in press_retry(driver, slack, running)
    assert states(running)[-2:] == [(Verb.PARK, OperationState.FAILED), (Verb.PARK, OperationState.SUCCEEDED)]
    assert running.bot.store.vm("vm-a").state is VmState.PARKED and gcp.instance(PROJECT, ZONE, "vm-a") is None
    assert_nothing_orphaned(gcp, running.bot.store)


def test_restore_failing_leaves_the_vm_parked_and_retry_restores(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    create_vm(driver, running)
    park_vm(driver, running)
    gcp.fail_operation("POST", r"/instances$", code="ZONE_RESOURCE_POOL_EXHAUSTED",
                       message="The zone 'us-central1-a' does not have enough resources available.")  # fmt: skip
    restore_vm(driver, running)
    assert "`vm-a` is still parked" in last_thread(slack)[-1].text
    assert running.bot.store.vm("vm-a").state is VmState.PARKED
    assert_nothing_orphaned(gcp, running.bot.store)
    press_retry(driver, slack, running)
    assert running.bot.store.vm("vm-a").state is VmState.RUNNING
    assert_nothing_orphaned(gcp, running.bot.store)


@pytest.mark.parametrize(
    "status,reason,message",
    [
        (403, "forbidden", "Required 'compute.instances.stop' permission for 'projects/vmbot-test/zones/us-central1-a/instances/vm-a'"),
        (403, "quotaExceeded", "Quota exceeded for quota metric 'Queries' and limit 'Queries per day'"),
        (404, "notFound", "The resource 'projects/vmbot-test/zones/us-central1-a/instances/vm-a' was not found"),
        (400, "invalid", "Invalid value for field 'instance': 'vm-a'."),
    ],
)  # fmt: skip
def test_a_permanent_api_error_is_not_retried_and_says_what_gcp_said(
    status: int, reason: str, message: str,
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running,
) -> None:  # fmt: skip
    create_vm(driver, running)
    gcp.fail_request("POST", r"/stop$", status=status, reason=reason, message=message, times=1)
    park_vm(driver, running)
    assert [r.status for r in gcp.requests if r.path.endswith("/stop")] == [status], "asked once, not retried"
    final = last_thread(slack)[-1]
    assert f"Parking `vm-a` failed while stopping the VM. GCP said: _{message}_" in final.text
    if status in (400, 404):  # invalid, not found: the same request can only fail again (issue 16)
        assert not any(b["type"] == "actions" for b in final.blocks) and "tries again" not in final.text
    else:  # a permission or a quota can change: Retry is offered
        find_button(final.blocks, "operation_retry")
    assert running.bot.store.vm("vm-a").state is VmState.RUNNING
    assert_nothing_orphaned(gcp, running.bot.store)


def test_a_vm_that_vanishes_while_its_shape_is_read_is_not_touched(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    """The shape comes from the one instances.get that found the VM; its disk gone (GCP deletes an attached disk
    only with its VM) means the VM went between the two reads."""
    create_vm(driver, running)
    gcp.fail_request("GET", r"/disks/", status=404, reason="notFound", message="The resource 'disk' was not found")
    park_vm(driver, running)
    final = last_thread(slack)[-1]
    assert "Park of `vm-a` failed while checking GCP. GCP said: _the instance `vm-a` vanished while I read it_" in final.text
    assert not [r for r in gcp.requests if r.method != "GET"][1:], "nothing but the create was asked of GCP"
    assert running.bot.store.vm("vm-a").state is VmState.RUNNING
    assert_nothing_orphaned(gcp, running.bot.store)


def test_retry_gets_the_checks_of_a_fresh_request_and_works_once(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    create_vm(driver, running)
    gcp.fail_operation("POST", r"/stop$", code="QUOTA_EXCEEDED", message=QUOTA)
    park_vm(driver, running)
    failed = last_thread(slack)[-1]
    driver.click("park_confirm", blocks=driver.command("park vm-a").blocks)  # parked by hand meanwhile
    running.settle()
    reply = driver.click("operation_retry", blocks=failed.blocks, is_ephemeral=False, message_ts=failed.ts)
    running.settle()
    url_id = (reply.response_url or "").rsplit("/", 1)[-1]
    assert slack.wait_for(lambda: any(r.get("url_id") == url_id for r in slack.responses))
    told = next(r["text"] for r in slack.responses if r.get("url_id") == url_id)
    assert "`vm-a` is already parked" in told
    assert [verb for verb, _ in states(running)] == [Verb.CREATE, Verb.PARK, Verb.PARK]
    assert_nothing_orphaned(gcp, running.bot.store)


def test_retry_by_someone_who_may_not_park_is_refused_and_audited(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    create_vm(driver, running)
    gcp.fail_operation("POST", r"/stop$", code="QUOTA_EXCEEDED", message=QUOTA)
    park_vm(driver, running)
    told = press_retry(driver, slack, running, user="U999")
    assert told == ":warning: Only `vm-a`'s owner <@U100> may park it. Ask them to."
    assert [verb for verb, _ in states(running)] == [Verb.CREATE, Verb.PARK], "no new operation"
    entry = running.bot.store.audit_log(limit=1)[0]
    assert (entry.user_id, entry.kind, entry.verb, entry.verdict.value) == ("U999", "button", "park", "refused")


def test_an_image_of_the_parks_name_made_meanwhile_by_someone_else_is_not_deleted(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    """A fresh park does not look for its image before making it (it found the name free before the stop):
    if someone takes the name meanwhile, GCP refuses the insert (409) and the park fails, keeping their image."""
    create_vm(driver, running)
    question = driver.command("park vm-a")
    gcp.hold_operations()  # the park's stop stays RUNNING in "GCP" while the name is taken
    driver.click("park_confirm", blocks=question.blocks)
    assert slack.wait_for(lambda: any("Stopping" in m.text for m in last_thread(slack)))
    park = running.bot.store.operations_for("vm-a", limit=1)[0]
    began = park.started_at.replace(tzinfo=timezone.utc)
    taken = {image_name_for("vm-a", began + timedelta(minutes=m), park.id) for m in (0, 1)}  # its minute, or the next
    for name in taken:
        gcp.seed_image(PROJECT, name, labels={"owner": "someone-else"})
    gcp.release_operations()
    running.settle()

    final = last_thread(slack)[-1]
    assert "Parking `vm-a` failed while imaging its boot disk" in final.text and "already exists" in final.text
    assert {image["name"] for image in gcp.images(PROJECT)} == taken, "their image is still in GCP, and only it"
    assert [image.state for image in running.bot.store.images("vm-a")] == [ImageState.FAILED]
    assert running.bot.store.vm("vm-a").state is VmState.STOPPED
