"""One thread that watches every GCP operation the workflows wait on, so a waiting workflow holds no thread.

A workflow yields the operation it waits on (bot.gcp.compute.Started); the job runner hands it here
with a ``wake`` callback and frees its thread. Each pass asks GCP about every watched operation with
one ``operations.list`` call per zone (and one for the global ones: images), filtered on their names,
up to ``BATCH`` names a call; each operation GCP reports DONE is woken with its result, read on the
runner's thread (``Started.result``). The cost of watching is then a few calls a second whatever the
number of operations in flight, where GCP's ``wait`` would hold a connection and a thread per operation.
Past ``BATCH`` operations, passes come less often (every ``INTERVAL`` times the batches watched), so the
reads GCP counts against the project's quota, and the operations this process parses, stay about the
same each second whatever the count: at a hundred in flight a step is seen DONE within half a second
instead of a quarter, for half the reads and half the parsing (`python -m bench`, row 8).

Why not ``wait`` per operation: it blocks for up to two minutes, so multiplexing many operations over
a few threads would delay each behind the others. Why not ``get`` per operation: its calls grow with
the operations in flight (a hundred parks polling each second are 6,000 reads a minute, past GCP's
default read quota). A list with a name filter answers for all of a zone at once.

An operation the list leaves out (GCP has forgotten it) is woken to wait on its own (``Started.wait``
on the runner's thread), which raises GceNotFound as the original call would have. One that outlasts
``operation_timeout`` is woken with GceTimeout: its outcome is unknown, not failed (bot.core.workflows).
A failed list call is logged and tried again on the next pass; the operations stay watched.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bot.gcp.compute import DONE, GceError, GceTimeout, Started
from bot.gcp.lean_compute import compute_v1

log = logging.getLogger(__name__)

INTERVAL = 0.25  # seconds between passes while anything is watched (a list call per zone each)
BATCH = 50  # operation names in one list call's filter

Outcome = Callable[[], Any]  # returns the operation's result, or raises as the operation ended
Wake = Callable[[Outcome], None]


class OperationLister(Protocol):
    operation_timeout: float

    def list_operations(self, zone: str | None, names: Sequence[str]) -> dict[str, compute_v1.Operation]: ...


@dataclass(eq=False)
class _Watched:
    started: Started[Any]
    wake: Wake
    deadline: float


class OperationWatcher:
    def __init__(self, compute: OperationLister, *, interval: float = INTERVAL, batch: int = BATCH) -> None:
        self.compute = compute
        self.interval, self.batch = interval, batch
        self._lock = threading.Condition()
        self._watched: dict[_Watched, None] = {}  # in the order they came: a dict, so that one leaves at once
        self._stopped = False
        self._thread: threading.Thread | None = None

    def watch(self, started: Started[Any], wake: Wake) -> None:
        """Call ``wake(outcome)`` once ``started`` has ended (on this watcher's thread: hand it on, quickly)."""
        with self._lock:
            if self._stopped:
                raise RuntimeError("the operation watcher is stopped")
            self._watched[_Watched(started, wake, time.monotonic() + self.compute.operation_timeout)] = None
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="vmbot-gcp-watcher", daemon=True)
                self._thread.start()
            self._lock.notify_all()

    def watching(self) -> int:
        with self._lock:
            return len(self._watched)

    def stop(self) -> list[Started[Any]]:
        """Stop watching; the operations still watched are returned, not woken."""
        with self._lock:
            self._stopped = True
            left, self._watched = list(self._watched), {}
            self._lock.notify_all()
        return [watched.started for watched in left]

    def _loop(self) -> None:
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._watched or self._stopped)
                # One pass per interval however many operations start meanwhile (each ``watch`` notifies):
                # operations take seconds, so a look sooner is wasted.
                next_pass = time.monotonic() + self.interval * max(1, math.ceil(len(self._watched) / self.batch))
                while not self._stopped and (remaining := next_pass - time.monotonic()) > 0:
                    self._lock.wait(remaining)
                if self._stopped:
                    return
                watched = list(self._watched)
            try:
                self._pass(watched)
            except Exception:  # noqa: BLE001 - the watcher must outlive any one pass
                log.exception("the pass over GCP operations failed; trying again")

    def _pass(self, watched: list[_Watched]) -> None:
        by_scope: dict[str | None, list[_Watched]] = defaultdict(list)
        for item in watched:
            by_scope[item.started.zone].append(item)
        for zone, items in by_scope.items():
            for first in range(0, len(items), self.batch):
                self._look(zone, items[first : first + self.batch])

    def _look(self, zone: str | None, items: list[_Watched]) -> None:
        try:
            operations = self.compute.list_operations(zone, [item.started.name for item in items])
        except GceError as error:
            log.warning("could not list GCP operations in %s (%s); trying again", zone or "global", error.message)
            operations = None
        now = time.monotonic()
        for item in items:
            started = item.started
            operation = operations.get(started.name) if operations is not None else None
            if operation is not None and operation.status == DONE:
                self._wake(item, lambda done=operation, started=started: started.result(done))
            elif operations is not None and operation is None:
                self._wake(item, started.wait)  # GCP does not list it: waiting on it says why (GceNotFound)
            elif now > item.deadline:
                timeout = GceTimeout(f"GCP operation {started.name} did not finish within "
                                     f"{self.compute.operation_timeout:g} s", operation=started.name)  # fmt: skip
                self._wake(item, lambda timeout=timeout: _raise(timeout))

    def _wake(self, item: _Watched, outcome: Outcome) -> None:
        with self._lock:
            if self._watched.pop(item, False) is False:
                return  # stopped meanwhile
        try:
            item.wake(outcome)
        except Exception:  # noqa: BLE001 - one workflow's failure to carry on is not the others'
            log.exception("could not carry on after GCP operation %s", item.started.name)


def _raise(error: Exception) -> Any:
    raise error
