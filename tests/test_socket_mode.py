"""Socket Mode (SLACK_APP_TOKEN set): the same handlers behind Slack's WebSocket instead of HTTP.

The Slack stand-in serves `apps.connections.open` and a WebSocket end that speaks Slack's
envelopes (standins/slack_socket.py); the bot connects with Bolt's own SocketModeHandler,
started by bot.service.start_background exactly as `python -m bot` starts it.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import replace

import pytest

from bot.app import VmBot, create_app
from bot.service import start_background
from bot.settings import Settings, SettingsError
from conftest import PROJECT, fast_compute
from standins.compute import ComputeStandin
from standins.slack_api import SlackStandin
from standins.slack_socket import SocketModeStandin
from storage.models import OperationState, VmState

CHANNEL, USER = "C100", "U100"


@pytest.fixture
def socket_mode(slack: SlackStandin) -> SocketModeStandin:
    return slack.enable_socket_mode("xapp-1-standin")


@pytest.fixture
def bot(settings: Settings, socket_mode: SocketModeStandin) -> Iterator[VmBot]:
    bot = create_app(replace(settings, slack_app_token="xapp-1-standin"), compute=fast_compute(settings))
    background = start_background(bot)
    try:
        assert socket_mode.wait_connected(), "the bot did not open a Socket Mode connection"
        yield bot
    finally:
        bot.runner.drain(timeout=30)
        background.stop()


def command(slack: SlackStandin, socket_mode: SocketModeStandin, text: str) -> dict:
    """A `/vm` slash command as a Socket Mode envelope (the HTTP form's fields, as JSON); returns the ack."""
    payload = {
        "token": "standin-verification-token", "team_id": "T0001", "team_domain": "acme",
        "channel_id": CHANNEL, "channel_name": "ops", "user_id": USER, "user_name": "alice",
        "command": "/vm", "text": text, "api_app_id": "A0VMBOT", "is_enterprise_install": "false",
        "response_url": slack.new_response_url(channel=CHANNEL, user=USER), "trigger_id": secrets.token_hex(12),
    }
    ack = socket_mode.ack(socket_mode.send("slash_commands", payload))
    assert ack is not None, "no ack within Slack's 3 seconds"
    return ack.get("payload") or {}


def press(slack: SlackStandin, socket_mode: SocketModeStandin, blocks: list[dict], action_id: str) -> dict | None:
    """A click on a button of an ephemeral message, as an `interactive` envelope (block_actions, JSON)."""
    block, button = next((b, e) for b in blocks if b["type"] == "actions" for e in b["elements"]
                         if e["action_id"] == action_id)
    payload = {
        "type": "block_actions", "team": {"id": "T0001", "domain": "acme"}, "api_app_id": "A0VMBOT",
        "user": {"id": USER, "username": "alice", "team_id": "T0001"}, "channel": {"id": CHANNEL, "name": "ops"},
        "container": {"type": "message", "message_ts": "1.000001", "channel_id": CHANNEL, "is_ephemeral": True},
        "trigger_id": secrets.token_hex(12), "response_url": slack.new_response_url(channel=CHANNEL, user=USER),
        "actions": [{"type": "button", "action_id": action_id, "block_id": block["block_id"], "value": button["value"],
                     "text": button["text"], "action_ts": "1.000002"}],
        "state": {"values": {}}, "is_enterprise_install": False, "token": "standin-verification-token",
    }
    return socket_mode.ack(socket_mode.send("interactive", payload))


def test_create_and_park_over_socket_mode(
    bot: VmBot, slack: SlackStandin, socket_mode: SocketModeStandin, gcp: ComputeStandin
) -> None:
    acked = command(slack, socket_mode, "create vm-s")
    assert acked["text"].startswith(":rocket: Creating `vm-s`")
    assert bot.runner.drain(timeout=30) and bot.outbox.drain(timeout=30)
    assert gcp.instance(PROJECT, "us-central1-a", "vm-s")["status"] == "RUNNING"
    root = slack.messages(CHANNEL)[-1]
    assert "is created: RUNNING" in slack.thread(CHANNEL, root.ts)[-1].text

    question = command(slack, socket_mode, "park vm-s")
    assert press(slack, socket_mode, question["blocks"], "park_confirm") is not None
    assert bot.runner.drain(timeout=30) and bot.outbox.drain(timeout=30)
    assert bot.store.vm("vm-s").state is VmState.PARKED
    assert bot.store.operations_for("vm-s")[0].state is OperationState.SUCCEEDED

    refused = command(slack, socket_mode, "restore nope")
    assert refused["text"] == ":warning: I don't know a VM called `nope`. `/vm list` shows the VMs I manage."
    trail = [(e.kind, e.text, e.verdict.value) for e in reversed(bot.store.audit_log())]
    assert trail == [
        ("command", "create vm-s", "allowed"),
        ("command", "park vm-s", "allowed"),
        ("button", "park_confirm vm-s", "allowed"),
        ("command", "restore nope", "refused"),
    ]


def test_a_bot_token_in_place_of_the_app_token_is_refused_at_start(settings: Settings, slack: SlackStandin) -> None:
    slack.enable_socket_mode("xapp-1-standin")
    bot = create_app(replace(settings, slack_app_token="xapp-1-wrong"), compute=fast_compute(settings))
    with pytest.raises(SettingsError, match="SLACK_APP_TOKEN: Slack refused the Socket Mode connection"):
        start_background(bot)


def test_the_home_tab_and_the_create_form_over_socket_mode(
    bot: VmBot, slack: SlackStandin, socket_mode: SocketModeStandin
) -> None:
    """The Events API (app_home_opened) and a trigger_id's views.open work over the WebSocket too."""
    event = {
        "token": "standin-verification-token", "team_id": "T0001", "api_app_id": "A0VMBOT", "type": "event_callback",
        "event": {"type": "app_home_opened", "user": USER, "channel": "D" + USER[1:], "tab": "home", "event_ts": "1.5"},
        "event_id": "Ev0SOCKET", "event_time": 1_700_000_000,
    }
    assert socket_mode.ack(socket_mode.send("events_api", event)) is not None
    assert bot.runner.drain(timeout=30) and bot.outbox.drain(timeout=30)
    home = slack.home_view(USER)
    assert home is not None and "Your VMs" in str(home["blocks"])

    payload = {
        "token": "standin-verification-token", "team_id": "T0001", "team_domain": "acme",
        "channel_id": CHANNEL, "channel_name": "ops", "user_id": USER, "user_name": "alice",
        "command": "/vm", "text": "create", "api_app_id": "A0VMBOT", "is_enterprise_install": "false",
        "response_url": slack.new_response_url(channel=CHANNEL, user=USER),
        "trigger_id": slack.issue_trigger_id(user=USER),
    }
    assert socket_mode.ack(socket_mode.send("slash_commands", payload)) is not None
    (form,) = slack.modals(USER)
    assert form["callback_id"] == "create_vm" and form["title"]["text"] == "Create a VM"
