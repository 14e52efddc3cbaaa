"""Issue 19's rows: a whole team at once (``python -m bench`` rows 8-12).

Rows 8-10 run against a ``python -m bot`` subprocess with default settings (VMBOT_WORKERS,
VMBOT_MAX_IN_FLIGHT unset), its VMs seeded straight into its SQLite file and the Compute
stand-in (set-up, not measured). Row 11 (reconcile) runs in a fresh process of its own so its
peak memory is the pass's; row 12 times a cold start and the heaviest dependency's import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.harness import PROJECT, REPO_ROOT, World, concurrently, wait_finished
from storage.models import Vm, VmState
from storage.store import Store

ZONE = "us-central1-a"  # the bot's default zone (bot.settings)
HEAVY_IMPORTS = ("slack_bolt", "google.cloud.compute_v1", "sqlalchemy", "flask", "pydantic", "apscheduler.schedulers.background")


def seed(world: World, names: Sequence[str], *, in_gcp: bool = True) -> None:
    """VMs the bot manages, running in GCP: written into the bot's own database file."""
    store = Store.from_url(f"sqlite:///{world.bot.log_path.parent / 'vmbot.db'}")
    try:
        with store.sessions.begin() as s:
            for name in names:
                if in_gcp:
                    world.gcp.seed_instance(PROJECT, ZONE, name, labels={"managed-by": "vmbot", "vmbot-vm": name})
                s.add(Vm(name=name, zone=ZONE, machine_type="e2-small", owner=owner_of(name), state=VmState.RUNNING))
    finally:
        store.engine.dispose()


def owner_of(name: str) -> str:
    return "U" + name.upper().replace("-", "")


class Sampler:
    """The bot process's thread count, sampled every 20 ms while it runs (peak), and its VmHWM."""

    def __init__(self, pid: int) -> None:
        self.status = Path(f"/proc/{pid}/status")
        self.peak_threads = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        Path(str(self.status).replace("status", "clear_refs")).write_text("5")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _field(self, name: str) -> int:
        for line in self.status.read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
        return 0

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak_threads = max(self.peak_threads, self._field("Threads"))

    @property
    def peak_rss_mb(self) -> float:
        return self._field("VmHWM") / 1024


def cpu_seconds(pid: int) -> float:
    """The CPU time (user and system) process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def press_parks(world: World, names: Sequence[str], channel_of: Callable[[str], str]) -> float:
    """Ask to park each VM (in ``channel_of(name)``), then press every confirm at one moment; the press time."""
    drivers = [world.driver() for _ in names]
    questions = [d.command(f"park {n}", channel=channel_of(n), user=owner_of(n)) for d, n in zip(drivers, names)]
    if any("park_confirm" not in str(q.blocks) for q in questions):
        raise RuntimeError(f"a park did not ask for confirmation: {[q.text for q in questions][:2]}")
    pressed = time.time()
    clicks = concurrently(len(names), lambda i: drivers[i].click(
        "park_confirm", blocks=questions[i].blocks, channel=channel_of(names[i]), user=owner_of(names[i])))
    for driver in drivers:
        driver.close()
    if any(c.status != 200 for c in clicks):
        raise RuntimeError("a park_confirm click was refused")
    return pressed


def last_gcp_delete(world: World, names: Sequence[str], since: float, timeout: float = 300) -> float:
    """The wall-clock end of the last instance delete GCP ran for ``names`` since ``since`` (polls until
    every one has ended; the poll does not affect the times, which are GCP's own)."""
    from datetime import datetime

    wanted, deadline = set(names), time.monotonic() + timeout
    while True:
        ends = {}
        for op in world.gcp.operations():
            target = op["targetLink"].rsplit("/", 1)[-1]
            if op.get("operationType") == "delete" and target in wanted and "endTime" in op:
                end = datetime.fromisoformat(op["endTime"]).timestamp()
                if end >= since:
                    ends[target] = end
        if len(ends) == len(wanted):
            return max(ends.values())
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(ends)} of {len(wanted)} instance deletes ended in GCP")
        time.sleep(0.1)


def one_park(world: World) -> float:
    """The physical limit: one park alone, from its press to its "parked" message (seconds)."""
    seed(world, ["solo-0"])
    pressed = press_parks(world, ["solo-0"], lambda n: "CSOLO")
    return wait_finished(world.slack, {"solo-0": ("CSOLO", "Parking solo-0")}, 120, "one park")["solo-0"].at - pressed


def parks_in_channels(world: World, names: Sequence[str]) -> dict[str, float]:
    """A park of each of ``names`` in a channel of its own, all pressed at once: the last "parked" message after
    the press, the failures, the bot's peak threads and RSS, and its CPU per park (the question's too)."""
    seed(world, names)
    channel_of = lambda name: "C" + name.upper().replace("-", "")  # noqa: E731
    with Sampler(world.bot.process.pid) as sampler:
        cpu_before = cpu_seconds(world.bot.process.pid)
        pressed = press_parks(world, names, channel_of)
        ended = wait_finished(world.slack, {n: (channel_of(n), f"Parking {n}") for n in names}, 300, "the team's parks")
        cpu_per_park = (cpu_seconds(world.bot.process.pid) - cpu_before) / len(names)
    return {"last": max(f.at for f in ended.values()) - pressed, "failed": float(sum(not f.ok for f in ended.values())),
            "peak_threads": float(sampler.peak_threads), "peak_rss_mb": sampler.peak_rss_mb,
            "cpu_per_park_ms": cpu_per_park * 1000}  # fmt: skip


