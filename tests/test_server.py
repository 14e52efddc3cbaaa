"""bot.web.server: the one server (waitress) every mode runs, over real sockets on a free port.

Slack's acknowledgements never queue behind API long polls or behind idle and slow clients;
keep-alive and pipelining work; the server stops cleanly and ends its threads.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
import requests
from api_client import API_TOKENS, CI_TOKEN
from conftest import SIGNING_SECRET, Running
from durable_support import held

from bench.burst import post_all
from bot import __version__
from bot.settings import Settings
from bot.web.long_polls import RETRY_AFTER_SECONDS
from bot.web.server import HttpServer, long_poll_slots
from standins.compute import ComputeStandin
from standins.slack_api import SlackStandin
from standins.slack_driver import Prepared, SlackDriver

OPERATIONS = "/api/v1/operations"
ACK_PROMPTLY = 1.0  # seconds: "well under" Slack's 3 s


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, api_tokens=API_TOKENS, http_threads=8)


@pytest.fixture
def driver(running: Running, slack: SlackStandin) -> Iterator[SlackDriver]:
    with SlackDriver(running.events_url, SIGNING_SECRET, slack) as slack_driver:
        yield slack_driver


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: dict[str, Any]
    elapsed: float


def api_get(url: str, **params: str) -> Answer:
    """One API GET on its own connection (requests.Session is not for sharing between threads)."""
    started = time.monotonic()
    response = requests.get(url, params=params, headers={"Authorization": f"Bearer {CI_TOKEN}"}, timeout=90)
    return Answer(response.status_code, dict(response.headers), response.json(), time.monotonic() - started)


def wait_until(condition: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


# ---- Slack acks and API long polls ----------------------------------------------------------------------------


def test_with_8_long_polls_held_20_slash_commands_are_acked_promptly(
    running: Running, driver: SlackDriver, gcp: ComputeStandin
) -> None:
    slots = long_poll_slots(running.bot.settings.http_threads)
    assert 1 <= slots < running.bot.settings.http_threads
    with held(gcp):  # the operation cannot end while the burst is sent
        created = requests.post(f"{running.base_url}/api/v1/vms", json={"name": "held-vm"},
                                headers={"Authorization": f"Bearer {CI_TOKEN}"}, timeout=30)
        assert created.status_code == 202, created.text
        operation_url = f"{running.base_url}{OPERATIONS}/{created.json()['operation']['id']}"
        answers: list[Answer] = []
        polls = [threading.Thread(target=lambda: answers.append(api_get(operation_url, wait="60")), daemon=True)
                 for _ in range(8)]
        for poll in polls:
            poll.start()

        # Beyond the slots, a long poll is answered at once, as with wait=0, and told when to come back.
        wait_until(lambda: len(answers) == 8 - slots, f"{8 - slots} long polls to be turned away")
        for answer in answers:
            assert answer.status == 200 and not answer.body["operation"]["done"]
            assert answer.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
            assert answer.elapsed < ACK_PROMPTLY
        # A mutation turned away from waiting is started all the same: 202 with its operation, and Retry-After.
        second = requests.post(f"{running.base_url}/api/v1/vms", params={"wait": "60"}, json={"name": "second-vm"},
                               headers={"Authorization": f"Bearer {CI_TOKEN}"}, timeout=30)
        assert second.status_code == 202 and second.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
        assert second.elapsed.total_seconds() < ACK_PROMPTLY
        assert second.headers["Location"] == f"{OPERATIONS}/{second.json()['operation']['id']}"
        assert running.bot.store.vm("second-vm") is not None
        # A wait the API refuses is refused as ever, slots or not (the middleware lets it through unchanged).
        assert api_get(operation_url, wait="nope").status == 400
        assert api_get(f"{running.base_url}/api/v1/vms", wait="5").body["error"]["code"] == "invalid_option"

        commands = [driver.prepare_command("help", channel=f"CHELP{i}", user=f"UHELP{i}") for i in range(10)]
        commands += [driver.prepare_command(f"create burst-{i:02d}", channel=f"CBURST{i}", user=f"UBURST{i}")
                     for i in range(10)]
        replies = post_all(running.events_url, commands)

        assert [reply.status for reply in replies] == [200] * 20
        assert all("Creating `burst-" in reply.text for reply in replies[10:]), replies[10].text
        slowest = max(reply.elapsed for reply in replies)
        assert slowest < ACK_PROMPTLY, f"the slowest ack took {slowest:.2f} s with {slots} long polls held"
        assert sum(poll.is_alive() for poll in polls) == slots, "the held long polls are still waiting"

    for poll in polls:  # GCP goes on: the held long polls answer with the finished operation
        poll.join(60)
    finished = answers[8 - slots:]
    assert len(finished) == slots
    assert all(a.status == 200 and a.body["operation"]["done"] and "Retry-After" not in a.headers for a in finished)
    running.settle()


# ---- idle, slow and pipelined connections ---------------------------------------------------------------------


def test_idle_and_slow_connections_hold_no_thread_and_slack_is_still_acked(
    running: Running, driver: SlackDriver
) -> None:
    address = ("127.0.0.1", int(running.base_url.rsplit(":", 1)[1]))
    threads_before = threading.active_count()
    idle = [socket.create_connection(address, timeout=10) for _ in range(300)]
    slow = [socket.create_connection(address, timeout=10) for _ in range(100)]
    try:
        for client in slow:  # the headers and a first piece of a body that never comes in full
            client.sendall(b"POST /slack/events HTTP/1.1\r\nHost: vmbot\r\n"
                           b"Content-Type: application/x-www-form-urlencoded\r\n"
                           b"Content-Length: 1000\r\n\r\ncommand=%2Fvm&text=")
        started = time.monotonic()
        health = requests.get(f"{running.base_url}/healthz", timeout=3)
        reply = driver.command("help")

        assert health.status_code == 200 and health.headers["Server"] == "waitress"
        assert reply.status == 200 and reply.in_time, f"/vm help answered after {reply.elapsed:.1f} s"
        assert time.monotonic() - started < 3
        grown = threading.active_count() - threads_before
        assert grown < 10, f"400 open connections made {grown} threads"
        # The slow ones were kept (on the event loop, not refused): one that finishes its body gets its answer.
        slow[0].sendall(b"x" * (1000 - len(b"command=%2Fvm&text=")))
        assert slow[0].recv(65536).startswith(b"HTTP/1.1 401"), "an unsigned body is refused once it is whole"
    finally:
        for client in idle + slow:
            client.close()


def test_three_requests_pipelined_on_one_connection_are_all_answered(running: Running) -> None:
    address = ("127.0.0.1", int(running.base_url.rsplit(":", 1)[1]))
    request = b"GET /healthz HTTP/1.1\r\nHost: vmbot\r\n\r\n"
    with socket.create_connection(address, timeout=10) as client:
        client.sendall(request * 3)
        received = b""
        deadline = time.monotonic() + 10
        while received.count(b'"ok": true') < 3 and time.monotonic() < deadline:
            received += client.recv(65536)
    assert received.count(b"HTTP/1.1 200 OK") == 3, received
    assert received.count(f'"version": "{__version__}"'.encode()) == 3


def test_healthz_says_the_version_and_the_server(running: Running) -> None:
    health = requests.get(f"{running.base_url}/healthz", timeout=10)
    assert health.json() == {"ok": True, "version": __version__, "database": "reachable", "slack": "reachable"}
    assert health.headers["Server"] == "waitress"


# ---- the server itself, with a plain WSGI app ---------------------------------------------------------------


@dataclass
class Recorder:
    """A WSGI app that notes which thread answered each path, in order; ``?hold`` waits until released."""

    answered: list[tuple[str, threading.Thread]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ.get("QUERY_STRING") == "hold":
            self.release.wait(30)
        self.answered.append((environ["PATH_INFO"], threading.current_thread()))
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]


@dataclass
class Served:
    server: HttpServer
    app: Recorder
    url: str
    thread: threading.Thread


@dataclass
class Counter:
    """Stands in for the job runner's count of Slack requests in flight."""

    in_flight: int = 0
    most: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def arrived(self) -> None:
        with self.lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)

    def left(self) -> None:
        with self.lock:
            self.in_flight -= 1


