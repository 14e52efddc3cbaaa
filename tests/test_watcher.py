"""bot.gcp.watcher: many GCP operations watched at once, with one list call per zone a pass and no
thread (and no ``wait`` call) per operation; against the Compute stand-in, through the real client."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from bot.gcp.compute import Compute, GceError, GceNotFound, GceTimeout, Started
from bot.gcp.watcher import OperationWatcher
from conftest import PROJECT, fast_compute
from bot.settings import Settings
from standins.compute import ComputeStandin

ZONES = ("us-central1-a", "us-central1-b")


class Woken:
    """Each operation's outcome, as the watcher handed it over (called here, as the runner would)."""

    def __init__(self) -> None:
        self.results: dict[str, Any] = {}
        self.errors: dict[str, Exception] = {}
        self.calls: dict[str, int] = {}
        self._cond = threading.Condition()

    def wake_for(self, name: str) -> Callable[[Callable[[], Any]], None]:
        def wake(outcome: Callable[[], Any]) -> None:
            try:
                result = outcome()
            except Exception as error:  # noqa: BLE001 - recorded for the test
                with self._cond:
                    self.errors[name] = error
            else:
                with self._cond:
                    self.results[name] = result
            with self._cond:
                self.calls[name] = self.calls.get(name, 0) + 1
                self._cond.notify_all()

        return wake

    def until(self, count: int, timeout: float = 30) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.calls) >= count, timeout=timeout)


def test_forty_operations_in_two_zones_are_watched_with_a_list_call_per_zone_and_no_waits(
    settings: Settings, gcp: ComputeStandin
) -> None:
    compute = fast_compute(settings)
    names = [f"vm-{i}" for i in range(40)]
    for i, name in enumerate(names):
        gcp.seed_instance(PROJECT, ZONES[i % 2], name)
    watcher, woken = OperationWatcher(compute, interval=0.05), Woken()
    gcp.hold_operations()
    started = [compute.stop_instance(ZONES[i % 2], name) for i, name in enumerate(names)]
    for operation in started:
        watcher.watch(operation, woken.wake_for(operation.name))
    assert gcp.wait_for(lambda: _lists(gcp) >= 6, timeout=10), "the watcher does not look at GCP"
    assert not woken.calls, "nothing ends while GCP holds the operations"
    ours = [thread.name for thread in threading.enumerate() if thread.name.startswith("vmbot")]
    assert ours == ["vmbot-gcp-watcher"], "one watcher thread, whatever the count"
    gcp.clear_requests()
    gcp.release_operations()
    assert woken.until(len(names)), woken.calls
    assert set(woken.calls) == {operation.name for operation in started}
    assert set(woken.calls.values()) == {1}, "each woken once"
    assert not woken.errors
    paths = [request.path for request in gcp.requests]
    assert not [p for p in paths if p.endswith("/wait")], "no operation waited on one by one"
    assert not [p for p in paths if "/operations/" in p], "nor read one by one"
    assert all(gcp.instance(PROJECT, ZONES[i % 2], name)["status"] == "TERMINATED" for i, name in enumerate(names))
    assert watcher.watching() == 0
    watcher.stop()


def test_a_pass_asks_each_zone_once_with_the_names_in_its_filter(settings: Settings, gcp: ComputeStandin) -> None:
    compute = fast_compute(settings)
    for i in range(6):
        gcp.seed_instance(PROJECT, ZONES[i % 2], f"vm-{i}")
    gcp.hold_operations()
    started = [compute.stop_instance(ZONES[i % 2], f"vm-{i}") for i in range(6)]
    watcher = OperationWatcher(compute, interval=0.05, batch=2)
    for operation in started:
        watcher.watch(operation, lambda outcome: None)
    assert gcp.wait_for(lambda: _lists(gcp) >= 12, timeout=10)
    watcher.stop()
    gcp.release_operations()
    zone_of = {operation.name: operation.zone for operation in started}
    asked: set[str] = set()
    for request in [r for r in gcp.requests if r.path.endswith("/operations") and r.method == "GET"]:
        names = re.findall(r'\(name = "([^"]+)"\)', request.query["filter"])
        assert 1 <= len(names) <= 2, request.query  # at most two names a call (batch=2)
        assert {zone_of[name] for name in names} == {request.path.split("/zones/")[1].split("/")[0]}
        asked.update(names)
    assert asked == set(zone_of)


def test_operations_started_one_after_another_share_the_passes(settings: Settings, gcp: ComputeStandin) -> None:
    """A pass every ``interval`` however many operations start meanwhile, not a pass per new operation."""
    compute = fast_compute(settings)
    for i in range(20):
        gcp.seed_instance(PROJECT, ZONES[0], f"vm-{i}")
    gcp.hold_operations()
    started = [compute.stop_instance(ZONES[0], f"vm-{i}") for i in range(20)]
    watcher = OperationWatcher(compute, interval=0.5)
    gcp.clear_requests()
    began = time.monotonic()
    for operation in started:  # twenty new operations over about 0.4 s
        watcher.watch(operation, lambda outcome: None)
        time.sleep(0.02)
    time.sleep(max(0.0, 1.1 - (time.monotonic() - began)))
    watcher.stop()
    gcp.release_operations()
    assert 1 <= _lists(gcp) <= 3, "about two passes in a second, not one per operation"


