"""Log lines: one per event, JSON for Cloud Logging or plain text, with the operation, VM and Slack user."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from bot import logs
from bot.jobs.runner import JobRunner

log = logging.getLogger("bot.test")


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    """A stream to configure logging onto; the root logger is put back as it was afterwards."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield io.StringIO()
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)


def json_lines(stream: io.StringIO) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_cloud_logging_fields_and_the_context(output: io.StringIO) -> None:
    logs.configure("json", "INFO", stream=output)
    with logs.context(operation_id=7, vm="test-vm-22", slack_user="U100"):
        log.info("parking %s", "test-vm-22")
    log.warning("outside any operation", extra={"vm": "other-vm"})

    inside, outside = json_lines(output)
    assert inside["severity"] == "INFO" and inside["message"] == "parking test-vm-22" and inside["logger"] == "bot.test"
    assert (inside["operation_id"], inside["vm"], inside["slack_user"]) == (7, "test-vm-22", "U100")
    assert inside["time"].endswith("Z") and inside["logging.googleapis.com/sourceLocation"]["function"]
    assert outside["severity"] == "WARNING" and outside["vm"] == "other-vm"
    assert "operation_id" not in outside and "slack_user" not in outside


def test_an_exception_is_one_json_line_with_its_traceback_in_stack_trace(output: io.StringIO) -> None:
    logs.configure("json", "INFO", stream=output)
    try:
        raise ValueError("boom\non two lines")
    except ValueError:
        log.exception("operation %s failed unexpectedly", 9)

    (line,) = json_lines(output)
    assert line["severity"] == "ERROR" and line["message"] == "operation 9 failed unexpectedly"
    assert line["stack_trace"].startswith("Traceback (most recent call last):")
    assert line["stack_trace"].endswith("ValueError: boom\non two lines")


def test_text_lines_show_the_context_in_brackets(output: io.StringIO) -> None:
    logs.configure("text", "INFO", stream=output)
    with logs.context(operation_id=3, vm="vm-a"):
        log.info("stopping")
    log.info("idle")
    first, second = output.getvalue().splitlines()
    assert first.endswith(" INFO bot.test [op=3 vm=vm-a]: stopping")
    assert second.endswith(" INFO bot.test: idle")


def test_configuring_again_replaces_the_handler_instead_of_doubling_lines(output: io.StringIO) -> None:
    logs.configure("text", "INFO", stream=io.StringIO())
    logs.configure("json", "INFO", stream=output)
    log.info("once")
    assert [line["message"] for line in json_lines(output)] == ["once"]


def test_a_background_job_logs_with_its_submitters_context_and_leaks_none(output: io.StringIO) -> None:
    logs.configure("json", "INFO", stream=output)
    runner = JobRunner(1)  # one thread: both jobs run on it
    with logs.context(vm="vm-a", slack_user="U1"):
        runner.submit(lambda: log.info("first job"))
    runner.submit(lambda: log.info("second job"))
    assert runner.drain(timeout=10)
    runner.shutdown()
    first, second = json_lines(output)
    assert (first["vm"], first["slack_user"]) == ("vm-a", "U1")
    assert "vm" not in second and "slack_user" not in second


def test_unknown_context_fields_are_refused() -> None:
    with pytest.raises(TypeError, match="unknown log context fields"):
        with logs.context(token="xoxb-1"):
            pass
