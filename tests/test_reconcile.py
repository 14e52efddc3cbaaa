"""Reconcile: people change things in the Cloud console; the store follows GCP (found by our labels),
says what it found on the VM's record, and `/vm status NAME` shows it."""

from __future__ import annotations

from dataclasses import replace

from bot.app import create_app
from bot.gcp.compute import Compute
from bot.jobs.reconcile import Reconciler, reconcile_job
from bot.settings import Settings
from bot.core.workflows import labels_for
from conftest import PROJECT, Running, fast_compute
from durable_support import ZONE, assert_nothing_orphaned, held
from standins.compute import ComputeStandin
from standins.slack_api import SlackStandin
from standins.slack_driver import SlackDriver
from storage.models import ImageState, VmState


def outside(running: Running) -> Compute:
    """Someone in the Cloud console, with the same powers as the bot."""
    return fast_compute(running.bot.settings)


def make(driver: SlackDriver, running: Running, name: str, *, parked: bool = False, restored: bool = False) -> None:
    driver.command(f"create {name}")
    running.settle()
    if parked or restored:
        driver.click("park_confirm", blocks=driver.command(f"park {name}").blocks)
        running.settle()
    if restored:
        driver.command(f"restore {name}")
        running.settle()


def test_reconcile_at_start_up_fixes_every_kind_of_drift_and_orphans_nothing(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    make(driver, running, "gone-vm")  # running, no image: deleted outside
    make(driver, running, "gone-parkable", restored=True)  # running with an image: deleted outside
    make(driver, running, "stopped-vm")  # stopped in the console
    make(driver, running, "image-gone", parked=True)  # its only image deleted in the console
    make(driver, running, "woken-vm", parked=True)  # parked, then an instance made in the console
    console = outside(running)
    console.delete_instance(ZONE, "gone-vm").wait()
    console.delete_instance(ZONE, "gone-parkable").wait()
    console.stop_instance(ZONE, "stopped-vm").wait()
    console.delete_image(running.bot.store.newest_image("image-gone").name).wait()
    gcp.seed_instance(PROJECT, ZONE, "woken-vm", labels=labels_for("woken-vm"))
    gcp.seed_instance(PROJECT, "us-east1-b", "hand-made", labels=labels_for("hand-made"), machine_type="e2-medium")
    gcp.seed_image(PROJECT, "hand-made-image", family="hand-made", labels=labels_for("hand-made"))
    gcp.seed_instance(PROJECT, ZONE, "not-ours", labels={"team": "data"})

    running.bot.start()
    running.settle()

    store = running.bot.store
    assert {s.vm.name: s.vm.state for s in store.list_vms(include_deleted=True)} == {
        "gone-vm": VmState.DELETED,
        "gone-parkable": VmState.PARKED,
        "stopped-vm": VmState.STOPPED,
        "image-gone": VmState.PARKED,
        "woken-vm": VmState.RUNNING,
        "hand-made": VmState.RUNNING,
    }
    assert [i.state for i in store.images("image-gone")] == [ImageState.DELETED]
    assert store.images("image-gone")[0].deleted_by == "outside vmbot"
    assert [(i.name, i.state) for i in store.images("hand-made")] == [("hand-made-image", ImageState.READY)]
    hand_made = store.vm("hand-made")
    assert (hand_made.zone, hand_made.machine_type, hand_made.owner) == ("us-east1-b", "e2-medium", "unknown")
    assert "deleted outside vmbot and has no image" in store.vm("gone-vm").drift
    assert "recorded it as parked" in store.vm("gone-parkable").drift
    assert "stopped outside vmbot" in store.vm("stopped-vm").drift
    assert store.vm("not-ours") is None, "an instance without our labels is none of our business"
    gcp.instance(PROJECT, ZONE, "not-ours")  # still there, untouched
    # With the not-ours instance (and its disk) set aside, the store and GCP agree.
    console.delete_instance(ZONE, "not-ours").wait()
    assert_nothing_orphaned(gcp, store)

    assert Reconciler(store, running.bot.compute).run() == [], "a second pass finds nothing more"


def test_a_vm_an_operation_holds_is_left_to_the_operation(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    make(driver, running, "vm-a")
    question = driver.command("park vm-a")
    with held(gcp):
        driver.click("park_confirm", blocks=question.blocks)
        assert running.bot.store.vm("vm-a").active_operation_id is not None
        assert Reconciler(running.bot.store, running.bot.compute).run() == []
        assert running.bot.store.vm("vm-a").state is VmState.RUNNING
    running.settle()
    assert running.bot.store.vm("vm-a").state is VmState.PARKED
    assert_nothing_orphaned(gcp, running.bot.store)


def test_vm_status_shows_the_drift_found_and_the_drift_now(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    make(driver, running, "vm-a")
    outside(running).stop_instance(ZONE, "vm-a").wait()
    driver.command("status vm-a")
    running.settle()
    now = slack.responses[-1]["text"]
    assert "vm-a: running, GCP: TERMINATED" == now
    shown = str(slack.responses[-1]["blocks"])
    assert "Drift now: my record says running, but GCP says TERMINATED" in shown

    Reconciler(running.bot.store, running.bot.compute).run()
    driver.command("status vm-a")
    running.settle()
    shown = str(slack.responses[-1]["blocks"])
    assert "Drift now" not in shown
    assert "Reconcile found just now: `vm-a` was stopped outside vmbot (TERMINATED); recorded it as stopped" in shown


def test_reconcile_runs_periodically_on_the_scheduler(settings: Settings) -> None:
    bot = create_app(replace(settings, reconcile_interval=321), compute=fast_compute(settings))
    job = {job.id: job for job in bot.scheduler.jobs()}["reconcile"]
    assert job.func is reconcile_job and job.trigger.interval.total_seconds() == 321
    bot.shutdown()
