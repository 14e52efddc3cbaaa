"""A bounded pool of background threads for GCP work, so handlers never wait on GCP.

It is a ``ThreadPoolExecutor`` plus four things, each for a reason:

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
* Operations do not hold a thread while they wait on GCP. A workflow is a generator
  (bot.core.workflows ``Workflows.steps``) that yields each GCP operation it waits on;
  the runner hands that operation to the watcher (bot.gcp.watcher, one thread for all
  of them) and frees the thread, and carries the workflow on, on one of
  ``operation_threads`` threads (VMBOT_OPERATION_THREADS), once GCP says it is DONE.
  So the threads stay few however many operations are in flight; those threads only
  run the steps between two waits (a few GCP and database calls each).
  At most ``in_flight`` operations (VMBOT_MAX_IN_FLIGHT, default 200) are under way at
  once; one more waits in a list, holding no thread, and says so in its thread once
  (``on_queued``: "queued behind N others").
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from bot.gcp.compute import Steps, step_on

log = logging.getLogger(__name__)

MAX_DEFER = 0.5  # seconds a job waits at most for requests in flight
OPERATION_THREADS = 8  # threads that carry operations on between their waits on GCP


class OperationAbandoned(Exception):
    """The runner stopped (not waiting) while the operation waited on GCP: its lease is let go and the
    next process carries it on (bot.jobs.resume); this one writes nothing more for it."""


class Watcher(Protocol):
    """What the runner needs of bot.gcp.watcher.OperationWatcher."""

    def watch(self, started: Any, wake: Callable[[Callable[[], Any]], None]) -> None: ...

    def stop(self) -> list[Any]: ...


@dataclass
class _Held:
    future: Future[Any]
    run: Callable[[], Any]  # the job, in a copy of its submitter's context
    since: float
    operation: int | None = None  # the operation the job runs (``operation_of``), if any
    context: contextvars.Context | None = None  # the submitter's context, copied: each step of an operation runs in it
    steps: Steps[Any] | None = None  # the operation's workflow, once it has begun
    ended: bool = False
    let_go: bool = False


OperationOf = Callable[[Callable[..., Any], tuple[Any, ...]], "int | None"]
OnQueued = Callable[[int, int, int], None]  # (operation id, how many wait ahead of it, slots)
StepsOf = Callable[[int], Steps[Any]]  # an operation's workflow, by the operation's id


class JobRunner:
    def __init__(
        self,
        workers: int,
        *,
        max_defer: float = MAX_DEFER,
        in_flight: int | None = None,
        operation_threads: int = OPERATION_THREADS,
        operation_of: OperationOf | None = None,
        steps_of: StepsOf | None = None,
        watcher: Watcher | None = None,
        on_queued: OnQueued | None = None,
    ) -> None:
        """Operations: ``operation_of(fn, args)`` says which job runs one, ``steps_of(op_id)`` is its workflow
        and ``watcher`` waits on GCP for it; without all three every job runs on the ``workers`` pool.
        ``in_flight`` bounds the operations under way (default: ``workers``); ``on_queued`` is told, once
        per operation, when one has to wait for a slot."""
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vmbot-job")
        self.in_flight = in_flight or workers
        self._operations = ThreadPoolExecutor(max_workers=operation_threads, thread_name_prefix="vmbot-op")
        self.operation_of = operation_of or (lambda fn, args: None)
        self.steps_of, self.watcher = steps_of, watcher
        self.on_queued = on_queued
        self._in_pool = 0  # operations under way (at most ``in_flight``) or waiting for a slot
        self._waiting: deque[_Held] = deque()  # operations waiting for a slot, first come first served
        self._parked: dict[int, _Held] = {}  # the operations waiting on GCP now (in the watcher), by id(job)
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
        operation = self.operation_of(fn, args) if self.steps_of and self.watcher else None
        held = _Held(Future(), lambda: context.run(fn, *args), time.monotonic(), operation, context)
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

    def after(self, ended: Future[Any], fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Submit ``fn(*args)`` once ``ended`` is done (e.g. show the Home tab again once an operation has
        ended). It counts as pending from now, so ``drain()`` never returns between the two jobs."""
        follow: Future[Any] = Future()
        follow.add_done_callback(self._done)
        with self._lock:
            self._pending.add(follow)

        def submit(_: Future[Any]) -> None:
            try:
                self.submit(fn, *args).add_done_callback(lambda job: _settle_like(follow, job))
            except RuntimeError as error:  # shut down meanwhile
                follow.set_exception(error)

        ended.add_done_callback(submit)
        return follow

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
        """Begin an operation, or queue it (holding no thread) and say so when every slot is taken."""
        with self._lock:
            ahead = self._in_pool - self.in_flight  # operations waiting for a slot before this one
            self._in_pool += 1
            if ahead >= 0:
                self._waiting.append(job)
        if ahead < 0:
            self._carry_on(job, None)
            return
        if self.on_queued is not None and job.operation is not None:
            try:
                self.on_queued(job.operation, ahead, self.in_flight)
            except Exception:  # telling is a courtesy: the operation still runs
                log.exception("could not say that operation %s is queued", job.operation)

    def _carry_on(self, job: _Held, outcome: Callable[[], Any] | None) -> None:
        """Run the operation's next steps on an operation thread (``outcome``: what its last wait gave)."""
        with self._lock:
            self._parked.pop(id(job), None)
        try:
            queued = self._operations.submit(self._advance, job, outcome)
        except RuntimeError:  # the runner was shut down meanwhile
            self._abandon(job)
            return
        queued.add_done_callback(lambda queued: queued.cancelled() and self._abandon(job))  # shut down, not waiting

    def _advance(self, job: _Held, outcome: Callable[[], Any] | None) -> None:
        """Carry the workflow on to its next wait on GCP (then park it with the watcher), or to its end."""
        assert job.context is not None and job.operation is not None and self.steps_of and self.watcher
        try:
            if job.steps is None:
                if not job.future.set_running_or_notify_cancel():
                    self._operation_ended(job)
                    return
                job.steps = job.context.run(self.steps_of, job.operation)
            started = job.context.run(step_on, job.steps, outcome or (lambda: None))
        except StopIteration as end:
            job.future.set_result(end.value)
            self._operation_ended(job)
            return
        except BaseException as error:  # noqa: BLE001 - handed to the future, as ThreadPoolExecutor does
            job.future.set_exception(error)
            self._operation_ended(job)
            return
        with self._lock:
            self._parked[id(job)] = job
        try:
            self.watcher.watch(started, lambda outcome: self._carry_on(job, outcome))
        except RuntimeError:  # the watcher was stopped
            self._abandon(job)

    def _abandon(self, job: _Held) -> None:
        """The runner stopped while the operation waited: end its workflow where it waited (its ``finally``
        blocks run; its step stays unfinished, with the GCP operation's name, for the next process)."""
        with self._lock:
            self._parked.pop(id(job), None)
            if job.let_go:
                return
            job.let_go = True
        if job.steps is not None and job.context is not None:
            try:
                job.context.run(job.steps.close)
            except Exception:  # noqa: BLE001 - it is being let go either way
                log.exception("operation %s did not end cleanly when let go", job.operation)
        if not job.future.done():
            job.future.set_exception(OperationAbandoned(f"operation {job.operation} was let go while it waited on GCP"))
        self._operation_ended(job)

    def _operation_ended(self, job: _Held) -> None:
        """A slot is free: the first operation waiting for one begins."""
        with self._lock:
            if job.ended:
                return
            job.ended = True
            self._in_pool -= 1
            following = self._waiting.popleft() if self._waiting and not self._stopped else None
        if following is not None:
            self._carry_on(following, None)

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
        if not future.cancelled() and future.exception() is not None and not isinstance(future.exception(), OperationAbandoned):
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
        """Stop: held jobs start first and every operation runs to its end (``wait``), or held and queued jobs
        are cancelled and the operations waiting on GCP are let go (not ``wait``: a hand-over)."""
        with self._lock:
            if wait:
                held, self._held = self._held, []
            self._lock.notify_all()
        if wait:
            self._start(held)
            self.drain()
        with self._lock:
            self._stopped = True
            held, self._held = self._held, []
            waiting, self._waiting = list(self._waiting), deque()
            parked = list(self._parked.values())
            self._lock.notify_all()
        for job in [*held, *waiting]:
            job.future.cancel()
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
        self._operations.shutdown(wait=wait, cancel_futures=not wait)
        if self.watcher is not None:
            self.watcher.stop()
        for job in parked:
            self._abandon(job)


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


def _settle_like(follow: Future[Any], job: Future[Any]) -> None:
    """End ``follow`` as ``job`` ended."""
    if job.cancelled():
        follow.cancel()
    elif job.exception() is not None:
        follow.set_exception(job.exception())
    else:
        follow.set_result(job.result())
