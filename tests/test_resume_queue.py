"""The resumer leaves alone what this process has queued: with one worker busy, operations waiting
for it are neither "left unfinished" nor handed to the runner again on every tick."""

from __future__ import annotations

import logging
import time

import pytest

from conftest import SIGNING_SECRET, replace
from bot.settings import Settings
from durable_support import held, serve
from standins.compute import ComputeStandin
from standins.slack_api import SlackStandin
from standins.slack_driver import SlackDriver
from storage.models import OperationState


def test_one_worker_and_three_creates_make_three_runs(
    settings: Settings, gcp: ComputeStandin, slack: SlackStandin, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with serve(replace(settings, workers=1, max_in_flight=1, operation_lease=0.3)) as (bot, events_url):
        submitted: list[str] = []
        submit = bot.runner.submit

        def counting(fn, *args):  # type: ignore[no-untyped-def]
            submitted.append(f"{getattr(fn, '__name__', fn)}{args}")
            return submit(fn, *args)

        bot.runner.submit = counting  # type: ignore[method-assign]
        bot.resumer.start()
        driver = SlackDriver(events_url, SIGNING_SECRET, slack)
        with held(gcp):
            for name in ("vm-1", "vm-2", "vm-3"):
                driver.command(f"create {name}")
            time.sleep(1.5)  # ten resumer ticks while the one worker waits on the first insert
        assert bot.runner.drain(timeout=30)
        driver.close()
        ops = [op for name in ("vm-1", "vm-2", "vm-3") for op in bot.store.operations_for(name)]
        assert [op.state for op in ops] == [OperationState.SUCCEEDED] * 3
        assert len(submitted) == 3, f"{len(submitted)} jobs for three creates: {submitted}"
        assert "left unfinished" not in caplog.text
