"""A WSGI server that answers connections in arrival order on a few threads.

Why not a thread per connection (``socketserver.ThreadingMixIn``)? Python runs
one thread at a time. Under a burst, say fifty people typing ``/vm create`` at
once, fifty threads share the interpreter: each answer waits for nearly all
of them, and the switching between them costs CPU too. Two threads taking
connections first come, first served answer the first command within a few
milliseconds and the fiftieth after the CPU time of fifty (``python -m bench``,
row 1: p99 about 140 ms with a thread per connection, about 75 ms here).

Two things keep this from turning into a queue behind one slow request:

* A request that waits rather than computes (an API ``?wait=``, a database
  lock) must not hold up the others. When every thread has been on its
  request for longer than ``STALLED`` while connections are queued, the server
  adds a thread; threads beyond ``threads`` end when the queue is empty.
  ``serve_forever`` checks at least every poll interval (``service_actions``).
* ``on_arrival`` and ``on_leave`` bracket each connection from its accept
  until it is answered, or until it stalls: the job runner holds new
  background work back meanwhile (``bot.runner``). All waiting connections are
  accepted together, so a burst is one bracket, not fifty with gaps between.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

STALLED = 0.25  # seconds on one request after which a thread counts as waiting, not computing


@dataclass(eq=False)
class _Connection:
    socket: socket.socket
    address: Any
    started: float | None = None  # when a thread took it (monotonic)
    counted: bool = field(default=True)  # between on_arrival and on_leave


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

    def _handle_request_noblock(self) -> None:
        """Accept every connection that is waiting, not only the first (socketserver's way)."""
        while True:
            try:
                request, address = self.get_request()
            except OSError:  # BlockingIOError: none left
                return
            request.setblocking(True)
            if self.verify_request(request, address):
                self.process_request(request, address)
            else:
                self.shutdown_request(request)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.on_arrival()
        self._queue.put(_Connection(request, client_address))
        self._add_thread_if_needed()

    def service_actions(self) -> None:
        """After every accept and at least every poll interval: let stalled requests stop counting, add a thread."""
        now = time.monotonic()
        with self._lock:
            stalled = [c for c in self._running if c.counted and c.started is not None and now - c.started > STALLED]
        for connection in stalled:
            self._leave(connection)
        self._add_thread_if_needed()

    def _add_thread_if_needed(self) -> None:
        now = time.monotonic()
        with self._lock:
            if self._workers < self.threads:
                core = True
            elif self._queue.empty() or len(self._running) < self._workers:
                return  # nothing waits, or a thread is free to take it
            elif all(c.started is not None and now - c.started > STALLED for c in self._running):
                core = False
            else:
                return
            self._workers += 1
        threading.Thread(target=self._work, args=(core,), name="vmbot-http", daemon=True).start()

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
            with self._lock:
                self._running.discard(connection)
            self._leave(connection)

    def _leave(self, connection: _Connection) -> None:
        with self._lock:
            counted, connection.counted = connection.counted, False
        if counted:
            self.on_leave()

    def server_close(self) -> None:
        super().server_close()
        with self._lock:
            workers = self._workers
        for _ in range(workers):
            self._queue.put(None)  # each thread that takes one ends
