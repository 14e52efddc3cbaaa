"""An operation that finds every slot taken (VMBOT_MAX_IN_FLIGHT) says so in its thread, once, and
the thread carries on as usual when it starts: one thread per operation, nothing run twice."""

from __future__ import annotations

import threading
import time

from conftest import PROJECT, SIGNING_SECRET, replace
from bot.settings import Settings
from durable_support import held, serve, until
from standins.compute import ComputeStandin
from standins.slack_api import SlackStandin
from standins.slack_driver import SlackDriver
from storage.models import OperationState


def test_operations_waiting_for_a_slot_say_how_many_are_ahead_then_run_in_the_same_thread(
    settings: Settings, gcp: ComputeStandin, slack: SlackStandin
) -> None:
    with serve(replace(settings, max_in_flight=1)) as (bot, events_url):
        driver = SlackDriver(events_url, SIGNING_SECRET, slack)
        with held(gcp):
            for name in ("vm-1", "vm-2", "vm-3"):
                driver.command(f"create {name}")
            # The first begins on an operation thread; the queued notices are posted as the others are queued.
            assert slack.wait_for(lambda: len(slack.messages("C100")) == 3, timeout=10)
            assert bot.outbox.drain(timeout=10)
            roots = {m.text.split(" (")[0]: m for m in slack.messages("C100")}
            assert set(roots) == {"Creating vm-1", "Creating vm-2", "Creating vm-3"}
            assert "queued" not in str(roots["Creating vm-1"].blocks)
            assert "queued: next in line" in roots["Creating vm-2"].text
            assert "queued behind 1 other;" in roots["Creating vm-3"].text
            assert "1 operations run at once" in str(roots["Creating vm-3"].blocks)
            time.sleep(0.3)
        assert bot.runner.drain(timeout=30) and bot.outbox.drain(timeout=10)
        driver.close()
        ops = [op for name in ("vm-1", "vm-2", "vm-3") for op in bot.store.operations_for(name)]
        assert [op.state for op in ops] == [OperationState.SUCCEEDED] * 3
        roots = slack.messages("C100")
        assert len(roots) == 3, "the queued root became the operation's thread: no second root"
        for root in roots:
            texts = [m.text for m in slack.thread("C100", root.ts)]
            assert root.text.endswith(": done") and "is created" in texts[-1], texts
            history = [version.text for version in root.history] + [root.text]
            assert sum("queued" in text for text in history) <= 1, history


def test_forty_operations_waiting_on_gcp_hold_no_thread_each(settings: Settings, gcp: ComputeStandin, slack: SlackStandin) -> None:
    """Issue 19: waiting on GCP costs no thread per operation. Forty creates wait on held GCP operations
    at once, with the default bound; the operation threads stay at most VMBOT_OPERATION_THREADS."""
    with serve(replace(settings, operation_threads=4)) as (bot, events_url):
        driver = SlackDriver(events_url, SIGNING_SECRET, slack)
        names = [f"vm-{i}" for i in range(40)]
        with held(gcp):
            for name in names:
                driver.command(f"create {name}")
            assert until(lambda: bot.runner.watcher.watching() == len(names), timeout=30), bot.runner.watcher.watching()
            operation_threads = [t for t in threading.enumerate() if t.name.startswith("vmbot-op")]
            assert 1 <= len(operation_threads) <= 4
            assert not any("queued" in m.text for m in slack.messages("C100")), "forty fit the default bound"
        assert bot.runner.drain(timeout=60) and bot.outbox.drain(timeout=30)
        driver.close()
        ops = [op for name in names for op in bot.store.operations_for(name)]
        assert [op.state for op in ops] == [OperationState.SUCCEEDED] * len(names)
        assert all(gcp.instance(PROJECT, settings.zone, name)["status"] == "RUNNING" for name in names)
