"""bench.burst, the benchmark's sender: answers in request order, each with its own status and body."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.burst import post_all
from standins.slack_driver import Prepared


class Echo(BaseHTTPRequestHandler):
    """Answers each POST with its own body back as JSON ``text``; a body "missing" gets 404."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        data = json.dumps({"text": body, "signature": self.headers.get("X-Slack-Signature")}).encode()
        self.send_response(404 if body == "missing" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/slack/events"
    server.shutdown()
    server.server_close()


def test_answers_come_back_in_request_order_with_their_headers_sent(url: str) -> None:
    bodies = [f"request {i}" for i in range(20)] + ["missing"]
    prepared = [Prepared(b.encode(), {"X-Slack-Signature": f"v0={i}"}, None) for i, b in enumerate(bodies)]

    answers = post_all(url, prepared)

    assert [a.text for a in answers] == bodies
    assert [json.loads(a.body)["signature"] for a in answers] == [f"v0={i}" for i in range(len(bodies))]
    assert [a.status for a in answers] == [200] * 20 + [404]
    assert all(a.elapsed > 0 for a in answers)
