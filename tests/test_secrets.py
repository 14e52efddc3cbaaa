"""Secrets stay secret: not in logs, not in replies, not in the store, not on the VM.

The bot runs as in production, except that its Compute client carries a Google
access token (so there is a GCP credential to leak), and logging is configured
the production way at DEBUG for every library.
"""

from __future__ import annotations

import io
import json
import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.oauth2.credentials import Credentials
from sqlalchemy import select

from bot.app import VmBot, create_app
from bot.gcp.compute import Compute
from bot import logs
from bot.redaction import REDACTED, redact, secrets_of
from bot.web.server import make_http_server
from bot.settings import Settings
from conftest import BOT_TOKEN, PROJECT, SIGNING_SECRET
from standins.compute import ComputeStandin
from standins.slack_api import SlackStandin
from standins.slack_driver import Reply, SlackDriver
from storage.models import Base

GCP_TOKEN = "ya29.a0-test-access-token-never-shown"
VERIFICATION_TOKEN = "standin-verification-token"  # Slack's deprecated token, sent in every request body
SECRETS = (BOT_TOKEN, SIGNING_SECRET, GCP_TOKEN, VERIFICATION_TOKEN)
ZONE = "us-central1-a"
STARTUP_SCRIPT = (Path(__file__).parent.parent / "startup-script.py").read_text()


