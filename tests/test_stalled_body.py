"""A request body that stops short of its length gets a prompt 408 with a JSON code, over real sockets.

waitress alone holds such a connection for its channel timeout (30 s) and then drops it without a word;
bot.web.stalled_bodies answers ``408 body_incomplete`` once the body has made no progress for the body
timeout, or at once when the client closes its sending side. A body still arriving is never cut.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import pytest
from api_client import API_TOKENS, CI_TOKEN
from conftest import Running

from bot.app import VmBot
from bot.settings import Settings
from bot.web.server import CHANNEL_TIMEOUT, HttpServer, wsgi_app
from handlers.api import ERROR_CODES
from handlers.api.openapi import SPEC

ANSWER_WITHIN = CHANNEL_TIMEOUT / 2  # seconds: a correctness bound; waitress alone answers nothing and closes at 30


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, api_tokens=API_TOKENS)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


def send_head(port: int, request_line: str, headers: dict[str, str], first_bytes: bytes) -> socket.socket:
    """A connection that has sent a request's headers and the first bytes of its body, and then nothing."""
    client = socket.create_connection(("127.0.0.1", port), timeout=ANSWER_WITHIN)
    head = "".join(f"{name}: {value}\r\n" for name, value in {"Host": "vmbot", **headers}.items())
    client.sendall(f"{request_line}\r\n{head}\r\n".encode() + first_bytes)
    return client


def read_answer(client: socket.socket, *, closed: bool = True) -> Answer:
    """One answer (a timeout fails the test); with ``closed``, the server must then close the connection."""
    received = b""
    while b"\r\n\r\n" not in received:
        received += client.recv(65536) or b"<EOF>\r\n\r\n"
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    assert status_line.startswith("HTTP/1.1 "), f"no answer: {received!r}"
    while len(body) < int(headers["content-length"]):
        body += client.recv(65536) or pytest.fail(f"the answer ended early: {received + body!r}")
    if closed:
        assert client.recv(65536) == b"", "the server closes the connection after its answer"
        client.close()
    return Answer(int(status_line.split()[1]), headers, json.loads(body) if body else None)


def api_post(port: int, length: int, first_bytes: bytes, token: str = CI_TOKEN) -> socket.socket:
    return send_head(port, "POST /api/v1/vms HTTP/1.1", {
        "Authorization": f"Bearer {token}", "Content-Type": "application/json", "Content-Length": str(length),
    }, first_bytes)


def slack_post(port: int, length: int, first_bytes: bytes) -> socket.socket:
    return send_head(port, "POST /slack/events HTTP/1.1", {
        "Content-Type": "application/x-www-form-urlencoded", "Content-Length": str(length),
        "X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=" + "0" * 64,
    }, first_bytes)


def port_of(running: Running) -> int:
    return int(running.base_url.rsplit(":", 1)[1])


@contextmanager
def served(bot: VmBot, body_timeout: int) -> Iterator[int]:
    """The bot's app on a second server of its own, with another body timeout; its port."""
    server = HttpServer(wsgi_app(bot), "127.0.0.1", 0, threads=4, body_timeout=body_timeout)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()


def test_a_body_that_stops_short_is_answered_408_with_a_json_code_on_the_api_and_on_slack(running: Running) -> None:
    port = port_of(running)
    api = api_post(port, 100, b'{"name": "')
    chunked = send_head(port, "POST /api/v1/vms HTTP/1.1", {
        "Authorization": f"Bearer {CI_TOKEN}", "Content-Type": "application/json", "Transfer-Encoding": "chunked",
    }, b'a\r\n{"name": "\r\n')
    slack = slack_post(port, 100, b"command=%2")

    answer = read_answer(api)
    assert answer.status == 408 == ERROR_CODES["body_incomplete"]
    assert answer.headers["content-type"] == "application/json" and answer.headers["connection"] == "close"
    assert answer.body["error"]["code"] == "body_incomplete", answer.body
    assert "10 of the 100 bytes" in answer.body["error"]["message"], answer.body

    answer = read_answer(chunked)
    assert (answer.status, answer.body["error"]["code"]) == (408, "body_incomplete"), answer.body
    assert "chunked" in answer.body["error"]["message"] and "10 bytes" in answer.body["error"]["message"]

    answer = read_answer(slack)
    assert answer.status == 408 and answer.headers["content-type"] == "application/json"
    assert answer.body["ok"] is False and answer.body["error"] == "body_incomplete", answer.body
    assert "10 of the 100 bytes" in answer.body["message"], answer.body

    assert running.bot.store.list_vms() == [], "nothing was created from a part of a body"


def test_a_client_that_closes_its_sending_side_mid_body_is_answered_408_at_once(running: Running) -> None:
    with served(running.bot, body_timeout=CHANNEL_TIMEOUT) as port:  # only the end of input can bring the answer
        for client in (api_post(port, 100, b'{"name": "'), slack_post(port, 100, b"command=%2")):
            client.shutdown(socket.SHUT_WR)
            answer = read_answer(client)
            assert answer.status == 408, answer
            code = answer.body["error"] if "ok" in answer.body else answer.body["error"]["code"]
            assert code == "body_incomplete", answer.body


def test_a_body_that_keeps_coming_is_not_cut_and_others_are_answered_meanwhile(running: Running) -> None:
    body = b'{"name": "slow-body-vm"}'
    with served(running.bot, body_timeout=2) as port:
        keep_alive = socket.create_connection(("127.0.0.1", port), timeout=ANSWER_WITHIN)
        health = b"GET /healthz HTTP/1.1\r\nHost: vmbot\r\n\r\n"
        keep_alive.sendall(health)
        assert read_answer(keep_alive, closed=False).status == 200  # the whole answer: head and body may come apart

        slow = api_post(port, len(body), b"", token="not-a-token")
        for i, byte in enumerate(body):  # one byte every 0.2 s: about 5 s, over twice the body timeout
            slow.sendall(bytes([byte]))
            time.sleep(0.2)
            if i % 8 == 0:  # the server goes on answering others meanwhile
                with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_WITHIN) as other:
                    other.sendall(health)
                    assert read_answer(other, closed=False).status == 200

        answer = read_answer(slow, closed=False)
        slow.close()
        assert (answer.status, answer.body["error"]["code"]) == (401, "unauthorized"), answer.body

        # A kept-alive connection idle between requests longer than the body timeout is not cut either.
        keep_alive.sendall(health)
        assert read_answer(keep_alive, closed=False).status == 200  # the whole answer: head and body may come apart
        keep_alive.close()


def test_the_api_documents_the_code() -> None:
    assert ERROR_CODES["body_incomplete"] == 408
    assert "body_incomplete" in SPEC["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["enum"]
    create = SPEC["paths"]["/api/v1/vms"]["post"]["responses"]
    assert "body_incomplete" in create["408"]["description"] and "payload_too_large" in create["413"]["description"]
    assert "408" not in SPEC["paths"]["/api/v1/vms"]["get"]["responses"], "only the routes that take a body"
