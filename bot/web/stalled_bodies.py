"""A request body that stops short is answered ``408 body_incomplete`` within seconds, then the connection closed.

Behind Google's front ends (App Engine, Cloud Run) a body reaches the bot whole: they buffer it first. Exposed
directly (``vmbot serve`` on a VM, the container elsewhere), a client that announces ``Content-Length: 100``,
sends 10 bytes and stops would, with waitress alone, keep its connection for the channel timeout (30 s) and
then be dropped without an answer: the client cannot tell a stall from a crash, and nothing says what went
wrong. waitress reads bodies on its event loop, so no thread was ever held; what was missing is a prompt,
explained answer.

``BodyTimeoutServer``'s maintenance pass (on the loop thread, every ``cleanup_interval``) finds connections
whose request has its headers but not its whole body and that have received nothing for ``body_timeout``
seconds. It writes a whole ``408`` with a JSON body and ``Connection: close`` into the connection's output
buffer, as waitress's own ``100 Continue`` is written from the loop, and waitress closes the connection once
that is sent. The answer takes no request thread, so it comes even when every thread is busy. A body that is
still arriving is never cut (each byte restarts the clock: waitress's ``last_activity``), and a connection
idle between requests keeps the channel timeout. A client that closes its sending side mid-body gets the 408
at once (waitress alone would close without answering).
"""

from __future__ import annotations

import json
import logging
import socket
from email.utils import formatdate
from typing import Any

from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer

from handlers.api.errors import ERROR_CODES, PREFIX as API_PREFIX

log = logging.getLogger(__name__)

BODY_TIMEOUT = 5  # seconds a request body may make no progress before it is answered 408
BODY_INCOMPLETE = "body_incomplete"  # the API's error code (handlers.api.errors.ERROR_CODES), and Slack's


class BodyTimeoutChannel(HTTPChannel):
    """waitress's connection, answering 408 at once when the client ends its input in the middle of a body."""

    def handle_read(self) -> None:
        if awaiting_body(self) and _input_ended(self.socket):
            answer_body_incomplete(self, stalled_for=None)
            return
        super().handle_read()


class BodyTimeoutServer(TcpWSGIServer):
    """waitress's TCP server whose maintenance pass also answers the bodies stalled for ``body_timeout`` s."""

    channel_class = BodyTimeoutChannel

    def __init__(self, application: Any, *, body_timeout: float, **kwargs: Any) -> None:
        self.body_timeout = body_timeout
        super().__init__(application, **kwargs)

    def maintenance(self, now: float) -> None:
        cutoff = now - self.body_timeout
        for channel in list(self.active_channels.values()):  # a copy: a channel may close while it is walked
            if channel.last_activity < cutoff and awaiting_body(channel):
                answer_body_incomplete(channel, stalled_for=self.body_timeout)
        super().maintenance(now)  # waitress's own: closes connections idle for the channel timeout


def awaiting_body(channel: HTTPChannel) -> bool:
    """The connection has a request's headers, not yet its whole body, and nothing else is under way on it.

    With a request being answered or an answer still being sent, waitress does not read (so a body may not
    move then through no fault of the client's).
    """
    request = channel.request
    return bool(
        request is not None and request.headers_finished and not request.completed and not channel.requests
        and not channel.total_outbufs_len and not channel.will_close and not channel.close_when_flushed
    )


def answer_body_incomplete(channel: HTTPChannel, *, stalled_for: float | None) -> None:
    """Queue the 408 on ``channel`` (from the loop thread) and have waitress close it once it is sent.

    ``stalled_for`` is the body timeout that ran out; None when the client ended its input instead.
    """
    with channel.requests_lock:  # a request thread finishing the previous request looks at channel.request
        request = channel.request
        if not awaiting_body(channel):
            return
        received = len(request.body_rcv) if request.body_rcv is not None else 0
        if request.chunked:
            got = f"The chunked request body stopped after {received} bytes, before its last chunk"
        else:
            got = f"The request body stopped at {received} of the {request.content_length} bytes its Content-Length announced"
        why = f"nothing more came for {stalled_for:g} s" if stalled_for is not None else "the client closed its sending side"
        message = f"{got}, and {why}; send the whole body."
        status = ERROR_CODES[BODY_INCOMPLETE]
        if request.path == API_PREFIX or request.path.startswith(API_PREFIX + "/"):
            body: dict[str, Any] = {"error": {"code": BODY_INCOMPLETE, "message": message}}
        else:
            body = {"ok": False, "error": BODY_INCOMPLETE, "message": message}
        data = json.dumps(body).encode()
        head = (
            f"HTTP/{'1.0' if request.version == '1.0' else '1.1'} {status} Request Timeout\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\nConnection: close\r\n"
            f"Date: {formatdate(usegmt=True)}\r\nServer: {channel.adj.ident}\r\n\r\n"
        ).encode("latin-1")
        with channel.outbuf_lock:
            channel.outbufs[-1].append(head + data)
            channel.current_outbuf_count += len(head) + len(data)
            channel.total_outbufs_len += len(head) + len(data)
        request.close()  # its body buffer (a temporary file for a large one)
        channel.request = None
        channel.close_when_flushed = True  # no more reading; waitress closes once the answer is sent
    log.info("answered %s %s: %s", status, BODY_INCOMPLETE, message)


def _input_ended(sock: socket.socket) -> bool:
    """Whether the client has closed its sending side (a read would return no bytes), without reading."""
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:  # waitress's own read meets the error again and closes the connection
        return False
