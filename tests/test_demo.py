"""`python -m bot demo`, scripted as a newcomer would type it: create, park (press 1, confirm), restore."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import requests

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
