"""``python -m bench``: how fast vmbot answers, how little it adds to GCP's own time, how it scales.

Prints one table. Everything runs locally: the Slack and Compute Engine
stand-ins live in this process, the bot is a real ``python -m bot`` subprocess
serving HTTP, and every request reaches it signed as Slack signs it. Compute
operations take a fixed time (``--op-seconds``), so the bot's own overhead is
what is left.

    python -m bench            # the full run (about a minute and a half on 2 cores)
    python -m bench --quick    # a small run, for a quick look
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import scale
from bench.burst import post_all
from standins.slack_driver import Prepared
from bench.harness import REPO_ROOT, Bench, World, concurrently, gcp_seconds, wait_finished

PARK_STEPS = 3  # stop, image, delete: the GCP operations of one park
SLOWER_GCP = 3  # row 8d: GCP operations this many times as long (at 1 s, one park ~9 s, as in issue 19's measurement)


@dataclass
class Row:
    number: str
    measure: str
    result: str
    target: str
    passed: bool | None  # None: nothing to judge (information only)

    @property
    def verdict(self) -> str:
        return {True: "pass", False: "FAIL", None: "-"}[self.passed]


@dataclass(frozen=True)
class Plan:
    acks: int
    parks: int
    channel_ops: int
    op_seconds: float
    workers: int
    sweep_images: int
    samples: int  # single parks timed one after another for row 2
    schedule_vms: int = 100  # VMs with a park at the same minute, for row 7
    team: int = 100  # parks at once for rows 8 (in as many channels, then in one)
    list_vms: int = 1_000  # VMs for row 9's `/vm list`
    reconcile_resources: int = 5_000  # labelled instances and images for row 10


FULL = Plan(acks=50, parks=20, channel_ops=20, op_seconds=1.0, workers=32, sweep_images=10_000, samples=3)
QUICK = Plan(
    acks=10, parks=5, channel_ops=5, op_seconds=1.0, workers=16, sweep_images=1_000, samples=1, schedule_vms=20,
    team=10, list_vms=120, reconcile_resources=500,
)


# ---- measurements ------------------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (p99 of 50 samples is the largest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


WARM_UP = 5  # creates answered one at a time before row 1's burst


def ack_latency(world: World, plan: Plan) -> tuple[Row, list[str]]:
    """Row 1: N users type `/vm create` at the same moment (each in their own channel).

    A few creates go first, one at a time, and finish: a bot that has served
    nobody yet compiles each SQL statement and warms each code path on its
    first requests, which says little about how it answers a team at work.
    """
    names = [f"bench-{i:02d}" for i in range(plan.acks)]
    with world.driver() as driver:
        warm = [f"warm-{i}" for i in range(WARM_UP)]
        for name in warm:
            driver.command(f"create {name}", channel=channel_of(name), user=owner_of(name))
        wait_finished(world.slack, {n: (channel_of(n), f"Creating {n}") for n in warm}, 60, "the warm-up creates")
        # Signed beforehand and sent from one thread with plain sockets (bench.burst): the time
        # measured is the bot's, not this process's.
        prepared = [driver.prepare_command(f"create {n}", channel=channel_of(n), user=owner_of(n)) for n in names]
    replies = post_all(world.bot.events_url, prepared)
    bad = [r for r in replies if r.status != 200 or "Creating" not in r.text]
    if bad or len(replies) != len(names):
        raise RuntimeError(f"{len(bad)} create commands were not acknowledged: {bad[0].status} {bad[0].body[:200]}"
                           if bad else f"only {len(replies)} of {len(names)} create commands were answered")
    wait_finished(world.slack, {n: (channel_of(n), f"Creating {n}") for n in names}, 120, "the creates")
    ms = [r.elapsed * 1000 for r in replies]
    p50, p99, worst = percentile(ms, 50), percentile(ms, 99), max(ms)
    row = Row(
        "1",
        f"Ack latency, {plan.acks} concurrent signed `/vm create` (after {WARM_UP} one at a time)",
        f"p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {worst:.0f} ms",
        "p99 < 100 ms",
        p99 < 100,
    )
    return row, names


def ack_floor(world: World, plan: Plan) -> list[Row]:
    """Rows 1a and 1b, for scale (no target): the same burst of requests that start no operation.

    1a: ``GET /healthz``, only HTTP and a thread (no Slack signature, no database).
    1b: ``/vm help``, a signed command that writes its replay-guard and audit rows but no operation.
    """
    rows = []
    healthz = [Prepared(b"", {}, None) for _ in range(plan.acks)]
    with world.driver() as driver:
        helps = [driver.prepare_command("help", channel=f"CHELP{i}", user=f"UHELP{i}") for i in range(plan.acks)]
    for number, what, url, requests in (
        ("1a", f"For scale: {plan.acks} concurrent `GET /healthz` (HTTP only)", world.bot.base_url + "/healthz", healthz),
        ("1b", f"For scale: {plan.acks} concurrent signed `/vm help` (no operation)", world.bot.events_url, helps),
    ):
        answers = post_all(url, requests, method="GET" if number == "1a" else "POST")
        if any(a.status != 200 for a in answers):
            raise RuntimeError(f"row {number}: {[a.status for a in answers if a.status != 200][:3]}")
        ms = [a.elapsed * 1000 for a in answers]
        rows.append(Row(number, what, f"p50 {percentile(ms, 50):.0f} ms, p99 {percentile(ms, 99):.0f} ms", "-", None))
    return rows


def channel_of(name: str, prefix: str = "C") -> str:
    """Each VM's own channel (ids as Slack makes them: C + upper-case letters and digits)."""
    return prefix + name.upper().replace("-", "")


