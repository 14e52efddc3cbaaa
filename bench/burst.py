"""Many signed requests sent at one moment, each timed from its own send to its whole answer.

Slack sends each request from its own machines, so the bot should be measured
as if the senders cost nothing. A thread per request with ``requests`` does not
do that on a 2-core machine: each sender spends a millisecond or more of Python
in the benchmark's process, and fifty senders queue on its interpreter lock, so
the slowest answers would be mostly the benchmark's own time. Here one thread
does it all with plain sockets: every connection is opened and every request
written in a tight loop (a few microseconds each), then a selector reads the
answers as they come and stamps each one the moment it is complete.
"""

from __future__ import annotations

import json
import selectors
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from standins.slack_driver import Prepared


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: status, body and the time from writing the request to reading the last byte."""

    status: int
    body: str
    elapsed: float

    @property
    def text(self) -> str:
        """The ack's ``text`` when the body is JSON with one, else the raw body."""
        try:
            parsed: Any = json.loads(self.body)
        except ValueError:
            return self.body
        return str(parsed.get("text", self.body)) if isinstance(parsed, dict) else self.body


def post_all(url: str, requests: Sequence[Prepared], timeout: float = 30.0, *, method: str = "POST") -> list[Answer]:
    """Send every prepared request to ``url`` at (nearly) the same moment; answers in request order."""
    parts = urlsplit(url)
    address = (parts.hostname or "127.0.0.1", parts.port or 80)
    raw = [_http_request(method, parts.path or "/", parts.netloc, prepared) for prepared in requests]
    selector = selectors.DefaultSelector()
    sent: list[float] = []
    received: list[bytearray] = [bytearray() for _ in requests]
    ended: list[float | None] = [None] * len(requests)
    try:
        for index, data in enumerate(raw):
            sock = socket.create_connection(address, timeout=timeout)
            sent.append(time.perf_counter())
            sock.sendall(data)
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, index)
        deadline = time.monotonic() + timeout
        while any(end is None for end in ended):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{sum(e is None for e in ended)} of {len(requests)} requests got no answer")
            for key, _ in selector.select(timeout=1.0):
                index, sock = key.data, key.fileobj
                assert isinstance(sock, socket.socket)
                chunk = sock.recv(65536)
                if chunk:
                    received[index] += chunk
                if not chunk or _complete(received[index]):
                    ended[index] = time.perf_counter()
                    selector.unregister(sock)
                    sock.close()
    finally:
        for key in list(selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        selector.close()
    return [_answer(bytes(data), end - start) for data, start, end in zip(received, sent, ended) if end is not None]


def _http_request(method: str, path: str, host: str, prepared: Prepared) -> bytes:
    headers = {"Host": host, **prepared.headers, "Content-Length": str(len(prepared.body)), "Connection": "close"}
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return head.encode("latin-1") + b"\r\n" + prepared.body


def _complete(data: bytearray) -> bool:
    """Whether ``data`` holds a whole answer: its headers and Content-Length bytes of body."""
    head, separator, body = bytes(data).partition(b"\r\n\r\n")
    if not separator:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False  # no length: the answer ends when the server closes the connection


def _answer(data: bytes, elapsed: float) -> Answer:
    head, _, body = data.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    status = int(status_line.split()[1]) if len(status_line.split()) > 1 else 0
    return Answer(status, body.decode("utf-8", errors="replace"), elapsed)
