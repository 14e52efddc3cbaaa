"""The store's tables: VMs, their images, and every operation with its steps.

A VM row is never deleted: its ``state`` says where it is in its life, and
``active_operation_id`` says whether an operation holds it right now. Claiming a
VM for an operation is a compare-and-set on that column (see ``Store.begin``), so
the database, not the process, decides who wins a race.
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Enum, ForeignKey, Index, Integer, String, Text, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


UNKNOWN_OWNER = "unknown"  # the owner of a VM reconcile adopted from GCP: nobody in Slack asked for it


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp with its time zone, read back as UTC on every database.

    PostgreSQL keeps the zone; SQLite keeps none and hands back naive
    datetimes. Every value is converted to UTC on the way in (GCP's times
    carry their own offset), so a naive value read back is UTC: marking it so
    here spares every reader its own conversion.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Written as UTC: SQLite drops the offset and would keep GCP's "-07:00" wall time as if it were UTC."""
        if value is not None and value.tzinfo is not None:
            return value.astimezone(timezone.utc)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UtcDateTime()}


def _enum(cls: type[enum.Enum]) -> Enum:
    # Store the readable value ("running"), not the member name ("RUNNING").
    return Enum(cls, values_callable=lambda members: [m.value for m in members], native_enum=False, length=16)


class VmState(str, enum.Enum):
    CREATING = "creating"  # reserved by a create that has not finished
    RUNNING = "running"
    STOPPED = "stopped"  # exists in GCP but stopped (a park that did not finish)
    PARKED = "parked"  # only its image exists
    DELETED = "deleted"  # gone; the name may be used again


class ImageState(str, enum.Enum):
    PENDING = "pending"  # asked of GCP, not READY yet
    READY = "ready"
    DIRTY = "dirty"  # superseded by a newer image; the sweeper removes it
    DELETED = "deleted"
    FAILED = "failed"  # GCP never made it


class Verb(str, enum.Enum):
    CREATE = "create"
    PARK = "park"
    RESTORE = "restore"
    DELETE = "delete"


class OperationState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"  # refused after acceptance (e.g. the name exists in GCP)


FINISHED_STATES = (OperationState.SUCCEEDED, OperationState.FAILED, OperationState.REJECTED)