def owner_of(name: str) -> str:
    """Each VM's own user, who creates it and so may park it (bot.core.permissions)."""
    return "U" + name.upper().replace("-", "")


def park_channel_of(name: str) -> str:
    """Parks run in a channel of their own, whose Slack budget (~1 message/s) the create has not just spent:
    with real GCP times a create ends minutes before anyone parks, and the budget is full again."""
    return channel_of(name, "CP")


def park(world: World, names: Sequence[str]) -> tuple[float, dict[str, float]]:
    """Ask to park each VM, then press every confirm button at the same moment.

    Returns when all threads have their result: (the moment the buttons were
    pressed, each park's end as the wall-clock time of its result reply).
    """
    drivers = [world.driver() for _ in names]
    questions = [d.command(f"park {n}", channel=park_channel_of(n), user=owner_of(n)) for d, n in zip(drivers, names)]
    for question, name in zip(questions, names):
        if "park_confirm" not in str(question.blocks):
            raise RuntimeError(f"`/vm park {name}` did not ask for confirmation: {question.text}")
    pressed = time.time()
    clicks = concurrently(
        len(names), lambda i: drivers[i].click(
            "park_confirm", blocks=questions[i].blocks, channel=park_channel_of(names[i]), user=owner_of(names[i])
        )
    )
    for driver in drivers:
        driver.close()
    if any(c.status != 200 for c in clicks):
        raise RuntimeError("a park_confirm click was refused")
    ended = wait_finished(world.slack, {n: (park_channel_of(n), f"Parking {n}") for n in names}, 120, "the parks")
    failed = [n for n, f in ended.items() if not f.ok]
    if failed:
        raise RuntimeError(f"parks failed: {[ended[n].result for n in failed[:3]]}")
    return pressed, {n: f.at for n, f in ended.items()}


def park_overhead(world: World, names: Sequence[str]) -> tuple[Row, float]:
    """Row 2: one park at a time; its time from the button press to its result, over GCP's own time."""
    ratios, times = [], []
    for name in names:
        pressed, ended = park(world, [name])
        total = ended[name] - pressed
        times.append(total)
        ratios.append(total / gcp_seconds(world.gcp, name, pressed - 0.01))
    ratio, one = statistics.median(ratios), statistics.median(times)
    row = Row(
        "2",
        f"End-to-end overhead: one park ({PARK_STEPS} GCP ops of {world.gcp.operation_seconds:g} s) / sum of its GCP op times",
        f"{ratio:.3f} (park {one:.2f} s, median of {len(names)})",
        "< 1.05",
        ratio < 1.05,
    )
    return row, one


