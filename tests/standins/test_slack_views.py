"""views.publish / open / update / push and conversations.open on the Slack stand-in, through the real WebClient."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_support import FakeClock, client, clock, slack  # noqa: F401 (fixtures)

from standins.slack_api import MAX_VIEW_BYTES, SlackStandin
from standins.slack_driver import SlackDriver

JsonDict = dict[str, Any]


def section(text: str) -> JsonDict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def home(*texts: str) -> JsonDict:
    return {"type": "home", "blocks": [section(t) for t in texts or ("Your VMs",)]}


def modal(title: str = "Create a VM", **extra: Any) -> JsonDict:
    view: JsonDict = {
        "type": "modal", "callback_id": "create_vm",
        "title": {"type": "plain_text", "text": title},
        "submit": {"type": "plain_text", "text": "Create"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [{"type": "input", "block_id": "name", "label": {"type": "plain_text", "text": "Name"},
                    "element": {"type": "plain_text_input", "action_id": "value"}}],
    }
    view.update(extra)
    return view


def refusal(call: Any) -> tuple[str, list[str]]:
    with pytest.raises(SlackApiError) as raised:
        call()
    answer = raised.value.response
    assert answer.status_code == 200
    return answer["error"], answer.get("response_metadata", {}).get("messages", [])


# ---- views.publish ---------------------------------------------------------------


def test_publish_a_home_tab_and_read_it_back(slack: SlackStandin, client: WebClient) -> None:
    first = client.views_publish(user_id="U100", view=home("Your VMs", "*vm-a* running"))["view"]
    assert first["type"] == "home" and first["id"].startswith("V")
    shown = slack.home_view("U100")
    assert shown is not None and [b["text"]["text"] for b in shown["blocks"]] == ["Your VMs", "*vm-a* running"]
    assert slack.home_view("U200") is None

    second = client.views_publish(user_id="U100", view=home("Your VMs", "*vm-a* parked"), hash=first["hash"])["view"]
    assert second["id"] == first["id"] and second["hash"] != first["hash"]  # one home view per user
    assert slack.home_views()["U100"]["blocks"][1]["text"]["text"] == "*vm-a* parked"
    assert [c.params["user_id"] for c in slack.calls_to("views.publish", ok=True)] == ["U100", "U100"]

    # a stale hash: someone published in between
    assert refusal(lambda: client.views_publish(user_id="U100", view=home("old"), hash=first["hash"])) == (
        "hash_conflict", [])
    assert slack.home_view("U100")["hash"] == second["hash"]  # type: ignore[index]


def test_publish_refuses_what_slack_refuses(slack: SlackStandin, client: WebClient) -> None:
    error, messages = refusal(lambda: client.api_call("views.publish", json={"view": home()}))
    assert (error, messages) == ("invalid_arguments", ["[ERROR] invalid `user_id`"])
    error, messages = refusal(lambda: client.views_publish(user_id="U100", view=modal()))
    assert error == "invalid_arguments"
    assert '[ERROR] type must be "home" for this method [json-pointer:/view/type]' in messages
    error, messages = refusal(lambda: client.views_publish(user_id="U100", view=home(*map(str, range(101)))))
    assert (error, messages) == ("invalid_arguments",
                                 ["[ERROR] no more than 100 items allowed [json-pointer:/view/blocks]"])
    client.views_publish(user_id="U100", view=home(*map(str, range(100))))
    error, messages = refusal(lambda: client.views_publish(user_id="U100", view=home("x" * 3001)))
    assert messages == ["[ERROR] text attribute cannot exceed 3000 characters [json-pointer:/view/blocks/0]"]
    error, messages = refusal(lambda: client.views_publish(
        user_id="U100", view={**home(), "submit": {"type": "plain_text", "text": "Go"}}))
    assert messages == ["[ERROR] home view cannot have submit and close [json-pointer:/view]"]
    huge = home(*["x" * 2900] * 90)  # every block valid, the view over 250 kB
    assert len(str(huge)) > MAX_VIEW_BYTES
    assert refusal(lambda: client.views_publish(user_id="U100", view=huge)) == ("view_too_large", [])
    assert len(slack.home_view("U100")["blocks"]) == 100  # type: ignore[index]


# ---- views.open and trigger_ids ----------------------------------------------------


def test_open_a_modal_with_the_trigger_of_a_slash_command(slack: SlackStandin, client: WebClient) -> None:
    """The driver's slash command carries a trigger_id the stand-in issued."""
    driver = SlackDriver("http://127.0.0.1:9/slack/events", "secret", slack)  # prepared, never sent
    prepared = driver.prepare_command("create", user="U100")
    trigger_id = parse_qs(prepared.body.decode())["trigger_id"][0]

    opened = client.views_open(trigger_id=trigger_id, view=modal())["view"]
    assert opened["type"] == "modal" and opened["root_view_id"] == opened["id"]
    assert [v["id"] for v in slack.modals("U100")] == [opened["id"]]
    assert slack.calls_to("views.open")[0].params["trigger_id"] == trigger_id
    # a trigger is exchanged once
    assert refusal(lambda: client.views_open(trigger_id=trigger_id, view=modal())) == ("exchanged_trigger_id", [])
    driver.close()


