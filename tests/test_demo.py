"""`python -m bot demo`, scripted as a newcomer would type it: create, park (press 1, confirm), restore."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def test_the_demo_terminal_knows_every_emoji_the_bot_writes() -> None:
    """A message the demo cannot render would show a raw `:code:` to a newcomer."""
    import re

    from bot.demo import EMOJI
    from bot.settings import REPO_ROOT

    source = "\n".join(path.read_text() for folder in ("bot", "handlers") for path in (REPO_ROOT / folder).glob("*.py"))
    written = set(re.findall(r"""(?<=[\s"'{]):[a-z][a-z0-9_]*:(?=[\s"'}])""", source))
    assert written and written <= set(EMOJI), sorted(written - set(EMOJI))
