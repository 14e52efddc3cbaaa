"""Benchmark of the dirty-image sweeper: images deleted per second and peak memory.

    python -m bench.sweep [--images 10000] [--concurrency 8]

Against the local Compute stand-in and a SQLite file. By default the stand-in's
operations finish at once, so the figure is the bot's own cost (two REST calls
per image: a GET to check the label, the DELETE) rather than GCP's;
``--operation-seconds`` gives each delete a GCP-like duration to show what the
concurrency setting buys. The stand-in runs in a child process: it keeps every
image and operation it ever served, and that memory is not the sweeper's.

Memory is the benchmark process's resident set, sampled every 10 ms during the
sweep: ``peak_memory_mb`` is its peak, ``memory_growth_mb`` the peak minus the
size when the sweep began (tracemalloc would be exact but slows the sweep
threefold).

Layout: one VM per eleven images, parked, each with ten dirty images (dirty for
two days, past the default one-day grace) and a ready newest one.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import insert, select

from bot.gcp.compute import Compute
from bot.jobs.sweeper import Sweeper
from storage.models import Image, ImageState, Vm, VmState, utcnow
from storage.store import Store

PROJECT = "vmbot-bench"
DIRTY_PER_VM = 10


def image_names(images: int) -> list[tuple[str, list[str]]]:
    """(vm name, its image names oldest first): ``images`` dirty ones plus one ready one per VM."""
    vms = max(1, -(-images // DIRTY_PER_VM))
    layout = []
    for v in range(vms):
        dirty = min(DIRTY_PER_VM, images - v * DIRTY_PER_VM)
        vm = f"bench-vm-{v:05d}"
        layout.append((vm, [f"{vm}-image-{i:02d}" for i in range(dirty + 1)]))
    return layout


def serve_standin(images: int, operation_seconds: float) -> None:
    """Child process: a Compute stand-in seeded with the images; prints its URL, serves until stdin closes."""
    from standins.compute import ComputeStandin

    with ComputeStandin(operation_seconds=operation_seconds) as gcp:
        for vm, names in image_names(images):
            for name in names:
                gcp.seed_image(PROJECT, name, family=vm, labels={"managed-by": "vmbot", "vmbot-vm": vm})
        print(gcp.url, flush=True)
        sys.stdin.read()


def seed_store(store: Store, images: int) -> None:
    """The same images in the store, in bulk (set-up, not part of the measure)."""
    now = utcnow()
    dirty_since = now - timedelta(days=2)
    with store.sessions.begin() as s:
        for vm, names in image_names(images):
            vm_id = s.scalar(
                insert(Vm)
                .values(name=vm, zone="us-central1-a", machine_type="e2-small", owner="UBENCH", state=VmState.PARKED,
                        created_at=now, updated_at=now)
                .returning(Vm.id)
            )  # fmt: skip
            rows = [
                {
                    "vm_id": vm_id, "name": name, "family": vm, "disk_size_gb": 10,
                    "archive_size_bytes": 3_100_000_000, "created_at": now - timedelta(days=30 - i),
                    "state": ImageState.READY if i == len(names) - 1 else ImageState.DIRTY,
                    "dirty_since": None if i == len(names) - 1 else dirty_since,
                }  # fmt: skip
                for i, name in enumerate(names)
            ]
            s.execute(insert(Image), rows)


class RssSampler:
    """Peak resident set size of this process while a block runs, sampled from /proc every 10 ms."""

    def __init__(self) -> None:
        self.start_mb = self.peak_mb = rss_mb()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, rss_mb())

    def _sample(self) -> None:
        while not self._done.wait(0.01):
            self.peak_mb = max(self.peak_mb, rss_mb())


def rss_mb() -> float:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:  # not Linux: the high-water mark is the best there is
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(images: int = 10_000, *, concurrency: int = 8, operation_seconds: float = 0.0) -> dict[str, float]:
    """Sweep ``images`` dirty images; returns images_per_second, peak_memory_mb and the raw figures."""
    with tempfile.TemporaryDirectory(prefix="vmbot-bench-") as tmp:
        child = subprocess.Popen(
            [sys.executable, "-m", "bench.sweep", "--serve-standin", str(images), "--operation-seconds", str(operation_seconds)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            url = child.stdout.readline().strip()
            store = Store.from_url(f"sqlite:///{Path(tmp) / 'bench.db'}")
            seed_store(store, images)
            sweeper = Sweeper(store, Compute(PROJECT, endpoint=url), concurrency=concurrency)
            with RssSampler() as memory:
                began = time.perf_counter()
                report = sweeper.sweep(trigger="manual")
                took = time.perf_counter() - began
            with store.sessions() as s:
                left = len(s.scalars(select(Image.id).where(Image.state == ImageState.DIRTY)).all())
            store.engine.dispose()
        finally:
            if child.stdin:
                child.stdin.close()
            child.wait(timeout=30)
    if report.deleted.count != images or left or report.failed.count:
        raise RuntimeError(
            f"the sweep did not delete every image: {report.deleted.count} deleted, {left} left, {report.failed.count} failed"
        )
    return {
        "images": float(images),
        "concurrency": float(concurrency),
        "seconds": took,
        "images_per_second": images / took,
        "peak_memory_mb": memory.peak_mb,
        "memory_growth_mb": memory.peak_mb - memory.start_mb,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sweep", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000, help="dirty images to sweep (default 10000)")
    parser.add_argument("--concurrency", type=int, default=8, help="VMBOT_SWEEP_CONCURRENCY (default 8)")
    parser.add_argument("--operation-seconds", type=float, default=0.0, help="how long each stand-in delete takes (default 0)")
    parser.add_argument("--serve-standin", type=int, metavar="N", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_standin is not None:
        serve_standin(args.serve_standin, args.operation_seconds)
        return 0
    result = measure(args.images, concurrency=args.concurrency, operation_seconds=args.operation_seconds)
    print(f"{'dirty images':<28}{int(result['images']):>12,}")
    print(f"{'GCP concurrency':<28}{int(result['concurrency']):>12}")
    print(f"{'sweep time (s)':<28}{result['seconds']:>12.1f}")
    print(f"{'images deleted per second':<28}{result['images_per_second']:>12.0f}")
    print(f"{'peak RSS (MB)':<28}{result['peak_memory_mb']:>12.1f}")
    print(f"{'RSS growth in sweep (MB)':<28}{result['memory_growth_mb']:>12.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
