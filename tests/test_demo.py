"""`python -m bot demo`, scripted as a newcomer would type it: create, park (press 1, confirm), restore."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import requests
from conftest import Running
from standins.compute import ComputeStandin
from standins.slack_api import SlackStandin
from standins.slack_driver import SlackDriver
from storage.models import VmState

REPO = Path(__file__).resolve().parent.parent


def test_a_scripted_demo_creates_parks_and_restores() -> None:
    typed = "/vm create test-vm-22\n/vm park test-vm-22\n1\ny\n/vm restore test-vm-22\n/vm list\nquit\n"
    done = subprocess.run(
        [sys.executable, "-m", "bot", "demo", "--operation-seconds", "0.05"],
        input=typed, capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    out = done.stdout
    assert done.returncode == 0, done.stderr
    assert "Creating `test-vm-22`" in out
    assert "`test-vm-22` is created: RUNNING, external IP 203.0.113." in out
    assert "[1] Park test-vm-22   [2] Cancel" in out and "Park this VM?" in out
    assert "`test-vm-22` is parked: only image `test-vm-22-" in out
    assert "`test-vm-22` is restored: RUNNING" in out
    assert "Traceback" not in out + done.stderr


def test_the_demo_without_a_terminal_serves_until_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "demo", "--no-terminal"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.search(r"serving on (http://127\.0\.0\.1:\d+)", line)
        assert found, line + process.stderr.read() if process.poll() is not None else line
        health = requests.get(f"{found.group(1)}/healthz", timeout=10)
        assert health.status_code == 200 and health.json()["ok"] is True
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        assert "Traceback" not in process.stderr.read()
    finally:
        process.kill()
        process.wait()


def test_the_demo_terminal_knows_every_emoji_the_bot_writes() -> None:
    """A message the demo cannot render would show a raw `:code:` to a newcomer."""
    import re

    from bot.demo import EMOJI
    from bot.settings import REPO_ROOT

    source = "\n".join(path.read_text() for folder in ("bot", "handlers") for path in (REPO_ROOT / folder).glob("*.py"))
    written = set(re.findall(r"""(?<=[\s"'{]):[a-z][a-z0-9_]*:(?=[\s"'}])""", source))
    assert written and written <= set(EMOJI), sorted(written - set(EMOJI))


def test_a_scripted_demo_creates_through_the_form_and_parks_from_the_home_tab() -> None:
    typed = "/vm create\nsubmit Bad_Name\nsubmit test-vm-22 machine-type=e2-medium\nhome\n2\ny\nquit\n"
    done = subprocess.run(
        [sys.executable, "-m", "bot", "demo", "--operation-seconds", "0.05"],
        input=typed, capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    out = done.stdout
    assert done.returncode == 0, done.stderr
    assert "│ Create a VM" in out and "Machine type: <e2-small · $0.40/day ▾>" in out
    assert '(in the form, under name) ⚠️ "Bad_Name" is not a valid VM name' in out
    assert "`test-vm-22` is created: RUNNING" in out
    assert "── Home ──" in out and "us-central1-a · e2-medium" in out and "[2] Park   [3] Delete   [4] Open thread" in out
    assert "Park this VM?" in out and "`test-vm-22` is parked: only image `test-vm-22-" in out
    assert "[2] Restore   [3] Delete   [4] Open thread" in out, "the Home tab is drawn again once the park has ended"
    assert "Traceback" not in out + done.stderr


def test_a_permanent_error_in_the_demo_reads_one_way_and_no_log_line_interrupts_it() -> None:
    typed = "/vm create test-vm-22 zone=mars-central1-z\n/vm list\nquit\n"
    done = subprocess.run(
        [sys.executable, "-m", "bot", "demo", "--operation-seconds", "0.05"],
        input=typed, capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    out = done.stdout
    assert done.returncode == 0, done.stderr
    assert "❌ Create of `test-vm-22` failed while checking GCP" in out and "did not answer" not in out
    assert "GCP said: Invalid value for field 'zone': 'mars-central1-z'" in out, "italics rendered, not shown raw"
    assert "] Retry" not in out, "no Retry for a request that can only fail again"
    assert "WARNING" not in out, "the log is kept out of the playback"
    assert "create of test-vm-22 ended: failed" in done.stderr, "and shown when the demo ends"


def test_the_demo_terminal_can_press_a_retry_button_in_a_thread(
    driver: SlackDriver, running: Running, slack: SlackStandin, gcp: ComputeStandin
) -> None:
    import io

    from bot.demo import CHANNEL, USER, Terminal, press, render

    gcp.fail_operation("POST", r"/instances$", code="QUOTA_EXCEEDED", message="Quota 'CPUS' exceeded.")
    driver.command("create vm-a", user=USER, channel=CHANNEL)
    running.settle()
    out = io.StringIO()
    terminal = Terminal(slack, out)
    terminal.show_news()
    assert "[1] Retry create" in out.getvalue(), out.getvalue()

    press(driver, terminal, "1", interactive=False)
    running.settle()
    assert running.bot.store.vm("vm-a").state is VmState.RUNNING, "the Retry press created the VM"
    assert render("GCP said: _Quota_. `a_b_c`") == "GCP said: Quota. `a_b_c`"