def test_past_a_batch_the_passes_come_less_often_so_the_reads_a_second_stay_the_same(
    settings: Settings, gcp: ComputeStandin
) -> None:
    """Three batches watched: a pass every three intervals (three list calls each), not one every interval."""
    compute = fast_compute(settings)
    for i in range(6):
        gcp.seed_instance(PROJECT, ZONES[0], f"vm-{i}")
    gcp.hold_operations()
    started = [compute.stop_instance(ZONES[0], f"vm-{i}") for i in range(6)]
    watcher = OperationWatcher(compute, interval=0.1, batch=2)
    gcp.clear_requests()
    for operation in started:
        watcher.watch(operation, lambda outcome: None)
    time.sleep(1.25)
    watcher.stop()
    gcp.release_operations()
    assert 3 <= _lists(gcp) <= 15, "about four passes of three calls in 1.25 s, not twelve passes (36 calls)"


def test_an_operation_ending_in_an_error_is_woken_with_gcps_message(settings: Settings, gcp: ComputeStandin) -> None:
    compute = fast_compute(settings)
    gcp.seed_instance(PROJECT, ZONES[0], "vm-1")
    gcp.fail_operation("POST", "/instances/vm-1/stop", code="RESOURCE_NOT_READY", message="The resource is not ready")
    watcher, woken = OperationWatcher(compute, interval=0.05), Woken()
    operation = compute.stop_instance(ZONES[0], "vm-1")
    watcher.watch(operation, woken.wake_for(operation.name))
    assert woken.until(1)
    error = woken.errors[operation.name]
    assert isinstance(error, GceError) and "not ready" in error.message
    watcher.stop()


def test_an_operation_gcp_does_not_know_is_woken_with_not_found(settings: Settings, gcp: ComputeStandin) -> None:
    compute = fast_compute(settings)
    watcher, woken = OperationWatcher(compute, interval=0.05), Woken()
    forgotten = compute.attach("operation-1700000000000-5f0a-forgotten", zone=ZONES[0])
    watcher.watch(forgotten, woken.wake_for(forgotten.name))
    assert woken.until(1)
    assert isinstance(woken.errors[forgotten.name], GceNotFound)
    watcher.stop()


def test_an_operation_outlasting_the_timeout_is_woken_as_unknown_not_failed(
    settings: Settings, gcp: ComputeStandin
) -> None:
    compute = Compute(settings.project, endpoint=settings.compute_endpoint, operation_timeout=0.3)
    gcp.seed_instance(PROJECT, ZONES[0], "vm-1")
    gcp.hold_operations()
    watcher, woken = OperationWatcher(compute, interval=0.05), Woken()
    operation = compute.stop_instance(ZONES[0], "vm-1")
    watcher.watch(operation, woken.wake_for(operation.name))
    assert woken.until(1)
    error = woken.errors[operation.name]
    assert isinstance(error, GceTimeout) and error.operation == operation.name
    gcp.release_operations()
    watcher.stop()


def test_a_failing_list_call_keeps_the_operations_watched(settings: Settings, gcp: ComputeStandin) -> None:
    compute = Compute(settings.project, endpoint=settings.compute_endpoint, retry_deadline=0)
    gcp.seed_instance(PROJECT, ZONES[0], "vm-1")
    gcp.fail_request("GET", f"/zones/{ZONES[0]}/operations$", status=503, times=3)
    watcher, woken = OperationWatcher(compute, interval=0.05), Woken()
    operation = compute.stop_instance(ZONES[0], "vm-1")
    watcher.watch(operation, woken.wake_for(operation.name))
    assert woken.until(1)
    assert woken.results == {operation.name: None} and not woken.errors
    watcher.stop()


def test_a_stopped_watcher_hands_back_what_it_watched_and_takes_nothing_more(
    settings: Settings, gcp: ComputeStandin
) -> None:
    compute = fast_compute(settings)
    gcp.seed_instance(PROJECT, ZONES[0], "vm-1")
    gcp.hold_operations()
    watcher, woken = OperationWatcher(compute, interval=0.05), Woken()
    operation: Started[None] = compute.stop_instance(ZONES[0], "vm-1")
    watcher.watch(operation, woken.wake_for(operation.name))
    assert [left.name for left in watcher.stop()] == [operation.name]
    with pytest.raises(RuntimeError):
        watcher.watch(operation, woken.wake_for(operation.name))
    gcp.release_operations()
    assert not woken.until(1, timeout=0.5)


def _lists(gcp: ComputeStandin) -> int:
    return sum(1 for r in gcp.requests if r.method == "GET" and r.path.endswith("/operations"))
