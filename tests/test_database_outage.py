"""The database does not answer (a network partition): every wait on it is bounded, a command gets a clear
ephemeral answer well within Slack's 3 s, and /healthz and /readyz say the database is unreachable.

The partition is a local socket that accepts connections and never answers, so the shared PostgreSQL
server keeps running for the other tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from bot.app import create_app
from bot.settings import Settings
from bot.web.health import health
from bot.web.server import make_http_server
from conftest import SIGNING_SECRET, fast_compute, replace
from standins.slack_api import SlackStandin
from standins.slack_driver import SlackDriver
from storage.store import Store


@pytest.fixture
def blackhole() -> Iterator[str]:
    """A PostgreSQL URL whose server accepts TCP connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"postgresql+psycopg://root@127.0.0.1:{listener.getsockname()[1]}/test"
    stop.set()
    thread.join(timeout=2)
    for connection in held:
        connection.close()
    listener.close()


def test_a_command_while_the_database_does_not_answer_is_told_so_within_three_seconds(
    settings: Settings, slack: SlackStandin, blackhole: str
) -> None:
    settings = replace(settings, database_url=blackhole)
    store = Store.from_url(blackhole, create=False)  # a bot that started before the partition
    bot = create_app(settings, store=store, compute=fast_compute(settings))
    server = make_http_server(bot, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    driver = SlackDriver(f"http://127.0.0.1:{server.server_port}/slack/events", SIGNING_SECRET, slack, timeout=8)
    try:
        began = time.monotonic()
        reply = driver.command("help")
        took = time.monotonic() - began
        assert reply.status == 200 and "cannot reach my database" in reply.body, reply.body
        assert reply.json is not None and reply.json.get("response_type") == "ephemeral"
        assert took < 3, f"the ack took {took:.1f} s"

        began = time.monotonic()
        status, body = health(bot)
        assert time.monotonic() - began < 3
        assert status == "200 OK" and body["database"] == "unreachable"
        ready = requests.get(f"http://127.0.0.1:{server.server_port}/readyz", timeout=10)
        assert ready.status_code == 503 and ready.json()["database"]["status"] == "failing"
    finally:
        driver.close()
        server.shutdown()
        server.server_close()
        bot.shutdown(wait=False)


def test_health_says_the_database_answers(settings: Settings) -> None:
    bot = create_app(settings, compute=fast_compute(settings))
    try:
        assert health(bot)[1]["database"] == "reachable"
    finally:
        bot.shutdown(wait=False)
