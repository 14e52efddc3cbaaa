"""The driver's shortcuts, App Home event and modal submissions through a real Bolt app, and the text rendering."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient

from slack_support import client, clock, slack  # noqa: F401 (fixtures)
from standins.slack_api import SlackStandin
from standins.slack_driver import SlackDriver, render_view

TOKEN = "xoxb-standin"
SECRET = "test-signing-secret"
FORM: dict[str, Any] = {
    "type": "modal", "callback_id": "create_vm",
    "title": {"type": "plain_text", "text": "Create a VM"},
    "submit": {"type": "plain_text", "text": "Create"},
    "close": {"type": "plain_text", "text": "Cancel"},
    "blocks": [
        {"type": "input", "block_id": "name", "label": {"type": "plain_text", "text": "Name"},
         "element": {"type": "plain_text_input", "action_id": "value",
                     "placeholder": {"type": "plain_text", "text": "test-vm-22"}}},
        {"type": "input", "block_id": "zone", "label": {"type": "plain_text", "text": "Zone"},
         "element": {"type": "static_select", "action_id": "value", "options": [
             {"text": {"type": "plain_text", "text": "us-central1-a"}, "value": "us-central1-a"},
             {"text": {"type": "plain_text", "text": "europe-west1-b"}, "value": "europe-west1-b"}]}},
    ],
}


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def bolt(slack: SlackStandin) -> Iterator[SimpleNamespace]:
    """A small Bolt app with a home tab, a shortcut that opens a form and the form's submission."""
    app = App(signing_secret=SECRET, token=TOKEN, client=WebClient(base_url=slack.api_url, token=TOKEN))
    submitted: list[dict[str, Any]] = []
    seen: list[dict[str, Any]] = []

    @app.event("app_home_opened")
    def home(event, client):  # noqa: ANN001 - Bolt injects by name
        client.views_publish(user_id=event["user"], view={"type": "home", "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": "*vm-a* running"},
             "accessory": {"type": "button", "action_id": "park", "value": "vm-a",
                           "text": {"type": "plain_text", "text": "Park"}}}]})

    @app.shortcut("create_vm")
    def open_form(ack, shortcut, client):  # noqa: ANN001
        ack()
        client.views_open(trigger_id=shortcut["trigger_id"], view=FORM)

    @app.command("/vm")
    def command(ack, command):  # noqa: ANN001
        dialog = {"title": {"type": "plain_text", "text": "Park?"},
                  "text": {"type": "mrkdwn", "text": command["text"]},
                  "confirm": {"type": "plain_text", "text": "Park"}, "deny": {"type": "plain_text", "text": "No"}}
        park = {"type": "button", "action_id": "park", "text": {"type": "plain_text", "text": "Park"},
                "confirm": dialog}
        ack(text="Park?", blocks=[{"type": "actions", "elements": [park]}])

    @app.message_shortcut("vm_actions")
    def on_message(ack, shortcut, client):  # noqa: ANN001
        ack()
        seen.append(shortcut)
        client.views_open(trigger_id=shortcut["trigger_id"], view={**FORM, "callback_id": "vm_actions"})

    @app.view("create_vm")
    def submit(ack, view):  # noqa: ANN001
        name = view["state"]["values"]["name"]["value"]["value"]
        if not name.islower():
            ack(response_action="errors", errors={"name": "Use lower-case letters, digits and hyphens."})
            return
        ack()
        submitted.append(view["state"]["values"])

    server = make_server("127.0.0.1", 0, SlackRequestHandler(app),
                         server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    driver = SlackDriver(f"http://127.0.0.1:{server.server_port}/slack/events", SECRET, slack)
    try:
        yield SimpleNamespace(driver=driver, submitted=submitted, seen=seen)
    finally:
        driver.close()
        server.shutdown()
        server.server_close()


def test_home_tab_is_published_when_opened_and_drawn_as_text(slack: SlackStandin, bolt: SimpleNamespace) -> None:
    assert bolt.driver.app_home_opened("U100").status == 200
    assert slack.wait_for(lambda: slack.home_view("U100") is not None)
    buttons: list[dict[str, Any]] = []
    assert render_view(slack.home_view("U100"), buttons=buttons) == ["── Home ──", "*vm-a* running   [1] Park"]
    assert [b["action_id"] for b in buttons] == ["park"]


def test_shortcut_opens_the_form_and_a_submission_closes_it(slack: SlackStandin, bolt: SimpleNamespace) -> None:
    assert bolt.driver.shortcut("create_vm", user="U100").status == 200
    assert slack.wait_for(lambda: len(slack.modals("U100")) == 1)
    form = slack.modals("U100")[0]
    assert render_view(form) == [
        "┌───────────────────────────────────────────────────┐",
        "│ Create a VM                                       │",
        "├───────────────────────────────────────────────────┤",
        "│ Name: [ test-vm-22 ]                              │",
        "│ Zone: <choose ▾> (us-central1-a | europe-west1-b) │",
        "├───────────────────────────────────────────────────┤",
        "│                               [Cancel]   [Create] │",
        "└───────────────────────────────────────────────────┘",
    ]

    refused = bolt.driver.submit_view(form["id"], {"name": {"value": "Bad_Name"}, "zone": {"value": "us-central1-a"}})
    assert refused.json == {"response_action": "errors",
                            "errors": {"name": "Use lower-case letters, digits and hyphens."}}
    assert len(slack.modals("U100")) == 1  # the form stays open with the error in the field

    accepted = bolt.driver.submit_view(form["id"], {"name": {"value": "vm-b"}, "zone": {"value": "europe-west1-b"}})
    assert accepted.status == 200 and slack.modals("U100") == []
    assert bolt.submitted == [{
        "name": {"value": {"type": "plain_text_input", "value": "vm-b"}},
        "zone": {"value": {"type": "static_select", "selected_option": {
            "text": {"type": "plain_text", "text": "europe-west1-b"}, "value": "europe-west1-b"}}},
    }]


def test_submit_view_refuses_inputs_the_form_does_not_have(slack: SlackStandin, bolt: SimpleNamespace) -> None:
    bolt.driver.shortcut("create_vm")
    assert slack.wait_for(lambda: len(slack.modals()) == 1)
    with pytest.raises(LookupError):
        bolt.driver.submit_view(slack.modals()[0]["id"], {"zone": {"value": "mars-central1-z"}})


def test_message_shortcut_carries_the_message_and_a_usable_trigger(slack: SlackStandin, bolt: SimpleNamespace,
                                                                    client: WebClient) -> None:
    ts = client.chat_postMessage(channel="C100", text="Parking vm-a")["ts"]
    assert bolt.driver.message_shortcut("vm_actions", channel="C100", message_ts=ts, user="U200").status == 200
    assert slack.wait_for(lambda: len(slack.modals("U200")) == 1)
    assert bolt.seen[0]["message"]["text"] == "Parking vm-a" and bolt.seen[0]["type"] == "message_action"
    assert slack.calls_to("views.open", ok=True)[0].params["trigger_id"] == bolt.seen[0]["trigger_id"]


def test_an_ack_is_checked_as_slack_checks_a_message(bolt: SimpleNamespace) -> None:
    fine = bolt.driver.command("x" * 300)
    assert (fine.slack_error, fine.block_errors) == (None, [])
    too_long = bolt.driver.command("x" * 301)
    assert too_long.slack_error == "invalid_blocks"
    assert too_long.block_errors == ["text attribute cannot exceed 300 characters [json-pointer:/blocks/0]"]
