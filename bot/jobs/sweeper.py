"""The dirty-image sweeper: deletes superseded images once their grace period is over.

Plain Python over the Store and Compute (no Slack, no scheduler), so a test or
the benchmark drives it directly. What it may never delete, checked for every
image right before it goes:

* one of the newest ``keep`` images of its VM (retention; not for a deleted
  VM, which is not coming back), and above all the newest image of a parked
  VM: it is that VM's only way back;
* any image of a VM that a restore holds right now (the restore reads it);
* an image that does not carry ``managed-by=vmbot`` in GCP (looked up fresh,
  not taken from the store).

An image GCP no longer has (404) is marked deleted. A GCP failure on one image
is reported and leaves it dirty, so the next sweep tries again; the others go
on. Images GCP holds with our label but the store does not know (orphans) are
listed, never deleted.

Only one process sweeps at a time: a sweep holds a lease row in the database,
renewed while it runs and expiring if its holder dies. A dry run takes no
lease and writes nothing.

Memory stays flat however many images the store holds: dirty images are read a
page at a time (keyset on ``(dirty_since, id)``), GCP work runs on a pool of
``concurrency`` threads a page at a time, orphans are checked a GCP list page
at a time, and the report keeps counts plus a few names per kind.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.gcp.compute import MANAGED_LABEL, Compute, GceError, GceNotFound
from bot.observability.metrics import Metrics
from bot.settings import Settings
from storage.housekeeping import DirtyImage, SweepOutcome, VmGuard
from storage.models import ImageState, VmState, utcnow
from storage.store import Store

log = logging.getLogger(__name__)

SWEEP_LEASE = "image-sweep"
SAMPLE_SIZE = 20  # names a report keeps per kind; the counts are always complete
ORPHAN_BATCH = 500  # GCP's largest list page

# Why an image was kept; the report groups by these.
GRACE = "in its grace period"
RETENTION = "one of its VM's newest images (retention)"
PARKED_NEWEST = "newest image of a parked VM (its only way back)"
RESTORING = "a restore of its VM is reading it"
UNLABELLED = "no `managed-by=vmbot` label in GCP"
STOPPING = "the bot is shutting down; the next sweep carries on"


@dataclass
class Tally:
    """A count, with the first few items for people to read: (image name, plain-text context)."""

    count: int = 0
    samples: list[tuple[str, str]] = field(default_factory=list)

    def add(self, name: str, context: str = "") -> None:
        self.count += 1
        if len(self.samples) < SAMPLE_SIZE:
            self.samples.append((name, context))


@dataclass
class SweepReport:
    """What one sweep did (or, for a dry run, would do)."""

    dry_run: bool
    trigger: str  # "manual" or "scheduled"
    requested_by: str | None
    keep: int
    grace: float
    sweep_id: int | None = None
    skipped: str | None = None  # why it did nothing at all (another sweep holds the lease)
    stopped: str | None = None  # why it ended before the last image
    deleted: Tally = field(default_factory=Tally)  # deleted, or would be in a dry run
    already_gone: Tally = field(default_factory=Tally)  # GCP had no such image: marked deleted
    failed: Tally = field(default_factory=Tally)
    kept: dict[str, Tally] = field(default_factory=dict)  # reason -> images
    orphans: Tally = field(default_factory=Tally)
    orphans_error: str | None = None
    next_eligible: datetime | None = None  # when the first image still in grace may go
    freed_bytes: int = 0
    took: float = 0.0
    untouched: int = 0  # images kept because they are not dirty (ready): each VM's way back, or in use

    @property
    def freed_gb(self) -> float:
        return self.freed_bytes / 2**30

    @property
    def eventful(self) -> bool:
        """Whether a scheduled sweep's report is worth posting: it deleted or failed something."""
        return bool(self.deleted.count or self.already_gone.count or self.failed.count)

    def keep_for(self, reason: str, name: str, context: str = "") -> None:
        self.kept.setdefault(reason, Tally()).add(name, context)


@dataclass(frozen=True)
class _Result:
    """One image's fate in GCP."""

    kind: str  # "deleted", "gone", "unlabelled", "failed", "stopped" (not tried: shutting down)
    size: int = 0
    error: str | None = None
    when: datetime | None = None


class LeaseKeeper:
    """Holds a lease while a block runs: renews it every third of its life from a small thread.

    ``lost`` turns true if a renewal finds the lease taken (we stalled past its
    expiry); the sweep then stops before its next page.
    """

    def __init__(self, store: Store, name: str, holder: str, seconds: float) -> None:
        self.store, self.name, self.holder, self.seconds = store, name, holder, seconds
        self.lost = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"lease-{name}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        if not self.lost:
            self.store.release_lease(self.name, self.holder)

    def _renew(self) -> None:
        while not self._done.wait(self.seconds / 3):
            try:
                if not self.store.renew_lease(self.name, self.holder, self.seconds):
                    log.error("lease %s was taken from %s; stopping", self.name, self.holder)
                    self.lost = True
                    return
            except Exception:  # a database hiccup: try again at the next beat, the lease has time left
                log.exception("could not renew lease %s", self.name)


