"""HTTP serving: one WSGI app with ``/slack/events``, ``/healthz`` and the HTTP API (``/api/v1``, handlers.api).

``python -m bot`` serves it with bot.web.pooled_server (a few threads, arrival
order); App Engine serves the very same app (bot.web.wsgi) with gunicorn.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl
from wsgiref.simple_server import WSGIRequestHandler

from slack_bolt import BoltContext, BoltRequest, BoltResponse
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_bolt.adapter.wsgi.http_request import WsgiHttpRequest
from slack_bolt.request.internals import build_context

from handlers.api import PREFIX as API_PREFIX
from handlers.api import create_api
from bot.app import VmBot
from bot.web.pooled_server import PooledWSGIServer
from bot.web.slack_guard import guard_requests, has_payload_field
from bot.web.observability import observability_routes

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class SlackFormHandler(SlackRequestHandler):
    """Bolt's WSGI adapter, except that a slash command is read as the form it is.

    slack_bolt 1.30 takes any form body containing the text "payload" for an
    interaction and, finding no ``payload`` field, reads it as empty: so
    ``/vm create payload-api`` was answered 404 "unhandled request" (found by
    tests/test_hostile_input.py). Bolt still verifies the signature over the
    raw body; only the parsed body and its context are read again.
    """

    def dispatch(self, request: WsgiHttpRequest) -> BoltResponse:
        raw = request.get_body()
        bolt_request = BoltRequest(body=raw, query=request.query_string, headers=request.get_headers())
        if not bolt_request.body and raw and not raw.lstrip().startswith("{") and not has_payload_field(raw):
            bolt_request.body = dict(parse_qsl(raw, keep_blank_values=True))
            bolt_request.context = build_context(BoltContext(), bolt_request.body)
        return self.app.dispatch(bolt_request)


def wsgi_app(bot: VmBot) -> WsgiApp:
    observability = observability_routes(bot)  # GET /metrics and /readyz (bot.web.observability)
    slack = guard_requests(SlackFormHandler(bot.app))
    api = create_api(bot)

    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/slack/events":
            return slack(environ, start_response)
        if path in observability:
            return observability[path](environ, start_response)
        if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
            return api(environ, start_response)
        if path == "/healthz" and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            return _json(start_response, "200 OK", {"ok": True})
        return _json(start_response, "404 Not Found", {"ok": False, "error": "not_found"})

    return application


def _json(start_response: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("%s %s", self.address_string(), format % args)


def make_http_server(bot: VmBot, host: str, port: int) -> PooledWSGIServer:
    """The app on ``bot.settings.http_threads`` threads; jobs hold back while requests are answered (bot.jobs.runner)."""
    server = PooledWSGIServer(
        (host, port),
        QuietHandler,
        threads=bot.settings.http_threads,
        on_arrival=bot.runner.request_arrived,
        on_leave=bot.runner.request_left,
    )
    server.set_app(wsgi_app(bot))
    return server