def parallel_parks(world: World, names: Sequence[str], one_park: float) -> Row:
    """Row 3: N parks of different VMs at once (each in its own channel)."""
    pressed, ended = park(world, names)
    total = max(ended.values()) - pressed
    ratio = total / one_park
    return Row(
        "3",
        f"Parallel scale: {len(names)} parks at once / one park",
        f"{ratio:.2f} ({total:.2f} s / {one_park:.2f} s)",
        "< 1.5",
        ratio < 1.5,
    )


def one_channel(world: World, count: int) -> list[Row]:
    """Row 4: N creates in one channel, where Slack allows about one message per second."""
    channel = "CBUSY"
    names = [f"busy-{i:02d}" for i in range(count)]
    before = len(world.slack.calls)
    with world.driver() as driver:
        acks = [driver.command(f"create {n}", channel=channel) for n in names]
    if any("Creating" not in a.text for a in acks):
        raise RuntimeError(f"a create in {channel} was not acknowledged")
    expected = {n: (channel, f"Creating {n}") for n in names}
    ended = wait_finished(world.slack, expected, 30 + 3 * count, "the busy channel", strict=False)
    calls = [c for c in world.slack.calls[before:] if c.params.get("channel") == channel]
    per_op = {
        n: sum(1 for c in calls if c.ok and ended[n].root_ts in (c.params.get("ts"), c.params.get("thread_ts"))) + 1
        for n in ended
    }
    limited = sum(1 for c in calls if c.status == 429)
    complete = sum(1 for f in ended.values() if f.ok and "is created" in f.result)
    worst = max(per_op.values(), default=0)
    return [
        Row(
            "4a",
            f"Slack Web API calls per create, {count} creates in one channel",
            f"mean {len(calls) / count:.2f}, max {worst} ({len(calls)} calls)",
            "<= 4 per create",
            worst <= 4,
        ),
        Row(
            "4b",
            f"429s received; threads ending with their result ({count} in one channel)",
            f"{limited} x 429; {complete}/{count} complete",
            "none lost",
            complete == count,
        ),
    ]


def sweeper(images: int) -> Row:
    """Row 6: the image sweeper (issue 4), measured by its own bench/sweep.py in a fresh process,
    so that its peak memory is the sweep's and not this process's stand-ins'."""
    measure = f"Sweeper: {images:,} dirty images deleted (bench/sweep.py)"
    if importlib.util.find_spec("bench.sweep") is None:
        return Row("6", measure, "n/a (sweeper not merged)", "-", None)
    probe = f"import json; from bench.sweep import measure; print(json.dumps(measure(images={images})))"
    run = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True)
    if run.returncode != 0:
        return Row("6", measure, "failed: " + (run.stderr.strip().splitlines() or ["?"])[-1][:80], "-", False)
    result = json.loads(run.stdout.strip().splitlines()[-1])
    rate, peak, growth = result.get("images_per_second"), result.get("peak_memory_mb"), result.get("memory_growth_mb")
    if rate is None or peak is None:
        return Row("6", measure, str(result), "-", None)
    grew = f", +{growth:.0f} MB during the sweep" if growth is not None else ""
    return Row("6", measure, f"{rate:,.0f} images/s, peak {peak:.0f} MB{grew}", "- (none set)", None)