def process_id() -> str:
    """Names this process in lease rows and sweep records ("host:pid")."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}"


class Sweeper:
    def __init__(
        self,
        store: Store,
        compute: Compute,
        *,
        keep: int = 1,
        grace: float = 86400.0,
        concurrency: int = 8,
        page_size: int = 200,
        lease_seconds: float = 300.0,
    ) -> None:
        self.store, self.compute = store, compute
        self.keep, self.grace, self.concurrency = keep, grace, concurrency
        self.page_size, self.lease_seconds = page_size, lease_seconds
        self.stopping = threading.Event()
        self.metrics = Metrics()  # create_app gives it the app's (bot.observability.wiring)

    @classmethod
    def from_settings(cls, store: Store, compute: Compute, settings: Settings) -> Sweeper:
        return cls(
            store,
            compute,
            keep=settings.keep_images,
            grace=settings.sweep_grace,
            concurrency=settings.sweep_concurrency,
        )

    def stop(self) -> None:
        """Ask running sweeps to end after their current page (the bot is shutting down)."""
        self.stopping.set()

    def sweep(
        self,
        *,
        dry_run: bool = False,
        trigger: str = "manual",
        requested_by: str | None = None,
        now: datetime | None = None,
        unless_swept_within: float | None = None,
        on_started: Callable[[SweepReport], None] | None = None,
    ) -> SweepReport:
        """Sweep once; never raises for a GCP failure (it is in the report).

        ``now`` stands for the current time when judging grace periods (tests
        move it forward instead of waiting). ``unless_swept_within`` (seconds)
        skips the sweep if one of the same trigger finished that recently, so
        several processes on one schedule sweep once per interval, not once each.
        """
        now = now or utcnow()
        report = SweepReport(dry_run, trigger, requested_by, self.keep, self.grace)
        began = time.monotonic()
        if dry_run:
            if on_started:
                on_started(report)
            self._run(report, now, None)
        else:
            self._sweep_holding_lease(report, now, unless_swept_within, on_started)
        report.took = time.monotonic() - began
        self.metrics.sweep_finished(report)
        return report

    # ---- one sweep ---------------------------------------------------------------------

    def _sweep_holding_lease(
        self,
        report: SweepReport,
        now: datetime,
        unless_swept_within: float | None,
        on_started: Callable[[SweepReport], None] | None,
    ) -> None:
        holder = f"{process_id()}/{uuid.uuid4().hex[:8]}"  # one per sweep: two sweeps of one process exclude each other too
        if not self.store.take_lease(SWEEP_LEASE, holder, self.lease_seconds):
            lease = self.store.lease(SWEEP_LEASE)
            since = f" since {lease.taken_at:%Y-%m-%d %H:%M} UTC" if lease else ""
            report.skipped = f"another sweep is running ({lease.holder if lease else 'unknown'}{since})"
            return
        with LeaseKeeper(self.store, SWEEP_LEASE, holder, self.lease_seconds) as keeper:
            if unless_swept_within is not None and self._swept_recently(report.trigger, unless_swept_within):
                report.skipped = f"a {report.trigger} sweep finished less than {unless_swept_within:.0f} s ago"
                return
            report.sweep_id = self.store.start_sweep(
                trigger=report.trigger, requested_by=report.requested_by, holder=holder
            )
            if on_started:
                on_started(report)
            try:
                self._run(report, now, keeper)
            finally:
                self.store.finish_sweep(
                    report.sweep_id,
                    deleted=report.deleted.count + report.already_gone.count,
                    failed=report.failed.count,
                    orphans=report.orphans.count,
                    freed_bytes=report.freed_bytes,
                    completed=report.stopped is None,
                )

    def _swept_recently(self, trigger: str, seconds: float) -> bool:
        last = self.store.last_sweep(trigger=trigger)
        return bool(last and last.finished_at and last.finished_at > utcnow() - timedelta(seconds=seconds))

    def _run(self, report: SweepReport, now: datetime, keeper: LeaseKeeper | None) -> None:
        cutoff = now - timedelta(seconds=self.grace)
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="vmbot-sweep") as pool:
            for page in self._pages(cutoff):
                if self.stopping.is_set():
                    report.stopped = STOPPING
                    break
                if keeper is not None and keeper.lost:
                    report.stopped = "another process took over the sweep lease (this sweep stalled)"
                    break
                self._sweep_page(page, report, pool)
        self._note_grace(report, cutoff)
        report.untouched = self.store.count_images_in_state(ImageState.READY)
        if not self.stopping.is_set():
            self._find_orphans(report)

    def _pages(self, cutoff: datetime) -> Iterator[list[DirtyImage]]:
        after: tuple[datetime, int] | None = None
        while page := self.store.dirty_images(dirty_before=cutoff, after=after, limit=self.page_size):
            yield page
            after = page[-1].key

    def _sweep_page(self, page: list[DirtyImage], report: SweepReport, pool: ThreadPoolExecutor) -> None:
        guards = self.store.image_guards((image.vm_id for image in page), keep=self.keep)
        doomed: list[tuple[DirtyImage, str]] = []
        for image in page:
            guard = guards.get(image.vm_id)
            vm_name = guard.vm_name if guard else "?"
            reason = self._protected(image, guard)
            if reason:
                report.keep_for(reason, image.name, vm_name)
            else:
                doomed.append((image, vm_name))
        check_only = report.dry_run
        results = pool.map(lambda item: self._delete(item[0], check_only=check_only), doomed)
        deleted: list[SweepOutcome] = []
        failed: list[SweepOutcome] = []
        for (image, vm_name), result in zip(doomed, results):
            if result.kind == "deleted":
                report.deleted.add(image.name, vm_name)
                report.freed_bytes += result.size
                deleted.append(SweepOutcome(image.id, result.when or utcnow()))
            elif result.kind == "gone":
                report.already_gone.add(image.name, vm_name)
                deleted.append(SweepOutcome(image.id, result.when or utcnow()))
            elif result.kind == "unlabelled":
                report.keep_for(UNLABELLED, image.name, vm_name)
            elif result.kind == "stopped":
                report.stopped = STOPPING
            else:
                report.failed.add(image.name, f"{vm_name}: {result.error}")
                failed.append(SweepOutcome(image.id, utcnow(), result.error))
        if report.sweep_id is not None:
            self.store.record_sweep(report.sweep_id, deleted=deleted, failed=failed)

    def _protected(self, image: DirtyImage, guard: VmGuard | None) -> str | None:
        """Why ``image`` must stay, from what the store says about its VM; None if it may go."""
        if guard is None or guard.state is VmState.DELETED:
            return None  # retention is for VMs that may come back; someone deleted this one
        if guard.state is VmState.PARKED and guard.newest[:1] == (image.id,):
            return PARKED_NEWEST
        if guard.restoring:
            return RESTORING
        if image.id in guard.newest:
            return RETENTION
        return None

    def _delete(self, image: DirtyImage, *, check_only: bool) -> _Result:
        """Check the image in GCP (still there? ours?) and delete it unless ``check_only``. Runs on the pool."""
        if self.stopping.is_set():  # shutting down: leave the rest of the page for the next sweep
            return _Result("stopped")
        try:
            info = self.compute.get_image(image.name)
            if info is None:
                return _Result("gone", when=utcnow())
            if info.labels.get("managed-by") != MANAGED_LABEL["managed-by"]:
                return _Result("unlabelled")
            size = info.archive_size_bytes or image.archive_size_bytes or (image.disk_size_gb or 0) * 2**30
            if not check_only:
                self.compute.delete_image(image.name).wait()
            return _Result("deleted", size=size, when=utcnow())
        except GceNotFound:  # gone between our look and our delete
            return _Result("gone", when=utcnow())
        except GceError as error:
            log.warning("sweep could not delete image %s: %s", image.name, error.message)
            return _Result("failed", error=error.message)
        except Exception:  # a bug: keep sweeping the others, say where the details are
            log.exception("sweep failed on image %s", image.name)
            return _Result("failed", error="internal error; see the bot's log")

    def _note_grace(self, report: SweepReport, cutoff: datetime) -> None:
        count, names, first = self.store.dirty_images_in_grace(dirty_after=cutoff, sample=SAMPLE_SIZE)
        if count:
            tally = report.kept.setdefault(GRACE, Tally())
            tally.count += count
            tally.samples.extend((name, f"dirty since {since:%Y-%m-%d %H:%M} UTC") for name, since in names)
            report.next_eligible = first + timedelta(seconds=self.grace) if first else None

    def _find_orphans(self, report: SweepReport) -> None:
        """List GCP images labelled ``managed-by=vmbot`` that the store does not know (a GCP page at a time)."""
        batch: list[str] = []
        try:
            for info in self.compute.list_images(MANAGED_LABEL):
                batch.append(info.name)
                if len(batch) >= ORPHAN_BATCH:
                    self._note_orphans(batch, report)
                    batch = []
            self._note_orphans(batch, report)
        except GceError as error:
            report.orphans_error = error.message

    def _note_orphans(self, names: list[str], report: SweepReport) -> None:
        known = self.store.known_image_names(names)
        for name in names:
            if name not in known:
                report.orphans.add(name)