def serve(threads: int, channel_timeout: int = 30, counter: Counter | None = None) -> Iterator[Served]:
    app, counter = Recorder(), counter or Counter()
    server = HttpServer(app, "127.0.0.1", 0, threads=threads, channel_timeout=channel_timeout,
                        slack_arrived=counter.arrived, slack_left=counter.left)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Served(server, app, f"http://127.0.0.1:{server.server_port}", thread)
    finally:
        app.release.set()
        server.shutdown()
        server.server_close()


def test_slack_requests_count_as_in_flight_from_read_to_answered_queued_ones_too() -> None:
    """The job runner holds jobs back while a burst is answered: the requests queued behind a busy thread
    count from the moment waitress has read them, so the burst is one bracket, not one per request."""
    counter = Counter()
    for served in serve(1, counter=counter):
        assert requests.get(served.url + "/healthz", timeout=10).status_code == 200
        assert counter.most == 0, "only Slack's requests count"
        port = served.server.server_port
        clients = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(5)]
        try:
            for client in clients:
                client.sendall(b"GET /slack/events?hold HTTP/1.0\r\n\r\n")
            wait_until(lambda: counter.in_flight == 5, "five Slack requests to be read and counted")
        finally:
            served.app.release.set()
            for client in clients:
                client.recv(1024)  # its answer
                client.close()
        wait_until(lambda: counter.in_flight == 0, "every Slack request to stop counting")
        assert counter.most == 5
        assert [path for path, _ in served.app.answered].count("/slack/events") == 5


def test_a_burst_is_answered_by_the_pools_threads_not_one_per_connection() -> None:
    for served in serve(2):
        answers = post_all(served.url + "/", [Prepared(b"", {}, None)] * 30, method="GET")

        assert [a.status for a in answers] == [200] * 30
        threads = {id(thread) for _, thread in served.app.answered}  # the list keeps each thread alive: no id reused
        assert len(threads) <= 2, f"30 connections at once were answered by {len(threads)} threads"


def test_a_connection_that_sends_nothing_is_closed() -> None:
    for served in serve(1, channel_timeout=1):
        silent = socket.create_connection(("127.0.0.1", served.server.server_port), timeout=20)
        try:
            assert silent.recv(1024) == b"", "the server closed the connection"
        finally:
            silent.close()
        assert requests.get(served.url + "/healthz", timeout=10).status_code == 200


def test_shutting_the_server_down_ends_its_loop_and_its_threads() -> None:
    before = threading.active_count()
    for served in serve(2):
        post_all(served.url + "/", [Prepared(b"", {}, None)] * 4, method="GET")
    served.thread.join(10)
    assert not served.thread.is_alive(), "serve_forever returned"
    wait_until(lambda: threading.active_count() <= before, "the request threads to end")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", served.server.server_port), timeout=2)
