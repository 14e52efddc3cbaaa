"""Carrying on after a crash: no operation is lost when a bot process dies.

Every operation is leased to the process running it (``operations.lease_owner``
and ``lease_expires_at``). The Resumer of each process renews its own leases
every third of ``VMBOT_OPERATION_LEASE`` and, at start-up and on every tick,
hands the job runner each unfinished operation whose lease has run out, so a
restarted process (or any other process on the same database) picks up what a
dead one left half-done. ``Workflows.run`` claims the lease with a
compare-and-set before doing anything, so one process runs each operation.
An operation whose process died after recording its end but before posting
its result gets the result posted the same way (``Workflows.report_again``).

It is started by ``VmBot.start()`` (``python -m bot``), not by ``create_app``:
tests that build an app do not get a background thread unless they ask.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timezone

from bot.jobs.runner import JobRunner
from bot.core.workflows import Workflows
from storage.models import Operation
from storage.store import Store

log = logging.getLogger(__name__)


class Resumer:
    def __init__(
        self, store: Store, workflows: Workflows, runner: JobRunner, *, reporting: Callable[[int], bool] = lambda op_id: False
    ) -> None:
        """``reporting(op_id)``: this process is still posting that operation's result (bot.slack.outbox)."""
        self.store, self.workflows, self.runner = store, workflows, runner
        self.reporting = reporting
        self._lock = threading.Lock()
        self._queued: set[int] = set()  # operations this Resumer handed the runner, until their job ends
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def interval(self) -> float:
        return max(self.store.lease_seconds / 3, 0.05)

    def start(self) -> list[int]:
        """Resume what can be resumed now, then keep leases and watch for orphans in a daemon thread."""
        resumed = self.resume_unfinished()
        self.report_unreported()
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, daemon=True, name="vmbot-resumer")
            self._thread.start()
        return resumed

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def hand_over(self) -> list[int]:
        """A graceful stop: renew and resume nothing more, and let go of every operation this process
        holds, so another process takes them over at once (not after the lease runs out), re-attaching
        to the GCP operations their steps recorded. Whatever this process still tries to write for them
        fails (storage.store.LeaseLost) and its workflow stops quietly. Returns their ids."""
        self.stop()
        released = self.store.release_leases()
        if released:
            log.info("handed over operations %s to the next bot process", ", ".join(f"#{i}" for i in released))
        return released

    def resume_unfinished(self) -> list[int]:
        """Hand the runner every unfinished operation no live process holds; return their ids.

        An operation leased to this process is never one of them: this process
        queued it (it may be waiting for a worker) or is running it, and renews
        its lease meanwhile.
        """
        orphans = [op for op in self.store.unfinished_operations() if op.lease_owner != self.store.owner]
        return self._hand_over(orphans, self.workflows.run, "was left unfinished; resuming it")

    def report_unreported(self) -> list[int]:
        """Hand the runner every ended operation whose result no live process is about to post; return their ids."""
        owed = [op for op in self.store.unreported_operations() if not self.reporting(op.id)]
        return self._hand_over(owed, self.workflows.report_again, "ended but its result was never posted; posting it")

    def _hand_over(self, operations: list[Operation], job: Callable[[int], None], why: str) -> list[int]:
        """Submit ``job(op.id)`` for each operation neither this process is running or has queued nor a live one holds."""
        running_here = self.workflows.in_flight()
        with self._lock:
            ids = [op.id for op in operations if op.id not in running_here | self._queued and self._lease_free(op)]
            self._queued.update(ids)
        for op_id in ids:
            log.info("operation %s %s", op_id, why)
            future = self.runner.submit(job, op_id)
            future.add_done_callback(lambda _, op_id=op_id: self._dequeued(op_id))
        return ids

    def _dequeued(self, op_id: int) -> None:
        with self._lock:
            self._queued.discard(op_id)

    def _lease_free(self, op: Operation) -> bool:
        if op.lease_owner in (None, self.store.owner) or op.lease_expires_at is None:
            return True
        return op.lease_expires_at < datetime.now(timezone.utc)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.store.renew_leases()
                self.resume_unfinished()
                self.report_unreported()
            except Exception:  # a database hiccup must not end the loop; the next tick tries again
                log.exception("could not renew operation leases or look for unfinished operations")
