"""Store queries for schedules, their runs and time-to-live deadlines.

A mixin of ``storage.store.Store``; like every Store method, each is one transaction.

A run is claimed with a compare-and-set on its ``(vm_name, run_key)`` row: an UPDATE
from the states it may move from, or, where it may start from nothing, an INSERT
that the unique key lets only one process make. So across replicas sharing the
database (PostgreSQL) each notice is sent, and each run started, exactly once.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from storage.models import Operation, OperationState, RunState, ScheduleRun, Verb, VmSchedule, VmTtl, utcnow

# Verbs after which a VM's machine is not running (off), and those that bring it back (on): savings.
OFF_VERBS = (Verb.PARK, Verb.STOP, Verb.SUSPEND)
ON_VERBS = (Verb.RESTORE, Verb.START, Verb.RESUME, Verb.DELETE)


class ScheduleQueries:
    sessions: sessionmaker[Session]

    # ---- schedules -------------------------------------------------------------------

    def set_schedule(self, vm_name: str, values: dict[str, Any], *, set_by: str, channel: str | None) -> VmSchedule:
        """Set (or replace) a VM's schedule. Runs of an older schedule that had not happened yet are
        forgotten, so the new one starts clean; runs started or missed stay as history."""
        now = utcnow()
        with self.sessions.begin() as s:
            s.execute(delete(VmSchedule).where(VmSchedule.vm_name == vm_name))
            s.execute(
                delete(ScheduleRun).where(
                    ScheduleRun.vm_name == vm_name,
                    ScheduleRun.run_key.not_like("ttl:%"),
                    ScheduleRun.state.in_([RunState.NOTICED, RunState.SNOOZED, RunState.SKIPPED]),
                )
            )
            row = VmSchedule(vm_name=vm_name, set_by=set_by, channel=channel, created_at=now, updated_at=now,
                             skipped_runs=[], snoozes=[], **values)  # fmt: skip
            s.add(row)
        return row

    def delete_schedule(self, vm_name: str) -> bool:
        with self.sessions.begin() as s:
            return bool(s.execute(delete(VmSchedule).where(VmSchedule.vm_name == vm_name)).rowcount)

    def vm_schedule(self, vm_name: str) -> VmSchedule | None:
        with self.sessions() as s:
            return s.scalar(select(VmSchedule).where(VmSchedule.vm_name == vm_name))

    def all_schedules(self) -> list[VmSchedule]:
        with self.sessions() as s:
            return list(s.scalars(select(VmSchedule).order_by(VmSchedule.vm_name)))

    def set_schedule_changes(self, vm_name: str, *, skipped_runs: list[str], snoozes: list[list[str]]) -> None:
        """Record a schedule's one-off changes (a snooze, a skip) as a whole."""
        with self.sessions.begin() as s:
            s.execute(
                update(VmSchedule)
                .where(VmSchedule.vm_name == vm_name)
                .values(skipped_runs=skipped_runs, snoozes=snoozes, updated_at=utcnow())
            )

    # ---- runs --------------------------------------------------------------------------

    def claim_run(
        self,
        vm_name: str,
        run_key: str,
        state: RunState,
        *,
        from_states: Iterable[RunState | None],
        note: str | None = None,
    ) -> bool:
        """Move a run to ``state`` if it is in one of ``from_states`` (``None``: no row yet); False if
        another process (or an earlier tick) got there first."""
        allowed = list(from_states)
        known = [item for item in allowed if item is not None]
        now = utcnow()
        if known:
            with self.sessions.begin() as s:
                moved = s.execute(
                    update(ScheduleRun)
                    .where(ScheduleRun.vm_name == vm_name, ScheduleRun.run_key == run_key, ScheduleRun.state.in_(known))
                    .values(state=state, note=note, updated_at=now)
                    .execution_options(synchronize_session=False)
                ).rowcount
            if moved:
                return True
        if None not in allowed:
            return False
        try:
            with self.sessions.begin() as s:
                s.execute(insert(ScheduleRun).values(vm_name=vm_name, run_key=run_key, state=state, note=note,
                                                     created_at=now, updated_at=now))  # fmt: skip
            return True
        except IntegrityError:  # the unique (vm_name, run_key): someone else has this run
            return False

    def run_started(self, vm_name: str, run_key: str, operation_id: int) -> None:
        with self.sessions.begin() as s:
            s.execute(
                update(ScheduleRun)
                .where(ScheduleRun.vm_name == vm_name, ScheduleRun.run_key == run_key)
                .values(operation_id=operation_id, updated_at=utcnow())
            )

    def run_states(self, vm_name: str) -> dict[str, RunState]:
        """Every recorded run of a VM and its state, so a tick skips the settled ones without a write."""
        with self.sessions() as s:
            rows = s.execute(select(ScheduleRun.run_key, ScheduleRun.state).where(ScheduleRun.vm_name == vm_name))
            return {key: state for key, state in rows}

    def schedule_run(self, vm_name: str, run_key: str) -> ScheduleRun | None:
        with self.sessions() as s:
            return s.scalar(select(ScheduleRun).where(ScheduleRun.vm_name == vm_name, ScheduleRun.run_key == run_key))

    # ---- time to live --------------------------------------------------------------------

    def set_ttl(self, vm_name: str, park_at: datetime, *, set_by: str, channel: str | None) -> None:
        with self.sessions.begin() as s:
            s.execute(delete(VmTtl).where(VmTtl.vm_name == vm_name))
            s.add(VmTtl(vm_name=vm_name, park_at=park_at, set_by=set_by, channel=channel, created_at=utcnow()))

    def clear_ttl(self, vm_name: str) -> bool:
        with self.sessions.begin() as s:
            return bool(s.execute(delete(VmTtl).where(VmTtl.vm_name == vm_name)).rowcount)

    def move_ttl(self, vm_name: str, *, expected: datetime, park_at: datetime) -> bool:
        """Compare-and-set a deadline (a snooze): False if it changed or went meanwhile."""
        with self.sessions.begin() as s:
            return bool(
                s.execute(
                    update(VmTtl).where(VmTtl.vm_name == vm_name, VmTtl.park_at == expected).values(park_at=park_at)
                ).rowcount
            )

    def ttl(self, vm_name: str) -> VmTtl | None:
        with self.sessions() as s:
            return s.scalar(select(VmTtl).where(VmTtl.vm_name == vm_name))

    def all_ttls(self) -> list[VmTtl]:
        with self.sessions() as s:
            return list(s.scalars(select(VmTtl).order_by(VmTtl.park_at)))

    # ---- savings -------------------------------------------------------------------------

    def pause_history(self, vm_name: str | None = None) -> list[Operation]:
        """Succeeded operations that turn a machine off or back on, oldest first (for savings to date)."""
        query = select(Operation).where(
            Operation.state == OperationState.SUCCEEDED,
            Operation.verb.in_(OFF_VERBS + ON_VERBS),
            Operation.finished_at.is_not(None),
        )
        if vm_name is not None:
            query = query.where(Operation.vm_name == vm_name)
        with self.sessions() as s:
            return list(s.scalars(query.order_by(Operation.finished_at, Operation.id)))
