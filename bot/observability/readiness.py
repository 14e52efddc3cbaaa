"""``/readyz``: whether the database, Slack and GCP answer, from a check at most ``max_age`` seconds old.

Each dependency is a probe: a function that returns when the dependency answers and raises
(with a message a person can act on) when it does not. The probes run together, each on a
thread of its own, and a probe that has not returned after ``timeout`` seconds counts as
failed ("no answer within 5 s"), so an uptime check gets its answer in seconds whatever the
database driver or the network does. Answers are reused for ``max_age`` seconds, so frequent
checks (a load balancer, several uptime checkers) cost Slack and GCP one call a minute.

The clock is injectable so a test can age the last check without waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

Probe = Callable[[], None]
MAX_AGE = 60.0  # seconds a check is reused
PROBE_TIMEOUT = 5.0  # seconds a probe may take before it counts as failed
MAX_ERROR_CHARS = 300


@dataclass
class CheckState:
    status: str = "unchecked"  # "ok" or "failing" once probed
    last_error: str | None = None  # the newest failure's message (kept after a recovery, with its time)
    last_error_at: datetime | None = None
    checked_at: datetime | None = None
    took: float | None = None  # seconds the last probe took

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "last_error": self.last_error,
            "last_error_at": _iso(self.last_error_at),
            "checked_at": _iso(self.checked_at),
            "took_ms": None if self.took is None else round(self.took * 1000, 1),
        }


class Readiness:
    """The probes' last answers, probing again when asked after ``max_age`` seconds."""

    def __init__(
        self,
        probes: Mapping[str, Probe],
        *,
        max_age: float = MAX_AGE,
        timeout: float = PROBE_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
        describe: Callable[[BaseException], str] = str,
    ) -> None:
        """``describe`` turns a probe's exception into the words shown (the app redacts secrets there)."""
        self.probes = dict(probes)
        self.max_age, self.timeout, self.clock, self.describe = max_age, timeout, clock, describe
        self.states = {name: CheckState() for name in self.probes}
        self._probed_at: float | None = None
        self._lock = threading.Lock()  # one round of probes at a time; callers meanwhile wait for its answers

    def report(self) -> tuple[bool, dict[str, Any]]:
        """(ready, JSON body): ready when every probe answered in the newest round."""
        with self._lock:
            if self._probed_at is None or self.clock() - self._probed_at >= self.max_age:
                self._probe_all()
            ready = all(state.status == "ok" for state in self.states.values())
            return ready, {"ok": ready, **{name: state.as_json() for name, state in self.states.items()}}

    def _probe_all(self) -> None:
        results: dict[str, tuple[BaseException | None, float]] = {}  # name -> (what it raised, seconds it took)
        threads = [
            threading.Thread(target=_run_into, args=(probe, results, name), name=f"readyz-{name}", daemon=True)
            for name, probe in self.probes.items()
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + self.timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        now = datetime.now(timezone.utc)
        for name, state in self.states.items():
            state.checked_at = now
            if name not in results:
                state.took = self.timeout
                self._failed(state, f"no answer within {self.timeout:g} s", now)
                continue
            error, state.took = results[name]
            if error is None:
                state.status = "ok"
            else:
                self._failed(state, self.describe(error) or type(error).__name__, now)
        self._probed_at = self.clock()

    @staticmethod
    def _failed(state: CheckState, message: str, now: datetime) -> None:
        state.status = "failing"
        state.last_error = message[:MAX_ERROR_CHARS]
        state.last_error_at = now


def _run_into(probe: Probe, results: dict[str, tuple[BaseException | None, float]], name: str) -> None:
    started = time.monotonic()
    try:
        probe()
    except BaseException as error:  # noqa: BLE001 - any failure is the answer
        results[name] = (error, time.monotonic() - started)
    else:
        results[name] = (None, time.monotonic() - started)


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat(timespec="seconds").replace("+00:00", "Z")