class Vm(Base):
    __tablename__ = "vms"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    zone: Mapped[str] = mapped_column(String(63))
    machine_type: Mapped[str] = mapped_column(String(63))
    owner: Mapped[str] = mapped_column(String(64))
    state: Mapped[VmState] = mapped_column(_enum(VmState))
    external_ip: Mapped[str | None] = mapped_column(String(45))
    active_operation_id: Mapped[int | None] = mapped_column(ForeignKey("operations.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # What the last reconcile found different in GCP (and fixed in this record), for /vm status.
    drift: Mapped[str | None] = mapped_column(Text)
    drift_at: Mapped[datetime | None]

    images: Mapped[list[Image]] = relationship(back_populates="vm", order_by="Image.created_at")
    active_operation: Mapped[Operation | None] = relationship(foreign_keys=[active_operation_id])


class Image(Base):
    __tablename__ = "images"
    # (state, dirty_since, id): the sweeper pages through dirty images by keyset on (dirty_since, id).
    __table_args__ = (Index("ix_images_state_dirty_since", "state", "dirty_since", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    vm_id: Mapped[int] = mapped_column(ForeignKey("vms.id"), index=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    family: Mapped[str] = mapped_column(String(63))
    state: Mapped[ImageState] = mapped_column(_enum(ImageState))
    disk_size_gb: Mapped[int | None] = mapped_column(Integer)
    archive_size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    dirty_since: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]
    deleted_by: Mapped[str | None] = mapped_column(String(64))
    created_by_operation_id: Mapped[int | None] = mapped_column(ForeignKey("operations.id"))
    deleted_by_sweep_id: Mapped[int | None] = mapped_column(ForeignKey("sweeps.id"))
    delete_error: Mapped[str | None] = mapped_column(Text)  # the last sweep's failure, until a sweep succeeds

    vm: Mapped[Vm] = relationship(back_populates="images")


class Operation(Base):
    """One verb asked of one VM by one person, from request to result."""

    __tablename__ = "operations"

    id: Mapped[int] = mapped_column(primary_key=True)
    verb: Mapped[Verb] = mapped_column(_enum(Verb))
    vm_name: Mapped[str] = mapped_column(String(63), index=True)
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    requested_by: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str | None] = mapped_column(String(32))
    thread_ts: Mapped[str | None] = mapped_column(String(32))
    response_url: Mapped[str | None] = mapped_column(Text)
    state: Mapped[OperationState] = mapped_column(_enum(OperationState), default=OperationState.QUEUED)
    step: Mapped[str | None] = mapped_column(String(32))
    result: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # The Slack request that asked for it (a trigger_id, a confirmation's nonce): unique, so a
    # redelivered request or a double click finds the operation it already made.
    request_key: Mapped[str | None] = mapped_column(String(128), unique=True, index=True)
    # Which bot process runs it, until when: a process that dies stops renewing the lease,
    # and any process may take the operation over once it has run out (see Store.claim_operation).
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None]
    # Fencing: raised by one on every claim, and checked with the owner by every write of a step and
    # the finish (Store.Lease), so a process that lost its lease (frozen, partitioned) stops at its next write.
    lease_token: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # What the end of its Slack thread says ({"ok", "headline", "detail"}), written with the outcome,
    # and when it was posted: a process that dies in between leaves it for the next one to post.
    report: Mapped[dict | None] = mapped_column(JSON)
    reported_at: Mapped[datetime | None]

    steps: Mapped[list[OperationStep]] = relationship(back_populates="operation", order_by="OperationStep.id")


class OperationStep(Base):
    """One GCP-facing step of an operation, with the GCP operation that carries it."""

    __tablename__ = "operation_steps"

    id: Mapped[int] = mapped_column(primary_key=True)
    operation_id: Mapped[int] = mapped_column(ForeignKey("operations.id"), index=True)
    name: Mapped[str] = mapped_column(String(32))
    # Written before the GCP call: sending the same requestId again after a crash gets the
    # original GCP operation back, even if the crash came before its name was recorded.
    request_id: Mapped[str | None] = mapped_column(String(36))
    gcp_operation: Mapped[str | None] = mapped_column(String(128))
    state: Mapped[OperationState] = mapped_column(_enum(OperationState), default=OperationState.RUNNING)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]

    operation: Mapped[Operation] = relationship(back_populates="steps")


class Sweep(Base):
    """One (non dry-run) sweep of dirty images: who started it, and what it did.

    Images it deleted point at it (``Image.deleted_by_sweep_id``).
    """

    __tablename__ = "sweeps"

    id: Mapped[int] = mapped_column(primary_key=True)
    trigger: Mapped[str] = mapped_column(String(16))  # "scheduled" or "manual"
    requested_by: Mapped[str | None] = mapped_column(String(64))
    holder: Mapped[str] = mapped_column(String(128))  # which process swept (its lease holder id)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    deleted: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    orphans: Mapped[int] = mapped_column(Integer, default=0)
    freed_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    completed: Mapped[bool] = mapped_column(Boolean, default=False)  # False: stopped early (shutdown, lease lost)


class Lease(Base):
    """A named lease, so one process among several sharing the database does a job at a time.

    Taken with a compare-and-set (``Store.take_lease``); it expires, so a holder
    that crashed cannot keep it.
    """

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime]
    taken_at: Mapped[datetime] = mapped_column(default=utcnow)


class Verdict(str, enum.Enum):
    ALLOWED = "allowed"
    REFUSED = "refused"  # understood, but not permitted now (who, where, or the VM's state)
    INVALID = "invalid"  # could not be understood (a usage error)
    ERROR = "error"  # a bug on our side; the log has the details


class AuditEntry(Base):
    """One command or button press, allowed or refused, as it was decided.

    Append-only: the Store offers no way to change or remove a row, and the
    migration adds database triggers that refuse UPDATE and DELETE.
    """

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_vm_name_id", "vm_name", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    user_id: Mapped[str] = mapped_column(String(64))
    channel_id: Mapped[str | None] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))  # "command" or "button"
    text: Mapped[str] = mapped_column(Text)  # the command text, or the button's action and VM
    verb: Mapped[str | None] = mapped_column(String(32))
    vm_name: Mapped[str | None] = mapped_column(String(63))
    verdict: Mapped[Verdict] = mapped_column(_enum(Verdict))
    detail: Mapped[str | None] = mapped_column(Text)  # why it was refused, as the user was told
    operation_id: Mapped[int | None] = mapped_column(ForeignKey("operations.id"))


class SeenRequest(Base):
    """A Slack request signature already served, so an identical replay is refused.

    Slack signs ``v0:timestamp:body``; Bolt accepts a signature for 5 minutes,
    so a row is needed only that long and is pruned afterwards.
    """

    __tablename__ = "seen_requests"

    signature: Mapped[str] = mapped_column(String(128), primary_key=True)
    timestamp: Mapped[int] = mapped_column(BigInteger, index=True)  # X-Slack-Request-Timestamp
