"""bot.jobs.runner: jobs wait (off any thread) while requests are answered, for ``max_defer`` at most."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator

import pytest

from bot.jobs.runner import JobRunner

asked_by: contextvars.ContextVar[str] = contextvars.ContextVar("asked_by", default="nobody")


@pytest.fixture
def runner() -> Iterator[JobRunner]:
    runner = JobRunner(2, max_defer=60)  # no test here waits that long: a held job runs when the request leaves
    yield runner
    runner.shutdown(wait=False)


def test_a_job_waits_while_a_request_is_answered_and_runs_once_it_is(runner: JobRunner) -> None:
    ran = threading.Event()
    with runner.answering():
        runner.submit(ran.set)
        assert not runner.drain(timeout=0.1), "the job is held while a request is in flight"
        assert runner.pending() == 1, "a held job counts as pending"
        assert not ran.is_set()
        assert not [t for t in threading.enumerate() if t.name.startswith("vmbot-job_")], "and holds no thread"
    assert runner.drain(timeout=10) and ran.is_set(), "and ran once the answer was out"
    assert runner.pending() == 0


def test_with_no_request_in_flight_a_job_starts_at_once(runner: JobRunner) -> None:
    future = runner.submit(lambda: 42)
    assert future.result(timeout=10) == 42


def test_a_held_job_starts_after_max_defer_even_while_requests_keep_coming() -> None:
    runner = JobRunner(1, max_defer=0.05)
    ran = threading.Event()
    try:
        runner.request_arrived()  # and never leaves
        runner.submit(ran.set)
        assert runner.drain(timeout=10) and ran.is_set()
    finally:
        runner.shutdown(wait=False)


def test_a_held_job_runs_in_its_submitters_context(runner: JobRunner) -> None:
    with runner.answering():
        token = asked_by.set("U1")
        future = runner.submit(asked_by.get)
        asked_by.reset(token)
    assert future.result(timeout=10) == "U1"


def test_a_held_jobs_failure_reaches_its_future(runner: JobRunner) -> None:
    with runner.answering():
        future = runner.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        future.result(timeout=10)


def test_stopping_without_waiting_cancels_held_jobs(runner: JobRunner) -> None:
    runner.request_arrived()
    future = runner.submit(lambda: None)
    runner.shutdown(wait=False)
    assert future.cancelled()
    assert runner.drain(timeout=1)


def test_stopping_and_waiting_runs_held_jobs_first() -> None:
    runner = JobRunner(1, max_defer=60)
    ran = threading.Event()
    runner.request_arrived()
    runner.submit(ran.set)
    runner.shutdown(wait=True)
    assert ran.is_set()


def test_a_job_after_another_is_pending_from_the_start_so_drain_waits_for_both(runner: JobRunner) -> None:
    """``after``: e.g. the Home tab shown again once the operation a press started has ended."""
    gate, order = threading.Event(), []
    first = runner.submit(lambda: (gate.wait(5), order.append("first")))
    follow = runner.after(first, order.append, "after")
    assert runner.pending() == 2, "the job to come counts before it is submitted"
    gate.set()
    assert runner.drain(timeout=10)
    assert order == ["first", "after"] and follow.done() and runner.pending() == 0


def test_a_job_after_a_failed_one_still_runs(runner: JobRunner) -> None:
    ran = threading.Event()
    runner.after(runner.submit(lambda: 1 / 0), ran.set)
    assert runner.drain(timeout=10) and ran.is_set()
