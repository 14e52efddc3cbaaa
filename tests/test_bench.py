"""The benchmark script runs and prints its table (a smoke test: its numbers are not judged here)."""

from __future__ import annotations

import subprocess
import sys

from bot.settings import REPO_ROOT

TINY = ["--quick", "--acks", "2", "--parks", "1", "--samples", "1", "--channel-ops", "1",
        "--op-seconds", "0.05", "--workers", "2", "--sweep-images", "10", "--schedule-vms", "3",
        "--team", "2", "--list-vms", "60", "--reconcile-resources", "20"]


def test_bench_prints_one_table() -> None:
    run = subprocess.run([sys.executable, "-m", "bench", *TINY], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode in (0, 1), run.stderr[-2000:]  # 1: a target was missed, which is the bench's business
    lines = run.stdout.splitlines()
    assert lines[0].startswith("vmbot benchmark:")
    rows = [line.split("|")[0].strip() for line in lines[4:] if "|" in line]
    assert rows == ["1", "1a", "1b", "2", "3", "4a", "4b", "5", "6", "7", "8a", "8b", "8c", "8d", "9", "10", "11"], run.stdout
    assert all(line.rstrip().endswith(("pass", "FAIL", "-")) for line in lines[4:] if "|" in line), run.stdout
