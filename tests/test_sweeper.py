"""The dirty-image sweeper as plain Python: the real Store, the production Compute adapter
talking to the Compute stand-in over HTTP, and time moved forward by passing ``now``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.gcp.compute import Compute
from bot.core.lifecycle import ALLOWED_FROM
from bot.jobs.sweeper import GRACE, PARKED_NEWEST, RESTORING, RETENTION, SWEEP_LEASE, UNLABELLED, Sweeper
from bot.core.workflows import labels_for
from conftest import PROJECT
from standins.compute import ComputeStandin
from storage.models import Image, ImageState, Lease, OperationState, Sweep, Verb, VmState, utcnow
from storage.store import Store

ZONE = "us-central1-a"
DAY = timedelta(days=1)


@pytest.fixture
def store(database_url: str) -> Store:
    return Store.from_url(database_url)


@pytest.fixture
def compute(gcp: ComputeStandin) -> Compute:
    # Retries are the adapter's business; keep their back-off short and give up quickly.
    return Compute(PROJECT, endpoint=gcp.url, retry_initial=0.01, retry_deadline=0.2)


def add_vm(store: Store, name: str, state: VmState = VmState.PARKED) -> None:
    op = store.begin(
        Verb.CREATE, name, allowed_from=ALLOWED_FROM[Verb.CREATE], requested_by="U1", zone=ZONE, machine_type="e2-small"
    )
    store.finish(op.id, OperationState.SUCCEEDED, vm_values={"state": state})


def add_images(
    store: Store, gcp: ComputeStandin | None, vm: str, count: int, *, labels: dict[str, str] | None = None
) -> list[str]:
    """``count`` parks' worth of images for ``vm``, oldest first: all but the newest end up dirty."""
    names = []
    for i in range(count):
        name = f"{vm}-image-{i}"
        store.add_image(vm, name, vm, op_id=None)
        store.image_ready(name, disk_size_gb=10, archive_size_bytes=2**30)
        if gcp is not None:
            gcp.seed_image(PROJECT, name, family=vm, labels=labels_for(vm) if labels is None else labels)
        names.append(name)
    return names


def states(store: Store, vm: str) -> dict[str, ImageState]:
    return {image.name: image.state for image in store.images(vm)}


def deletes(gcp: ComputeStandin) -> list[str]:
    """Image names the stand-in got a DELETE for (successful or not)."""
    return [r.path.rsplit("/", 1)[-1] for r in gcp.requests if r.method == "DELETE" and "/global/images/" in r.path]


def in_gcp(gcp: ComputeStandin) -> set[str]:
    return {image["name"] for image in gcp.images(PROJECT)}


def test_a_dirty_image_waits_out_its_grace_then_goes_and_its_row_stays(store: Store, gcp: ComputeStandin, compute: Compute) -> None:
    add_vm(store, "vm-a")
    old, new = add_images(store, gcp, "vm-a", 2)
    assert states(store, "vm-a") == {old: ImageState.DIRTY, new: ImageState.READY}
    sweeper = Sweeper(store, compute, keep=1, grace=DAY.total_seconds())

    early = sweeper.sweep(now=utcnow() + DAY / 2)
    assert early.deleted.count == 0 and early.kept[GRACE].count == 1 and early.kept[GRACE].samples[0][0] == old
    assert early.next_eligible is not None and deletes(gcp) == []

    report = sweeper.sweep(now=utcnow() + DAY + timedelta(seconds=1))
    assert report.skipped is None and report.stopped is None
    assert report.deleted.samples == [(old, "vm-a")] and report.failed.count == 0
    assert report.freed_bytes == 10 * 310_000_000, "GCP's archive size of the image"
    assert deletes(gcp) == [old] and in_gcp(gcp) >= {new} and old not in in_gcp(gcp)
    row = next(image for image in store.images("vm-a") if image.name == old)
    assert row.state is ImageState.DELETED and row.deleted_at is not None
    assert row.deleted_by_sweep_id == report.sweep_id and row.deleted_by == f"sweep #{report.sweep_id}"
    sweep = store.sweep(report.sweep_id)
    assert sweep.completed and sweep.deleted == 1 and sweep.finished_at is not None and sweep.trigger == "manual"
    assert states(store, "vm-a")[new] is ImageState.READY
    assert store.take_lease(SWEEP_LEASE, "next-sweep", 60), "the sweep let go of its lease"


def test_grace_zero_sweeps_at_once(store: Store, gcp: ComputeStandin, compute: Compute) -> None:
    add_vm(store, "vm-a")
    old, _ = add_images(store, gcp, "vm-a", 2)
    report = Sweeper(store, compute, grace=0).sweep()
    assert report.deleted.count == 1 and deletes(gcp) == [old]


