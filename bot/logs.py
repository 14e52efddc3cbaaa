"""Logging, set up once by every entry point (``python -m bot``, the demo).

One line per event. ``VMBOT_LOG_FORMAT=json`` writes one JSON object per line
with the fields Cloud Logging reads from a structured log line (``severity``,
``message``, ``time``, ``logging.googleapis.com/sourceLocation``) plus vmbot's
own (``logger``, ``operation_id``, ``vm``, ``slack_user``), and an exception's
traceback in ``stack_trace``, where Error Reporting finds it. Plain text
otherwise, for a person at a terminal.

Who and what a line is about comes from the log context: the workflow runner
wraps each operation in ``context(operation_id=..., vm=..., slack_user=...)``,
a background job starts with a copy of its submitter's context (bot.jobs.runner),
and a single call can pass ``extra={"vm": ...}``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any, TextIO

from bot.redaction import RedactingFilter

# The fields a line may carry about what it concerns, in the order text lines show them.
CONTEXT_FIELDS = ("operation_id", "vm", "slack_user")
_TEXT_LABELS = {"operation_id": "op", "vm": "vm", "slack_user": "user"}
# Libraries whose INFO lines say nothing an operator needs, on every start.
QUIET_LOGGERS = {
    "alembic.runtime.plugins": logging.WARNING,
    # waitress (bot.web.server): "Serving on ..." (vmbot says so itself) at INFO, and "Task queue depth is N"
    # at WARNING whenever a burst waits for a request thread, which is the pool doing its job.
    "waitress": logging.WARNING,
    "waitress.queue": logging.ERROR,
}
_context: ContextVar[dict[str, Any]] = ContextVar("vmbot_log_context", default={})


@contextmanager
def context(**fields: Any) -> Iterator[None]:
    """Attach ``fields`` (see CONTEXT_FIELDS) to every line logged inside the block, on this thread."""
    token = _context.set(_merged(fields))
    try:
        yield
    finally:
        _context.reset(token)


def _merged(fields: dict[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - set(CONTEXT_FIELDS)
    if unknown:
        raise TypeError(f"unknown log context fields {sorted(unknown)}; known: {CONTEXT_FIELDS}")
    return {**_context.get(), **{key: value for key, value in fields.items() if value is not None}}


class ContextFilter(logging.Filter):
    """Copies the log context onto each record; a field given with ``extra=`` wins."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if getattr(record, key, None) is None:
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, in the shape Cloud Logging turns into a structured entry."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": record.levelname if record.levelname in _SEVERITIES else "DEFAULT",
            "message": record.getMessage(),
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="microseconds").replace(
                "+00:00", "Z"
            ),
            "logger": record.name,
            "logging.googleapis.com/sourceLocation": {
                "file": record.pathname,
                "line": str(record.lineno),
                "function": record.funcName,
            },
        }
        for key in CONTEXT_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_text:  # already formatted (and redacted) by bot.redaction.RedactingFilter
            entry["stack_trace"] = record.exc_text
        elif record.exc_info:
            entry["stack_trace"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = record.stack_info
        return json.dumps(entry, default=str, ensure_ascii=False)


_SEVERITIES = frozenset({"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"})


# Line breaks and other control characters, which would let a field start a line of its own (a forged log line).
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
_CONTROL_NAMES = {"\n": "\\n", "\r": "\\r"}


def one_line(text: str) -> str:
    """``text`` on one line: a line break shows as ``\\n``, another control character as ``\\xNN``."""
    return _CONTROL.sub(lambda m: _CONTROL_NAMES.get(m.group(), f"{ord(m.group()):#04x}".replace("0x", "\\x", 1)
                                                    if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}"), text)


class TextFormatter(logging.Formatter):
    """``TIME LEVEL logger [op=7 vm=test-vm-22 user=U100]: message``; a traceback follows on its own lines.

    Every field is one line (``one_line``): text from outside (a request body, a GCP
    message, a name) can never start a line that looks like one of ours.
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(vmbot_context)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        shown = [f"{_TEXT_LABELS[key]}={getattr(record, key)}" for key in CONTEXT_FIELDS if getattr(record, key, None) is not None]
        record.vmbot_context = one_line(f" [{' '.join(shown)}]") if shown else ""
        return super().format(record)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's naming)
        record.message = one_line(record.message)
        record.name = one_line(record.name)
        return super().formatMessage(record)


def record_filters(secrets: Iterable[str] = ()) -> list[logging.Filter]:
    """What every record passes through before it is formatted, in order.

    Filters sit on the handler, so they see records from every logger
    (waitress's, the libraries') and not only the ones logged on vmbot's own.
    Secret redaction (bot.redaction) comes last: it rewrites the message and traceback.
    """
    return [ContextFilter(), RedactingFilter(secrets)]


def configure(
    fmt: str = "text", level: str | int = "INFO", *, stream: TextIO | None = None, secrets: Iterable[str] = ()
) -> logging.Handler:
    """Send every log record to ``stream`` (stderr) as ``fmt`` ("text" or "json"); safe to call again.

    ``secrets`` are the exact values no line may show (bot.redaction.secrets_of);
    credential-looking strings are redacted whatever they are.

    Replaces only the handler an earlier call installed, so test frameworks'
    capture handlers stay in place.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "vmbot", False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.vmbot = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    for record_filter in record_filters(secrets):
        handler.addFilter(record_filter)
    root.addHandler(handler)
    root.setLevel(level)
    for name, quieter in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(quieter)
    bolt = logging.getLogger("slack_bolt.App")
    if not any(isinstance(f, _BoltTokenNotice) for f in bolt.filters):
        bolt.addFilter(_BoltTokenNotice())
    verification = logging.getLogger(BOLT_VERIFICATION_LOGGER)
    if not any(isinstance(f, _BoltBadSignature) for f in verification.filters):
        verification.addFilter(_BoltBadSignature())
    return handler


# Bolt's request verification middleware logs the raw body of every request with a bad signature, at INFO.
BOLT_VERIFICATION_LOGGER = "slack_bolt.RequestVerification"
BAD_SIGNATURE_NOTICE = "Invalid request signature detected"


class _BoltBadSignature(logging.Filter):
    """Turns Bolt's line about a request with a bad signature into a short summary without the body.

    Anyone can send such a request: its body (any size, any line breaks, a forged
    log line) must not reach the log. What is left says that one was refused.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith(BAD_SIGNATURE_NOTICE):
            record.msg = "refused a request with an invalid Slack signature (%d characters logged by Bolt, not shown)"
            record.args = (len(message),)
        return True


class _BoltTokenNotice(logging.Filter):
    """Drops Bolt's start-up warning that the client vmbot passes wins over SLACK_BOT_TOKEN.

    Bolt reads SLACK_BOT_TOKEN from the environment by itself; the client is built
    from the same token (bot.app), so the warning only alarms whoever reads the log.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped

        return record.getMessage() != warning_client_prioritized_and_token_skipped()

