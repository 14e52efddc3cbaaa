"""An ack never waits on Slack: replies to a response_url go out from the job runner, after the ack.

Slack shows the user an error if the ack takes over 3 s, so a listener that
called Slack before returning would fail whenever Slack is slow. Here the
response_url leads to a server that accepts the connection and never answers:
the acks must still come back, and the work must still be done.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from conftest import Running
from standins.slack_api import SlackStandin
from standins.slack_driver import SlackDriver
from storage.models import OperationState, VmState


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A URL whose server takes connections and never answers (closed at the end, so waiting callers fail)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"http://127.0.0.1:{server.getsockname()[1]}/actions/silent"


def test_a_press_is_acked_while_its_response_url_hangs(driver: SlackDriver, running: Running, silent_url: str) -> None:
    driver.command("create vm-a")
    running.settle()
    question = driver.command("park vm-a")
    assert question.blocks, question.text

    pressed = driver.click("park_confirm", blocks=question.blocks, response_url=silent_url)

    assert pressed.status == 200, "the press was answered although its response_url never answers"
    operation = running.bot.store.operations_for("vm-a", limit=1)[0]
    assert operation.verb.value == "park" and operation.state is not OperationState.FAILED
    cancelled = driver.click("park_cancel", blocks=question.blocks, response_url=silent_url)
    assert cancelled.status == 200


def test_a_command_is_acked_while_its_response_url_hangs(driver: SlackDriver, running: Running, silent_url: str) -> None:
    created = driver.command("create vm-b", response_url=silent_url)
    assert created.status == 200 and "Creating `vm-b`" in created.text
    looked_up = driver.command("status vm-b", response_url=silent_url)
    assert looked_up.status == 200 and "Looking up" in looked_up.text
    assert running.bot.store.vm("vm-b").state in (VmState.CREATING, VmState.RUNNING)


def test_an_unexpected_error_is_answered_at_once_and_apologized_for_later(
    driver: SlackDriver, running: Running, slack: SlackStandin, silent_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(name: str) -> None:
        raise RuntimeError("the store fell over")

    monkeypatch.setattr(running.bot.store, "vm", broken)
    answered = driver.command("status vm-a")
    assert answered.status == 500
    running.settle()
    apologies = [r["text"] for r in slack.responses if "went wrong on my side" in r.get("text", "")]
    assert len(apologies) == 1 and apologies[0].startswith(":bangbang: Sorry, something went wrong on my side (ref `")

    hanging = driver.command("status vm-a", response_url=silent_url)
    assert hanging.status == 500, "answered although the apology's response_url never answers"
