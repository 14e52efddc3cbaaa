"""Keeps secrets out of logs and out of what users read.

``bot.logs.configure`` puts a RedactingFilter on the one handler every record
passes through; ``bot.gcp.compute`` redacts every GCP error message, which users read.

Two layers: the exact secret values the bot was configured with (bot token, app
token, signing secret, the database password), and patterns that look like a
credential whatever its origin (Slack tokens, OAuth bearer tokens, Google access
tokens, private keys, a ``token=`` form field). The second layer matters for text
the bot did not write: a library's debug log of a request body, or an error
message from GCP shown in a thread.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.settings import Settings

REDACTED = "[redacted]"

CREDENTIAL_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"\bxox[a-z]-[A-Za-z0-9-]+"),  # Slack bot, user and config tokens
    re.compile(r"\bxapp-[A-Za-z0-9-]+"),  # Slack app-level (Socket Mode) tokens
    re.compile(r"\bya29\.[A-Za-z0-9._-]+"),  # Google OAuth access tokens
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}"),  # any Authorization: Bearer value
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
    re.compile(r'(?i)"(private_key|client_secret|refresh_token|access_token)"\s*:\s*"[^"]*"'),
    re.compile(r"(?i)\b(token|access_token|client_secret|refresh_token)=[^&\s\"']+"),  # form fields, query strings
)


def secrets_of(settings: Settings) -> list[str]:
    """The exact secret values in ``settings`` (short values are skipped: redacting "a" would wreck logs)."""
    from sqlalchemy.engine import make_url

    values = [settings.slack_bot_token, settings.slack_signing_secret, settings.slack_app_token]
    values.append(settings.metrics_token)
    try:
        values.append(make_url(settings.database_url).password)
    except Exception:  # noqa: BLE001 - an unparsable URL fails later, with a clear message, where it is used
        pass
    return [str(value) for value in values if value and len(str(value)) >= 6]


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every known secret and every credential-looking string replaced by [redacted]."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    for pattern in CREDENTIAL_PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


class RedactingFilter(logging.Filter):
    """A handler filter that rewrites each record's message and traceback without secrets.

    It formats the record once (message with its arguments, then the traceback)
    and stores the redacted result, so no formatter downstream sees the originals
    (logging.Formatter, and bot.logs' JSON formatter, use a record's exc_text when it is set).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = list(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage(), self.secrets)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.secrets)
        return True