def test_what_must_stay_stays(store: Store, gcp: ComputeStandin, compute: Compute) -> None:
    # Retention 2: of four images, the two newest stay.
    add_vm(store, "keep-two")
    kept_two = add_images(store, gcp, "keep-two", 4)
    # A parked VM whose only image was marked dirty (by hand, or a reconcile): it is the VM's way back.
    add_vm(store, "parked")
    (only,) = add_images(store, gcp, "parked", 1)
    store.mark_images_dirty("parked")
    # A VM being restored: its images are being read.
    add_vm(store, "restoring")
    restoring = add_images(store, gcp, "restoring", 3)
    store.begin(
        Verb.RESTORE, "restoring", allowed_from=ALLOWED_FROM[Verb.RESTORE], requested_by="U1", zone=ZONE, machine_type="e2-small"
    )
    # An image someone stripped of our label in GCP.
    add_vm(store, "unlabelled")
    foreign = add_images(store, gcp, "unlabelled", 3, labels={"team": "data"})
    # Orphans: ours by label, unknown to the store; and an image that is not ours at all.
    gcp.seed_image(PROJECT, "orphan-1", labels={"managed-by": "vmbot", "vmbot-vm": "gone"})
    gcp.seed_image(PROJECT, "somebody-elses", labels={"team": "data"})

    report = Sweeper(store, compute, keep=2, grace=0).sweep()

    assert sorted(deletes(gcp)) == kept_two[:2]
    assert report.deleted.count == 2 and report.failed.count == 0
    assert {reason: tally.count for reason, tally in report.kept.items()} == {
        RETENTION: 2,  # the second newest of keep-two and of unlabelled (the newest are READY: no candidates)
        PARKED_NEWEST: 1,
        RESTORING: 2,
        UNLABELLED: 1,
    }
    assert report.kept[PARKED_NEWEST].samples == [(only, "parked")]
    assert report.kept[UNLABELLED].samples == [(foreign[0], "unlabelled")]
    assert report.orphans.samples == [("orphan-1", "")]
    assert {"orphan-1", "somebody-elses", only, *restoring, *foreign, *kept_two[2:]} <= in_gcp(gcp)
    assert states(store, "parked") == {only: ImageState.DIRTY}
    assert states(store, "unlabelled")[foreign[0]] is ImageState.DIRTY


def test_gone_from_gcp_is_marked_deleted_and_a_failure_is_retried_next_time(
    store: Store, gcp: ComputeStandin, compute: Compute
) -> None:
    add_vm(store, "vm-a")
    names = add_images(store, gcp, "vm-a", 4)  # three dirty
    add_vm(store, "vm-b")
    vanished, _ = add_images(store, None, "vm-b", 2)  # the store knows them; GCP never had them (404)
    gcp.seed_image(PROJECT, "vm-b-image-1", family="vm-b", labels=labels_for("vm-b"))
    gcp.fail_request("DELETE", f"/global/images/{names[1]}$", status=503, times=1000)

    report = Sweeper(store, compute, grace=0).sweep()

    assert report.already_gone.samples == [(vanished, "vm-b")]
    assert report.deleted.count == 2 and report.failed.count == 1
    ((failed_name, why),) = report.failed.samples
    assert failed_name == names[1] and why.startswith("vm-a: ") and "unavailable" in why
    after = states(store, "vm-a")
    assert after == {names[0]: ImageState.DELETED, names[1]: ImageState.DIRTY, names[2]: ImageState.DELETED, names[3]: ImageState.READY}
    assert states(store, "vm-b")[vanished] is ImageState.DELETED
    failed_row = next(image for image in store.images("vm-a") if image.name == names[1])
    assert failed_row.delete_error and "unavailable" in failed_row.delete_error
    assert names[1] in in_gcp(gcp)
    assert store.sweep(report.sweep_id).failed == 1

    gcp.clear_faults()
    again = Sweeper(store, compute, grace=0).sweep()
    assert again.deleted.samples == [(names[1], "vm-a")] and again.failed.count == 0
    row = next(image for image in store.images("vm-a") if image.name == names[1])
    assert row.state is ImageState.DELETED and row.delete_error is None and row.deleted_by_sweep_id == again.sweep_id


def test_a_transient_503_is_retried_within_the_sweep(store: Store, gcp: ComputeStandin, compute: Compute) -> None:
    add_vm(store, "vm-a")
    old, _ = add_images(store, gcp, "vm-a", 2)
    gcp.fail_request("DELETE", f"/global/images/{old}$", status=503, times=1)
    report = Sweeper(store, compute, grace=0).sweep()
    assert report.deleted.count == 1 and report.failed.count == 0
    assert [r.status for r in gcp.requests if r.method == "DELETE"] == [503, 200]


def snapshot(store: Store) -> list[tuple]:
    with store.sessions() as s:
        images = [
            (i.name, i.state, i.dirty_since, i.deleted_at, i.deleted_by_sweep_id, i.delete_error)
            for i in s.scalars(select(Image).order_by(Image.id))
        ]
        return images + list(s.scalars(select(Sweep))) + list(s.scalars(select(Lease)))


