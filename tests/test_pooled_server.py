"""bot.web.pooled_server: connections answered in arrival order on a few threads, and never stuck behind a waiting one."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from bench.burst import post_all
from bot.web.pooled_server import PooledWSGIServer
from bot.web.server import QuietHandler
from standins.slack_driver import Prepared


@dataclass
class Recorder:
    """A WSGI app that notes which thread answered each path, in order; ``/wait`` blocks until released."""

    answered: list[tuple[str, threading.Thread]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        path = environ["PATH_INFO"]
        if path == "/wait":
            self.release.wait(30)
        self.answered.append((path, threading.current_thread()))
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]


@dataclass
class Counter:
    """Stands in for the job runner's request count."""

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


@dataclass
class Served:
    server: PooledWSGIServer
    app: Recorder
    counter: Counter
    url: str


def serve(threads: int, poll_interval: float = 0.02) -> Iterator[Served]:
    app, counter = Recorder(), Counter()
    server = PooledWSGIServer(("127.0.0.1", 0), QuietHandler, threads=threads,
                              on_arrival=counter.arrived, on_leave=counter.left)
    server.set_app(app)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": poll_interval}, daemon=True)
    thread.start()
    try:
        yield Served(server, app, counter, f"http://127.0.0.1:{server.server_port}")
    finally:
        app.release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def two_threads() -> Iterator[Served]:
    yield from serve(2)


@pytest.fixture
def one_thread() -> Iterator[Served]:
    yield from serve(1)


def test_a_burst_is_answered_by_the_pools_threads_not_one_per_connection(two_threads: Served) -> None:
    answers = post_all(two_threads.url + "/", [Prepared(b"", {}, None)] * 30, method="GET")

    assert [a.status for a in answers] == [200] * 30
    threads = {id(thread) for _, thread in two_threads.app.answered}  # the list keeps each thread alive: no id reused
    assert len(threads) < 10, f"30 connections at once were answered by {len(threads)} threads"
    settled(two_threads)
    assert two_threads.counter.in_flight == 0


def test_connections_waiting_together_are_accepted_together() -> None:
    """One accept takes every waiting connection: the runner holds jobs back for a whole burst, with no gap."""
    app, counter = Recorder(), Counter()
    server = PooledWSGIServer(("127.0.0.1", 0), QuietHandler, threads=1, on_arrival=counter.arrived, on_leave=counter.left)
    server.set_app(app)
    clients = [socket.create_connection(("127.0.0.1", server.server_port)) for _ in range(5)]
    try:
        for client in clients:
            client.sendall(b"GET /wait HTTP/1.0\r\n\r\n")

        server._handle_request_noblock()  # what serve_forever calls when the listening socket is readable

        assert counter.in_flight == 5
    finally:
        app.release.set()
        for client in clients:
            client.recv(1024)  # its answer, once released: nothing is left half-written
            client.close()
        server.server_close()


def test_a_request_that_waits_holds_up_neither_the_others_nor_the_jobs(one_thread: Served) -> None:
    one_thread.app.release.clear()
    blocker = threading.Thread(target=requests.get, args=(one_thread.url + "/wait",), daemon=True)
    blocker.start()
    wait_until(lambda: one_thread.counter.in_flight == 1, "the waiting request to arrive")

    # The only thread waits; a second request still gets its answer (from a thread added for it).
    answer = requests.get(one_thread.url + "/healthz", timeout=10)

    assert answer.status_code == 200
    assert [path for path, _ in one_thread.app.answered] == ["/healthz"]
    wait_until(lambda: one_thread.counter.in_flight == 0, "the waiting request to stop holding jobs back")
    one_thread.app.release.set()
    blocker.join(10)
    settled(one_thread)
    assert [path for path, _ in one_thread.app.answered] == ["/healthz", "/wait"]
    assert one_thread.counter.in_flight == 0  # counted down once, not again when it was answered


def test_requests_queued_behind_waiting_ones_get_threads_of_their_own_at_once() -> None:
    """Four requests that wait and a quick one behind them: once the first has stalled, every queued
    request gets a thread at the next look, not one thread per look (each look is 2 s apart here)."""
    for served in serve(1, poll_interval=2.0):
        served.app.release.clear()
        waiting = [threading.Thread(target=requests.get, args=(served.url + "/wait",), daemon=True) for _ in range(4)]
        for thread in waiting:
            thread.start()
        wait_until(lambda: served.counter.most >= 4, "the four waiting requests to arrive")
        asked = time.monotonic()
        answer = requests.get(served.url + "/healthz", timeout=20)
        took = time.monotonic() - asked

        assert answer.status_code == 200
        assert took < 5.0, f"the quick request waited {took:.1f} s: one thread per look would be about 8 s"


def test_a_connection_that_sends_nothing_is_closed(monkeypatch: pytest.MonkeyPatch, one_thread: Served) -> None:
    monkeypatch.setattr("bot.web.pooled_server.IDLE_TIMEOUT", 0.2)
    silent = socket.create_connection(("127.0.0.1", one_thread.server.server_port), timeout=10)
    try:
        assert silent.recv(1024) == b"", "the server closed the connection"
    finally:
        silent.close()
    assert requests.get(one_thread.url + "/healthz", timeout=10).status_code == 200
    wait_until(lambda: one_thread.counter.in_flight == 0, "the closed connection to stop counting")


def test_closing_the_server_ends_its_threads() -> None:
    before = threading.active_count()
    for served in serve(2):
        post_all(served.url + "/", [Prepared(b"", {}, None)] * 4, method="GET")
    wait_until(lambda: threading.active_count() <= before, "the pool's threads to end")


def settled(served: Served) -> None:
    """Until the server's threads are done with every connection: a client has its answer a moment before."""
    wait_until(lambda: not served.server._running, "the server to finish its connections")


def wait_until(condition: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)
