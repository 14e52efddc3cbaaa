"""A bounded pool of background threads for GCP work, so handlers never wait on GCP.

Answering comes first: while an HTTP request is in flight, jobs wait to
start. A burst of commands is then acknowledged before the work it starts
competes with it for the interpreter (Python runs one thread at a time), and
the work begins a few milliseconds later, which nobody waiting on a GCP
operation notices. ``MAX_DEFER`` bounds the wait, so a steady stream of
requests cannot starve the work. The HTTP server reports each request
(``request_arrived``/``request_left``: bot.pooled_server does it from accept
to answer); under gunicorn, bot.wsgi wraps the app in ``answering()``.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

MAX_DEFER = 0.5  # seconds a job waits at most for Slack requests in flight


class TrackedPool(ThreadPoolExecutor):
    """A thread pool that knows which of its tasks have not ended, and runs each in a copy of its submitter's context.

    The copy gives a task the submitter's log context (bot.logs) and keeps
    whatever the task sets from leaking into the next task on the same thread.
    """

    def __init__(self, workers: int, name: str) -> None:
        super().__init__(max_workers=workers, thread_name_prefix=name)
        self._pending: set[Future[Any]] = set()
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future = super().submit(contextvars.copy_context().run, fn, *args, **kwargs)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)
        return future

    def pending(self) -> set[Future[Any]]:
        with self._lock:
            return {future for future in self._pending if not future.done()}

    def _done(self, future: Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)


class JobRunner:
    def __init__(self, workers: int) -> None:
        self._pool = TrackedPool(workers, "vmbot-job")
        self._quiet = threading.Condition()
        self._answering = 0

    def request_arrived(self) -> None:
        """A request is in flight: jobs hold back until none is (or ``MAX_DEFER`` has passed)."""
        with self._quiet:
            self._answering += 1

    def request_left(self) -> None:
        """A request was answered, or stopped computing to wait on something: it holds no job back any more."""
        with self._quiet:
            self._answering -= 1
            if not self._answering:
                self._quiet.notify_all()

    @property
    def requests_in_flight(self) -> int:
        with self._quiet:
            return self._answering

    @contextmanager
    def answering(self) -> Iterator[None]:
        """Around the handling of one request, for a server that does not report requests itself."""
        self.request_arrived()
        try:
            yield
        finally:
            self.request_left()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future = self._pool.submit(self._after_answers, fn, *args)
        future.add_done_callback(_log_failure)
        return future

    def _after_answers(self, fn: Callable[..., Any], *args: Any) -> Any:
        with self._quiet:
            self._quiet.wait_for(lambda: not self._answering, timeout=MAX_DEFER)
        return fn(*args)

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every job submitted so far has ended, and the jobs those submitted meanwhile;
        False if ``timeout`` passed first. (A listener queues its job before Slack has its answer,
        so once a request is answered, its job is here.)"""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            pending = self._pool.pending()
            if not pending:
                return True
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if wait(pending, timeout=remaining).not_done:
                return False

    def shutdown(self, *, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=not wait)


def _log_failure(future: Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("background job failed", exc_info=future.exception())