def test_trigger_ids_expire_after_3_seconds(slack: SlackStandin, client: WebClient, clock: FakeClock) -> None:
    fresh = slack.issue_trigger_id(user="U100")
    late = slack.issue_trigger_id(user="U100")
    clock.now += 3.0
    assert client.views_open(trigger_id=fresh, view=modal())["ok"]  # exactly 3 s is still in time
    clock.now += 0.01
    assert refusal(lambda: client.views_open(trigger_id=late, view=modal())) == ("expired_trigger_id", [])
    assert refusal(lambda: client.views_open(trigger_id="123.456.abc", view=modal())) == ("invalid_trigger_id", [])
    error, messages = refusal(lambda: client.api_call("views.open", json={"view": modal()}))
    assert (error, messages) == ("invalid_arguments", ["[ERROR] missing required field: trigger_id"])
    assert len(slack.modals("U100")) == 1


def test_a_redelivered_command_keeps_its_first_trigger_time(slack: SlackStandin, client: WebClient,
                                                            clock: FakeClock) -> None:
    driver = SlackDriver("http://127.0.0.1:9/slack/events", "secret", slack)
    driver.prepare_command("create", trigger_id="111.222.abc")
    clock.now += 5
    driver.prepare_command("create", trigger_id="111.222.abc", retry_num=1, retry_reason="http_timeout")
    assert refusal(lambda: client.views_open(trigger_id="111.222.abc", view=modal())) == ("expired_trigger_id", [])
    driver.close()


@pytest.mark.parametrize(("view", "message"), [
    (modal(title="x" * 25), "title must be between 1 and 24 characters [json-pointer:/view]"),
    (modal(submit={"type": "plain_text", "text": "x" * 25}), "submit cannot exceed 24 characters [json-pointer:/view]"),
    (modal(close={"type": "plain_text", "text": "x" * 25}), "close cannot exceed 24 characters [json-pointer:/view]"),
    ({k: v for k, v in modal().items() if k != "submit"},
     "submit is required when a modal has input blocks [json-pointer:/view/submit]"),
    ({k: v for k, v in modal().items() if k != "title"}, "missing required field: title [json-pointer:/view/title]"),
    (modal(blocks=[]), "missing required field: blocks [json-pointer:/view/blocks]"),
    (modal(private_metadata="m" * 3001), "private_metadata cannot exceed 3000 characters [json-pointer:/view]"),
    (home(), 'type must be "modal" for this method [json-pointer:/view/type]'),
], ids=["title", "submit", "close", "no-submit", "no-title", "no-blocks", "metadata", "home"])
def test_open_refuses_bad_modals(slack: SlackStandin, client: WebClient, view: JsonDict, message: str) -> None:
    trigger_id = slack.issue_trigger_id(user="U100")
    error, messages = refusal(lambda: client.views_open(trigger_id=trigger_id, view=view))
    assert error == "invalid_arguments" and f"[ERROR] {message}" in messages
    assert slack.modals() == []
    assert client.views_open(trigger_id=trigger_id, view=modal())["ok"]  # a refused call did not use the trigger


# ---- views.update and views.push ---------------------------------------------------


