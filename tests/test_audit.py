"""The audit trail through signed Slack requests: every command and press, and `/vm history NAME`."""

from __future__ import annotations

import contextvars
import re
import threading

import pytest

from bot.core import audit
from bot.settings import Settings
from conftest import Running, replace
from standins.slack_driver import SlackDriver
from storage.models import Verdict

OWNER, ADMIN, BYSTANDER = "U100", "UADMIN", "U300"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, admins=frozenset({ADMIN}))


def test_every_command_and_press_is_recorded_with_its_verdict(driver: SlackDriver, running: Running) -> None:
    store = running.bot.store
    driver.command("create test-vm-22", user=OWNER)
    running.settle()
    driver.command("crate test-vm-22", user=OWNER, channel="C200")
    driver.command(f"park test-vm-22", user=BYSTANDER)
    question = driver.command("park test-vm-22", user=OWNER)
    driver.click("park_confirm", blocks=question.blocks or [], user=BYSTANDER)
    driver.click("park_confirm", blocks=question.blocks or [], user=OWNER)
    running.settle()
    driver.command("list", user=BYSTANDER)

    entries = list(reversed(store.audit_log()))
    ops = {op.verb.value: op.id for op in store.operations_for("test-vm-22")}
    got = [(e.kind, e.user_id, e.channel_id, e.text, e.verb, e.vm_name, e.verdict, e.operation_id) for e in entries]
    assert got == [
        ("command", OWNER, "C100", "create test-vm-22", "create", "test-vm-22", Verdict.ALLOWED, ops["create"]),
        ("command", OWNER, "C200", "crate test-vm-22", None, None, Verdict.INVALID, None),
        ("command", BYSTANDER, "C100", "park test-vm-22", "park", "test-vm-22", Verdict.REFUSED, None),
        ("command", OWNER, "C100", "park test-vm-22", "park", "test-vm-22", Verdict.ALLOWED, None),
        ("button", BYSTANDER, "C100", "park_confirm test-vm-22", "park", "test-vm-22", Verdict.REFUSED, None),
        ("button", OWNER, "C100", "park_confirm test-vm-22", "park", "test-vm-22", Verdict.ALLOWED, ops["park"]),
        ("command", BYSTANDER, "C100", "list", "list", None, Verdict.ALLOWED, None),
    ]
    assert entries[1].detail.startswith("I don't know `/vm crate`") and "Did you mean `/vm create`?" in entries[1].detail
    assert entries[2].detail.startswith("Only `test-vm-22`'s owner <@U100>")
    assert all(e.at is not None for e in entries)
    assert [e.at for e in entries] == sorted(e.at for e in entries)


def test_history_shows_a_vms_trail_newest_first_in_pages(driver: SlackDriver, running: Running) -> None:
    driver.command("create test-vm-22", user=OWNER)
    running.settle()
    for i in range(11):  # refused attempts by a bystander: 1 create + 11 = 12 entries
        driver.command("restore test-vm-22", user=f"U9{i:02d}")
    driver.command("status other-vm", user=OWNER)  # another VM's trail

    first = driver.command("history test-vm-22", user=BYSTANDER)

    lines = [line for b in first.blocks or [] if b["type"] == "section" for line in b["text"]["text"].splitlines()]
    assert lines[0] == "*History of `test-vm-22`* (newest first)"
    entries = [line for line in lines[1:] if " · " in line and line.lstrip().startswith(":")]
    assert len(entries) == 10
    assert "<@U910>" in entries[0] and "<@U901>" in entries[-1], "newest first"
    assert "`/vm restore test-vm-22` · refused" in entries[0]
    assert "Only `test-vm-22`'s owner <@U100> or an admin (<@UADMIN>) may restore it." in first.text + str(first.blocks)
    footer = first.blocks[-1]["elements"][0]["text"]
    assert footer == "Page 1 of 2 · 12 entries. Next: `/vm history test-vm-22 page=2`."

    # Looking is recorded (the audit log has it) but not shown in the trail: pages and counts stay put (issue 16).
    second = driver.command("history test-vm-22 page=2", user=BYSTANDER)
    text = str(second.blocks)
    assert "<@U900>" in text and "`/vm create test-vm-22` · allowed · operation #1" in text
    assert "succeeded: `test-vm-22` is RUNNING at 203.0.113." in text, "an allowed request shows how its work ended"
    assert "Page 2 of 2 · 12 entries." in text and "Next:" not in text
    assert "`/vm history test-vm-22`" not in str(driver.command("history test-vm-22").blocks)
    looks = [e for e in running.bot.store.audit_log(limit=50) if e.text.startswith("history test-vm-22")]
    assert len(looks) == 3 and all(e.verdict is Verdict.ALLOWED for e in looks), "every look is still recorded"

    assert driver.command("history test-vm-22 page=9").text == (
        ":warning: `test-vm-22` has 2 pages of history; try `/vm history test-vm-22 page=2`."
    )
    assert driver.command("history test-vm-22 page=0").text.startswith(":warning: `page=0` is not a page number")
    assert driver.command("history never-seen").text == (
        ":warning: I have no history for `never-seen`. `/vm list` shows the VMs I manage."
    )


def test_history_shows_hostile_text_as_text(driver: SlackDriver, running: Running) -> None:
    driver.command("create test-vm-22", user=OWNER)
    running.settle()
    hostile = "park test-vm-22 <!channel> <@U0BOSS> <http://evil.example|click me> `code` &amp;"
    reply = driver.command(hostile, user=BYSTANDER)
    assert "got more than I expected" in reply.text

    history = driver.command("history test-vm-22", user=OWNER)

    shown = history.text + " " + " ".join(
        b["text"]["text"] if b["type"] == "section" else b["elements"][0]["text"] for b in history.blocks or []
    )
    assert "&lt;!channel&gt; &lt;@U0BOSS&gt; &lt;http://evil.example|click me&gt; 'code' &amp;amp;" in shown
    # Every "<" left is markup the bot wrote itself: a user mention or a channel link.
    assert all(re.fullmatch(r"<[@#][UCW][A-Z0-9]+>", tag) for tag in re.findall(r"<[^>]*>", shown))
    assert shown.count("`") % 2 == 0


def test_a_job_started_inside_a_request_is_not_that_request() -> None:
    """The job runner runs a job in a copy of its submitter's context, so the job sees the request's
    recording; an operation the job started must not be written as that request's doing."""
    request = audit.Request("command", "U1", "C1", "create vm-a", verb="create", vm_name="vm-a")
    seen: list[object] = []
    with audit.recording(request):
        assert audit.entry_for_new_operation() is not None  # the handler's own thread: its request
        context = contextvars.copy_context()
        job = threading.Thread(target=context.run, args=(lambda: seen.append(audit.entry_for_new_operation()),))
        job.start()
        job.join(10)
    assert seen == [None]
