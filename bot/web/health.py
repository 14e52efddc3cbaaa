"""What ``/healthz`` and ``/readyz`` answer: the process serves, and whether Slack and the database answer.

bot.web.server calls ``health(bot)`` for ``GET /healthz`` and ``readiness(bot)`` for ``GET /readyz``. The process is
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


def readiness(bot: VmBot) -> tuple[str, dict[str, Any]]:
    """(HTTP status line, JSON body) for ``/readyz``: 503 while the database does not answer, since no
    command can be taken then (a load balancer sends the requests to a replica that can)."""
    status, body = health(bot)
    ready = body["database"] == "reachable"
    return ("200 OK" if ready else "503 Service Unavailable"), {**body, "ok": ready}