def test_update_by_id_or_external_id_with_hash(slack: SlackStandin, client: WebClient) -> None:
    opened = client.views_open(trigger_id=slack.issue_trigger_id(user="U100"),
                               view=modal(external_id="create-U100-1"))["view"]
    updated = client.views_update(view_id=opened["id"], view=modal(title="Creating..."), hash=opened["hash"])["view"]
    assert updated["id"] == opened["id"] and updated["title"]["text"] == "Creating..."
    assert refusal(lambda: client.views_update(view_id=opened["id"], view=modal(), hash=opened["hash"])) == (
        "hash_conflict", [])
    by_external = client.views_update(external_id="create-U100-1", view=modal(title="Done"))["view"]
    assert slack.view(opened["id"])["title"]["text"] == "Done" == by_external["title"]["text"]  # type: ignore[index]
    assert refusal(lambda: client.views_update(view_id="VNOPE", view=modal())) == ("not_found", [])
    assert refusal(lambda: client.api_call("views.update", json={"view": modal()}))[0] == "invalid_arguments"
    error, messages = refusal(lambda: client.views_update(view_id=opened["id"], view=modal(title="x" * 25)))
    assert error == "invalid_arguments"
    # an external_id is unique on the team
    other = slack.issue_trigger_id(user="U200")
    assert refusal(lambda: client.views_open(trigger_id=other, view=modal(external_id="create-U100-1"))) == (
        "duplicate_external_id", [])
    # a home tab is updated as a home tab
    home_view = client.views_publish(user_id="U100", view=home("a"))["view"]
    assert client.views_update(view_id=home_view["id"], view=home("b"))["ok"]
    assert slack.home_view("U100")["blocks"][0]["text"]["text"] == "b"  # type: ignore[index]


def test_push_stacks_up_to_three_modals(slack: SlackStandin, client: WebClient) -> None:
    root = client.views_open(trigger_id=slack.issue_trigger_id(user="U100"), view=modal())["view"]
    below = root
    for _ in range(2):
        below = client.views_push(trigger_id=slack.issue_trigger_id(user="U100", view_id=below["id"]),
                                  view=modal(title="More"))["view"]
        assert below["root_view_id"] == root["id"]
    assert [v["id"] for v in slack.modal_stack(root["id"])][0] == root["id"]
    assert len(slack.modal_stack(root["id"])) == 3
    trigger = slack.issue_trigger_id(user="U100", view_id=below["id"])
    assert refusal(lambda: client.views_push(trigger_id=trigger, view=modal())) == ("push_limit_reached", [])
    slack.close_view(root["id"])
    assert slack.modals("U100") == []


# ---- conversations.open ------------------------------------------------------------


def test_conversations_open_gives_a_dm_that_accepts_messages(slack: SlackStandin, client: WebClient) -> None:
    dm = client.conversations_open(users="U100")["channel"]["id"]
    assert dm.startswith("D")
    assert client.chat_postMessage(channel=dm, text="vm-a was parked by the schedule")["ok"]
    assert [m.text for m in slack.messages(dm)] == ["vm-a was parked by the schedule"]
    again = client.conversations_open(users=["U100"], return_im=True)
    assert again["already_open"] and again["channel"]["id"] == dm and again["channel"]["is_im"]
    assert client.conversations_open(channel=dm)["channel"]["id"] == dm
    group = client.conversations_open(users=["U100", "U200"])["channel"]["id"]
    assert group.startswith("G")
    assert slack.opened_conversations() == {dm: ["U100"], group: ["U100", "U200"]}


@pytest.mark.parametrize(("kwargs", "error"), [
    ({}, "users_list_not_supplied"),
    ({"users": "alice"}, "user_not_found"),
    ({"users": [f"U{n}" for n in range(100, 109)]}, "too_many_users"),
    ({"channel": "DNEVER"}, "channel_not_found"),
])
def test_conversations_open_refusals(client: WebClient, kwargs: JsonDict, error: str) -> None:
    # api_call: slack_sdk's conversations_open() refuses an empty call before sending it
    params = {k: ",".join(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    assert refusal(lambda: client.api_call("conversations.open", params=params))[0] == error
