"""``GET /metrics`` (Prometheus text) and ``GET /readyz`` (the database, Slack and GCP), as WSGI apps.

bot.web.server routes the two paths here (``observability_routes``). ``/metrics`` serves the app's
own registry (bot.observability.metrics); with ``VMBOT_METRICS_TOKEN`` set it answers only a request
carrying ``Authorization: Bearer TOKEN`` (compared in constant time) and 401 to any other.
``/readyz`` answers 200 when all three answered in the newest check, else 503, with the JSON of
bot.observability.readiness either way.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client.exposition import choose_encoder
from slack_sdk import WebClient
from sqlalchemy import text

from bot import __version__
from bot.deps import Deps
from bot.observability.readiness import PROBE_TIMEOUT, Readiness
from bot.redaction import redact, secrets_of
from bot.slack.call_metrics import count_calls

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def observability_routes(bot: Deps) -> dict[str, WsgiApp]:
    """Path -> WSGI app, for bot.web.server's dispatch."""
    return {"/metrics": metrics_app(bot), "/readyz": readiness_app(Readiness(probes(bot), describe=describer(bot)))}


# ---- /metrics -------------------------------------------------------------------------------------------


def metrics_app(bot: Deps) -> WsgiApp:
    registry = bot.metrics.registry
    token = bot.settings.metrics_token
    expected = _digest(token) if token else None

    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _answer(start_response, "405 Method Not Allowed", _error("method_not_allowed", "GET /metrics"),
                           [("Allow", "GET, HEAD")])  # fmt: skip
        if expected is not None and not _bearer_matches(environ.get("HTTP_AUTHORIZATION", ""), expected):
            message = "/metrics needs 'Authorization: Bearer TOKEN' with the token in VMBOT_METRICS_TOKEN"
            return _answer(start_response, "401 Unauthorized", _error("unauthorized", message),
                           [("WWW-Authenticate", 'Bearer realm="vmbot metrics"')])  # fmt: skip
        encode, content_type = choose_encoder(environ.get("HTTP_ACCEPT", ""))
        body = encode(registry)
        start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [b"" if environ.get("REQUEST_METHOD") == "HEAD" else body]

    return application


def _bearer_matches(header: str, expected: bytes) -> bool:
    scheme, _, offered = header.partition(" ")
    # Digests of equal length, compared with hmac.compare_digest: the time says nothing about the token.
    return hmac.compare_digest(_digest(offered.strip() if scheme.lower() == "bearer" else ""), expected)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


# ---- /readyz --------------------------------------------------------------------------------------------


def readiness_app(readiness: Readiness) -> WsgiApp:
    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _answer(start_response, "405 Method Not Allowed", _error("method_not_allowed", "GET /readyz"),
                           [("Allow", "GET, HEAD")])  # fmt: skip
        ready, body = readiness.report()
        body = {**body, "version": __version__}
        return _answer(start_response, "200 OK" if ready else "503 Service Unavailable", json.dumps(body).encode())

    return application


def probes(bot: Deps) -> dict[str, Callable[[], None]]:
    """The database (SELECT 1), Slack (auth.test with the bot's token) and GCP (one instance listed)."""
    # Its own client: no retries and a short timeout (the bot's client waits out 429s and retries 5xx).
    slack = WebClient(token=bot.client.token, base_url=bot.client.base_url, timeout=int(PROBE_TIMEOUT), retry_handlers=[])
    count_calls(slack, bot.metrics)

    def database() -> None:
        with bot.store.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    return {
        "database": database,
        "slack": lambda: slack.auth_test(),
        "gcp": lambda: bot.compute.check_reachable(bot.settings.zone, timeout=PROBE_TIMEOUT),
    }


def describer(bot: Deps) -> Callable[[BaseException], str]:
    """An error's words for /readyz: its type and message, with every configured secret taken out."""
    secrets = secrets_of(bot.settings)

    def describe(error: BaseException) -> str:
        return redact(f"{type(error).__name__}: {error}", secrets)

    return describe


# ---- answers --------------------------------------------------------------------------------------------


def _error(code: str, message: str) -> bytes:
    return json.dumps({"ok": False, "error": code, "message": message}).encode()


def _answer(start_response: StartResponse, status: str, body: bytes, headers: list[tuple[str, str]] | None = None) -> list[bytes]:
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *(headers or [])])
    return [body]
