"""Queries and units of work over the models: the only module that writes SQL.

Every public method is one transaction. Rows returned are detached snapshots
(the session factory does not expire them), safe to read on any thread.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import (
    Connection, CursorResult, Engine, Row, Select, Update, bindparam, delete, func, insert, null, or_, select, update,
)  # fmt: skip
from sqlalchemy.exc import IntegrityError, NoResultFound
from sqlalchemy.orm import Session, selectinload, sessionmaker
from sqlalchemy.orm.attributes import set_committed_value

from storage.db import create_schema, make_engine, make_session_factory
from storage.housekeeping import HousekeepingQueries
from storage.schedule_queries import ScheduleQueries
from storage.models import (
    FINISHED_STATES,
    AuditEntry,
    UNKNOWN_OWNER,
    Image,
    ImageState,
    Operation,
    OperationState,
    OperationStep,
    SeenRequest,
    Verb,
    Verdict,
    Vm,
    VmState,
    utcnow,
)


PRUNE_EVERY = 60  # seconds between prunes of old request signatures

# Prepared statements for the ack path and a running workflow, the store's hottest calls (`python -m bench`).
# Built once and executed with a dict of values on a Core connection, each is compiled once and found in
# SQLAlchemy's cache afterwards: building a statement per call, and the ORM's unit of work, cost several
# times what running the SQL does. An UPDATE built without .values() sets the columns its values name
# (each typed by its column: enums, JSON); other parameters are named b_*, as SQLAlchemy keeps a column's
# own name for its value.
operations, vms, images, steps = Operation.__table__, Vm.__table__, Image.__table__, OperationStep.__table__

# The ack path (Store.begin, the replay guard, the audit trail).
_NEW_OPERATION = insert(operations).returning(*operations.c)
_CLAIM_VM = (
    update(vms)
    .where(
        vms.c.name == bindparam("b_name"),
        vms.c.active_operation_id.is_(None),
        vms.c.state.in_(bindparam("b_states", expanding=True)),
    )
    .values(active_operation_id=bindparam("b_op"), updated_at=bindparam("b_now"))
)
_CLAIM_VM_FOR_CREATE = _CLAIM_VM.values(
    state=VmState.CREATING, owner=bindparam("b_owner"), zone=bindparam("b_zone"), machine_type=bindparam("b_machine_type"),
    shape=None, family=None,  # a new life: nothing of the deleted VM's shape carries over
)
_NEW_VM = insert(vms)
_NEW_SIGNATURE = insert(SeenRequest.__table__)
_PRUNE_SIGNATURES = delete(SeenRequest.__table__).where(SeenRequest.__table__.c.timestamp < bindparam("oldest"))
_NEW_AUDIT_ENTRY = insert(AuditEntry.__table__).returning(AuditEntry.__table__.c.id)
_AUDIT_ENTRY_OF_OPERATION = insert(AuditEntry.__table__)  # written with the operation: its id is not needed


@dataclass(frozen=True)
class _OperationWrite:
    """One write of an operation's row: ``fenced`` when the run holds the operation's lease (see
    Store._fence), ``plain`` (None: nothing to write) when it does not."""

    fenced: Update
    plain: Update | None


def _operation_write(**values: Any) -> _OperationWrite:
    plain = update(operations).where(operations.c.id == bindparam("b_id")).values(**values)
    fenced = plain.where(
        operations.c.lease_owner == bindparam("b_owner"), operations.c.lease_token == bindparam("b_token")
    ).values(lease_expires_at=bindparam("b_expires"))
    return _OperationWrite(fenced, plain if values else None)


# A running operation: leases, the fence and its writes of the operation's row, its steps.
_CLAIM_OPERATION = (
    update(operations)
    .where(
        operations.c.id == bindparam("b_id"),
        operations.c.state.not_in(FINISHED_STATES),
        or_(
            operations.c.lease_owner.is_(None),
            operations.c.lease_owner == bindparam("b_owner"),
            operations.c.lease_expires_at.is_(None),
            operations.c.lease_expires_at < bindparam("b_now"),
        ),
    )
    .values(
        lease_owner=bindparam("b_owner"), lease_token=operations.c.lease_token + 1, lease_expires_at=bindparam("b_expires")
    )
    .returning(*operations.c)
)
_RENEW = _operation_write()
_STEP = _operation_write(step=bindparam("b_step"))
_RUNNING = _operation_write(
    state=OperationState.RUNNING,
    started_at=func.coalesce(operations.c.started_at, bindparam("b_now", type_=operations.c.started_at.type)),
)
_FINISH = _operation_write(
    state=bindparam("b_state"), result=bindparam("b_result"), error=bindparam("b_error"),
    finished_at=bindparam("b_now"), report=bindparam("b_report"),
)  # fmt: skip
_LET_GO = (
    update(operations)
    .where(operations.c.id == bindparam("b_id"), operations.c.lease_owner == bindparam("b_owner"))
    .values(lease_owner=None, lease_expires_at=None)
)
_REPORTED = update(operations).where(operations.c.id == bindparam("b_id")).values(reported_at=bindparam("b_now"))
_SET_THREAD = update(operations).where(operations.c.id == bindparam("b_id"))  # channel and thread_ts
_THREAD_OF = select(operations.c.thread_ts).where(operations.c.id == bindparam("b_id"))
_NEW_STEP = insert(steps).returning(steps.c.id)
_STEP_OF_ID = select(steps.c.operation_id, steps.c.name).where(steps.c.id == bindparam("b_id"))
_UPDATE_STEP = update(steps).where(steps.c.id == bindparam("b_id"))

# Its VM and images.
_UPDATE_VM = update(vms).where(vms.c.name == bindparam("b_name"))
_RELEASE_VM = update(vms).where(
    vms.c.name == select(operations.c.vm_name).where(operations.c.id == bindparam("b_op")).scalar_subquery(),
    vms.c.active_operation_id == bindparam("b_op"),
)
_VM_ID = select(vms.c.id).where(vms.c.name == bindparam("b_vm")).scalar_subquery()
_NEW_IMAGE = insert(images).values(vm_id=_VM_ID)
_IMAGE_READY = (
    update(images)
    .where(images.c.name == bindparam("b_name"))
    .values(state=ImageState.READY, disk_size_gb=bindparam("b_disk"), archive_size_bytes=bindparam("b_archive"))
    .returning(images.c.id, images.c.vm_id)
)
_UPDATE_IMAGE = update(images).where(images.c.name == bindparam("b_name"))
_DISK_DELETED = _UPDATE_IMAGE.where(images.c.disk_deleted_at.is_(None)).values(disk_deleted_at=bindparam("b_now"))
_READY_OF_VM = select(images.c.id, images.c.name).where(images.c.state == ImageState.READY)
_OLDER_READY = _READY_OF_VM.where(images.c.vm_id == bindparam("b_vm_id"), images.c.id != bindparam("b_id"))
_VM_ID_OF_PARK = select(images.c.vm_id).where(images.c.created_by_operation_id == bindparam("b_op")).limit(1)
_READY_OF_EARLIER_PARKS = _READY_OF_VM.where(
    images.c.vm_id == _VM_ID_OF_PARK.scalar_subquery(),
    or_(images.c.created_by_operation_id.is_(None), images.c.created_by_operation_id != bindparam("b_op")),
).order_by(images.c.id)
_READY_OF_NAMED_VM = _READY_OF_VM.where(images.c.vm_id == _VM_ID).order_by(images.c.created_at, images.c.id)
_MAKE_DIRTY = (
    update(images)
    .where(images.c.id.in_(bindparam("b_ids", expanding=True)), images.c.state == ImageState.READY)
    .values(state=ImageState.DIRTY, dirty_since=bindparam("b_now"))
)

# Reads of a running operation: rows made into mapped objects by hand (Store._snapshot).
_VM_WITH_OPERATION = (
    select(vms, operations)
    .select_from(vms.outerjoin(operations, operations.c.id == vms.c.active_operation_id))
    .where(vms.c.name == bindparam("b_name"))
)
_OPERATION = select(operations).where(operations.c.id == bindparam("b_id"))
_STEPS_OF = select(steps).where(steps.c.operation_id == bindparam("b_id")).order_by(steps.c.id)
_IMAGE_WITH_VM = select(images, vms).join(vms, vms.c.id == images.c.vm_id).where(images.c.name == bindparam("b_name"))
_IMAGES_OF_OPERATION = select(images).where(images.c.created_by_operation_id == bindparam("b_op")).order_by(images.c.id)


_Mapped = TypeVar("_Mapped", Vm, Operation, OperationStep, Image)


def _snapshot(cls: type[_Mapped], row: Row[Any], start: int = 0, **related: Any) -> _Mapped:
    """A mapped object made of ``row``'s columns from ``start`` on (in its table's order), with the
    relationships given (the others read empty): what a session would load, several times cheaper.
    They are set as loaded, not assigned: an assignment would fire the other side's backref."""
    snapshot = cls(**dict(zip(cls.__table__.c.keys(), row[start:])))
    for key, value in related.items():
        set_committed_value(snapshot, key, value)
    return snapshot


