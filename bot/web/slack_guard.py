"""Only requests that Slack signed, and each of them once.

Bolt's own RequestVerification (always on) checks the ``X-Slack-Signature`` HMAC
and refuses a timestamp more than 5 minutes away. Two gaps remain, closed here:

* ``guard_requests`` (WSGI, in front of Bolt): headers that are not even shaped
  like a signature, a body that is not UTF-8, or an interaction ``payload`` that
  is not a JSON object make Bolt raise, which means a 500 and Bolt's error
  handler answering the ``response_url`` of a request nobody verified. Such
  requests get 401 (or 400, 413) before Bolt sees them.
* ``ReplayGuard`` (Bolt middleware, run right after Bolt's verification): an
  identical copy of a signed request is valid for those 5 minutes. Each verified
  signature is recorded in the store (unique), so a second copy gets 401. Rows
  are pruned once Bolt would refuse their timestamp anyway.

Socket Mode requests arrive over an authenticated websocket, unsigned; both
guards leave them alone.
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from slack_bolt import BoltResponse
from slack_bolt.middleware import Middleware
from slack_bolt.request import BoltRequest

from sqlalchemy.exc import SQLAlchemyError

from storage.store import Store

log = logging.getLogger(__name__)

SIGNATURE_WINDOW = 300  # seconds: Bolt refuses older (or further future) timestamps
CLOCK_SKEW = 60  # seconds of extra memory, for bot processes whose clocks differ a little
MAX_BODY_BYTES = 1024 * 1024  # Slack's payloads are far smaller
TIMESTAMP = re.compile(r"[0-9]{1,12}")
SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
REFUSED_BODY = {"error": "invalid request"}  # what Bolt answers for a bad signature
# The ack when the database does not answer (storage.db bounds the wait to about two seconds):
# shown only to the person who asked; nothing was recorded, so nothing was started.
STORE_UNREACHABLE = {
    "response_type": "ephemeral",
    "text": ":warning: I cannot reach my database right now, so I did nothing with that. "
    "Please try again in a minute.",
}

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def guard_requests(app: WsgiApp) -> WsgiApp:
    """Wrap the Slack endpoint: refuse malformed requests before Bolt parses them."""

    def guarded(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _refuse(start_response, "400 Bad Request", "a Content-Length that is not a number")
        if length < 0 or length > MAX_BODY_BYTES:
            return _refuse(start_response, "413 Content Too Large", f"a body of {length} bytes")
        timestamp = environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", "")
        signature = environ.get("HTTP_X_SLACK_SIGNATURE", "")
        if not TIMESTAMP.fullmatch(timestamp) or not SIGNATURE.fullmatch(signature):
            return _refuse(start_response, "401 Unauthorized", "no well-formed Slack signature headers")
        body = environ["wsgi.input"].read(length) if length else b""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return _refuse(start_response, "400 Bad Request", "a body that is not UTF-8")
        if not _payload_is_an_object(text):
            return _refuse(start_response, "400 Bad Request", "an interaction payload that is not a JSON object")
        environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(body), str(len(body))
        return app(environ, start_response)

    return guarded


class ReplayGuard(Middleware):
    """Refuse a second copy of a request whose signature was already served."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store, self.clock = store, clock

    def process(self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]) -> BoltResponse:  # noqa: A002 - Bolt's name
        if req.mode == "socket_mode":
            return next()
        signature = req.headers.get("x-slack-signature", [""])[0]
        timestamp = int(req.headers.get("x-slack-request-timestamp", ["0"])[0])
        try:
            fresh = self.store.claim_request(signature, timestamp, now=int(self.clock()), window=SIGNATURE_WINDOW + CLOCK_SKEW)
        except SQLAlchemyError as error:
            log.error("the database did not answer; told the user to try again: %s", " ".join(str(error).split())[:300])
            return BoltResponse(status=200, body=STORE_UNREACHABLE)
        if fresh:
            return next()
        log.warning("refused a replayed Slack request (timestamp %s, seen before)", timestamp)
        return BoltResponse(status=401, body=REFUSED_BODY)


def has_payload_field(form: str) -> bool:
    """Whether a form body has a ``payload`` field, as interactions do (a slash command has none;
    percent-encoding keeps the word out of field names, so it can only be a field here)."""
    return form.startswith("payload=") or "&payload=" in form


def _payload_is_an_object(form: str) -> bool:
    """Interactions arrive as ``payload=<JSON>``; anything else there would crash Bolt's parser."""
    if not has_payload_field(form):
        return True  # no payload field (a slash command): no need to parse the form here
    payloads = parse_qs(form, keep_blank_values=True).get("payload")
    if not payloads:
        return True
    try:
        return isinstance(json.loads(payloads[0]), dict)
    except ValueError:
        return False


def _refuse(start_response: StartResponse, status: str, why: str) -> list[bytes]:
    log.warning("refused a request to /slack/events: %s", why)
    data = json.dumps(REFUSED_BODY).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]
