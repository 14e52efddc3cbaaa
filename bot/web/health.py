"""What ``/healthz`` answers: the process serves, and whether Slack and the database answer.

bot.web.server calls ``health(bot)`` for ``GET /healthz``; ``GET /readyz`` (database, Slack and GCP,
each probed at most once a minute) is bot.observability.readiness. The process is
healthy as long as it serves (HTTP 200): a Slack outage is not a reason to
restart it, since it goes on with GCP work and posts what Slack missed once
Slack answers; the body says what is unreachable.
"""

from __future__ import annotations

from typing import Any

from bot.app import VmBot
from storage.db import ping


def health(bot: VmBot) -> tuple[str, dict[str, Any]]:
    """(HTTP status line, JSON body) for ``/healthz``: 200 while the process serves; ``slack`` and
    ``database`` say whether each answers ("reachable", "unreachable"; Slack "unchecked" before its first check)."""
    database = "reachable" if ping(bot.store.engine) else "unreachable"
    return "200 OK", {"ok": True, "slack": bot.slack_status.state, "database": database}