@pytest.fixture
def log_output(settings: Settings) -> Iterator[io.StringIO]:
    """Every log record of every library at DEBUG, configured as the bot configures logging."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    captured = io.StringIO()
    logs.configure("text", "DEBUG", stream=captured, secrets=secrets_of(settings))
    yield captured
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def bot(settings: Settings, log_output: io.StringIO) -> Iterator[VmBot]:
    compute = Compute(PROJECT, endpoint=settings.compute_endpoint, credentials=Credentials(token=GCP_TOKEN),
                      retry_initial=0.01, retry_deadline=10)
    vmbot = create_app(settings, compute=compute)
    yield vmbot
    vmbot.runner.drain(timeout=30)
    vmbot.shutdown()


@pytest.fixture
def slack_driver(bot: VmBot, slack: SlackStandin) -> Iterator[SlackDriver]:
    server = make_http_server(bot, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    driver = SlackDriver(f"http://127.0.0.1:{server.server_port}/slack/events", SIGNING_SECRET, slack,
                         verification_token=VERIFICATION_TOKEN)
    yield driver
    driver.close()
    server.shutdown()
    server.server_close()


def store_dump(bot: VmBot) -> str:
    with bot.store.sessions() as s:
        return "\n".join(str(row) for table in Base.metadata.sorted_tables for row in s.execute(select(table)))


def found(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


def test_no_secret_in_logs_replies_store_or_on_the_vm(
    slack_driver: SlackDriver, bot: VmBot, slack: SlackStandin, gcp: ComputeStandin, log_output: io.StringIO
) -> None:
    replies: list[Reply] = []
    replies.append(slack_driver.command("create test-vm-22"))
    assert bot.runner.drain(timeout=30)
    question = slack_driver.command("park test-vm-22")
    replies += [question, slack_driver.click("park_confirm", blocks=question.blocks or [])]
    assert bot.runner.drain(timeout=30)
    # A failing run: GCP refuses the insert, and (as a proxy might) echoes the credential in its message.
    gcp.fail_request("POST", r"/instances$", status=403, reason="forbidden",
                     message=f"Required 'compute.instances.create' permission (request had Authorization: Bearer {GCP_TOKEN})")
    replies.append(slack_driver.command("create broken-vm"))
    assert bot.runner.drain(timeout=30)
    # A forged request: Bolt logs its body, verification token included.
    forged = SlackDriver(slack_driver.events_url, "wrong-secret").sign(b"token=" + VERIFICATION_TOKEN.encode())
    assert slack_driver.send(b"token=" + VERIFICATION_TOKEN.encode(), forged).status == 401
    replies.append(slack_driver.command("status test-vm-22"))
    assert bot.runner.drain(timeout=30)

    # The run did happen, and was logged: the GCP failure reached the user with GCP's words.
    assert bot.store.vm("test-vm-22").state.value == "parked"
    thread = [m.text for root in slack.messages("C100") for m in slack.thread("C100", root.ts)]
    failure = next(text for text in thread if "Create of `broken-vm` failed" in text)
    assert "Required 'compute.instances.create' permission (request had Authorization: Bearer [redacted])" in failure
    log_text = log_output.getvalue()
    assert "Sending a request" in log_text and "refused a request with an invalid Slack signature" in log_text  # Bolt's line, without the body (issue 16)

    assert found(log_text) == []
    sent_to_slack = [json.dumps(call.params) for call in slack.calls] + [json.dumps(r) for r in slack.responses]
    assert found("\n".join([r.body for r in replies] + sent_to_slack)) == []
    assert found(store_dump(bot)) == []
    sent_to_gcp = json.dumps([request.body for request in gcp.requests])
    assert found(sent_to_gcp) == []


def test_the_vm_carries_the_startup_script_and_nothing_secret(slack_driver: SlackDriver, bot: VmBot, gcp: ComputeStandin) -> None:
    slack_driver.command("create test-vm-22")
    assert bot.runner.drain(timeout=30)
    instance = gcp.instance(PROJECT, ZONE, "test-vm-22")
    metadata = {item["key"]: item["value"] for item in instance["metadata"]["items"]}
    assert metadata == {"startup-script": STARTUP_SCRIPT, "vmbot-web-port": "8080"}
    assert found(json.dumps(instance)) == [] and found(STARTUP_SCRIPT) == []
    # On the VM it reads only public metadata: never the service account's token, nor any environment secret.
    assert set(re.findall(r'metadata\("([^"]+)"', STARTUP_SCRIPT)) == {"name", "zone", "attributes/vmbot-web-port"}
    assert "service-accounts" not in STARTUP_SCRIPT and "SLACK_" not in STARTUP_SCRIPT


def test_settings_never_print_their_secrets(settings: Settings) -> None:
    shown = repr(settings) + str(settings)
    assert BOT_TOKEN not in shown and SIGNING_SECRET not in shown and "project='vmbot-test'" in shown


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_log_lines_and_tracebacks_are_redacted_in_both_formats(fmt: str) -> None:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    output = io.StringIO()
    logs.configure(fmt, "INFO", stream=output, secrets=["s3cr3t-value"])
    log = logging.getLogger("bot.test.redaction")
    try:
        log.warning("token %s and %s", "s3cr3t-value", "xoxb-123-456-abc")
        try:
            raise RuntimeError("failed with Bearer abcdefgh12345678 and xapp-1-A1-2-ff and s3cr3t-value")
        except RuntimeError:
            log.exception("boom")
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
        root.setLevel(level)
    text = output.getvalue()
    assert "s3cr3t-value" not in text and "xoxb-123" not in text and "abcdefgh12345678" not in text
    assert "xapp-1" not in text and text.count(REDACTED) >= 6 and "RuntimeError" in text and "Traceback" in text


def test_what_counts_as_a_secret(settings: Settings) -> None:
    from dataclasses import replace

    with_db = replace(settings, database_url="postgresql+psycopg://vmbot:pg-Pa55word@db/vmbot", slack_app_token="xapp-1-X")
    assert secrets_of(with_db) == [BOT_TOKEN, SIGNING_SECRET, "xapp-1-X", "pg-Pa55word"]
    assert redact("GCP said: The resource 'projects/p/zones/z/instances/x' was not found") == (
        "GCP said: The resource 'projects/p/zones/z/instances/x' was not found"
    ), "ordinary GCP messages pass unchanged"
    assert redact('{"private_key": "-----BEGIN PRIVATE KEY-----\nMII\n-----END PRIVATE KEY-----\n"}') == "{[redacted]}"
    assert redact("https://x/?access_token=abc&x=1") == "https://x/?[redacted]&x=1"