def scheduled_parks(plan: Plan) -> Row:
    """Row 7: a scheduled park of many VMs at one minute (bench/schedule.py, in a fresh process):
    one tick must claim and start every run well within the 60 s the issue allows."""
    measure = f"Scheduled park of {plan.schedule_vms} VMs at one minute (bench/schedule.py)"
    probe = (f"import json; from bench.schedule import measure; print(json.dumps(measure({plan.schedule_vms}, "
             f"operation_seconds={plan.op_seconds}, workers={plan.workers})))")  # fmt: skip
    run = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True)
    if run.returncode != 0:
        return Row("7", measure, "failed: " + (run.stderr.strip().splitlines() or ["?"])[-1][:80], "-", False)
    result = json.loads(run.stdout.strip().splitlines()[-1])
    started, parked, tick = int(result["started"]), int(result["parked"]), result["tick_seconds"]
    text = f"tick {tick:.2f} s ({started} started), all {parked} parked after {result['all_parked_seconds']:.1f} s"
    ok = started == parked == plan.schedule_vms and tick < 30
    return Row("7", measure, text, "every run started by the tick, tick < 30 s", ok)


def team_rows(plan: Plan) -> list[Row]:
    """Rows 8-11 (issue 19), on a bot of their own with default settings (no VMBOT_WORKERS)."""
    rows = []
    with Bench(operation_seconds=plan.op_seconds, workers=None, channel_rate=1.0) as world:
        try:
            cold = world.bot.ready_seconds or float("nan")
            parks = scale.team_parks(world, plan.team)
            listing = scale.list_thousand(world, plan.list_vms)
        except Exception:
            print(f"--- the bot's log ({world.bot.log_path}) ---\n{world.bot.log_tail()}", file=sys.stderr)
            raise
    n, one = plan.team, parks["one"]
    spread = parks["spread_last"] / one
    rows.append(Row("8a", f"{n} parks of {n} VMs in {n} channels at once (defaults): last 'parked' / one park",
                    f"{spread:.2f} ({parks['spread_last']:.2f} s / {one:.2f} s); the bot's CPU "
                    f"{parks['cpu_per_park_ms']:.0f} ms a park", "< 1.5",
                    spread < 1.5 and not parks["failed"]))  # fmt: skip
    room = parks["room_gcp_last"] / one
    rows.append(Row("8b", f"The same {n} in one channel: GCP's last delete / one park; the last thread's result",
                    f"{room:.2f} ({parks['room_gcp_last']:.2f} s); last result after {parks['room_last_result']:.0f} s "
                    f"({parks['room_done']:.0f}/{n} threads)", "< 1.5 (results: Slack's 1 msg/s)", room < 1.5))  # fmt: skip
    rows.append(Row("8c", f"Peak RSS and threads of the bot during {n} parks in {n} channels",
                    f"{parks['peak_rss_mb']:.0f} MB, {parks['peak_threads']:.0f} threads", "< 150 MB, < 60 threads",
                    parks["peak_rss_mb"] < 150 and parks["peak_threads"] < 60))  # fmt: skip
    slower = scale.slower_gcp_parks(n, plan.op_seconds * SLOWER_GCP)
    ratio = slower["last"] / slower["one"]
    rows.append(Row("8d", f"8a with GCP operations {SLOWER_GCP} times as long ({plan.op_seconds * SLOWER_GCP:g} s each)",
                    f"{ratio:.2f} ({slower['last']:.2f} s / {slower['one']:.2f} s)", "< 1.5",
                    ratio < 1.5 and not slower["failed"]))  # fmt: skip
    rows.append(Row("9", f"`/vm list` with {plan.list_vms:,} VMs: first page's answer; pages to see them all",
                    f"{listing['first_page_ms']:.0f} ms; {listing['pages']:.0f} messages "
                    f"(next page {listing['per_page_ms']:.0f} ms each)", "every page within Slack's limits", None))  # fmt: skip
    result = scale.reconcile_row_result(plan.reconcile_resources)
    rows.append(Row("10", f"Reconcile of {plan.reconcile_resources:,} labelled resources (half VMs, half images)",
                    f"{result['seconds']:.1f} s, peak {result['peak_mb']:.0f} MB (Python allocations)", "-", None))
    module, seconds = scale.heaviest_import()
    rows.append(Row("11", "Cold start: process start to first /healthz; heaviest dependency's import",
                    f"{cold:.2f} s; {module} {seconds:.2f} s", "-", None))
    return rows


