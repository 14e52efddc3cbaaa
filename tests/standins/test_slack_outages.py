"""Slack outages a test switches on: 5xx answers, dropped connections, 429 until recovery.

Through slack_sdk's own retry handlers, so the outage paths of the bot run against the same behaviour.
"""

from __future__ import annotations

from types import SimpleNamespace
from urllib.error import URLError

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import builtin_handlers, handler
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, ServerErrorRetryHandler
from slack_sdk.webhook import WebhookClient

from slack_support import client, clock, slack  # noqa: F401 (fixtures)
from standins.slack_api import ALL_METHODS, DROPPED, RESPONSE_URL, SlackStandin

TOKEN = "xoxb-standin"


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """slack_sdk's retry handlers sleep between tries: record instead."""
    recorded: list[float] = []
    monkeypatch.setattr(builtin_handlers, "time", SimpleNamespace(sleep=recorded.append))
    monkeypatch.setattr(handler, "time", SimpleNamespace(sleep=recorded.append))
    return recorded


def test_503_for_two_calls_then_the_server_error_retry_handler_gets_through(
        slack: SlackStandin, sleeps: list[float]) -> None:
    slack.fail("chat.postMessage", status=503, times=2)
    client = WebClient(token=TOKEN, base_url=slack.api_url,
                       retry_handlers=[ServerErrorRetryHandler(max_retry_count=2)])
    assert client.chat_postMessage(channel="C100", text="Parking vm-a")["ok"]
    assert [(c.status, c.error) for c in slack.calls_to("chat.postMessage")] == [
        (503, "service_unavailable"), (503, "service_unavailable"), (200, None)]
    assert len(sleeps) == 2
    assert [m.text for m in slack.messages("C100")] == ["Parking vm-a"]


def test_500_until_recover_changes_nothing(slack: SlackStandin, client: WebClient) -> None:
    ts = client.chat_postMessage(channel="C100", text="Parking vm-a")["ts"]
    slack.fail(["chat.postMessage", "chat.update"])  # 500 until recover()
    for _ in range(3):
        with pytest.raises(SlackApiError) as raised:
            client.chat_update(channel="C100", ts=ts, text="vm-a is parked")
        assert (raised.value.response.status_code, raised.value.response["error"]) == (500, "internal_error")
    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel="C100", text="lost?")
    assert client.auth_test()["ok"]  # other methods still answer
    slack.recover()
    assert client.chat_update(channel="C100", ts=ts, text="vm-a is parked")["ok"]
    assert [m.text for m in slack.messages("C100")] == ["vm-a is parked"]
    assert [c.status for c in slack.calls_to("chat.update")] == [500, 500, 500, 200]


def test_dropped_connection_then_the_connection_error_retry_handler_gets_through(
        slack: SlackStandin, sleeps: list[float]) -> None:
    slack.drop_connections("chat.postMessage", times=1)
    retrying = WebClient(token=TOKEN, base_url=slack.api_url, retry_handlers=[ConnectionErrorRetryHandler()])
    assert retrying.chat_postMessage(channel="C100", text="hello")["ok"]
    assert [(c.status, c.error) for c in slack.calls_to("chat.postMessage")] == [
        (DROPPED, "connection_dropped"), (200, None)]

    slack.drop_connections("chat.postMessage")  # until recover()
    plain = WebClient(token=TOKEN, base_url=slack.api_url, retry_handlers=[])
    with pytest.raises((URLError, ConnectionError)):
        plain.chat_postMessage(channel="C100", text="gone")
    slack.recover("chat.postMessage")
    assert plain.chat_postMessage(channel="C100", text="back")["ok"]
    assert [m.text for m in slack.messages("C100")] == ["hello", "back"]


def test_429_on_every_method_until_recover(slack: SlackStandin, client: WebClient) -> None:
    slack.rate_limit(ALL_METHODS, times=None, retry_after=30)
    for call in (client.auth_test, lambda: client.chat_postMessage(channel="C100", text="x")):
        with pytest.raises(SlackApiError) as raised:
            call()
        assert raised.value.response.status_code == 429
        assert raised.value.response.headers["Retry-After"] == "30"
    slack.recover()
    assert client.auth_test()["ok"]


def test_faults_queue_per_method_in_order(slack: SlackStandin, client: WebClient) -> None:
    slack.fail("chat.postMessage", status=503, times=1)
    slack.rate_limit("chat.postMessage", times=1, retry_after=4)
    statuses = []
    for _ in range(3):
        try:
            client.chat_postMessage(channel="C100", text="x")
            statuses.append(200)
        except SlackApiError as e:
            statuses.append(e.response.status_code)
    assert statuses == [503, 429, 200]


def test_response_url_outages(slack: SlackStandin, sleeps: list[float]) -> None:
    url = slack.new_response_url(channel="C100", user="U100")
    hook = WebhookClient(url, retry_handlers=[])
    slack.fail(RESPONSE_URL, status=503, times=1)
    failed = hook.send(text="working")
    assert (failed.status_code, failed.body) == (503, "service_unavailable")
    slack.drop_connections(RESPONSE_URL, times=1)
    with pytest.raises((URLError, ConnectionError)):
        hook.send(text="working")
    assert hook.send(text="working").body == "ok"
    slack.drop_connections(RESPONSE_URL, times=1)
    assert WebhookClient(url).send(text="done").body == "ok"  # slack_sdk's default handler retries a reset
    assert [m.text for m in slack.ephemerals("U100")] == ["working", "done"]
    assert [r["text"] for r in slack.responses] == ["working", "working", "working", "done", "done"]


def test_fail_is_for_server_errors(slack: SlackStandin) -> None:
    with pytest.raises(ValueError):
        slack.fail("chat.postMessage", status=429)
