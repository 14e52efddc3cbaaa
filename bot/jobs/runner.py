"""A bounded pool of background threads for GCP work, so handlers never wait on GCP.

It is a ``ThreadPoolExecutor`` plus three things, each for a reason:

* Answering comes first. A job submitted while a Slack request is in flight
  waits in a list, not on a thread, and goes to the pool once no Slack
  request is in flight, or after ``max_defer`` at most, so a steady stream of
  requests cannot starve the work. The server counts a Slack request from
  when it has been read whole, queued ones included, until it is answered
  (bot.web.server.SlackBracketingDispatcher), so a burst of commands is
  acknowledged before the work it starts competes with it for the
  interpreter (Python runs one thread at a time). Measured on waitress, the
  production server, with ``python -m bench`` row 1 (50 concurrent signed
  ``/vm create``, 8 request threads, 32 job threads, 2 shared CPUs), p99 over
  three runs each: jobs started at once, 574-829 ms; held while a thread is
  on a Slack request (a WSGI middleware), 177-259 ms; held from read to
  answer, 89-139 ms. The work begins a few milliseconds later, which nobody
  waiting on a GCP operation notices.
* A job runs in a copy of its submitter's context (``contextvars``): its log
  fields (bot.logs) and the audit recording's scope (bot.core.audit) follow
  it, and what it sets does not leak into the next job on the same thread.
* ``drain()`` waits for every job and the jobs those started (tests, the demo,
  shutdown), and a job's failure is logged once with its traceback.
* Operations have a pool of their own, ``in_flight`` threads (VMBOT_MAX_IN_FLIGHT,
  default 200), apart from the ``workers`` threads (VMBOT_WORKERS) for the short jobs
  (Slack answers, reports), so a burst of parks never makes a list or a button press wait.
  A workflow is synchronous and holds its thread while bot.gcp.compute waits on GCP,
  so this is the pragmatic route of issue 19, not a watcher: the number of operations
  in flight is a setting apart from the short-job threads, operation threads start
  lazily (one per operation running at once, up to the bound) and each has a small
  stack (OPERATION_STACK).
  An operation that finds every slot taken says so in its thread once
  (``on_queued``: "queued behind N others"). Measured with ``python -m bench`` row 8
  (100 parks at once, default settings): see the README's table; the thread count
  grows with the operations in flight (about one per operation), which a watcher
  multiplexing GCP's ``wait`` calls would remove.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

MAX_DEFER = 0.5  # seconds a job waits at most for requests in flight
OPERATION_STACK = 512 * 1024  # bytes of stack per operation thread (Linux's default is 8 MiB of address space)


@dataclass
class _Held:
    future: Future[Any]
    run: Callable[[], Any]  # the job, in a copy of its submitter's context
    since: float
    operation: int | None = None  # the operation the job runs (``operation_of``), if any


OperationOf = Callable[[Callable[..., Any], tuple[Any, ...]], "int | None"]
OnQueued = Callable[[int, int, int], None]  # (operation id, how many wait ahead of it, slots)


class JobRunner:
    def __init__(
        self,
        workers: int,
        *,
        max_defer: float = MAX_DEFER,
        in_flight: int | None = None,
        operation_of: OperationOf | None = None,
        on_queued: OnQueued | None = None,
    ) -> None:
        """``in_flight``: threads for operations (``operation_of(fn, args)`` says which job runs one);
        None runs them on the ``workers`` pool. ``on_queued`` is told, once per job, when an operation
        has to wait for a slot."""
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vmbot-job")
        self.in_flight = in_flight
        self._operations = self._pool
        if in_flight is not None:
            self._operations = _SmallStackPool(in_flight, thread_name_prefix="vmbot-op")
        self.operation_of = operation_of or (lambda fn, args: None)
        self.on_queued = on_queued
        self._in_pool = 0  # operation jobs handed to their pool and not ended: running, or waiting for a slot
        self.max_defer = max_defer
        self._lock = threading.Condition()
        self._answering = 0
        self._held: list[_Held] = []
        self._pending: set[Future[Any]] = set()  # every job's future until it is done
        self._stopped = False
        self._releaser = threading.Thread(target=self._release_when_due, name="vmbot-job-release", daemon=True)
        self._releaser.start()

    # ---- requests in flight -----------------------------------------------------------------------

    def request_arrived(self) -> None:
        """A request is in flight: jobs submitted from now on are held until none is (or ``max_defer`` passed)."""
        with self._lock:
            self._answering += 1

    def request_left(self) -> None:
        """A request was answered, or stopped computing to wait on something: it holds no job back any more."""
        with self._lock:
            self._answering -= 1
            if self._answering or not self._held:
                return
            held, self._held = self._held, []
        self._start(held)

    @contextmanager
    def answering(self) -> Iterator[None]:
        """Around the handling of one request, for a server that does not report requests itself."""
        self.request_arrived()
        try:
            yield
        finally:
            self.request_left()

    # ---- jobs -----------------------------------------------------------------------------------------

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run ``fn(*args)`` on the pool, in a copy of the caller's context (its log context, bot.logs;
        whatever the job sets does not leak into the next job on the same thread)."""
        context = contextvars.copy_context()
        held = _Held(Future(), lambda: context.run(fn, *args), time.monotonic(), self.operation_of(fn, args))
        held.future.add_done_callback(self._done)
        with self._lock:
            if self._stopped:
                raise RuntimeError("the job runner is shut down")
            self._pending.add(held.future)
            if self._answering:
                first = not self._held
                self._held.append(held)
                if first:
                    self._lock.notify_all()  # the releaser starts counting max_defer
                return held.future
        self._start([held])
        return held.future

    def _start(self, jobs: list[_Held]) -> None:
        for job in jobs:
            try:
                if job.operation is not None:
                    self._start_operation(job)
                    continue
                queued = self._pool.submit(_run_into, job.future, job.run)
            except RuntimeError:
                if self._stopped:  # the pool was shut down meanwhile
                    job.future.cancel()
                else:  # no new thread could start; the job is queued for the threads there are
                    log.exception("could not start a job thread")
                continue
            queued.add_done_callback(lambda queued, job=job: queued.cancelled() and job.future.cancel())

    def _start_operation(self, job: _Held) -> None:
        """Hand an operation to its pool, counted while it runs or waits; say so when it has to wait."""
        slots = self.in_flight or self._pool._max_workers
        with self._lock:
            ahead = self._in_pool - slots  # operations waiting for a slot before this one
            self._in_pool += 1
        try:
            queued = self._operations.submit(self._run_operation, job)
        except BaseException:
            with self._lock:
                self._in_pool -= 1
            raise
        queued.add_done_callback(lambda queued, job=job: queued.cancelled() and job.future.cancel())
        if ahead >= 0 and self.on_queued is not None and job.operation is not None:
            try:
                self.on_queued(job.operation, ahead, slots)
            except Exception:  # telling is a courtesy: the operation still runs
                log.exception("could not say that operation %s is queued", job.operation)

    def _run_operation(self, job: _Held) -> None:
        try:
            _run_into(job.future, job.run)
        finally:
            with self._lock:
                self._in_pool -= 1

    def _release_when_due(self) -> None:
        """Starts held jobs whose ``max_defer`` has passed while requests kept coming."""
        with self._lock:
            while not self._stopped:
                if not self._held:
                    self._lock.wait()
                    continue
                due = self._held[0].since + self.max_defer - time.monotonic()
                if due > 0:
                    self._lock.wait(due)
                    continue
                held, self._held = self._held, []
                self._lock.release()
                try:
                    self._start(held)
                finally:
                    self._lock.acquire()

    def _done(self, future: Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)
        if not future.cancelled() and future.exception() is not None:
            log.error("background job failed", exc_info=future.exception())

    def pending(self) -> int:
        """Jobs submitted and not ended yet: queued, held back or running (the metrics' queue depth)."""
        with self._lock:
            return len(self._pending)

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every job submitted so far has ended, and the jobs those submitted meanwhile;
        False if ``timeout`` passed first. (A listener queues its job before Slack has its answer,
        so once a request is answered, its job is here.)"""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                pending = set(self._pending)
            if not pending:
                return True
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if wait(pending, timeout=remaining).not_done:
                return False

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop: held jobs start first (``wait``) or are cancelled with the queued ones (not ``wait``)."""
        with self._lock:
            self._stopped = True
            held, self._held = self._held, []
            self._lock.notify_all()
        if wait:
            self._start(held)
        else:
            for job in held:
                job.future.cancel()
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
        if self._operations is not self._pool:
            self._operations.shutdown(wait=wait, cancel_futures=not wait)


def _run_into(future: Future[Any], run: Callable[[], Any]) -> None:
    """Run a job on a pool thread and settle the future its submitter holds (unless it was cancelled)."""
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = run()
    except BaseException as error:  # noqa: BLE001 - handed to the future, as ThreadPoolExecutor does
        future.set_exception(error)
    else:
        future.set_result(result)


class _SmallStackPool(ThreadPoolExecutor):
    """A ThreadPoolExecutor whose threads get OPERATION_STACK bytes of stack: an operation thread
    mostly waits on a socket, and hundreds of them stay cheap. ``threading.stack_size`` applies to
    threads started after it is set, process-wide, so it is set around this pool's thread starts only."""

    _stack_lock = threading.Lock()

    def _adjust_thread_count(self) -> None:
        with self._stack_lock:
            previous = threading.stack_size(OPERATION_STACK)
            try:
                super()._adjust_thread_count()
            finally:
                threading.stack_size(previous)