def team_parks(world: World, count: int) -> dict[str, float]:
    """One park alone, then ``count`` parks in ``count`` channels at once, then ``count`` in one channel."""
    one = one_park(world)
    spread = parks_in_channels(world, [f"team-{i:03d}" for i in range(count)])
    shared = [f"room-{i:03d}" for i in range(count)]
    seed(world, shared)
    pressed_shared = press_parks(world, shared, lambda n: "CROOM")
    gcp_last = last_gcp_delete(world, shared, pressed_shared) - pressed_shared
    in_room = wait_finished(world.slack, {n: ("CROOM", f"Parking {n}") for n in shared}, 60 + 4 * count,
                            "the parks in one channel", strict=False)  # fmt: skip
    room_last = max((f.at for f in in_room.values()), default=float("nan")) - pressed_shared
    return {"one": one, "spread_last": spread["last"], "failed": spread["failed"], "peak_threads": spread["peak_threads"],
            "peak_rss_mb": spread["peak_rss_mb"], "cpu_per_park_ms": spread["cpu_per_park_ms"], "room_gcp_last": gcp_last,
            "room_last_result": room_last, "room_done": float(sum(f.ok for f in in_room.values())), "count": float(count)}  # fmt: skip


def slower_gcp_parks(count: int, operation_seconds: float) -> dict[str, float]:
    """Row 8a again with GCP operations of ``operation_seconds`` (a bot of its own): one park, then ``count`` at once."""
    from bench.harness import Bench

    with Bench(operation_seconds=operation_seconds, workers=None, channel_rate=1.0) as world:
        one = one_park(world)
        spread = parks_in_channels(world, [f"team-{i:03d}" for i in range(count)])
    return {"one": one, **spread}


def list_thousand(world: World, count: int) -> dict[str, float]:
    """``/vm list`` with ``count`` VMs: the first page's answer time, and the pages (messages) to see them all."""
    from bot.slack.blocks import LIST_NEXT

    seed(world, [f"list-{i:04d}" for i in range(count)], in_gcp=False)
    with world.driver() as driver:
        driver.command("list", channel="CLIST")  # warm: the first command compiles its SQL
        began = time.perf_counter()
        reply = driver.command("list", channel="CLIST")
        first = time.perf_counter() - began
        blocks, pages, began = reply.blocks or [], 1, time.perf_counter()
        while any(b.get("type") == "actions" and b["elements"][0]["action_id"] == LIST_NEXT for b in blocks):
            before = len(world.slack.responses)
            driver.click(LIST_NEXT, blocks=blocks, channel="CLIST")
            if not world.slack.wait_for(lambda: len(world.slack.responses) > before, timeout=30):
                raise RuntimeError("a next-page press got no answer")
            blocks, pages = world.slack.responses[-1].get("blocks") or [], pages + 1
        rest = time.perf_counter() - began
    return {"first_page_ms": first * 1000, "pages": float(pages), "per_page_ms": rest * 1000 / max(1, pages - 1)}


def reconcile_probe(resources: int) -> dict[str, Any]:
    """Row 11, in this (fresh) process: ``resources`` labelled instances and images in GCP, as many VMs
    in the store; one reconcile pass, timed, with its peak memory (tracemalloc: Python's own allocations)."""
    import tempfile
    import tracemalloc

    from bot.gcp.compute import Compute
    from bot.jobs.reconcile import Reconciler
    from standins.compute import ComputeStandin

    with tempfile.TemporaryDirectory(prefix="vmbot-bench-") as tmp, ComputeStandin() as gcp:
        store = Store.from_url(f"sqlite:///{Path(tmp) / 'r.db'}")
        half = resources // 2
        with store.sessions.begin() as s:
            for i in range(half):
                name = f"rec-{i:05d}"
                gcp.seed_instance(PROJECT, ZONE, name, labels={"managed-by": "vmbot", "vmbot-vm": name})
                s.add(Vm(name=name, zone=ZONE, machine_type="e2-small", owner="UBENCH", state=VmState.RUNNING))
        for i in range(resources - half):
            gcp.seed_image(PROJECT, f"rec-img-{i:05d}", labels={"managed-by": "vmbot", "vmbot-vm": f"rec-{i:05d}"})
        compute = Compute(PROJECT, endpoint=gcp.url)
        tracemalloc.start()
        began = time.perf_counter()
        findings = Reconciler(store, compute).run()
        took = time.perf_counter() - began
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return {"seconds": took, "peak_mb": peak / 2**20, "findings": len(findings), "resources": resources}


def reconcile_row_result(resources: int) -> dict[str, Any]:
    probe = f"import json; from bench.scale import reconcile_probe; print(json.dumps(reconcile_probe({resources})))"
    run = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError((run.stderr.strip().splitlines() or ["?"])[-1][:200])
    return json.loads(run.stdout.strip().splitlines()[-1])


def heaviest_import() -> tuple[str, float]:
    """The slowest of the big dependencies to import, each in a fresh interpreter (seconds)."""
    times = {}
    for module in HEAVY_IMPORTS:
        code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
        run = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
        if run.returncode == 0:
            times[module] = float(run.stdout.strip())
    name = max(times, key=times.__getitem__)
    return name, times[name]
