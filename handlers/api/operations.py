"""``/api/v1/operations``: one operation, its state and steps; ``?wait=`` holds the answer until it ends."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint

from handlers.api.errors import PREFIX, ApiError
from handlers.api.inputs import deps, query
from handlers.api.models import OneOperation, WaitQuery, dump
from storage.models import FINISHED_STATES
from storage.models import Operation as OperationRow

operations = Blueprint("operations", __name__, url_prefix=f"{PREFIX}/operations")
OPERATION_ID = re.compile(r"[0-9]{1,11}")  # ASCII digits only: '²'.isdigit() is true, and int('²') fails


@operations.get("/<id>")
def get_operation(id: str) -> Any:  # the path parameter's documented name
    wait = query(WaitQuery).wait
    op = deps().store.operation(int(id)) if OPERATION_ID.fullmatch(id) else None
    if op is None:
        raise ApiError("operation_not_found", f"There is no operation {id[:20]!r}.")
    return dump(OneOperation(operation=wait_for(op, wait)))


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