class ClaimLost(Exception):
    """The VM was not in a state the verb may start from, or another operation holds it."""


class LeaseLost(Exception):
    """Another process took the operation over (this one froze, was cut off, or handed it over):
    the write was not made, and this process must stop working on the operation."""

    def __init__(self, op_id: int) -> None:
        super().__init__(f"operation #{op_id} is no longer leased to this process")
        self.op_id = op_id


@dataclass(frozen=True)
class Lease:
    """An operation as one claim of it holds it: the owner and the claim's fencing token."""

    op_id: int
    owner: str
    token: int


# The lease the writes of the current workflow run are fenced with (Store.fenced_by): every step
# write and the finish check it in the same transaction, on the operation's row.
_LEASE: ContextVar[Lease | None] = ContextVar("vmbot_lease", default=None)


class DuplicateRequest(Exception):
    """The request (same ``request_key``) already made an operation: ``operation``."""

    def __init__(self, operation: Operation) -> None:
        super().__init__(f"request already made operation #{operation.id}")
        self.operation = operation


def process_identity() -> str:
    """Names this process in ``operations.lease_owner``: host, pid and a random part (pids get reused)."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class VmSummary:
    """A VM as ``/vm list`` shows it."""

    vm: Vm
    newest_image: str | None
    active_operation: Operation | None


class Store(HousekeepingQueries, ScheduleQueries):
    """``owner`` names this process in operation leases; ``lease_seconds`` is how long a lease lasts
    without renewal (create_app sets it from the settings)."""

    def __init__(
        self, sessions: sessionmaker[Session], *, owner: str | None = None, lease_seconds: float = 60.0
    ) -> None:
        self.sessions = sessions
        self.owner = owner or process_identity()
        self.lease_seconds = lease_seconds
        self._pruned_at = 0  # when claim_request last pruned old signatures (their own clock, seconds)

    @classmethod
    def from_url(cls, url: str, *, create: bool = True, owner: str | None = None) -> Store:
        engine = make_engine(url)
        if create:
            create_schema(engine)
        return cls(make_session_factory(engine), owner=owner)

    def _lease_end(self) -> datetime:
        return utcnow() + timedelta(seconds=self.lease_seconds)

    @property
    def engine(self) -> Engine:
        bind = self.sessions.kw["bind"]
        assert isinstance(bind, Engine)
        return bind

    # ---- reads -------------------------------------------------------------

    def vm(self, name: str) -> Vm | None:
        """The VM, its ``active_operation`` loaded (without that operation's steps)."""
        with self.engine.connect() as db:
            row = db.execute(_VM_WITH_OPERATION, {"b_name": name}).first()
        if row is None:
            return None
        active = _snapshot(Operation, row, len(vms.c)) if row.active_operation_id is not None else None
        return _snapshot(Vm, row, active_operation=active)

    @staticmethod
    def _summaries() -> Select[Any]:
        """VMs in name order, each with its newest READY image's name and its active operation loaded."""
        newest = (
            select(Image.vm_id, func.max(Image.created_at).label("created_at"))
            .where(Image.state == ImageState.READY)
            .group_by(Image.vm_id)
            .subquery()
        )
        return (
            select(Vm, Image.name)
            .outerjoin(newest, newest.c.vm_id == Vm.id)
            .outerjoin(Image, (Image.vm_id == Vm.id) & (Image.created_at == newest.c.created_at))
            .options(selectinload(Vm.active_operation))
            .order_by(Vm.name)
        )

    def list_vms(self, *, include_deleted: bool = False) -> list[VmSummary]:
        query = self._summaries()
        if not include_deleted:
            query = query.where(Vm.state != VmState.DELETED)
        with self.sessions() as s:
            return [VmSummary(vm, image, vm.active_operation) for vm, image in s.execute(query)]

    def list_vms_page(
        self,
        *,
        limit: int,
        after: str | None = None,
        offset: int = 0,
        state: VmState | None = None,
        owner: str | None = None,
    ) -> list[VmSummary]:
        """One page of live VMs in name order, paged in SQL: ``after`` a name (keyset: a page never
        repeats or skips a VM however the others change), else from ``offset`` (``/vm list page=N``).
        ``state`` and ``owner`` filter; ``state=DELETED`` lists the deleted ones."""
        query = self._summaries().where(*self._vm_filters(state, owner)).limit(limit)
        if after is not None:
            query = query.where(Vm.name > after)
        elif offset:
            query = query.offset(offset)
        with self.sessions() as s:
            return [VmSummary(vm, image, vm.active_operation) for vm, image in s.execute(query)]

    def count_vms(self, *, state: VmState | None = None, owner: str | None = None, before: str | None = None) -> int:
        """How many VMs ``list_vms_page`` would list with these filters (``before``: only names before it)."""
        with self.sessions() as s:
            query = select(func.count()).select_from(Vm).where(*self._vm_filters(state, owner))
            if before is not None:
                query = query.where(Vm.name < before)
            return int(s.scalar(query) or 0)

    @staticmethod
    def _vm_filters(state: VmState | None, owner: str | None) -> list[Any]:
        filters: list[Any] = [Vm.state == state] if state is not None else [Vm.state != VmState.DELETED]
        if owner is not None:
            filters.append(Vm.owner == owner)
        return filters

    def newest_image(self, vm_name: str) -> Image | None:
        """The image a restore starts from: the VM's newest READY image."""
        with self.sessions() as s:
            return s.scalar(
                select(Image)
                .join(Vm)
                .where(Vm.name == vm_name, Image.state == ImageState.READY, Image.device_name.is_(None))
                .order_by(Image.created_at.desc(), Image.id.desc())
                .limit(1)
            )

    def count_images(self, vm_name: str, state: ImageState) -> int:
        """How many of a VM's images are in ``state`` (one query, however many there are)."""
        with self.sessions() as s:
            vm_id = select(Vm.id).where(Vm.name == vm_name).scalar_subquery()
            query = select(func.count()).select_from(Image).where(Image.vm_id == vm_id, Image.state == state)
            return int(s.scalar(query) or 0)

    def image(self, name: str) -> Image | None:
        """The image, its ``vm`` loaded."""
        with self.engine.connect() as db:
            row = db.execute(_IMAGE_WITH_VM, {"b_name": name}).first()
        return None if row is None else _snapshot(Image, row, vm=_snapshot(Vm, row, len(images.c)))

    def images(self, vm_name: str) -> list[Image]:
        with self.sessions() as s:
            return list(s.scalars(select(Image).join(Vm).where(Vm.name == vm_name).order_by(Image.created_at)))

    def vms_with_images(self, names: Iterable[str]) -> dict[str, tuple[Vm, list[Image]]]:
        """Each named VM with its images (oldest first), in two queries per 500 VMs, not two per VM
        (``/vm list``'s money lines and savings)."""
        wanted = sorted(set(names))
        if not wanted:
            return {}
        vms: dict[str, tuple[Vm, list[Image]]] = {}
        with self.sessions() as s:
            for start in range(0, len(wanted), 500):  # within any SQLite's limit on bound parameters
                chunk = wanted[start : start + 500]
                vms.update((vm.name, (vm, [])) for vm in s.scalars(select(Vm).where(Vm.name.in_(chunk))))
                query = select(Image, Vm.name).join(Vm).where(Vm.name.in_(chunk)).order_by(Image.created_at, Image.id)
                for image, name in s.execute(query):
                    vms[name][1].append(image)
        return vms

    def operation(self, op_id: int) -> Operation | None:
        """The operation, its ``steps`` loaded."""
        with self.engine.connect() as db:
            row = db.execute(_OPERATION, {"b_id": op_id}).first()
            return None if row is None else self._with_steps(db, row)

    @staticmethod
    def _with_steps(db: Connection, row: Row[Any]) -> Operation:
        steps = [_snapshot(OperationStep, step) for step in db.execute(_STEPS_OF, {"b_id": row.id})]
        return _snapshot(Operation, row, steps=steps)

    def operations_for(self, vm_name: str, *, limit: int = 5) -> list[Operation]:
        with self.sessions() as s:
            return list(
                s.scalars(
                    select(Operation)
                    .where(Operation.vm_name == vm_name)
                    .order_by(Operation.id.desc())
                    .limit(limit)
                )
            )

    def unfinished_operations(self) -> list[Operation]:
        with self.sessions() as s:
            return list(
                s.scalars(select(Operation).where(Operation.state.not_in(FINISHED_STATES)).order_by(Operation.id))
            )

    def unreported_operations(self) -> list[Operation]:
        """Ended operations with a channel whose result Slack has not taken yet (a Slack outage, or
        their process stopped in between); their thread root may never have been posted either."""
        with self.sessions() as s:
            query = select(Operation).where(
                Operation.state.in_(FINISHED_STATES),
                Operation.reported_at.is_(None),
                Operation.report.is_not(None),
                Operation.channel.is_not(None),
            )
            return list(s.scalars(query.order_by(Operation.id)))

    def operation_by_key(self, request_key: str) -> Operation | None:
        with self.sessions() as s:
            return s.scalar(select(Operation).where(Operation.request_key == request_key))

    def operation_by_thread(self, channel: str, thread_ts: str) -> Operation | None:
        """The operation whose Slack thread has this root (a message shortcut on it names channel and ts)."""
        with self.sessions() as s:
            query = select(Operation).where(Operation.channel == channel, Operation.thread_ts == thread_ts)
            return s.scalar(query.order_by(Operation.id.desc()).limit(1))

    def last_threads(self, vm_names: Sequence[str]) -> dict[str, Operation]:
        """Each VM's newest operation that has a Slack thread (the App Home's "Open thread"), in one query."""
        if not vm_names:
            return {}
        with self.sessions() as s:
            newest = (
                select(func.max(Operation.id))
                .where(Operation.vm_name.in_(vm_names), Operation.thread_ts.is_not(None))
                .group_by(Operation.vm_name)
            )
            return {op.vm_name: op for op in s.scalars(select(Operation).where(Operation.id.in_(newest)))}

    def image_of_operation(self, op_id: int) -> Image | None:
        """The image a park made (or was making) of the boot disk: its name is chosen once, so a resumed park reuses it."""
        with self.sessions() as s:
            query = select(Image).where(Image.created_by_operation_id == op_id, Image.device_name.is_(None))
            return s.scalar(query.order_by(Image.id.desc()).limit(1))

    def images_of_operation(self, op_id: int) -> list[Image]:
        """Every image a park made (or was making), the boot disk's first, then the data disks' in order."""
        with self.engine.connect() as db:
            rows = db.execute(_IMAGES_OF_OPERATION, {"b_op": op_id}).all()
        return sorted((_snapshot(Image, row) for row in rows), key=lambda image: image.device_name is not None)

    def all_images(self) -> list[tuple[Image, str]]:
        """Every image record with its VM's name (for reconcile)."""
        with self.sessions() as s:
            return [(image, name) for image, name in s.execute(select(Image, Vm.name).join(Vm).order_by(Image.id))]

    # ---- claiming a VM for an operation --------------------------------------

    def begin(
        self,
        verb: Verb,
        vm_name: str,
        *,
        allowed_from: Iterable[VmState | None],
        requested_by: str,
        zone: str,
        machine_type: str,
        channel: str | None = None,
        response_url: str | None = None,
        params: dict[str, Any] | None = None,
        request_key: str | None = None,
        audit_entry: dict[str, Any] | None = None,
    ) -> Operation:
        """Record an operation and claim the VM for it, atomically.

        ``allowed_from`` holds the VM states the verb may start from (``None``
        meaning "no such VM yet"). Raises ClaimLost if the VM is in another
        state or already held by an operation: the unique VM name and the
        compare-and-set on ``active_operation_id`` make the database the judge,
        across threads and processes. Raises DuplicateRequest if an operation
        with the same ``request_key`` exists (the unique key decides that race).
        The new operation is leased to this process, so no other process's
        resume picks it up before it runs. ``audit_entry`` (the columns of the
        request's audit entry, bot.core.audit) is written in the same transaction,
        naming the operation.
        """
        allowed = set(allowed_from)
        known_states = [state for state in allowed if state is not None]
        now = utcnow()
        # Prepared Core statements, not the unit of work: this runs on the ack path of every create,
        # park and restore, where a flush costs several times what the SQL does (`python -m bench`).
        try:
            with self.engine.begin() as db:
                op = db.execute(
                    _NEW_OPERATION,
                    {
                        "verb": verb,
                        "vm_name": vm_name,
                        "params": params or {},
                        "requested_by": requested_by,
                        "channel": channel,
                        "response_url": response_url,
                        "request_key": request_key,
                        "lease_owner": self.owner,
                        "lease_expires_at": self._lease_end(),
                        "created_at": now,
                    },
                ).one()
                vm = {"owner": requested_by, "zone": zone, "machine_type": machine_type}
                claim = {"b_name": vm_name, "b_states": known_states, "b_op": op.id, "b_now": now}
                new_life = verb in (Verb.CREATE, Verb.ADOPT)
                if new_life:  # it may take a deleted VM's name: that VM starts a new life
                    claim |= {f"b_{key}": value for key, value in vm.items()}
                claimed = db.execute(_CLAIM_VM_FOR_CREATE if new_life else _CLAIM_VM, claim).rowcount
                if not claimed:
                    if None not in allowed:
                        raise ClaimLost(vm_name)
                    db.execute(_NEW_VM, vm | {"name": vm_name, "state": VmState.CREATING, "active_operation_id": op.id,
                                              "created_at": now, "updated_at": now})
                if audit_entry is not None:
                    db.execute(_AUDIT_ENTRY_OF_OPERATION, audit_entry | {"at": now, "operation_id": op.id})
            return Operation(**op._asdict())
        except IntegrityError as exc:  # the name or the request key is taken
            earlier = self.operation_by_key(request_key) if request_key is not None else None
            if earlier is not None:
                raise DuplicateRequest(earlier) from exc
            raise ClaimLost(vm_name) from exc

    # ---- leases: which process runs an operation ------------------------------------

    def claim_operation(self, op_id: int) -> Operation | None:
        """Lease an unfinished operation to this process; None if another live process holds it.

        A compare-and-set: it succeeds when the lease is ours already, was never
        taken, or has run out (its process died or hung), so exactly one process
        runs each operation at a time.
        """
        claim = {"b_id": op_id, "b_owner": self.owner, "b_now": utcnow(), "b_expires": self._lease_end()}
        with self.engine.begin() as db:
            row = db.execute(_CLAIM_OPERATION, claim).first()
            return None if row is None else self._with_steps(db, row)

    @contextmanager
    def fenced_by(self, lease: Lease) -> Iterator[None]:
        """Within the block, every write of a step, of the VM and images, and the finish, checks
        ``lease`` first, in its transaction; LeaseLost (and nothing written) if it is not held."""
        reset = _LEASE.set(lease)
        try:
            yield
        finally:
            _LEASE.reset(reset)

    def _fence(
        self, db: Connection, op_id: int | None = None, write: _OperationWrite = _RENEW, **values: Any
    ) -> CursorResult[Any] | None:
        """The fence: one UPDATE of the operation's row that checks owner and token (and renews the
        lease); it locks the row, so a takeover waits for this transaction or this one for it.
        ``write`` (with its ``values``) is written to operation ``op_id`` in that UPDATE, or in a plain
        one when no lease fences it; returns the result of whichever ran."""
        lease = _LEASE.get()
        if lease is None or (op_id is not None and op_id != lease.op_id):
            if write.plain is None or op_id is None:
                return None
            return db.execute(write.plain, {"b_id": op_id, **values})
        fence = {"b_id": lease.op_id, "b_owner": lease.owner, "b_token": lease.token, "b_expires": self._lease_end()}
        held = db.execute(write.fenced, fence | values)
        if not held.rowcount:
            raise LeaseLost(lease.op_id)
        return held

    def let_go(self, op_id: int) -> None:
        """Release one unfinished operation this process holds (fenced), for the resumer to run again."""
        with self.engine.begin() as db:
            self._fence(db, op_id)
            db.execute(_LET_GO, {"b_id": op_id, "b_owner": self.owner})

    def release_leases(self) -> list[int]:
        """Hand over: let go of every operation this process holds (unfinished, or with its result still
        to post), so another process takes them at once. Their steps keep the GCP operations they
        started, which the next process re-attaches to; the writes this process still tries fail
        (LeaseLost). Returns their ids."""
        with self.sessions.begin() as s:
            ids = list(
                s.scalars(
                    select(Operation.id).where(
                        Operation.lease_owner == self.owner,
                        or_(Operation.state.not_in(FINISHED_STATES), Operation.reported_at.is_(None)),
                    )
                )
            )
            if ids:
                s.execute(
                    update(Operation)
                    .where(Operation.id.in_(ids), Operation.lease_owner == self.owner)
                    .values(lease_owner=None, lease_expires_at=None)
                    .execution_options(synchronize_session=False)
                )
            return ids

    def renew_leases(self) -> int:
        """Extend the lease of every operation this process holds, unfinished or with its result still
        to post (so no other process posts it again meanwhile); return how many."""
        with self.sessions.begin() as s:
            return s.execute(
                update(Operation)
                .where(
                    Operation.lease_owner == self.owner,
                    or_(Operation.state.not_in(FINISHED_STATES), Operation.reported_at.is_(None)),
                )
                .values(lease_expires_at=self._lease_end())
                .execution_options(synchronize_session=False)
            ).rowcount

    # ---- progress of an operation ----------------------------------------------

    def mark_running(self, op_id: int) -> None:
        """The first start stamps ``started_at``; a resumed run keeps it, so durations stay true."""
        with self.engine.begin() as db:
            self._fence(db, op_id, _RUNNING, b_now=utcnow())

    def set_thread(self, op_id: int, channel: str, thread_ts: str) -> None:
        with self.engine.begin() as db:
            db.execute(_SET_THREAD, {"b_id": op_id, "channel": channel, "thread_ts": thread_ts})

    def thread_of(self, op_id: int) -> str | None:
        """The ``ts`` of the operation's thread root, once Slack has taken it."""
        with self.engine.connect() as db:
            return db.execute(_THREAD_OF, {"b_id": op_id}).scalar()

    def set_channel(self, op_id: int, channel: str) -> None:
        """Where a not yet started operation reports (its requester's DM, opened after the ack)."""
        with self.sessions.begin() as s:
            s.execute(update(Operation).where(Operation.id == op_id, Operation.thread_ts.is_(None)).values(channel=channel))

    def step_started(self, op_id: int, name: str, *, request_id: str | None = None) -> int:
        step = {"operation_id": op_id, "name": name, "request_id": request_id}
        with self.engine.begin() as db:
            self._fence(db, op_id, _STEP, b_step=name)
            return int(db.execute(_NEW_STEP, step).scalar_one())

    def step_resumed(self, step_id: int) -> None:
        """A step that a crashed run started is carried on by this run."""
        with self.engine.begin() as db:
            step = db.execute(_STEP_OF_ID, {"b_id": step_id}).one()
            self._fence(db, step.operation_id, _STEP, b_step=step.name)

    def step_gcp_operation(self, step_id: int, gcp_operation: str) -> None:
        with self.engine.begin() as db:
            self._fence(db)
            db.execute(_UPDATE_STEP, {"b_id": step_id, "gcp_operation": gcp_operation})

    def step_finished(self, step_id: int, *, error: str | None = None) -> None:
        state = OperationState.FAILED if error else OperationState.SUCCEEDED
        with self.engine.begin() as db:
            self._fence(db)
            db.execute(_UPDATE_STEP, {"b_id": step_id, "state": state, "error": error, "finished_at": utcnow()})

    def update_vm(self, name: str, **values: Any) -> None:
        with self.engine.begin() as db:
            self._fence(db)
            db.execute(_UPDATE_VM, {"b_name": name, "updated_at": utcnow(), **values})

    def finish(
        self,
        op_id: int,
        state: OperationState,
        *,
        result: str | None = None,
        error: str | None = None,
        vm_values: dict[str, Any] | None = None,
        report: dict[str, Any] | None = None,
    ) -> None:
        """End an operation, release its VM and apply the VM's final values in one transaction.

        ``report`` is what the end of its Slack thread will say; ``reported`` records
        that it was said, so a process that dies in between leaves it to the next one.
        """
        now = utcnow()
        # No report stays SQL NULL (unreported_operations looks for one): a JSON column writes a bound None as "null".
        report_or_null = null() if report is None else report
        outcome = {"b_state": state, "b_result": result, "b_error": error, "b_now": now, "b_report": report_or_null}
        with self.engine.begin() as db:
            written = self._fence(db, op_id, _FINISH, **outcome)
            if written is None or not written.rowcount:
                raise NoResultFound(f"no operation #{op_id}")
            release = {"b_op": op_id, "active_operation_id": None, "updated_at": now}
            db.execute(_RELEASE_VM, release | (vm_values or {}))

    def reported(self, op_id: int) -> None:
        """The operation's thread has its result."""
        with self.engine.begin() as db:
            db.execute(_REPORTED, {"b_id": op_id, "b_now": utcnow()})

    def claim_report(self, op_id: int) -> Operation | None:
        """Lease an ended operation's unposted result to this process; None if it is posted or a live
        process holds it. ``reported`` marks it posted once Slack has it; till then the lease is
        renewed (``renew_leases``), and a process that stops leaves it to the next one."""
        now = utcnow()
        with self.sessions.begin() as s:
            claimed = s.execute(
                update(Operation)
                .where(
                    Operation.id == op_id,
                    Operation.state.in_(FINISHED_STATES),
                    Operation.reported_at.is_(None),
                    or_(
                        Operation.lease_owner.is_(None),
                        Operation.lease_owner == self.owner,
                        Operation.lease_expires_at.is_(None),
                        Operation.lease_expires_at < now,
                    ),
                )
                .values(lease_owner=self.owner, lease_expires_at=self._lease_end())
                .execution_options(synchronize_session=False)
            ).rowcount
        return self.operation(op_id) if claimed else None

    # ---- images ----------------------------------------------------------------

    def add_image(
        self, vm_name: str, name: str, family: str, *, op_id: int | None,
        device_name: str | None = None, disk_name: str | None = None,
    ) -> None:  # fmt: skip
        """Record an image before asking GCP for it, so no image GCP makes is ever untracked.
        ``device_name`` names the data disk it holds (None: the boot disk), ``disk_name`` that disk."""
        image = {"b_vm": vm_name, "name": name, "family": family, "state": ImageState.PENDING,
                 "created_by_operation_id": op_id, "device_name": device_name, "disk_name": disk_name}  # fmt: skip
        with self.engine.begin() as db:
            self._fence(db)
            db.execute(_NEW_IMAGE, image)

    def disk_deleted(self, image_name: str) -> None:
        """The disk an image holds was deleted by vmbot (a park, once every image was READY)."""
        with self.engine.begin() as db:
            db.execute(_DISK_DELETED, {"b_name": image_name, "b_now": utcnow()})

    def disks_restored(self, image_names: list[str]) -> None:
        """A restore made these images' disks again (attached to the restored VM)."""
        if not image_names:
            return
        with self.sessions.begin() as s:
            s.execute(update(Image).where(Image.name.in_(image_names)).values(disk_restored_at=utcnow()))

    def supersede_images(self, op_id: int) -> list[str]:
        """Once every image of a park is READY: the VM's READY images from earlier parks become dirty.
        Returns their names."""
        with self.engine.begin() as db:
            return self._make_dirty(db, db.execute(_READY_OF_EARLIER_PARKS, {"b_op": op_id}).all())

    @staticmethod
    def _make_dirty(db: Connection, ready: Sequence[Row[Any]], *, at: datetime | None = None) -> list[str]:
        """Make these READY images (rows of id and name) dirty, since ``at`` (now); return their names."""
        if ready:
            db.execute(_MAKE_DIRTY, {"b_ids": [image_id for image_id, _ in ready], "b_now": at or utcnow()})
        return [name for _, name in ready]

    def set_shape(self, vm_name: str, shape: dict[str, Any]) -> None:
        with self.engine.begin() as db:
            db.execute(_UPDATE_VM, {"b_name": vm_name, "updated_at": utcnow(), "shape": shape})

    def image_ready(
        self, name: str, *, disk_size_gb: int | None, archive_size_bytes: int | None, supersede: bool = True
    ) -> list[str]:
        """Mark an image READY and (``supersede``) its VM's older READY images dirty; return the names made dirty.

        A park of several disks passes ``supersede=False`` and calls ``supersede_images`` once all are READY."""
        with self.engine.begin() as db:
            self._fence(db)
            sizes = {"b_disk": disk_size_gb, "b_archive": archive_size_bytes}
            image = db.execute(_IMAGE_READY, {"b_name": name} | sizes).one()
            if not supersede:
                return []
            return self._make_dirty(db, db.execute(_OLDER_READY, {"b_vm_id": image.vm_id, "b_id": image.id}).all())

    def image_failed(self, name: str) -> None:
        with self.engine.begin() as db:
            self._fence(db)
            db.execute(_UPDATE_IMAGE, {"b_name": name, "state": ImageState.FAILED})

    def mark_images_dirty(self, vm_name: str, *, at: datetime | None = None) -> list[str]:
        """Mark every READY image of the VM dirty (the sweeper's to delete); return their names."""
        with self.engine.begin() as db:
            self._fence(db)
            return self._make_dirty(db, db.execute(_READY_OF_NAMED_VM, {"b_vm": vm_name}).all(), at=at)

    # ---- seen request signatures (replay guard) -----------------------------------

    def claim_request(self, signature: str, timestamp: int, *, now: int, window: int = 300) -> bool:
        """Record a verified request's signature; False if it was seen before (a replay).

        The unique signature decides, so two copies arriving at once cannot both
        pass. Signatures older than ``window`` seconds are pruned in the same
        transaction, at most every PRUNE_EVERY seconds: Bolt refuses such requests
        as stale anyway, so a row kept a little longer changes nothing.
        """
        try:
            with self.engine.begin() as db:
                if now - self._pruned_at >= PRUNE_EVERY:
                    db.execute(_PRUNE_SIGNATURES, {"oldest": now - window})
                    self._pruned_at = now
                db.execute(_NEW_SIGNATURE, {"signature": signature, "timestamp": timestamp})
            return True
        except IntegrityError:
            return False

    # ---- the audit trail (append-only: no update, no delete) -------------------------

    def record_audit(
        self,
        *,
        user_id: str,
        channel_id: str | None,
        kind: str,
        text: str,
        verdict: Verdict,
        verb: str | None = None,
        vm_name: str | None = None,
        detail: str | None = None,
        operation_id: int | None = None,
    ) -> AuditEntry:
        values = {
            "at": utcnow(),
            "user_id": user_id,
            "channel_id": channel_id,
            "kind": kind,
            "text": text,
            "verb": verb,
            "vm_name": vm_name,
            "verdict": verdict,
            "detail": detail,
            "operation_id": operation_id,
        }
        with self.engine.begin() as db:  # Core, not the unit of work: every request writes one
            entry_id = db.execute(_NEW_AUDIT_ENTRY, values).scalar_one()
        return AuditEntry(id=entry_id, **values)

    def audit_trail(self, vm_name: str, *, offset: int = 0, limit: int = 10) -> tuple[list[AuditEntry], int]:
        """A page of one VM's audit entries, newest first, and how many there are in all (history reads left out)."""
        with self.sessions() as s:
            # Reading the trail is recorded too (audit_log has it), but not shown in it: a page of the
            # trail would otherwise change (and its count grow) with every look at it.
            shown = (AuditEntry.vm_name == vm_name) & ((AuditEntry.verb != "history") | AuditEntry.verb.is_(None))
            total = s.scalar(select(func.count()).select_from(AuditEntry).where(shown)) or 0
            entries = s.scalars(
                select(AuditEntry)
                .where(shown)
                .order_by(AuditEntry.id.desc())
                .offset(offset)
                .limit(limit)
            )
            return list(entries), total

    def audit_log(self, *, limit: int = 100) -> list[AuditEntry]:
        """The newest entries of the whole trail, newest first."""
        with self.sessions() as s:
            return list(s.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)))

    # ---- reconcile: bringing the record in line with GCP -------------------------------

    def reconcile_vm(self, name: str, *, expected: VmState, drift: str | None, **values: Any) -> bool:
        """Apply what GCP shows to a VM no operation holds, if its state is still ``expected``.

        The compare-and-set keeps reconcile from overwriting an operation that
        started or finished since reconcile read the record.
        """
        now = utcnow()
        noted = {"drift": drift, "drift_at": now} if drift else {}
        with self.sessions.begin() as s:
            return bool(
                s.execute(
                    update(Vm)
                    .where(Vm.name == name, Vm.state == expected, Vm.active_operation_id.is_(None))
                    .values(updated_at=now, **noted, **values)
                    .execution_options(synchronize_session=False)
                ).rowcount
            )

    def adopt_vm(
        self, name: str, *, zone: str, machine_type: str, state: VmState, external_ip: str | None, drift: str
    ) -> bool:
        """Record a VM made outside vmbot with our labels (or revive a deleted record); False if taken."""
        now = utcnow()
        try:
            with self.sessions.begin() as s:
                vm = s.scalar(select(Vm).where(Vm.name == name))
                if vm is None:
                    s.add(Vm(name=name, zone=zone, machine_type=machine_type, owner=UNKNOWN_OWNER, state=state,
                             external_ip=external_ip, drift=drift, drift_at=now))  # fmt: skip
                    return True
                return bool(
                    s.execute(
                        update(Vm)
                        .where(Vm.id == vm.id, Vm.state == VmState.DELETED, Vm.active_operation_id.is_(None))
                        .values(zone=zone, machine_type=machine_type, state=state, external_ip=external_ip,
                                drift=drift, drift_at=now, updated_at=now)  # fmt: skip
                        .execution_options(synchronize_session=False)
                    ).rowcount
                )
        except IntegrityError:
            return False

    def note_drift(self, vm_name: str, drift: str) -> None:
        with self.sessions.begin() as s:
            s.execute(update(Vm).where(Vm.name == vm_name).values(drift=drift, drift_at=utcnow()))

    def set_image_state(self, name: str, state: ImageState, *, expected: ImageState, by: str | None = None) -> bool:
        """Compare-and-set an image's state (deleted ones get when and by whom)."""
        now = utcnow()
        extra: dict[str, Any] = {"deleted_at": now, "deleted_by": by} if state is ImageState.DELETED else {}
        if state is ImageState.DIRTY:
            extra["dirty_since"] = now
        with self.sessions.begin() as s:
            return bool(
                s.execute(
                    update(Image).where(Image.name == name, Image.state == expected).values(state=state, **extra)
                ).rowcount
            )

    def adopt_image(
        self, vm_name: str, name: str, *, family: str, state: ImageState, created_at: datetime | None,
        disk_size_gb: int | None, archive_size_bytes: int | None,
    ) -> bool:  # fmt: skip
        """Record an image GCP has with our labels but the store did not know; False if impossible."""
        try:
            with self.sessions.begin() as s:
                vm_id = s.scalar(select(Vm.id).where(Vm.name == vm_name))
                if vm_id is None:
                    return False
                s.add(Image(vm_id=vm_id, name=name, family=family, state=state, created_at=created_at or utcnow(),
                            disk_size_gb=disk_size_gb, archive_size_bytes=archive_size_bytes,
                            dirty_since=utcnow() if state is ImageState.DIRTY else None))  # fmt: skip
                return True
        except IntegrityError:
            return False
