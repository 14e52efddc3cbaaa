"""Fixtures for the Slack stand-in tests: a stand-in on a fake clock and a real WebClient pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from slack_sdk import WebClient
from slack_support import FakeClock

from standins.slack_api import SlackStandin

TOKEN = "xoxb-standin"


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
