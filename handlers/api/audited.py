"""The audit trail of the API: every authenticated mutation, allowed or refused, as bot.core.audit records a Slack command."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pydantic_core
from flask import g, request

from bot.core import audit
from bot.core.names import NAME_RE
from bot.slack.text import escape
from handlers.api.errors import ApiError
from handlers.api.inputs import deps
from storage.models import Verdict


def audited(view: Callable[..., Any]) -> Callable[..., Any]:
    """Record an authenticated mutation's verdict as the audit trail records a Slack command's."""

    @functools.wraps(view)
    def recorded(**args: Any) -> Any:
        with audit.recording(_audit_request(args)) as recording:  # an operation is written with its entry
            try:
                answer = view(**args)
            except Exception as error:
                _record(recording, error)
                raise
            _record(recording, None)
            return answer

    return recorded


def _record(recording: audit.Recording, error: Exception | None) -> None:
    if error is None:
        verdict, detail = Verdict.ALLOWED, None
    elif isinstance(error, ApiError):
        verdict = Verdict.INVALID if error.status in (400, 405, 413) else Verdict.REFUSED
        verdict = Verdict.ERROR if error.status >= 500 else verdict
        # Stored as Slack text (the history shows it there): the plain API message is escaped again.
        detail = escape(f"{error.code}: {error.message}")
    else:
        verdict, detail = Verdict.ERROR, "internal error; see the bot's log"
    recording.record(deps().store, verdict, detail=detail)


def _audit_request(args: dict[str, Any]) -> audit.Request:
    """An API mutation as the audit trail describes it: who, the method and path, and the body sent."""
    raw = g.get("raw_body", b"")
    body = raw.decode("utf-8", "replace").strip()
    name = args.get("name") or _field(raw, "name")
    name = name if name and NAME_RE.fullmatch(name) else None
    return audit.Request("api", g.actor, None, f"{request.method} {request.path} {body}".strip(),
                         verb=request.path.rsplit("/", 1)[-1] if args else "create", vm_name=name)


def _field(raw: bytes, key: str) -> str | None:
    """One string field of a JSON body, if it is one (for the audit trail; the view checks it properly)."""
    try:
        value = pydantic_core.from_json(raw).get(key)
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None
