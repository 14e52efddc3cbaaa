"""The Slack app manifest (manifest.yml): what a workspace admin installs must match what the bot does."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from bot.settings import REPO_ROOT
from conftest import Running
from standins.slack_api import SlackStandin
from standins.slack_driver import SlackDriver

# Every Slack Web API method the bot calls, with the bot scope it needs (None: no scope).
# A new call fails test_every_web_api_call_is_covered_by_a_scope until it is listed here and,
# if it needs a scope, the scope is in manifest.yml.
METHOD_SCOPES: dict[str, str | None] = {
    "auth.test": None,
    "chat.postMessage": "chat:write",
    "chat.update": "chat:write",
    "chat.postEphemeral": "chat:write",
    "views.publish": None,
    "views.open": None,
    "conversations.open": "im:write",
}


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return yaml.safe_load((REPO_ROOT / "manifest.yml").read_text())


def test_the_manifest_declares_the_vm_command(manifest: dict[str, Any]) -> None:
    (command,) = manifest["features"]["slash_commands"]
    assert command["command"] == "/vm"
    assert "help" in command["usage_hint"] and command["description"]
    assert command["should_escape"] is False, "the parser reads the raw text"
    assert command["url"].startswith("https://") and command["url"].endswith("/slack/events")


def test_the_manifest_turns_on_interactivity_and_socket_mode(manifest: dict[str, Any]) -> None:
    settings = manifest["settings"]
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["interactivity"]["request_url"].endswith("/slack/events"), "the same endpoint as the command"
    assert settings["socket_mode_enabled"] is True
    assert manifest["features"]["bot_user"]["display_name"]
    assert 175 <= len(manifest["display_information"]["long_description"]) <= 4000, "Slack's bounds"


def test_the_manifest_asks_for_the_minimal_scopes(manifest: dict[str, Any]) -> None:
    scopes = manifest["oauth_config"]["scopes"]
    assert set(scopes) == {"bot"}, "no user scopes"
    assert sorted(scopes["bot"]) == ["chat:write", "commands", "im:write"]


def test_every_web_api_call_is_covered_by_a_scope(
    manifest: dict[str, Any], driver: SlackDriver, slack: SlackStandin, running: Running
) -> None:
    """A create and a park, then every method the bot called must be granted by the manifest."""
    driver.command("create scope-vm")
    running.settle()
    question = driver.command("park scope-vm")
    driver.click("park_confirm", blocks=question.blocks or [])
    running.settle()
    # the surfaces: the App Home tab, the create form from the global shortcut (its thread goes to a DM)
    driver.app_home_opened("U100")
    running.settle()
    driver.shortcut("create_vm")
    (form,) = slack.modals("U100")
    values = {"name": {"value": "scope-dm"}, "zone": {"value": "us-central1-a"}, "machine_type": {"value": "e2-small"}}
    driver.submit_view(form["id"], values)
    running.settle()

    called = {call.method for call in slack.calls}
    assert {"chat.postMessage", "chat.update", "views.publish", "views.open", "conversations.open"} <= called
    unknown = called - set(METHOD_SCOPES)
    assert not unknown, f"add {sorted(unknown)} to METHOD_SCOPES, and its scope to manifest.yml"
    needed = {METHOD_SCOPES[method] for method in called} - {None}
    assert needed <= set(manifest["oauth_config"]["scopes"]["bot"])


def test_the_usage_hint_lists_every_verb(manifest: dict[str, Any]) -> None:
    from bot.slack.parsing import SUBCOMMANDS

    (command,) = manifest["features"]["slash_commands"]
    hint = set(command["usage_hint"].replace("·", " ").replace("|", " ").split())
    assert set(SUBCOMMANDS) <= hint, set(SUBCOMMANDS) - hint


def test_the_manifest_declares_the_home_tab_the_shortcuts_and_the_event(manifest: dict[str, Any]) -> None:
    from bot.slack.views import CREATE_CALLBACK
    from handlers.shortcuts import VM_ACTIONS_CALLBACK

    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    shortcuts = {s["callback_id"]: s for s in manifest["features"]["shortcuts"]}
    assert shortcuts[CREATE_CALLBACK]["type"] == "global" and shortcuts[VM_ACTIONS_CALLBACK]["type"] == "message"
    assert all(len(s["name"]) <= 24 and len(s["description"]) <= 80 for s in shortcuts.values()), "Slack's limits"
    events = manifest["settings"]["event_subscriptions"]
    assert events["bot_events"] == ["app_home_opened"]
    assert events["request_url"] == manifest["settings"]["interactivity"]["request_url"], "one endpoint for all"
