"""A WSGI server that answers connections in arrival order on a few threads.

Why not a thread per connection (``socketserver.ThreadingMixIn``)? Python runs
one thread at a time. Under a burst, say fifty people typing ``/vm create`` at
once, fifty threads share the interpreter: each answer waits for nearly all
of them, and the switching between them costs CPU too. Two threads taking
connections first come, first served answer the first command within a few
milliseconds and the fiftieth after the CPU time of fifty (``python -m bench``,
row 1: p99 about 140 ms with a thread per connection, 60-75 ms here).

Two things keep this from turning into a queue behind one slow request:

* A request that waits rather than computes (an API ``?wait=``, a database
  lock, a client that sends nothing) must not hold up the others. When every
  thread has been on its request for longer than ``STALLED`` while connections
  are queued, the server starts a thread for each queued connection; threads
  beyond ``threads`` end when the queue is empty. ``serve_forever`` looks every
  ``POLL_INTERVAL`` (``service_actions``). A connection that sends nothing for
  ``IDLE_TIMEOUT`` is closed.
* ``on_arrival`` and ``on_leave`` bracket each connection from its accept
  until it is answered, or until it stalls: the job runner holds new
  background work back meanwhile (``bot.jobs.runner``). All waiting connections are
  accepted together, so a burst is one bracket, not fifty with gaps between.
"""

from __future__ import annotations

import logging
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

log = logging.getLogger(__name__)

STALLED = 0.25  # seconds on one request after which a thread counts as waiting, not computing
POLL_INTERVAL = 0.1  # seconds between looks for stalled requests when no connection arrives
IDLE_TIMEOUT = 30.0  # seconds a connection may send nothing before it is closed


@dataclass(eq=False)
class _Connection:
    socket: socket.socket
    address: Any
    started: float = 0.0  # when a thread took it (monotonic)
    counted: bool = True  # between on_arrival and on_leave


class PooledWSGIServer(WSGIServer):
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[WSGIRequestHandler],
        *,
        threads: int,
        on_arrival: Callable[[], None] = lambda: None,
        on_leave: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(address, handler)
        self.socket.setblocking(False)  # accept until none is waiting (_handle_request_noblock)
        self.threads, self.on_arrival, self.on_leave = threads, on_arrival, on_leave
        self._queue: queue.SimpleQueue[_Connection | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._running: set[_Connection] = set()
        self._workers = 0  # threads alive, core and extra

    # ---- taking connections (the serve_forever thread) ------------------------------------------

    def serve_forever(self, poll_interval: float = POLL_INTERVAL) -> None:
        super().serve_forever(poll_interval)

    def _handle_request_noblock(self) -> None:
        """Accept every connection that is waiting, not only the first (socketserver's way)."""
        while True:
            try:
                request, address = self.get_request()
            except OSError:  # BlockingIOError: none left (any other failure: the next loop tries again)
                return
            request.settimeout(IDLE_TIMEOUT)
            if not self.verify_request(request, address):
                self.shutdown_request(request)
                continue
            try:
                self.process_request(request, address)
            except Exception:  # noqa: BLE001 - as socketserver: this connection fails, the server goes on
                self.handle_error(request, address)
                self.shutdown_request(request)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.on_arrival()
        self._queue.put(_Connection(request, client_address))
        self._add_threads()

    def service_actions(self) -> None:
        """After every accept and every poll interval: stalled requests stop counting; threads for the queue."""
        now = time.monotonic()
        with self._lock:
            stalled = [c for c in self._running if c.counted and now - c.started > STALLED]
        try:
            for connection in stalled:
                self._leave(connection)
            self._add_threads()
        except Exception:  # noqa: BLE001 - serve_forever must go on
            log.exception("the HTTP server's housekeeping failed")

    def _add_threads(self) -> None:
        """Core threads up to ``threads``; beyond them, one per queued connection once every thread has stalled."""
        now = time.monotonic()
        with self._lock:
            if self._workers < self.threads:
                wanted, core = 1, True
            elif len(self._running) < self._workers or any(now - c.started <= STALLED for c in self._running):
                return  # a thread is free, or one is still computing and takes the next connection soon
            else:
                wanted, core = self._queue.qsize(), False
            self._workers += wanted
        for started in range(wanted):
            try:
                threading.Thread(target=self._work, args=(core,), name="vmbot-http", daemon=True).start()
            except RuntimeError:  # no thread to be had: the threads there are serve the queue
                with self._lock:
                    self._workers -= wanted - started
                log.exception("could not start an HTTP thread (%s running)", self._workers)
                return

    # ---- answering (the pool's threads) ----------------------------------------------------------

    def _work(self, core: bool) -> None:
        try:
            while True:
                try:
                    connection = self._queue.get() if core else self._queue.get_nowait()
                except queue.Empty:
                    return  # an extra thread: the queue is empty, so it is not needed any more
                if connection is None:
                    return
                self._answer(connection)
        finally:
            with self._lock:
                self._workers -= 1

    def _answer(self, connection: _Connection) -> None:
        with self._lock:
            connection.started = time.monotonic()
            self._running.add(connection)
        try:
            self.finish_request(connection.socket, connection.address)
        except Exception:  # noqa: BLE001 - as socketserver: log it, close the connection, serve the next
            self.handle_error(connection.socket, connection.address)
        finally:
            self.shutdown_request(connection.socket)
            self._leave(connection)
            with self._lock:
                self._running.discard(connection)

    def _leave(self, connection: _Connection) -> None:
        with self._lock:
            counted, connection.counted = connection.counted, False
        if counted:
            self.on_leave()

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, TimeoutError):
            log.info("closed a connection from %s that sent nothing for %.0f s", client_address[0], IDLE_TIMEOUT)
        elif isinstance(error, ConnectionError):
            log.info("a connection from %s ended early: %s", client_address[0], error)
        else:
            log.exception("error answering %s", client_address[0])

    def server_close(self) -> None:
        super().server_close()
        with self._lock:
            workers = self._workers
        for _ in range(workers):
            self._queue.put(None)  # each thread that takes one ends
