"""The audit trail: every command and button press, allowed or refused, recorded once.

A handler describes the request (who, where, what they typed or pressed), decides,
and records the verdict with the operation it started, if any. Rows are only ever
added (the Store has no update or delete for them, and the database refuses both).

Which operation a request started is noted by ``lifecycle.start_operation``
itself, through a context variable, so no verb function has to pass the id back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from bot.errors import UsageError, UserError
from storage.models import AuditEntry, Verdict
from storage.store import Store

MAX_TEXT = 1000
MAX_DETAIL = 2000

_started: ContextVar[list[int] | None] = ContextVar("vmbot_operations_started", default=None)


@dataclass
class Request:
    """What a person asked, as the audit trail records it."""

    kind: str  # "command" or "button"
    user_id: str
    channel_id: str | None
    text: str
    verb: str | None = None
    vm_name: str | None = None

    @classmethod
    def of_command(cls, payload: dict[str, Any]) -> Request:
        return cls("command", str(payload.get("user_id") or ""), payload.get("channel_id"), payload.get("text") or "")

    @classmethod
    def of_button(cls, body: dict[str, Any], action: dict[str, Any], *, verb: str, vm_name: str | None) -> Request:
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
        text = f"{action.get('action_id')} {vm_name or action.get('value', '')}"
        return cls("button", str((body.get("user") or {}).get("id") or ""), channel, text, verb, vm_name)


@contextmanager
def operations_started() -> Iterator[list[int]]:
    """Collect the ids of operations started inside the block (see ``note_operation``)."""
    started: list[int] = []
    token = _started.set(started)
    try:
        yield started
    finally:
        _started.reset(token)


def note_operation(op_id: int) -> None:
    """Called where operations are recorded: ties the request being handled to its operation."""
    started = _started.get()
    if started is not None:
        started.append(op_id)


def verdict_for(error: UserError) -> Verdict:
    return Verdict.INVALID if isinstance(error, UsageError) else Verdict.REFUSED


def record(
    store: Store,
    request: Request,
    verdict: Verdict,
    *,
    detail: str | None = None,
    operation_id: int | None = None,
) -> AuditEntry:
    """Append one entry; values are cut to the columns' sizes (the text a person typed can be long)."""
    return store.record_audit(
        user_id=_cut(request.user_id, 64),
        channel_id=_cut(request.channel_id, 32) if request.channel_id else None,
        kind=request.kind,
        text=_cut(request.text, MAX_TEXT),
        verdict=verdict,
        verb=request.verb[:32] if request.verb else None,
        vm_name=request.vm_name[:63] if request.vm_name else None,
        detail=_cut(detail, MAX_DETAIL) if detail else None,
        operation_id=operation_id,
    )


def _cut(text: str, limit: int) -> str:
    # PostgreSQL's text type cannot hold NUL characters; a hostile command may carry them.
    text = text.replace("\x00", "\ufffd")
    return text if len(text) <= limit else text[: limit - 1] + "…"
