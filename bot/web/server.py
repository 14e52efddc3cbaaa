"""HTTP serving: one WSGI app with ``/slack/events``, ``/healthz`` and the HTTP API (``/api/v1``, handlers.api),
and the one server every mode runs it on: waitress, started from Python (``make_http_server``).

``vmbot serve`` / ``python -m bot`` (bot.__main__), App Engine's and the container's entrypoint (the same
command), the demo and the tests all serve through ``make_http_server``: there is no second code path.

Why waitress, not gunicorn's gthread worker: waitress reads a whole request (headers and body) on its one
event-loop thread before any worker thread sees it, so a connection that sends nothing, or sends its body
slowly, holds no thread; ``CHANNEL_TIMEOUT`` closes it, and ``CONNECTION_LIMIT`` bounds how many are open.
A body that stops short of its length is answered ``408 body_incomplete`` after ``BODY_TIMEOUT`` seconds
without progress, not held for ``CHANNEL_TIMEOUT`` (bot.web.stalled_bodies says why and how).
gunicorn 27's gthread worker (gunicorn/workers/gthread.py) submits every accepted connection to its thread
pool (``accept`` -> ``enqueue_req`` -> ``tpool.submit(self.handle, conn)``), and ``handle`` waits on that
worker thread up to ``DEFAULT_WORKER_DATA_TIMEOUT`` (5 s) for the request's first bytes before handing a
silent connection back to its poller: eight silent clients hold all eight threads, and Slack's 3 s pass.

Threads (``VMBOT_HTTP_THREADS``) answer requests; Slack's acknowledgements take milliseconds, while an API
``?wait=`` long poll holds its thread up to minutes, so at most half the threads may wait at once
(bot.web.long_polls), and the others stay free for Slack. The pool tells the job runner while Slack
requests are in flight (SlackBracketingDispatcher, passed as the server's ``dispatcher``), so a burst is
answered before the work it starts runs.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

from slack_bolt import BoltContext, BoltRequest, BoltResponse
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_bolt.adapter.wsgi.http_request import WsgiHttpRequest
from slack_bolt.request.internals import build_context
from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.task import ThreadedTaskDispatcher

from bot import __version__
from bot.web.health import health
from handlers.api import MAX_WAIT_SECONDS
from handlers.api import PREFIX as API_PREFIX
from bot.app import VmBot
from bot.web.long_polls import LongPolls
from bot.web.slack_guard import MAX_BODY_BYTES, guard_requests, has_payload_field
from bot.web.stalled_bodies import BODY_TIMEOUT, BodyTimeoutServer
from bot.web.observability import observability_routes

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

CONNECTION_LIMIT = 1000  # open connections at most; idle ones cost a socket and a buffer, no thread
CHANNEL_TIMEOUT = 30  # seconds a connection may send nothing (between requests, or in its headers) before it is closed
CLEANUP_INTERVAL = 1  # seconds between passes over the open connections for their timeouts (~0.2 ms for 1000 open)
LOOP_TIMEOUT = 1  # seconds between waitress's housekeeping passes (closing timed-out connections) when all is quiet


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
    api = LongPolls(ApiOnFirstUse(bot), slots=long_poll_slots(bot.settings.http_threads), max_wait=MAX_WAIT_SECONDS)
    if bot.settings.api_tokens:
        log.info("HTTP API on at %s for %s", API_PREFIX, ", ".join(name for name, _ in bot.settings.api_tokens))
    else:
        log.info("HTTP API off (set VMBOT_API_TOKENS to turn it on)")

    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/slack/events":
            return slack(environ, start_response)
        if path in observability:
            return observability[path](environ, start_response)
        if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
            return api(environ, start_response)
        if path == "/healthz" and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            status, body = health(bot)
            return _json(start_response, status, {**body, "version": __version__})
        return _json(start_response, "404 Not Found", {"ok": False, "error": "not_found"})

    return application


class ApiOnFirstUse:
    """The HTTP API (handlers.api.app), built on the first request under ``/api/v1``.

    Flask and pydantic are about 15 MB of the bot's memory and a tenth of its start-up; a bot
    whose API no script calls (most, and every one without VMBOT_API_TOKENS) never loads them.
    The first API request pays the import, once.
    """

    def __init__(self, bot: VmBot) -> None:
        self.bot = bot
        self._app: WsgiApp | None = None
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    from handlers.api.app import create_api

                    self._app = create_api(self.bot)
        return self._app(environ, start_response)


def long_poll_slots(threads: int) -> int:
    """API requests that may wait at once: half the request threads, so the other half answer Slack."""
    return max(1, threads // 2)


def _json(start_response: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


class HttpServer:
    """waitress serving one WSGI app: ``serve_forever()`` on one thread; ``shutdown()`` from any other.

    The names are socketserver's, so callers (tests, the demo) start and stop it as they would one.
    The event loop is waitress's own (``wasyncore.loop``), one pass at a time so that it can stop.
    """

    def __init__(
        self,
        app: WsgiApp,
        host: str,
        port: int,
        *,
        threads: int,
        channel_timeout: int = CHANNEL_TIMEOUT,
        body_timeout: int = BODY_TIMEOUT,
        slack_arrived: Callable[[], None] = lambda: None,
        slack_left: Callable[[], None] = lambda: None,
    ) -> None:
        dispatcher = SlackBracketingDispatcher(slack_arrived, slack_left)
        dispatcher.set_thread_count(threads)
        # waitress.create_server, with our server class (one listening socket: HttpServer serves one address).
        adjustments = Adjustments(
            host=host,
            port=port,
            threads=threads,
            connection_limit=CONNECTION_LIMIT,
            channel_timeout=channel_timeout,
            cleanup_interval=CLEANUP_INTERVAL,  # a stalled body is answered within a second of its timeout
            asyncore_loop_timeout=LOOP_TIMEOUT,
            asyncore_use_poll=True,  # select() cannot watch sockets numbered past 1024
            # waitress reads a body whole before the app sees it: refuse a too long one (413) from its headers,
            # as bot.web.slack_guard does (waitress refuses content_length >= the limit, the guard > it).
            max_request_body_size=MAX_BODY_BYTES + 1,
            ident="waitress",  # the Server header
        )
        self._server = BodyTimeoutServer(app, body_timeout=body_timeout, dispatcher=dispatcher, adj=adjustments)
        self.server_port: int = int(self._server.effective_port)
        self._map = self._server._map  # waitress's socket map: the listener, its trigger and every connection
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._serving = False

    def serve_forever(self) -> None:
        """Accept and answer until ``shutdown()`` (or an exception here: a signal handler's SystemExit)."""
        with self._lock:
            self._serving = True
        try:
            while not self._stopping.is_set() and self._map:
                wasyncore.loop(timeout=LOOP_TIMEOUT, use_poll=True, map=self._map, count=1)
        finally:
            self._close()
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop serving and wait until the loop has closed every connection and the request threads."""
        self._stopping.set()
        with self._lock:
            serving = self._serving
        if serving:
            try:
                self._server.pull_trigger()  # wakes the loop from its poll
            except OSError:  # the loop has ended and closed the trigger already
                pass
            self._stopped.wait()
        else:
            self._close()

    def server_close(self) -> None:
        """Close the sockets (a no-op once ``shutdown()`` or the end of ``serve_forever()`` did)."""
        self._close()

    def _close(self) -> None:
        with self._lock:
            if not self._map:
                return
            wasyncore.dispatcher.close(self._server)  # the listening socket only: no new connections
            # Requests being answered finish first (5 s at most): their threads still pull the loop's trigger.
            self._server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)
            wasyncore.close_all(self._map)  # the trigger and every connection


class SlackBracketingDispatcher(ThreadedTaskDispatcher):
    """waitress's thread pool, telling the job runner when a Slack request is in flight.

    From the moment waitress has read a ``/slack/events`` request whole and queues it for a thread
    until it is answered (or cancelled): a burst waiting for threads is then one bracket, and the jobs
    it starts wait until it is all answered (bot.jobs.runner says why, with measurements). Only Slack's
    requests count: an API long poll would hold every job back for ``max_defer``.
    """

    def __init__(self, arrived: Callable[[], None], left: Callable[[], None]) -> None:
        super().__init__()
        self.arrived, self.left = arrived, left

    def add_task(self, task: Any) -> None:
        requests = getattr(task, "requests", None)  # an HTTPChannel; requests[0] is the one it serves next
        if requests and getattr(requests[0], "path", None) == "/slack/events":
            self.arrived()
            task = _Bracketed(task, self.left)
        super().add_task(task)


class _Bracketed:
    """A queued waitress task that calls ``left`` once, when it has been served or cancelled."""

    def __init__(self, task: Any, left: Callable[[], None]) -> None:
        self.task, self.left = task, left

    def service(self) -> None:
        try:
            self.task.service()
        finally:
            self.left()

    def cancel(self) -> None:
        try:
            self.task.cancel()
        finally:
            self.left()

    def __repr__(self) -> str:
        return repr(self.task)


def make_http_server(bot: VmBot, host: str, port: int) -> HttpServer:
    """The bot's app on waitress with ``bot.settings.http_threads`` request threads (see the module's docstring)."""
    return HttpServer(
        wsgi_app(bot), host, port, threads=bot.settings.http_threads,
        slack_arrived=bot.runner.request_arrived, slack_left=bot.runner.request_left,
    )
