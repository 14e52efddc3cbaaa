"""A bound on API long polls (``?wait=SECONDS``), so that waiting requests never hold every request thread.

A long poll holds a request thread for as long as it waits (up to a minute). With
eight threads, eight of them would leave Slack's acknowledgements queued behind
them, and Slack gives up after 3 s. So at most ``slots`` API requests wait at
once; any other one is answered at once, as if it had asked for ``wait=0`` (a
mutation 202 with its operation, a read 200 with the operation as it is now),
plus ``Retry-After``: the client polls again a little later. Nothing is lost:
the operation was started all the same.

It wraps the API's WSGI callable and reads only the query string, so it holds for
whatever implements the API (handlers.api), which needs no hook of its own. The
wrapped app must do its waiting inside the call (both the API and a Flask view
return their body only once it is computed), not while the body is iterated.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

RETRY_AFTER_SECONDS = 5  # what a client turned away is told to wait before it polls again


class LongPolls:
    """WSGI middleware: at most ``slots`` requests with a valid ``?wait=`` above 0 are passed on with it at once."""

    def __init__(self, app: WsgiApp, *, slots: int, max_wait: float, retry_after: int = RETRY_AFTER_SECONDS) -> None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self.app, self.max_wait, self.retry_after = app, max_wait, retry_after
        self._slots = threading.BoundedSemaphore(slots)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        query = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        if not self._waits(query):
            return self.app(environ, start_response)  # no wait, or one the API refuses at once (400)
        if self._slots.acquire(blocking=False):
            try:
                return self.app(environ, start_response)
            finally:
                self._slots.release()
        # wait=0, not no wait: a route that takes no ``wait`` still refuses it (400), as it would with a free slot.
        unwaited = urlencode([(key, "0" if key == "wait" else value) for key, value in query])
        return self.app({**environ, "QUERY_STRING": unwaited}, self._with_retry_after(start_response))

    def _waits(self, query: list[tuple[str, str]]) -> bool:
        """Whether the API would wait: it takes the last ``wait`` (a dict of the query), 0 < seconds <= max_wait."""
        values = [value for key, value in query if key == "wait"]
        if not values:
            return False
        try:
            seconds = float(values[-1])
        except ValueError:
            return False
        return math.isfinite(seconds) and 0 < seconds <= self.max_wait

    def _with_retry_after(self, start_response: StartResponse) -> StartResponse:
        def respond(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if status.startswith("2"):
                headers = [*headers, ("Retry-After", str(self.retry_after))]
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        return respond
