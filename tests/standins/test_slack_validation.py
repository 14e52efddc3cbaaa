"""The Slack stand-in refuses what Slack refuses in a message: Block Kit limits, block count, text length.

Everything goes through the real slack_sdk WebClient / WebhookClient, so each
refusal is what the bot would see.
"""

from __future__ import annotations

from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from slack_support import client, clock, slack  # noqa: F401 (fixtures)
from standins.slack_api import MAX_BLOCKS, MAX_TEXT, SlackStandin

JsonDict = dict[str, Any]


def button(text: str = "Park", action_id: str = "park", value: str = "vm-a",
           confirm: JsonDict | None = None) -> JsonDict:
    element: JsonDict = {"type": "button", "text": {"type": "plain_text", "text": text},
                         "action_id": action_id, "value": value}
    if confirm is not None:
        element["confirm"] = confirm
    return element


def confirm(text: str) -> JsonDict:
    return {"title": {"type": "plain_text", "text": "Park?"}, "text": {"type": "mrkdwn", "text": text},
            "confirm": {"type": "plain_text", "text": "Park"}, "deny": {"type": "plain_text", "text": "Cancel"}}


def actions(*elements: JsonDict) -> JsonDict:
    return {"type": "actions", "elements": list(elements)}


def section(text: str) -> JsonDict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


# (what is wrong, the block, the reason Slack's errors line carries); each at its limit passes
TOO_LONG = [
    ("confirm text > 300", actions(button(confirm=confirm("x" * 301))), "text attribute cannot exceed 300 characters"),
    ("section text > 3000", section("x" * 3001), "text attribute cannot exceed 3000 characters"),
    ("button text > 75", actions(button(text="x" * 76)), "text attribute cannot exceed 75 characters"),
    ("action_id > 255", actions(button(action_id="a" * 256)), "action_id attribute cannot exceed 255 characters"),
    ("value > 2000", actions(button(value="v" * 2001)), "value attribute cannot exceed 2000 characters"),
]
AT_LIMIT = [
    actions(button(confirm=confirm("x" * 300))),
    section("x" * 3000),
    actions(button(text="x" * 75, action_id="a" * 255, value="v" * 2000)),
]


@pytest.mark.parametrize(("case", "block", "reason"), TOO_LONG, ids=[c[0] for c in TOO_LONG])
def test_post_message_over_a_documented_limit_is_invalid_blocks(
        slack: SlackStandin, client: WebClient, case: str, block: JsonDict, reason: str) -> None:
    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel="C100", text="fallback", blocks=[section("Park vm-a?"), block])
    answer = raised.value.response
    assert answer.status_code == 200  # Slack answers application errors with HTTP 200
    assert answer["error"] == "invalid_blocks"
    assert answer["errors"] == [f"{reason} [json-pointer:/blocks/1]"]
    assert answer["response_metadata"]["messages"] == [f"[ERROR] {reason} [json-pointer:/blocks/1]"]
    assert slack.messages("C100") == []
    refused = slack.calls_to("chat.postMessage", ok=False)
    assert [(c.error, c.errors) for c in refused] == [("invalid_blocks", answer["errors"])]


def test_blocks_at_their_limits_are_accepted(slack: SlackStandin, client: WebClient) -> None:
    posted = client.chat_postMessage(channel="C100", text="fallback", blocks=AT_LIMIT)
    assert posted["ok"]
    assert [b["type"] for b in slack.messages("C100")[0].blocks or []] == ["actions", "section", "actions"]


def test_block_count_and_unknown_types(slack: SlackStandin, client: WebClient) -> None:
    client.chat_postMessage(channel="C100", text="t", blocks=[section(str(n)) for n in range(MAX_BLOCKS)])
    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel="C100", text="t", blocks=[section(str(n)) for n in range(MAX_BLOCKS + 1)])
    assert raised.value.response["error"] == "invalid_blocks"
    assert raised.value.response["errors"] == ["no more than 50 items allowed [json-pointer:/blocks]"]
    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel="C100", text="t", blocks=[{"type": "spinner"}, {"text": "no type"}])
    assert raised.value.response["errors"] == ["unsupported type: spinner [json-pointer:/blocks/0]",
                                               "missing required field: type [json-pointer:/blocks/1]"]
    assert len(slack.messages("C100")) == 1


def test_text_longer_than_40000_is_msg_too_long(slack: SlackStandin, client: WebClient) -> None:
    assert client.chat_postMessage(channel="C100", text="x" * MAX_TEXT)["ok"]
    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel="C100", text="x" * (MAX_TEXT + 1))
    assert (raised.value.response.status_code, raised.value.response["error"]) == (200, "msg_too_long")
    assert len(slack.messages("C100")) == 1


def test_update_and_ephemeral_are_validated_too(slack: SlackStandin, client: WebClient) -> None:
    ts = client.chat_postMessage(channel="C100", text="Parking vm-a", blocks=[section("Parking vm-a")])["ts"]
    with pytest.raises(SlackApiError) as raised:
        client.chat_update(channel="C100", ts=ts, text="?", blocks=[actions(button(text="x" * 76))])
    assert raised.value.response["error"] == "invalid_blocks"
    with pytest.raises(SlackApiError) as raised:
        client.chat_update(channel="C100", ts=ts, text="x" * (MAX_TEXT + 1))
    assert raised.value.response["error"] == "msg_too_long"
    stored = slack.message("C100", ts)
    assert stored is not None and (stored.text, stored.edits) == ("Parking vm-a", 0)

    with pytest.raises(SlackApiError) as raised:
        client.chat_postEphemeral(channel="C100", user="U100", text="?",
                                  blocks=[actions(button(confirm=confirm("x" * 301)))])
    assert raised.value.response["error"] == "invalid_blocks"
    assert slack.ephemerals("U100") == []


def test_form_encoded_blocks_are_validated(slack: SlackStandin, client: WebClient) -> None:
    """A form body carries blocks as a JSON string (slack_sdk's api_call with data=)."""
    with pytest.raises(SlackApiError) as raised:
        client.api_call("chat.postMessage", data={"channel": "C100", "text": "t",
                                                  "blocks": '[{"type": "section", "text": {"type": "mrkdwn", '
                                                            f'"text": "{"x" * 3001}"}}}}]'})
    assert raised.value.response["error"] == "invalid_blocks"


def test_response_url_refuses_invalid_blocks_without_using_it_up(slack: SlackStandin) -> None:
    url = slack.new_response_url(channel="C100", user="U100")
    hook = WebhookClient(url)
    refused = hook.send(text="Park?", blocks=[actions(button(confirm=confirm("x" * 301)))])
    assert (refused.status_code, refused.body) == (400, "invalid_blocks")
    too_long = hook.send(text="x" * (MAX_TEXT + 1))
    assert (too_long.status_code, too_long.body) == (400, "msg_too_long")
    assert slack.ephemerals("U100") == []
    for n in range(5):  # refused posts used none of the url's 5 uses
        assert hook.send(text=str(n)).body == "ok"


def test_strictness_can_be_turned_off_per_instance(clock: object) -> None:
    """strict_blocks=False keeps only the count and type checks (for a test that must not be strict)."""
    with SlackStandin(strict_blocks=False) as lenient:
        client = WebClient(token=lenient.bot_token, base_url=lenient.api_url)
        assert client.chat_postMessage(channel="C100", text="t", blocks=[actions(button(text="x" * 76))])["ok"]
        with pytest.raises(SlackApiError) as raised:
            client.chat_postMessage(channel="C100", text="t", blocks=[section("s")] * (MAX_BLOCKS + 1))
        assert raised.value.response["error"] == "invalid_blocks"