# ---- the run -----------------------------------------------------------------------------------


def run(plan: Plan, keep_log: Path | None = None) -> list[Row]:
    rows: list[Row] = []
    bench = Bench(operation_seconds=plan.op_seconds, workers=plan.workers, channel_rate=1.0, keep_log=keep_log)
    with bench as world:
        try:
            world.bot.reset_peak_rss()  # the peak from here to the end of row 3
            row, created = ack_latency(world, plan)
            rows.append(row)
            rows.extend(ack_floor(world, plan))
            single = created[: plan.samples]
            row, one = park_overhead(world, single)
            rows.append(row)
            rows.append(parallel_parks(world, created[plan.samples : plan.samples + plan.parks], one))
            peak = world.bot.peak_rss_mb()
            rows.extend(one_channel(world, plan.channel_ops))
        except Exception:
            print(f"--- the bot's log ({world.bot.log_path}) ---\n{world.bot.log_tail()}", file=sys.stderr)
            raise
        rows.append(Row("5", "Peak RSS of the bot process during 1-3 (VmHWM)", f"{peak:.0f} MB", "< 150 MB", peak < 150))
    rows.append(sweeper(plan.sweep_images))
    rows.append(scheduled_parks(plan))
    rows.extend(team_rows(plan))
    return sorted(rows, key=lambda r: (int("".join(c for c in r.number if c.isdigit())), r.number))


def table(rows: Sequence[Row], plan: Plan) -> str:
    headers = ("#", "Measure", "Result", "Target", "")
    cells = [headers] + [(r.number, r.measure, r.result, r.target, r.verdict) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [" | ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "-|-".join("-" * w for w in widths))
    setup = (
        f"vmbot benchmark: bot as `python -m bot` (SQLite, VMBOT_WORKERS={plan.workers}), local Slack and Compute "
        f"stand-ins, Compute operations {plan.op_seconds:g} s, Slack channel limit 1 msg/s, {os.cpu_count()} CPUs"
    )
    return "\n".join([setup, "", *lines])


def parse_args(argv: Sequence[str] | None) -> tuple[Plan, Path | None]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small run: fewer requests, shorter operations")
    parser.add_argument("--acks", type=int, help="concurrent `/vm create` requests for row 1 (also the VMs parked later)")
    parser.add_argument("--parks", type=int, help="parks at once for row 3")
    parser.add_argument("--channel-ops", type=int, help="creates in one channel for row 4")
    parser.add_argument("--op-seconds", type=float, help="how long every stand-in Compute operation takes")
    parser.add_argument("--workers", type=int, help="VMBOT_WORKERS for the bot")
    parser.add_argument("--sweep-images", type=int, help="dirty images for the sweeper row")
    parser.add_argument("--samples", type=int, help="single parks timed one after another for row 2")
    parser.add_argument("--schedule-vms", type=int, help="VMs parked by a schedule at the same minute for row 7")
    parser.add_argument("--team", type=int, help="parks at once for rows 8 (issue 19)")
    parser.add_argument("--list-vms", type=int, help="VMs for row 9's `/vm list`")
    parser.add_argument("--reconcile-resources", type=int, help="labelled GCP resources for row 10")
    parser.add_argument("--log", type=Path, help="keep the bot's log in this file")
    args = parser.parse_args(argv)
    chosen = {key: value for key, value in vars(args).items() if key not in ("quick", "log") and value is not None}
    plan = Plan(**{**(QUICK if args.quick else FULL).__dict__, **chosen})
    if plan.acks < plan.samples + plan.parks:
        parser.error(f"--acks must be at least {plan.samples + plan.parks}: those VMs are parked in rows 2 and 3")
    return plan, args.log


def main(argv: Sequence[str] | None = None) -> int:
    plan, keep_log = parse_args(argv)
    rows = run(plan, keep_log)
    print(table(rows, plan))
    return 0 if all(r.passed is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
