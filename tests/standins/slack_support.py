"""Shared by the Slack stand-in tests: a clock the test moves by hand."""

from __future__ import annotations


class FakeClock:
    """Monotonic seconds for ``SlackStandin(clock=...)``: tests move ``now`` instead of sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now
