"""Store queries for housekeeping jobs: leases (one process at a time) and the image sweeper.

A mixin of ``storage.store.Store`` (kept in its own module so the sweeper's
queries sit together); like every Store method, each is one transaction.

The sweeper reads dirty images a page at a time by keyset on ``(dirty_since,
id)``, which the ``ix_images_state_dirty_since`` index serves as one range
scan, so a sweep never holds more than a page of rows however many images
the store has.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, or_, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from storage.models import Image, ImageState, Lease, Operation, Sweep, Verb, Vm, VmState, utcnow

LIVE_IMAGE_STATES = (ImageState.READY, ImageState.DIRTY)  # what retention counts


@dataclass(frozen=True)
class DirtyImage:
    """A dirty image as the sweeper needs it (a row, not an ORM object: pages stay small)."""

    id: int
    name: str
    vm_id: int
    dirty_since: datetime
    archive_size_bytes: int | None
    disk_size_gb: int | None

    @property
    def key(self) -> tuple[datetime, int]:
        """Its place in the sweep order: the keyset cursor."""
        return (self.dirty_since, self.id)


@dataclass(frozen=True)
class VmGuard:
    """What protects a VM's images from a sweep right now."""

    vm_id: int
    vm_name: str
    state: VmState
    restoring: bool  # a restore holds the VM: it reads the VM's newest image
    newest: tuple[int, ...]  # ids of its newest live images, newest first (as many as retention keeps)


@dataclass(frozen=True)
class SweepOutcome:
    """One image's result, as the sweep records it."""

    image_id: int
    when: datetime
    error: str | None = None  # None: deleted (or found already gone)


