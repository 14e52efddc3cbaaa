"""``/api/v1/operations``: one operation, its state and steps; ``?wait=`` holds the answer until it ends."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint

from handlers.api.errors import PREFIX, ApiError
from handlers.api.inputs import deps, query
from handlers.api.models import OneOperation, Operation, Step, WaitQuery, dump
from storage.models import FINISHED_STATES
from storage.models import Operation as OperationRow
from storage.models import OperationStep

operations = Blueprint("operations", __name__, url_prefix=f"{PREFIX}/operations")
OPERATION_ID = re.compile(r"[0-9]{1,11}")  # ASCII digits only: '²'.isdigit() is true, and int('²') fails


@operations.get("/<id>")
def get_operation(id: str) -> Any:  # noqa: A002 - the path parameter's documented name
    wait = query(WaitQuery).wait
    op = deps().store.operation(int(id)) if OPERATION_ID.fullmatch(id) else None
    if op is None:
        raise ApiError("operation_not_found", f"There is no operation {id[:20]!r}.")
    return dump(OneOperation(operation=operation_model(wait_for(op, wait))))


def wait_for(op: OperationRow, seconds: float) -> OperationRow:
    """The operation once it has ended, or as it is after ``seconds``; woken by Workflows.run, no polling."""
    with deps().workflows.completions.watch(op.id) as ended:
        current = _reread(op)
        if seconds > 0 and current.state not in FINISHED_STATES:
            ended.wait(seconds)
            current = _reread(op)
    return current


def _reread(op: OperationRow) -> OperationRow:
    current = deps().store.operation(op.id)
    assert current is not None, "operations are never deleted"
    return current


def operation_model(op: OperationRow, *, with_steps: bool = True) -> Operation:
    """``with_steps`` only for rows read by Store.operation (the one read that loads them)."""
    model = Operation(
        id=op.id,
        url=f"{PREFIX}/operations/{op.id}",
        verb=op.verb,
        vm=op.vm_name,
        state=op.state,
        done=op.state in FINISHED_STATES,
        step=op.step,
        requested_by=op.requested_by,
        params=op.params or {},
        slack={"channel": op.channel, "thread_ts": op.thread_ts} if op.channel else None,
        result=op.result,
        error=op.error,
        created_at=time(op.created_at),
        started_at=time(op.started_at),
        finished_at=time(op.finished_at),
    )
    if with_steps:
        model.steps = [step_model(step) for step in op.steps]
    return model


def step_model(step: OperationStep) -> Step:
    return Step(
        name=step.name,
        state=step.state.value,
        gcp_operation=step.gcp_operation,
        error=step.error,
        started_at=time(step.started_at),
        finished_at=time(step.finished_at),
    )


def time(when: Any) -> str | None:
    return None if when is None else when.isoformat()
