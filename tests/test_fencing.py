"""One execution per operation across processes, on PostgreSQL: a process that lost its lease (frozen or
cut off past it while another took over) stops at its next write, and a graceful stop hands the
running operations over at once instead of running them on beside the next process."""

from __future__ import annotations

import logging
import time

import pytest

from bot.service import start_background
from bot.settings import Settings
from conftest import PROJECT, SIGNING_SECRET, replace
from durable_support import CHANNEL, gcp_operations, mutations, serve, until
from standins.compute import ComputeStandin
from standins.slack_api import SlackStandin
from standins.slack_driver import SlackDriver
from storage.models import OperationState, Verb, VmState
from storage.store import Lease, LeaseLost, Store

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)



def _held_stop(gcp: ComputeStandin) -> str:
    assert until(lambda: bool(gcp.held_operations("stop")), 20), "no stop began"
    return gcp.held_operations("stop")[0]["name"]


def _park(store: Store):  # type: ignore[no-untyped-def]
    return next(op for op in store.operations_for("vm-a") if op.verb is Verb.PARK)


def _parked_once(gcp: ComputeStandin, slack: SlackStandin, store: Store) -> None:
    """One stop, one image, one delete in GCP; one result in the thread; the record says parked."""
    park = store.operation(_park(store).id)
    assert park.state is OperationState.SUCCEEDED
    assert store.vm("vm-a").state is VmState.PARKED
    assert len(gcp_operations(gcp, "stop", "/instances/vm-a")) == 1
    assert len(gcp_operations(gcp, "delete", "/instances/vm-a")) == 1
    assert len(mutations(gcp, "DELETE", "/instances/vm-a")) == 1, "a second delete was sent"
    assert len([op for op in gcp.operations() if op["operationType"] == "insert" and "/global/images/" in op["targetLink"]]) == 1
    replies = [m.text for m in slack.thread(CHANNEL, park.thread_ts)[1:]]
    assert sum("is parked:" in text for text in replies) == 1, replies


def test_a_process_that_lost_its_lease_stops_at_its_next_write(
    settings: Settings, gcp: ComputeStandin, slack: SlackStandin, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = replace(settings, operation_lease=0.5)
    gcp.operation_seconds = 0.01
    with serve(settings) as (frozen, events_url):  # it renews no lease: as if frozen while it waits on GCP
        driver = SlackDriver(events_url, SIGNING_SECRET, slack)
        driver.command("create vm-a")
        assert frozen.runner.drain(timeout=30) and frozen.outbox.drain(timeout=30)
        gcp.hold_operations()
        try:
            driver.click("park_confirm", blocks=driver.command("park vm-a").blocks)
            _held_stop(gcp)  # the stop began, and GCP holds it
            assert until(lambda: frozen.runner.watcher.watching() == 1, 20)  # waiting on the stop
            time.sleep(0.6)  # its lease runs out
            with serve(settings) as (other, _):
                other.resumer.start()
                assert until(lambda: other.runner.watcher.watching() == 1, 20), "the other process did not take over"
                assert _park(other.store).lease_owner == other.store.owner
                gcp.release_operations()
                assert until(lambda: _park(other.store).state is OperationState.SUCCEEDED, 30)
                assert frozen.runner.drain(timeout=30) and other.runner.drain(timeout=30)
                assert other.outbox.drain(timeout=30) and frozen.outbox.drain(timeout=30)
                _parked_once(gcp, slack, other.store)
        finally:
            gcp.release_operations()
            driver.close()
    assert "taken over by another bot process" in caplog.text


def test_a_write_under_a_lease_taken_over_is_refused(settings: Settings) -> None:
    first = Store.from_url(settings.database_url, owner="a")
    second = Store.from_url(settings.database_url, owner="b")
    op = first.begin(Verb.CREATE, "vm-a", allowed_from=[None], requested_by="U1", zone="z", machine_type="m")
    first.lease_seconds = 0  # its lease runs out at once
    mine = first.claim_operation(op.id)
    time.sleep(0.01)
    taken = second.claim_operation(op.id)
    assert taken is not None and taken.lease_token > mine.lease_token
    with first.fenced_by(Lease(op.id, "a", mine.lease_token)), pytest.raises(LeaseLost):
        first.step_started(op.id, "create", request_id="r1")
    with first.fenced_by(Lease(op.id, "a", mine.lease_token)), pytest.raises(LeaseLost):
        first.finish(op.id, OperationState.SUCCEEDED)
    assert first.operation(op.id).steps == [] and first.operation(op.id).state is not OperationState.SUCCEEDED
    with second.fenced_by(Lease(op.id, "b", taken.lease_token)):
        second.step_started(op.id, "create", request_id="r2")
    first.engine.dispose()
    second.engine.dispose()


def test_a_graceful_stop_hands_the_running_park_over_at_once(
    settings: Settings, gcp: ComputeStandin, slack: SlackStandin
) -> None:
    settings = replace(settings, operation_lease=60)  # without a hand-over the next process would wait a minute
    gcp.operation_seconds = 0.01
    with serve(settings) as (stopping, events_url):
        background = start_background(stopping)
        driver = SlackDriver(events_url, SIGNING_SECRET, slack)
        driver.command("create vm-a")
        assert stopping.runner.drain(timeout=30) and stopping.outbox.drain(timeout=30)
        gcp.hold_operations()
        try:
            driver.click("park_confirm", blocks=driver.command("park vm-a").blocks)
            stop = _held_stop(gcp)
            assert until(lambda: stopping.runner.watcher.watching() == 1, 20)  # waiting on the stop
            began = time.monotonic()
            background.stop()  # SIGTERM
            assert time.monotonic() - began < 3, "the stop waited for the running park"
            with serve(settings) as (other, _):
                other.resumer.start()
                assert until(lambda: other.runner.watcher.watching() == 1, 10), "the next process did not take the park over"
                assert until(lambda: gcp.looked_at_since(stop, began), 10), "it watches the same GCP operation, by name"
                gcp.release_operations()
                assert until(lambda: _park(other.store).state is OperationState.SUCCEEDED, 30)
                assert stopping.runner.drain(timeout=30) and other.runner.drain(timeout=30)
                assert other.outbox.drain(timeout=30)
                _parked_once(gcp, slack, other.store)
        finally:
            gcp.release_operations()
            driver.close()
