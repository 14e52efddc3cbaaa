"""Shared by the Slack stand-in tests: a clock the test moves by hand, a stand-in on it, a real WebClient.

Test modules import the fixtures by name (a ``conftest.py`` here would shadow
``tests/conftest.py``, which other tests import as ``conftest``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from slack_sdk import WebClient

from standins.slack_api import SlackStandin

TOKEN = "xoxb-standin"


class FakeClock:
    """Monotonic seconds for ``SlackStandin(clock=...)``: tests move ``now`` instead of sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def slack(clock: FakeClock) -> Iterator[SlackStandin]:
    with SlackStandin(clock=clock) as standin:
        yield standin


@pytest.fixture
def client(slack: SlackStandin) -> WebClient:
    return WebClient(token=TOKEN, base_url=slack.api_url)
