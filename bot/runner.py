"""A bounded pool of background threads for GCP work, so handlers never wait on GCP."""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

log = logging.getLogger(__name__)


class JobRunner:
    def __init__(self, workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vmbot-job")
        self._pending: set[Future[Any]] = set()
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run ``fn(*args)`` on a pool thread, in a copy of the caller's context.

        So the job's log lines carry the submitter's log context (bot.logs), and nothing a job
        sets leaks into the next job on the same thread.
        """
        future = self._pool.submit(contextvars.copy_context().run, fn, *args)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)
        return future

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every job submitted so far has ended; False if ``timeout`` passed first."""
        with self._lock:
            pending = set(self._pending)
        return not wait(pending, timeout=timeout).not_done

    def _done(self, future: Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)
        _log_failure(future)

    def shutdown(self, *, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=not wait)


def _log_failure(future: Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("background job failed", exc_info=future.exception())
