"""Kill test: the real `python -m bot`, SIGKILLed during each step of a park (stop running, image
pending, delete running) and of a restore (insert running), then started again. Each operation must
complete exactly once, its thread must get the result, and nothing may be duplicated or orphaned.

The stand-ins run in the test process; the bot reaches them through its environment, exactly as in
production. The stand-in holds every GCP operation and lets through only the one the test releases,
so each kill lands while the step's GCP operation is still running and the bot is waiting on it.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import PROJECT, SIGNING_SECRET
from durable_support import CHANNEL, ZONE, assert_nothing_orphaned, gcp_operations
from fidelity_support import comparable, console_vm
from standins.bot_process import bot_environment, free_port
from standins.compute import ComputeStandin
from standins.slack_api import SlackStandin
from standins.slack_driver import SlackDriver
from storage.models import OperationState, Verb, VmState
from storage.store import Store

REPO = Path(__file__).resolve().parent.parent
LEASE = "0.6"  # seconds: how soon a restarted bot may take over the dead one's operations


class BotProcess:
    """`python -m bot` as a child process; its log lines are collected so a failure can show them."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot"], cwd=REPO, env=self.env, text=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        assert self.wait_for_line(r"listening on port"), f"the bot did not start:\n{self.log()}"

    def kill(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, f"the bot died on its own:\n{self.log()}"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def wait_for_line(self, pattern: str, timeout: float = 30.0) -> bool:
        regex = re.compile(pattern)
        with self._cond:
            return self._cond.wait_for(lambda: any(regex.search(line) for line in self.lines), timeout=timeout)

    def log(self) -> str:
        with self._cond:
            return "".join(self.lines[-60:])

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()


@pytest.fixture
def bot(gcp: ComputeStandin, slack: SlackStandin, tmp_path: Path) -> Iterator[BotProcess]:
    port = free_port()
    env = bot_environment(
        slack=slack, gcp=gcp, database=tmp_path / "vmbot.db", port=port, project=PROJECT,
        signing_secret=SIGNING_SECRET, VMBOT_OPERATION_LEASE=LEASE,
        VMBOT_SLACK_CHANNEL_RATE="off",  # the stand-in has no limit: every step is its own reply
    )
    process = BotProcess(env)
    process.port = port  # type: ignore[attr-defined]
    try:
        yield process
    finally:
        process.stop()
        gcp.release_operations()


def held_op(gcp: ComputeStandin, op_type: str, target: str) -> str:
    """The name of the held GCP operation of ``op_type`` on a target (a part of its URL), once begun."""
    found: list[str] = []

    def started() -> bool:
        found[:] = [op["name"] for op in gcp.held_operations(op_type) if target in op["targetLink"]]
        return bool(found)

    assert gcp.wait_for(started, timeout=30), f"no {op_type} of {target} began"
    assert len(found) == 1, f"{op_type} of {target} began {len(found)} times"
    return found[0]


def waited_on(gcp: ComputeStandin, name: str, *, since: float = 0.0) -> None:
    """Until a bot process watches GCP operation ``name`` (waits on it, reads it or lists it) after ``since``
    (time.monotonic(): a restart's, so that only the new process counts)."""
    assert gcp.wait_for(lambda: gcp.looked_at_since(name, since), timeout=30), f"nobody watched {name}"


def restart(bot: BotProcess) -> float:
    """Kill the bot and start it again; when it was killed (nothing it did counts after that)."""
    bot.kill()
    killed = time.monotonic()
    bot.start()
    return killed


def test_sigkill_during_every_step_of_park_and_restore(
    bot: BotProcess, gcp: ComputeStandin, slack: SlackStandin, tmp_path: Path
) -> None:
    gcp.operation_seconds = 0.01  # every step is waited for
    store = Store.from_url(bot.env["DATABASE_URL"])
    bot.start()
    driver = SlackDriver(f"http://127.0.0.1:{bot.port}/slack/events", SIGNING_SECRET, slack)  # type: ignore[attr-defined]
    try:
        driver.command("create vm-k")
        assert slack.wait_for(lambda: _vm_state(store) is VmState.RUNNING, timeout=30), bot.log()

        gcp.hold_operations()
        driver.click("park_confirm", blocks=driver.command("park vm-k").blocks)
        # (1) killed while the stop runs
        stop = held_op(gcp, "stop", "/instances/vm-k")
        waited_on(gcp, stop)
        killed = restart(bot)
        waited_on(gcp, stop, since=killed)  # the new process re-attached to the same stop, by name
        gcp.release_operations(stop)
        # (2) killed while the image is pending
        image = held_op(gcp, "insert", "/global/images/")
        waited_on(gcp, image)
        assert gcp.images(PROJECT)[0]["status"] == "PENDING"
        killed = restart(bot)
        waited_on(gcp, image, since=killed)
        gcp.release_operations(image)
        # (3) killed while the delete runs
        delete = held_op(gcp, "delete", "/instances/vm-k")
        waited_on(gcp, delete)
        killed = restart(bot)
        waited_on(gcp, delete, since=killed)
        gcp.release_operations(delete)
        park = _only(store, Verb.PARK)
        assert slack.wait_for(lambda: _finished(store, park), timeout=30), bot.log()
        assert slack.wait_for(lambda: any("is parked:" in m.text for m in _thread(slack, store, park)), timeout=10)

        # (4) a restore, killed while the insert runs
        driver.command("restore vm-k")
        insert = held_op(gcp, "insert", "/instances/vm-k")
        waited_on(gcp, insert)
        killed = restart(bot)
        waited_on(gcp, insert, since=killed)
        gcp.release_operations()
        restore = _only(store, Verb.RESTORE)
        assert slack.wait_for(lambda: _finished(store, restore), timeout=30), bot.log()
        assert slack.wait_for(lambda: any("is restored" in m.text for m in _thread(slack, store, restore)), timeout=10)
    finally:
        driver.close()

    # Exactly once, in GCP: one stop, one image, one delete, and the create and restore inserts.
    assert len(gcp_operations(gcp, "stop", "/instances/vm-k")) == 1
    assert len(gcp_operations(gcp, "insert", "/global/images/" + _image_name(store))) == 1
    assert len(gcp_operations(gcp, "delete", "/instances/vm-k")) == 1
    assert len(gcp_operations(gcp, "insert", "/instances/vm-k")) == 2
    assert [image["status"] for image in gcp.images(PROJECT)] == ["READY"]
    # Exactly once, in the store and in Slack.
    assert [(op.verb, op.state) for op in reversed(store.operations_for("vm-k"))] == [
        (Verb.CREATE, OperationState.SUCCEEDED),
        (Verb.PARK, OperationState.SUCCEEDED),
        (Verb.RESTORE, OperationState.SUCCEEDED),
    ]
    park_thread = [m.text for m in _thread(slack, store, park)]
    assert park_thread.count(":arrows_counterclockwise: Resumed after restart: carrying on from stopping the VM.") == 1
    assert park_thread.count(":arrows_counterclockwise: Resumed after restart: carrying on from imaging its boot disk.") == 1
    assert park_thread.count(":arrows_counterclockwise: Resumed after restart: carrying on from deleting the VM.") == 1
    assert sum("is parked:" in text for text in park_thread) == 1
    restore_thread = [m.text for m in _thread(slack, store, restore)]
    assert sum("Resumed after restart" in text for text in restore_thread) == 1
    assert sum("is restored" in text for text in restore_thread) == 1
    ip = gcp.instance(PROJECT, ZONE, "vm-k")["networkInterfaces"][0]["accessConfigs"][0]["natIP"]
    assert ip in restore_thread[-1]
    root = slack.message(CHANNEL, store.operation(restore.id).thread_ts)
    assert root is not None and root.text == "Restore vm-k: done" and "RUNNING" in str(root.blocks)
    assert store.vm("vm-k").state is VmState.RUNNING
    assert_nothing_orphaned(gcp, store)
    store.engine.dispose()


def test_sigkill_between_the_two_images_and_after_the_first_disk_delete(
    bot: BotProcess, gcp: ComputeStandin, slack: SlackStandin
) -> None:
    """An adopted VM with a data disk: the park is killed while its second image is pending (the first is READY),
    and again once the VM (and its boot disk) is deleted, while its data disk's delete runs. Nothing is lost."""
    gcp.operation_seconds = 0.01
    console_vm(gcp, "legacy-app")
    store = Store.from_url(bot.env["DATABASE_URL"])
    bot.start()
    driver = SlackDriver(f"http://127.0.0.1:{bot.port}/slack/events", SIGNING_SECRET, slack)  # type: ignore[attr-defined]
    try:
        driver.command("adopt legacy-app")
        assert slack.wait_for(lambda: _state_of(store, "legacy-app") is VmState.RUNNING, timeout=30), bot.log()
        original = comparable(gcp, gcp.instance(PROJECT, ZONE, "legacy-app"))

        gcp.hold_operations()
        driver.click("park_confirm", blocks=driver.command("park legacy-app").blocks)
        gcp.release_operations(held_op(gcp, "stop", "/instances/legacy-app"))
        gcp.release_operations(held_op(gcp, "insert", "/global/images/legacy-app-2"))
        # (1) killed between the two images: the boot disk's is READY, the data disk's pending
        data_image = held_op(gcp, "insert", "/global/images/legacy-app-data-")
        waited_on(gcp, data_image)
        killed = restart(bot)
        waited_on(gcp, data_image, since=killed)
        gcp.release_operations(data_image)
        gcp.release_operations(held_op(gcp, "delete", "/instances/legacy-app"))
        # (2) killed after the first disk delete (the VM's, with its boot disk), while the data disk's runs
        disk_delete = held_op(gcp, "delete", "/disks/legacy-app-data")
        waited_on(gcp, disk_delete)
        assert gcp.instances(PROJECT) == [] and [d["name"] for d in gcp.disks(PROJECT)] == ["legacy-app-data"]
        killed = restart(bot)
        waited_on(gcp, disk_delete, since=killed)
        gcp.release_operations()
        park = next(op for op in store.operations_for("legacy-app") if op.verb is Verb.PARK)
        assert slack.wait_for(lambda: _finished(store, park), timeout=30), bot.log()
        assert slack.wait_for(lambda: any("is parked:" in m.text for m in _thread(slack, store, park)), timeout=10)

        driver.command("restore legacy-app")
        restore = next(op for op in store.operations_for("legacy-app") if op.verb is Verb.RESTORE)
        assert slack.wait_for(lambda: _finished(store, restore), timeout=30), bot.log()
    finally:
        driver.close()

    # Each image made once, the VM and each disk deleted once; every image and disk delete in the store.
    assert len(gcp_operations(gcp, "insert", "/global/images/" + store.image_of_operation(park.id).name)) == 1
    images = [image for image in store.images("legacy-app") if image.device_name == "data"]
    assert len(images) == 1 and len(gcp_operations(gcp, "insert", "/global/images/" + images[0].name)) == 1
    assert len(gcp_operations(gcp, "delete", "/instances/legacy-app")) == 1
    assert len(gcp_operations(gcp, "delete", "/disks/legacy-app-data")) == 1
    assert all(image.disk_deleted_at is not None for image in store.images("legacy-app"))
    park_thread = [m.text for m in _thread(slack, store, park)]
    assert park_thread.count(":arrows_counterclockwise: Resumed after restart: carrying on from imaging its disk `data`.") == 1
    assert park_thread.count(":arrows_counterclockwise: Resumed after restart: carrying on from deleting its disk `data`.") == 1
    assert sum("is parked:" in text for text in park_thread) == 1
    # Nothing lost: the restored VM is the parked one, field by field, its data disk back from its image.
    assert comparable(gcp, gcp.instance(PROJECT, ZONE, "legacy-app")) == original
    assert_nothing_orphaned(gcp, store)
    store.engine.dispose()


def _state_of(store: Store, name: str) -> VmState | None:
    vm = store.vm(name)
    return vm.state if vm else None


def _vm_state(store: Store) -> VmState | None:
    vm = store.vm("vm-k")
    return vm.state if vm else None


def _image_name(store: Store) -> str:
    park = _only(store, Verb.PARK)
    image = store.image_of_operation(park.id)
    assert image is not None
    return image.name


def _only(store: Store, verb: Verb):  # type: ignore[no-untyped-def]
    ops = [op for op in store.operations_for("vm-k", limit=10) if op.verb is verb]
    assert len(ops) == 1, f"{len(ops)} {verb.value} operations"
    return ops[0]


def _finished(store: Store, op) -> bool:  # type: ignore[no-untyped-def]
    return store.operation(op.id).state is OperationState.SUCCEEDED


def _thread(slack: SlackStandin, store: Store, op):  # type: ignore[no-untyped-def]
    ts = store.operation(op.id).thread_ts
    return slack.thread(CHANNEL, ts)[1:] if ts else []
