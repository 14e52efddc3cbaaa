"""The audit trail: every command and button press, allowed or refused, recorded once.

A handler describes the request (who, where, what they typed or pressed), decides,
and records the verdict with the operation it started, if any. Rows are only ever
added (the Store has no update or delete for them, and the database refuses both).

A handler handles its request inside ``recording(request)``. When the request
starts an operation, ``lifecycle.start_operation`` writes the request's entry
(allowed) in the same transaction as the operation: no operation exists without
the entry saying who asked for it, even if the process dies the next moment,
and the ack pays for one write instead of two. The handler records its verdict
through the recording, which adds nothing when that is the allowed entry
already written, and names the operation, so no verb function has to pass its
id back. A
request that fails after starting its operation keeps that allowed entry and
gets a second one, the error, naming the same operation.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from bot.core.errors import InvalidInput, UsageError, UserError
from storage.models import AuditEntry, Verdict
from storage.store import Store

MAX_TEXT = 1000
MAX_DETAIL = 2000

_current: ContextVar[Recording | None] = ContextVar("vmbot_audit_recording", default=None)


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


@dataclass
class Recording:
    """The entry of the request being handled: whether it is written yet, and with which operation."""

    request: Request
    operation_id: int | None = None  # the operation the request started, once it has
    written: bool = False
    # A job submitted inside the block runs in a copy of this context (bot.jobs.runner), on another thread:
    # it is not this request, and what it starts is not this request's doing.
    thread: int = field(default_factory=threading.get_ident)

    def record(self, store: Store, verdict: Verdict, *, detail: str | None = None) -> AuditEntry | None:
        """The request's verdict, naming the operation it started if any; nothing when that is the
        allowed entry already written with the operation."""
        if self.written and verdict is Verdict.ALLOWED and detail is None:
            return None
        return record(store, self.request, verdict, detail=detail, operation_id=self.operation_id)


@contextmanager
def recording(request: Request) -> Iterator[Recording]:
    """Handle ``request`` inside this block: an operation started in it is written with its entry."""
    current = Recording(request)
    token = _current.set(current)
    try:
        yield current
    finally:
        _current.reset(token)


def _handled_here() -> Recording | None:
    current = _current.get()
    return current if current is not None and current.thread == threading.get_ident() else None


def entry_for_new_operation() -> dict[str, Any] | None:
    """The allowed entry of the request being handled, for the store to write with the operation it
    starts (the operation's id is added there); None outside ``recording`` or once it is written."""
    current = _handled_here()
    if current is None or current.written:
        return None
    return entry_values(current.request, Verdict.ALLOWED)


def operation_started(operation_id: int, *, entry_written: bool) -> None:
    """Called by ``lifecycle.start_operation`` once the store has written the operation (and the
    entry, when ``entry_for_new_operation`` gave one) in one transaction."""
    current = _handled_here()
    if current is not None:
        current.operation_id = operation_id
        current.written = current.written or entry_written


def verdict_for(error: UserError) -> Verdict:
    return Verdict.INVALID if isinstance(error, (UsageError, InvalidInput)) else Verdict.REFUSED


def record(
    store: Store,
    request: Request,
    verdict: Verdict,
    *,
    detail: str | None = None,
    operation_id: int | None = None,
) -> AuditEntry:
    """Append one entry (a request handled inside ``recording`` records through it instead)."""
    return store.record_audit(**entry_values(request, verdict, detail=detail, operation_id=operation_id))


def entry_values(
    request: Request, verdict: Verdict, *, detail: str | None = None, operation_id: int | None = None
) -> dict[str, Any]:
    """An entry's columns; values are cut to the columns' sizes (the text a person typed can be long)."""
    return {
        "user_id": _cut(request.user_id, 64),
        "channel_id": _cut(request.channel_id, 32) if request.channel_id else None,
        "kind": request.kind,
        "text": _cut(request.text, MAX_TEXT),
        "verdict": verdict,
        "verb": request.verb[:32] if request.verb else None,
        "vm_name": request.vm_name[:63] if request.vm_name else None,
        "detail": _cut(detail, MAX_DETAIL) if detail else None,
        "operation_id": operation_id,
    }


def _cut(text: str, limit: int) -> str:
    # PostgreSQL's text type cannot hold NUL characters; a hostile command may carry them.
    text = text.replace("\x00", "\ufffd")
    return text if len(text) <= limit else text[: limit - 1] + "…"
