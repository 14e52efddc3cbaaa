"""A command typed in a channel the bot was not invited to: slash commands reach the bot from any
channel, but it may post only where it is a member (no chat:write.public, manifest.yml). The work
goes on, and the person who asked is told, privately, why there is no thread and how to get one."""

from __future__ import annotations

import pytest

from conftest import PROJECT, Running
from standins.compute import ComputeStandin
from standins.slack_api import SlackStandin
from standins.slack_driver import SlackDriver
from storage.models import VmState


@pytest.mark.parametrize("private", [False, True], ids=["public", "private"])
def test_a_create_where_the_bot_is_not_invited_still_creates_and_says_how_to_invite_it(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running, private: bool
) -> None:
    slack.keep_out("C777", private=private)

    ack = driver.command("create vm-out", channel="C777")
    assert ack.status == 200 and "Creating `vm-out`" in ack.text
    running.settle()

    assert gcp.instance(PROJECT, "us-central1-a", "vm-out")["status"] == "RUNNING"
    assert running.bot.store.vm("vm-out").state is VmState.RUNNING
    assert slack.messages("C777") == []
    hints = [r["text"] for r in slack.responses if "/invite" in r.get("text", "")]
    assert len(hints) == 1, slack.responses
    assert "`/vm status vm-out`" in hints[0] and "<#C777>" in hints[0]


def test_a_channel_the_bot_is_in_gets_its_thread_and_no_hint(
    driver: SlackDriver, slack: SlackStandin, running: Running
) -> None:
    slack.keep_out("C777")
    driver.command("create vm-in", channel="C100")
    running.settle()
    assert len(slack.messages("C100")) == 1
    assert not [r for r in slack.responses if "/invite" in r.get("text", "")]
