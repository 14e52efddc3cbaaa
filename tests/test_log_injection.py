"""Nobody writes the log by sending a request: a bad-signature body is not logged, and no field breaks a line."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from security_support import FORM, command_body

from bot import logs
from conftest import Running
from standins.slack_driver import SlackDriver

FORGED = "INFO bot.core.workflows [op=1 vm=victim-vm user=U100]: FORGED-LINE park of victim-vm succeeded"


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    """The bot's text log, as an operator reads it; the root logger is put back as it was afterwards."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    stream = io.StringIO()
    logs.configure("text", "INFO", stream=stream)
    yield stream
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)


def test_a_request_with_a_bad_signature_leaves_a_short_line_without_its_body(
    output: io.StringIO, running: Running, driver: SlackDriver
) -> None:
    body = command_body("help") + ("&text=x%0A" + FORGED.replace(" ", "+")).encode() + b"&pad=" + b"A" * 512 * 1024
    headers = {"Content-Type": FORM, **SlackDriver("http://unused", "not-the-secret").sign(body)}

    assert driver.send(body, headers).status == 401

    log = output.getvalue()
    assert "FORGED-LINE" not in log and "AAAAAAAA" not in log, log[:500]
    assert len(log) < 2000, f"{len(log)} characters logged for one bad request"
    assert "refused a request with an invalid Slack signature" in log


def test_no_field_of_a_text_line_can_start_a_line_of_its_own(output: io.StringIO) -> None:
    hostile = f"victim-vm\n{FORGED}\r\n\u2028more"
    with logs.context(operation_id=1, vm=hostile, slack_user="U100\nx"):
        logging.getLogger("bot.test").warning("park of %s\n%s", hostile, FORGED)

    lines = output.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert "vm=victim-vm\\nINFO bot.core.workflows" in lines[0] and "user=U100\\nx" in lines[0]
    assert "\\u2028more" in lines[0]


def test_a_traceback_still_follows_on_its_own_lines(output: io.StringIO) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("bot.test").exception("failed\nFAKE")
    lines = output.getvalue().splitlines()
    assert lines[0].endswith("failed\\nFAKE") and lines[1] == "Traceback (most recent call last):"
