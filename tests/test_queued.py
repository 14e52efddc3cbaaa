"""An operation that finds every slot taken (VMBOT_MAX_IN_FLIGHT) says so in its thread, once, and
the thread carries on as usual when it starts: one thread per operation, nothing run twice."""

from __future__ import annotations

import time

from conftest import SIGNING_SECRET, replace
from bot.settings import Settings
from durable_support import held, serve
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
