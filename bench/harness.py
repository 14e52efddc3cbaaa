"""The benchmark's world: the local stand-ins in this process, the bot as a real ``python -m bot`` subprocess.

The bot is measured exactly as it runs in production (its own process, HTTP on
a port, SQLite file, worker pool from VMBOT_WORKERS), so nothing here reaches
into it: requests go in signed through ``SlackDriver``, and what it did is read
back from the stand-ins (Slack messages and their ``ts``, Compute operations).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from standins.bot_process import bot_environment, free_port
from standins.compute import ComputeStandin
from standins.slack_api import Message, SlackStandin
from standins.slack_driver import SlackDriver

REPO_ROOT = Path(__file__).resolve().parent.parent
PROJECT = "vmbot-bench"
BOT_TOKEN = "xoxb-bench"
SIGNING_SECRET = "bench-signing-secret"
START_TIMEOUT = 30.0


class BotProcess:
    """``python -m bot`` serving HTTP, pointed at the stand-ins, with its log in a file."""

    def __init__(self, *, slack: SlackStandin, gcp: ComputeStandin, workers: int | None, workdir: Path) -> None:
        """``workers``: VMBOT_WORKERS, or None for the bot's defaults."""
        self.port = free_port()
        self.log_path = workdir / "bot.log"
        env = bot_environment(
            slack=slack, gcp=gcp, database=workdir / "vmbot.db", port=self.port, project=PROJECT,
            signing_secret=SIGNING_SECRET, **({} if workers is None else {"VMBOT_WORKERS": str(workers)}),
        )
        self._log = self.log_path.open("wb")
        # The schema is migrated first, as on every start-up but a release's first: the bot then finds it
        # at head and never loads Alembic (storage.schema_version).
        subprocess.run([sys.executable, "-m", "storage.migrate"], cwd=REPO_ROOT, env=env, check=True,
                       stdout=self._log, stderr=subprocess.STDOUT)
        self.launched = time.perf_counter()
        self.ready_seconds: float | None = None  # from the process's start to its first /healthz answer
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot"], cwd=REPO_ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.events_url = f"{self.base_url}/slack/events"

    def wait_ready(self) -> None:
        """Until /healthz answers (the bot applies migrations and calls auth.test first)."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the bot exited with {self.process.returncode}; see {self.log_path}")
            try:
                if requests.get(f"{self.base_url}/healthz", timeout=1).ok:
                    self.ready_seconds = time.perf_counter() - self.launched
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.01)
        raise RuntimeError(f"the bot did not answer /healthz within {START_TIMEOUT:.0f} s; see {self.log_path}")

    def reset_peak_rss(self) -> None:
        """Start VmHWM afresh from the current RSS (Linux: write 5 to clear_refs), so the peak is the run's."""
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")

    def peak_rss_mb(self) -> float:
        """The process's resident-set high-water mark so far (VmHWM), in MiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("VmHWM not found in /proc/PID/status")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class World:
    slack: SlackStandin
    gcp: ComputeStandin
    bot: BotProcess

    def driver(self) -> SlackDriver:
        driver = SlackDriver(self.bot.events_url, SIGNING_SECRET, self.slack)
        driver.session.trust_env = False  # no proxy/netrc/CA-bundle lookups per request: a lean client
        return driver


class Bench:
    """Starts and stops the world; ``with Bench(...) as world:``."""

    def __init__(
        self, *, operation_seconds: float, workers: int | None, channel_rate: float | None, keep_log: Path | None = None
    ) -> None:
        self.operation_seconds, self.workers, self.channel_rate = operation_seconds, workers, channel_rate
        self.keep_log = keep_log
        self._tmp = tempfile.TemporaryDirectory(prefix="vmbot-bench-")

    def __enter__(self) -> World:
        slack = SlackStandin(bot_token=BOT_TOKEN)
        slack.start()
        slack.channel_rate_limit(self.channel_rate)  # Slack's ~1 message/s per channel, as in production
        gcp = ComputeStandin(operation_seconds=self.operation_seconds)
        gcp.start()
        bot = BotProcess(slack=slack, gcp=gcp, workers=self.workers, workdir=Path(self._tmp.name))
        self.world = World(slack, gcp, bot)
        try:
            bot.wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self.world

    def __exit__(self, *exc: object) -> None:
        self.world.bot.stop()
        if self.keep_log:
            shutil.copyfile(self.world.bot.log_path, self.keep_log)
        self.world.gcp.stop()
        self.world.slack.stop()
        self._tmp.cleanup()


def concurrently(count: int, action: Callable[[int], Any]) -> list[Any]:
    """Run ``action(i)`` for every i on its own thread, all released at the same moment."""
    barrier = threading.Barrier(count)

    def run(i: int) -> Any:
        barrier.wait()
        return action(i)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


# ---- reading results back from the stand-ins ------------------------------------------------


@dataclass(frozen=True)
class Finished:
    """An operation's thread that has ended: root updated to done/failed, then its result reply."""

    channel: str
    root_ts: str
    ok: bool
    at: float  # wall-clock time of the result reply (its Slack ts)
    replies: int
    result: str


def finished(slack: SlackStandin, channel: str, title: str) -> Finished | None:
    """The thread whose root first said ``title`` (e.g. "Parking vm-1"), if it has ended."""
    for root in slack.messages(channel):
        first = root.history[0].text if root.history else root.text
        if not first.startswith(f"{title} ("):
            continue
        return _ended(slack, root)
    return None


def _ended(slack: SlackStandin, root: Message) -> Finished | None:
    if not root.text.endswith((": done", ": failed")) or root.edited_ts is None:
        return None
    replies = slack.thread(root.channel, root.ts)[1:]
    after = [r for r in replies if float(r.ts) > float(root.edited_ts)]
    if not after:
        return None
    return Finished(root.channel, root.ts, root.text.endswith(": done"), float(after[-1].ts), len(replies), after[-1].text)


def wait_finished(
    slack: SlackStandin, expected: dict[str, tuple[str, str]], timeout: float, what: str, *, strict: bool = True
) -> dict[str, Finished]:
    """Poll until every ``key -> (channel, title)`` thread has ended; timestamps come from the messages.

    Past ``timeout`` it raises, or with ``strict=False`` returns the threads that did end.

    Polling (rather than ``wait_for``) keeps the stand-in's lock free while the
    bot is being measured; the poll interval does not affect the numbers.
    """
    deadline = time.monotonic() + timeout
    done: dict[str, Finished] = {}
    while True:
        for key, (channel, title) in expected.items():
            if key not in done and (result := finished(slack, channel, title)) is not None:
                done[key] = result
        if len(done) == len(expected):
            return done
        if time.monotonic() > deadline:
            if not strict:
                return done
            missing = sorted(set(expected) - set(done))
            raise RuntimeError(f"{what}: {len(missing)} of {len(expected)} did not finish in {timeout:.0f} s: {missing[:5]}")
        time.sleep(0.05)


def gcp_seconds(gcp: ComputeStandin, name: str, since: float) -> float:
    """Sum of the Compute operations' own durations (insertTime -> endTime) on ``name`` or its images since ``since``."""
    total = 0.0
    for op in gcp.operations():
        target = op["targetLink"].rsplit("/", 1)[-1]
        if target != name and not target.startswith(f"{name}-"):
            continue
        began = datetime.fromisoformat(op["insertTime"]).timestamp()
        if began < since or "endTime" not in op:
            continue
        total += datetime.fromisoformat(op["endTime"]).timestamp() - began
    return total
