"""Only requests Slack signed, each served once, through the real HTTP path.

Forged, stale, tampered, malformed and replayed requests get 401 and change
nothing: no store row (not even an audit entry), no GCP call, no Slack call.
"""

from __future__ import annotations

import http.client
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
from security_support import FORM, click_body, command_body, row_counts, signed_headers

from conftest import PROJECT, Running
from standins.compute import ComputeStandin
from standins.slack_api import SlackStandin
from standins.slack_driver import SlackDriver

ZONE = "us-central1-a"


def sign_with(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    return {"Content-Type": FORM, **SlackDriver("http://unused", secret).sign(body, timestamp)}


def bad_headers(kind: str, body: bytes, driver: SlackDriver) -> tuple[bytes, dict[str, str]]:
    """(body sent, headers) for one kind of request Slack did not sign."""
    now = int(time.time())
    if kind == "forged":
        return body, sign_with("not-the-signing-secret", body)
    if kind == "stale":
        return body, signed_headers(driver, body, timestamp=now - 301)
    if kind == "from the future":
        return body, signed_headers(driver, body, timestamp=now + 301)
    if kind == "tampered":
        return body.replace(b"help", b"list") + b"&x=1", signed_headers(driver, body)
    if kind == "unsigned":
        return body, {"Content-Type": FORM}
    if kind == "timestamp not a number":  # Bolt itself would raise on int("1e9") and answer 500
        return body, {**signed_headers(driver, body), "X-Slack-Request-Timestamp": "1e9"}
    if kind == "signature not v0 hex":
        return body, {**signed_headers(driver, body), "X-Slack-Signature": "v1=" + "0" * 64}
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    ["forged", "stale", "from the future", "tampered", "unsigned", "timestamp not a number", "signature not v0 hex"],
)
def test_an_unsigned_request_gets_401_and_changes_nothing(
    kind: str, driver: SlackDriver, running: Running, slack: SlackStandin, gcp: ComputeStandin
) -> None:
    store = running.bot.store
    before, calls_before = row_counts(store), len(slack.calls)
    # The response_url points at the Slack stand-in: an unverified request must not make the bot post there.
    body = command_body("create test-vm-22 help", response_url=slack.new_response_url(channel="C100", user="U100"))
    sent, headers = bad_headers(kind, body, driver)

    reply = driver.send(sent, headers)

    assert reply.status == 401 and reply.json == {"error": "invalid request"}
    running.settle()
    assert row_counts(store) == before
    assert gcp.requests == []
    assert len(slack.calls) == calls_before and slack.responses == []


def test_a_body_that_is_not_utf8_gets_400_not_a_server_error(driver: SlackDriver, running: Running) -> None:
    body = b"text=\xff\xfe&command=/vm&user_id=U100"
    before = row_counts(running.bot.store)
    reply = driver.send(body, signed_headers(driver, b"anything"))
    assert reply.status == 400
    reply = driver.send(body, {"Content-Type": FORM, "X-Slack-Request-Timestamp": str(int(time.time())),
                               "X-Slack-Signature": "v0=" + "0" * 64})
    assert reply.status == 400
    assert row_counts(running.bot.store) == before


@pytest.mark.parametrize("payload", [b"payload=notjson", b"payload=%5B1%5D", b"payload="])
def test_an_interaction_that_is_not_a_json_object_gets_400(payload: bytes, driver: SlackDriver, running: Running) -> None:
    before = row_counts(running.bot.store)
    assert driver.send(payload, signed_headers(driver, payload)).status == 400
    assert row_counts(running.bot.store) == before


def test_an_oversized_body_is_refused_unread(running: Running) -> None:
    url = urlsplit(running.events_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        connection.putrequest("POST", url.path)
        connection.putheader("Content-Type", FORM)
        connection.putheader("Content-Length", str(50 * 1024 * 1024))
        connection.endheaders()
        assert connection.getresponse().status == 413
    finally:
        connection.close()


def test_a_replayed_command_gets_401_and_changes_nothing(
    driver: SlackDriver, running: Running, slack: SlackStandin, gcp: ComputeStandin
) -> None:
    store = running.bot.store
    body = command_body("create test-vm-22", response_url=slack.new_response_url(channel="C100", user="U100"))
    headers = signed_headers(driver, body)

    first = driver.send(body, headers)
    assert first.status == 200 and "Creating `test-vm-22`" in first.text
    running.settle()
    after_first, gcp_requests, slack_calls = row_counts(store), len(gcp.requests), len(slack.calls)

    again = driver.send(body, headers)

    assert again.status == 401
    running.settle()
    assert row_counts(store) == after_first
    assert len(gcp.requests) == gcp_requests and len(slack.calls) == slack_calls
    assert [op.verb.value for op in store.operations_for("test-vm-22")] == ["create"]
    assert gcp.instance(PROJECT, ZONE, "test-vm-22") is not None


def test_a_replayed_confirm_click_parks_once(
    driver: SlackDriver, running: Running, slack: SlackStandin, gcp: ComputeStandin
) -> None:
    store = running.bot.store
    driver.command("create test-vm-22")
    running.settle()
    question = driver.command("park test-vm-22")
    value = next(e["value"] for b in question.blocks or [] if b["type"] == "actions" for e in b["elements"])
    body = click_body("park_confirm", value, user="U100",
                      response_url=slack.new_response_url(channel="C100", user="U100", message_ts="1.000001"))
    headers = signed_headers(driver, body)

    assert driver.send(body, headers).status == 200
    running.settle()
    after_first, gcp_requests = row_counts(store), len(gcp.requests)
    assert driver.send(body, headers).status == 401
    running.settle()

    assert row_counts(store) == after_first and len(gcp.requests) == gcp_requests
    assert [op.verb.value for op in store.operations_for("test-vm-22")] == ["park", "create"]


def test_two_copies_sent_at_once_are_served_once(driver: SlackDriver, running: Running, slack: SlackStandin) -> None:
    body = command_body("create test-vm-22", response_url=slack.new_response_url(channel="C100", user="U100"))
    headers = signed_headers(driver, body)
    with ThreadPoolExecutor(2) as pool:
        statuses = sorted(pool.map(lambda _: SlackDriver(driver.events_url, "x").send(body, headers).status, range(2)))
    assert statuses == [200, 401]
    running.settle()
    assert len(running.bot.store.operations_for("test-vm-22")) == 1


def test_the_same_command_typed_twice_is_not_a_replay(driver: SlackDriver) -> None:
    """The guard knows signatures, not texts: a person may ask the same thing again (a new signed request)."""
    now = int(time.time())
    assert driver.command("list", timestamp=now - 1).status == 200
    assert driver.command("list", timestamp=now).status == 200
    assert "I don't manage any VMs yet" in driver.command("list").text