class HousekeepingQueries:
    sessions: sessionmaker[Session]

    # ---- leases --------------------------------------------------------------------

    def take_lease(self, name: str, holder: str, seconds: float, *, now: datetime | None = None) -> bool:
        """Take (or extend) lease ``name`` for ``holder`` unless someone else holds an unexpired one.

        A compare-and-set: the UPDATE only matches an expired lease or our own,
        and the INSERT on first use loses to a concurrent one on the primary
        key, so the database decides between processes.
        """
        now = now or utcnow()
        until = now + timedelta(seconds=seconds)
        with self.sessions.begin() as s:
            taken = s.execute(
                update(Lease)
                .where(Lease.name == name, or_(Lease.expires_at < now, Lease.holder == holder))
                .values(holder=holder, expires_at=until, taken_at=now)
                .execution_options(synchronize_session=False)
            ).rowcount
            if taken:
                return True
            if s.get(Lease, name) is not None:
                return False  # someone else holds it, unexpired
        try:
            with self.sessions.begin() as s:
                s.add(Lease(name=name, holder=holder, expires_at=until, taken_at=now))
            return True
        except IntegrityError:  # another process took it first
            return False

    def renew_lease(self, name: str, holder: str, seconds: float, *, now: datetime | None = None) -> bool:
        """Push our lease's expiry forward; False if it is no longer ours (it expired and was taken)."""
        now = now or utcnow()
        with self.sessions.begin() as s:
            return bool(
                s.execute(
                    update(Lease)
                    .where(Lease.name == name, Lease.holder == holder)
                    .values(expires_at=now + timedelta(seconds=seconds))
                    .execution_options(synchronize_session=False)
                ).rowcount
            )

    def release_lease(self, name: str, holder: str) -> None:
        """Let the next taker in at once (the row stays: it shows the last holder)."""
        with self.sessions.begin() as s:
            s.execute(
                update(Lease)
                .where(Lease.name == name, Lease.holder == holder)
                .values(expires_at=utcnow())
                .execution_options(synchronize_session=False)
            )

    def lease(self, name: str) -> Lease | None:
        with self.sessions() as s:
            return s.get(Lease, name)

    # ---- sweeps --------------------------------------------------------------------

    def start_sweep(self, *, trigger: str, requested_by: str | None, holder: str) -> int:
        with self.sessions.begin() as s:
            sweep = Sweep(trigger=trigger, requested_by=requested_by, holder=holder)
            s.add(sweep)
            s.flush()
            return sweep.id

    def finish_sweep(
        self, sweep_id: int, *, deleted: int, failed: int, orphans: int, freed_bytes: int, completed: bool
    ) -> None:
        with self.sessions.begin() as s:
            s.execute(
                update(Sweep)
                .where(Sweep.id == sweep_id)
                .values(
                    finished_at=utcnow(),
                    deleted=deleted,
                    failed=failed,
                    orphans=orphans,
                    freed_bytes=freed_bytes,
                    completed=completed,
                )
            )

    def last_sweep(self, *, trigger: str | None = None) -> Sweep | None:
        """The newest finished sweep (of ``trigger``, if given)."""
        with self.sessions() as s:
            query = select(Sweep).where(Sweep.finished_at.is_not(None))
            if trigger:
                query = query.where(Sweep.trigger == trigger)
            return s.scalar(query.order_by(Sweep.id.desc()).limit(1))

    def sweep(self, sweep_id: int) -> Sweep | None:
        with self.sessions() as s:
            return s.get(Sweep, sweep_id)

    def dirty_images(
        self, *, dirty_before: datetime, after: tuple[datetime, int] | None, limit: int
    ) -> list[DirtyImage]:
        """The next page of images dirty since ``dirty_before`` or earlier, in (dirty_since, id) order."""
        query = (
            select(
                Image.id, Image.name, Image.vm_id, Image.dirty_since, Image.archive_size_bytes, Image.disk_size_gb
            )
            .where(Image.state == ImageState.DIRTY, Image.dirty_since <= dirty_before)
            .order_by(Image.dirty_since, Image.id)
            .limit(limit)
        )
        if after is not None:
            query = query.where(tuple_(Image.dirty_since, Image.id) > tuple_(*after))
        with self.sessions() as s:
            return [DirtyImage(*row) for row in s.execute(query)]

    def dirty_images_in_grace(
        self, *, dirty_after: datetime, sample: int
    ) -> tuple[int, list[tuple[str, datetime]], datetime | None]:
        """Images dirty only since after ``dirty_after`` (still in grace): how many, the first ``sample``, the earliest time."""
        in_grace = (Image.state == ImageState.DIRTY, Image.dirty_since > dirty_after)
        with self.sessions() as s:
            count, first = s.execute(select(func.count(), func.min(Image.dirty_since)).where(*in_grace)).one()
            names = s.execute(
                select(Image.name, Image.dirty_since).where(*in_grace).order_by(Image.dirty_since, Image.id).limit(sample)
            )
            return int(count), [(name, since) for name, since in names], first

    def image_guards(self, vm_ids: Iterable[int], *, keep: int) -> dict[int, VmGuard]:
        """For each VM: its state, whether a restore holds it, and its ``keep`` newest live images."""
        ids = sorted(set(vm_ids))
        if not ids:
            return {}
        rank = func.row_number().over(partition_by=Image.vm_id, order_by=(Image.created_at.desc(), Image.id.desc()))
        ranked = (
            select(Image.vm_id, Image.id, rank.label("rank"))
            .where(Image.vm_id.in_(ids), Image.state.in_(LIVE_IMAGE_STATES))
            .subquery()
        )
        with self.sessions() as s:
            newest: dict[int, list[int]] = {}
            for vm_id, image_id, _ in s.execute(
                select(ranked).where(ranked.c.rank <= keep).order_by(ranked.c.vm_id, ranked.c.rank)
            ):
                newest.setdefault(vm_id, []).append(image_id)
            vms = s.execute(
                select(Vm.id, Vm.name, Vm.state, Operation.verb)
                .outerjoin(Operation, Operation.id == Vm.active_operation_id)
                .where(Vm.id.in_(ids))
            )
            return {
                vm_id: VmGuard(vm_id, name, state, verb is Verb.RESTORE, tuple(newest.get(vm_id, ())))
                for vm_id, name, state, verb in vms
            }

    def record_sweep(
        self, sweep_id: int, *, deleted: Sequence[SweepOutcome], failed: Sequence[SweepOutcome]
    ) -> None:
        """Mark a page's deleted images (row kept: when, by which sweep) and note its failures, in one transaction.

        Only images still dirty are touched, so a row that changed meanwhile keeps its new state.
        """
        table = Image.__table__
        still_dirty = (table.c.id == bindparam("image_id")) & (table.c.state == ImageState.DIRTY)
        with self.sessions.begin() as s:
            if deleted:
                s.execute(
                    update(table)
                    .where(still_dirty)
                    .values(
                        state=ImageState.DELETED,
                        deleted_at=bindparam("when"),
                        deleted_by=f"sweep #{sweep_id}",
                        deleted_by_sweep_id=sweep_id,
                        delete_error=None,
                    ),
                    [{"image_id": o.image_id, "when": o.when} for o in deleted],
                )
            if failed:
                s.execute(
                    update(table).where(still_dirty).values(delete_error=bindparam("error")),
                    [{"image_id": o.image_id, "error": (o.error or "")[:2000]} for o in failed],
                )

    def recent_images(self, vm_name: str, *, limit: int) -> tuple[list[Image], int]:
        """A VM's newest ``limit`` images (any state), newest first, and how many it has in all."""
        with self.sessions() as s:
            vm_id = select(Vm.id).where(Vm.name == vm_name).scalar_subquery()
            total = s.scalar(select(func.count()).select_from(Image).where(Image.vm_id == vm_id)) or 0
            images = s.scalars(
                select(Image).where(Image.vm_id == vm_id).order_by(Image.created_at.desc(), Image.id.desc()).limit(limit)
            )
            return list(images), int(total)

    def count_images_in_state(self, state: ImageState) -> int:
        """How many images are in ``state`` (a sweep's report counts the ready ones it left alone)."""
        with self.sessions() as s:
            return s.scalar(select(func.count()).select_from(Image).where(Image.state == state)) or 0

    def known_image_names(self, names: Iterable[str]) -> set[str]:
        """Which of ``names`` the store has a row for (in any state)."""
        wanted = list(names)
        if not wanted:
            return set()
        with self.sessions() as s:
            return set(s.scalars(select(Image.name).where(Image.name.in_(wanted))))