def test_a_dry_run_changes_nothing(store: Store, gcp: ComputeStandin, compute: Compute) -> None:
    add_vm(store, "vm-a")
    names = add_images(store, gcp, "vm-a", 3)
    add_vm(store, "vm-b")
    vanished, _ = add_images(store, None, "vm-b", 2)
    before, images_before = snapshot(store), gcp.images(PROJECT)

    report = Sweeper(store, compute, grace=0).sweep(dry_run=True)

    assert report.dry_run and report.sweep_id is None
    assert report.deleted.count == 2 and report.already_gone.samples == [(vanished, "vm-b")]
    assert [r.method for r in gcp.requests if r.method != "GET"] == []
    assert snapshot(store) == before and gcp.images(PROJECT) == images_before
    assert report.deleted.samples == [(names[0], "vm-a"), (names[1], "vm-a")]


def test_the_lease_excludes_others_until_released_or_expired(any_database_url: str) -> None:
    store = Store.from_url(any_database_url)
    now = utcnow()
    assert store.take_lease("job", "a", 60, now=now)
    assert not store.take_lease("job", "b", 60, now=now + timedelta(seconds=59))
    assert store.take_lease("job", "a", 60, now=now + timedelta(seconds=30)), "the holder may take it again"
    assert store.renew_lease("job", "a", 60, now=now + timedelta(seconds=60))
    assert not store.renew_lease("job", "b", 60)
    # "a" crashes: once its lease expires, "b" gets it and "a" can no longer renew.
    assert store.take_lease("job", "b", 60, now=now + timedelta(seconds=121))
    assert not store.renew_lease("job", "a", 60)
    store.release_lease("job", "a")  # not the holder: no effect
    assert not store.take_lease("job", "c", 60, now=now + timedelta(seconds=122))
    store.release_lease("job", "b")
    assert store.take_lease("job", "c", 60)
    assert store.lease("job").holder == "c"


def test_a_sweep_while_another_holds_the_lease_does_nothing(store: Store, gcp: ComputeStandin, compute: Compute) -> None:
    add_vm(store, "vm-a")
    add_images(store, gcp, "vm-a", 2)
    assert store.take_lease(SWEEP_LEASE, "other-host:1/abc", 300)
    report = Sweeper(store, compute, grace=0).sweep()
    assert report.skipped and "other-host:1/abc" in report.skipped
    assert deletes(gcp) == [] and report.sweep_id is None


def test_a_scheduled_sweep_right_after_another_is_skipped(store: Store, gcp: ComputeStandin, compute: Compute) -> None:
    add_vm(store, "vm-a")
    add_images(store, gcp, "vm-a", 2)
    sweeper = Sweeper(store, compute, grace=0)
    first = sweeper.sweep(trigger="scheduled", unless_swept_within=1800)
    second = sweeper.sweep(trigger="scheduled", unless_swept_within=1800)
    assert first.deleted.count == 1 and first.skipped is None
    assert second.skipped and "less than 1800 s ago" in second.skipped and second.sweep_id is None


def test_a_stopping_bot_stops_sweeping(store: Store, gcp: ComputeStandin, compute: Compute) -> None:
    add_vm(store, "vm-a")
    add_images(store, gcp, "vm-a", 3)
    sweeper = Sweeper(store, compute, grace=0)
    sweeper.stop()
    report = sweeper.sweep()
    assert report.stopped and report.deleted.count == 0 and deletes(gcp) == []
    assert not store.sweep(report.sweep_id).completed


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[Store]:
    store = Store.from_url(postgres_url)
    yield store
    store.engine.dispose()


def test_two_sweepers_on_one_postgres_database_delete_each_image_once(
    postgres_url: str, pg_store: Store, gcp: ComputeStandin
) -> None:
    for vm in ("vm-a", "vm-b", "vm-c"):
        add_vm(pg_store, vm)
        add_images(pg_store, gcp, vm, 4)
    dirty = sorted(name for vm in ("vm-a", "vm-b", "vm-c") for name, state in states(pg_store, vm).items() if state is ImageState.DIRTY)
    # Two "processes": each its own engine and its own Compute client.
    other = Store.from_url(postgres_url)
    sweepers = [
        Sweeper(s, Compute(PROJECT, endpoint=gcp.url), grace=0, concurrency=4, page_size=2) for s in (pg_store, other)
    ]
    gcp.hold_operations()  # whoever wins blocks on its first deletes until the other has had its go
    start = threading.Barrier(2)

    def run(sweeper: Sweeper):  # type: ignore[no-untyped-def]
        start.wait()
        return sweeper.sweep(trigger="scheduled")

    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(run, sweeper) for sweeper in sweepers]
        done, pending = wait(futures, timeout=30, return_when=FIRST_COMPLETED)
        assert len(done) == 1 and len(pending) == 1, "one sweeper stood back at once; the other is deleting"
        loser = done.pop().result()
        gcp.release_operations()
        winner = pending.pop().result(timeout=30)
    other.engine.dispose()

    assert loser.skipped and "another sweep is running" in loser.skipped and loser.sweep_id is None
    assert winner.skipped is None and winner.deleted.count == len(dirty) == 9
    assert sorted(deletes(gcp)) == dirty, "each image got exactly one DELETE"
    assert not (set(dirty) & in_gcp(gcp))
    assert all(state is not ImageState.DIRTY for vm in ("vm-a", "vm-b", "vm-c") for state in states(pg_store, vm).values())
