"""Outside text (GCP's error messages, what people type) reaches Slack shown, never interpreted.

Hostile GCP messages (a channel broadcast, a disguised link, ``&``, backticks, line
breaks) are fed through every kind of message the bot posts, through the real app
and the Slack stand-in; then everything Slack received is searched for live markup.
"""

from __future__ import annotations

import json
import re

import pytest

from bot.settings import Settings
from conftest import Running, create_vm, park_vm, replace
from standins.compute import ComputeStandin
from standins.slack_api import SlackStandin
from standins.slack_driver import SlackDriver, find_button

HOSTILE = "Bad <!channel> and <https://evil.example|click> & `tick` here\n*not a line of its own* <@U0BOSS> <#C0SECRET>"
OUR_MARKUP = re.compile(r"<[@#][UCW][A-Z0-9]+>")  # the mentions and channel links the bot writes itself
OURS = {"<@U100>", "<#C100>"}


def strings(value: object) -> list[str]:
    """Every string inside a JSON-like value (text, blocks, confirm dialogs, button labels)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in strings(item)]
    return []


def live_markup(slack: SlackStandin) -> list[str]:
    """Every ``<...>`` Slack would interpret that the bot did not write itself, in all it received."""
    shown = [s for call in slack.calls for key in ("text", "blocks") for s in strings(_decoded(call.params.get(key)))]
    shown += [s for response in slack.responses for s in strings({k: response.get(k) for k in ("text", "blocks")})]
    tags = [tag for text in shown for tag in re.findall(r"<[^>]*>", text)]
    return [tag for tag in tags if not (OUR_MARKUP.fullmatch(tag) and tag in OURS)]


def _decoded(value: object) -> object:
    if isinstance(value, str) and value.startswith("["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, sweep_grace=0, admins=frozenset({"U100"}))


def test_hostile_gcp_text_is_shown_not_interpreted_in_every_message_kind(
    driver: SlackDriver, running: Running, slack: SlackStandin, gcp: ComputeStandin
) -> None:
    # A create whose insert GCP fails (quota: a thread root, a step, a failure reply with Retry).
    gcp.fail_operation("POST", r"/instances$", code="QUOTA_EXCEEDED", message=HOSTILE)
    driver.command("create vm-b")
    running.settle()
    failed = slack.thread("C100", slack.messages("C100")[-1].ts)[-1]
    find_button(failed.blocks, "operation_retry")
    assert "&lt;!channel&gt;" in failed.text and "&lt;https://evil.example|click&gt; &amp;" in failed.text

    # A check of GCP that fails before the first step, with a permanent error (no Retry).
    gcp.fail_request("GET", r"/instances/vm-c$", status=400, reason="invalid", message=HOSTILE)
    driver.command("create vm-c")
    running.settle()

    # A park whose stop fails, after its confirm dialog; then a park that works, and a restore.
    create_vm(driver, running, "vm-a")
    gcp.fail_operation("POST", r"/instances/vm-a/stop$", code="QUOTA_EXCEEDED", message=HOSTILE)
    park_vm(driver, running, "vm-a")
    park_vm(driver, running, "vm-a")
    driver.command("restore vm-a")
    running.settle()

    # A delete whose GCP call fails, after its confirm dialog.
    gcp.fail_operation("DELETE", r"/instances/vm-a$", code="QUOTA_EXCEEDED", message=HOSTILE)
    driver.click("delete_confirm", blocks=driver.command("delete vm-a").blocks)
    running.settle()

    # A sweep whose image delete GCP refuses; the images, status, list and history read it all back.
    create_vm(driver, running, "vm-d")
    park_vm(driver, running, "vm-d")
    driver.command("restore vm-d")
    running.settle()
    park_vm(driver, running, "vm-d")
    gcp.fail_request("DELETE", r"/global/images/", status=403, reason="forbidden", message=HOSTILE, times=5)
    driver.command("sweep")
    running.settle()
    replies = [driver.command(text) for text in (
        "images vm-d", "status vm-b", "status vm-c", "status vm-a", "list", "history vm-b", "history vm-a",
        "park vm-a <!channel>", "frob <https://evil.example|click>",
    )]  # fmt: skip
    running.settle()

    shown = " ".join(s for reply in replies for s in strings(reply.json or {}))
    assert "&lt;!channel&gt;" in shown, "the hostile text did reach the read-back commands"
    leaked = live_markup(slack) + [t for t in re.findall(r"<[^>]*>", shown) if not OUR_MARKUP.fullmatch(t)]
    assert leaked == [], f"live Slack markup from outside text: {leaked}"
    everything = " ".join(s for call in slack.calls for s in strings(_decoded(call.params.get("blocks"))))
    assert "&lt;https://evil.example|click&gt;" in everything, "the GCP text did reach the threads, escaped"


def test_a_permanent_gcp_error_gets_no_retry_and_root_and_reply_agree(
    driver: SlackDriver, running: Running, slack: SlackStandin
) -> None:
    driver.command("create vm-z zone=mars-central1-z")
    running.settle()

    thread = slack.thread("C100", slack.messages("C100")[-1].ts)
    root, reply = thread[0], thread[-1]
    headline = root.blocks[0]["text"]["text"]
    assert "did not answer" not in headline, headline
    assert headline == ":x: Create of `vm-z` failed while checking GCP"
    assert reply.text.startswith("Create of `vm-z` failed while checking GCP. GCP said: _Invalid value for field 'zone'")
    assert not any(b["type"] == "actions" for b in reply.blocks or []), "no Retry for a request that can only fail again"
