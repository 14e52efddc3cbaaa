"""Shared checks for the durability tests: nothing orphaned, threads read back, operations settled."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from bot.app import VmBot, create_app
from bot.web.server import make_http_server
from bot.settings import Settings
from conftest import PROJECT, fast_compute
from standins.compute import ComputeStandin
from standins.slack_api import Message, SlackStandin
from standins.slack_driver import Reply
from storage.models import ImageState, Operation, VmState
from storage.store import Store

CHANNEL = "C100"
ZONE = "us-central1-a"


def assert_nothing_orphaned(gcp: ComputeStandin, store: Store) -> None:
    """Every VM and image in the stand-in is known to the store as existing, and the reverse;
    every disk belongs to an instance."""
    live_vms = {(vm["name"], vm["zone"].rsplit("/", 1)[-1], vm["status"]) for vm in gcp.instances(PROJECT)}
    recorded_vms = {
        (s.vm.name, s.vm.zone, "RUNNING" if s.vm.state is VmState.RUNNING else "TERMINATED")
        for s in store.list_vms()
        if s.vm.state in (VmState.RUNNING, VmState.STOPPED)
    }
    assert live_vms == recorded_vms, f"GCP has {live_vms}, the store says {recorded_vms}"
    live_images = {image["name"] for image in gcp.images(PROJECT)}
    recorded_images = {image.name for image, _ in store.all_images() if image.state in (ImageState.READY, ImageState.DIRTY)}
    assert live_images == recorded_images, f"GCP has images {live_images}, the store says {recorded_images}"
    instance_links = {vm["selfLink"] for vm in gcp.instances(PROJECT)}
    for disk in gcp.disks(PROJECT):
        assert set(disk.get("users", [])) & instance_links, f"disk {disk['name']} is orphaned"
    assert not store.unfinished_operations(), "an operation was left unfinished"


def thread_of(slack: SlackStandin, op: Operation) -> list[Message]:
    assert op.channel and op.thread_ts, f"operation #{op.id} has no thread"
    return slack.thread(op.channel, op.thread_ts)


def mutations(gcp: ComputeStandin, method: str, path_end: str) -> list[str]:
    """The stand-in's accepted (2xx) mutation requests of one kind, by their requestId."""
    return [
        r.query.get("requestId", "")
        for r in gcp.requests
        if r.method == method and r.path.endswith(path_end) and r.status == 200
    ]


def gcp_operations(gcp: ComputeStandin, op_type: str, target_end: str) -> list[dict]:
    """The GCP operations the stand-in really started (replays of a requestId are not new ones)."""
    return [op for op in gcp.operations() if op["operationType"] == op_type and op["targetLink"].endswith(target_end)]


@contextmanager
def serve(settings: Settings) -> Iterator[tuple[VmBot, str]]:
    """Another bot process in all but name: its own app, store (engine) and HTTP server."""
    bot = create_app(settings, compute=fast_compute(settings))
    server = make_http_server(bot, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield bot, f"http://127.0.0.1:{server.server_port}/slack/events"
    finally:
        server.shutdown()
        server.server_close()
        bot.runner.drain(timeout=30)
        bot.shutdown()
        bot.store.engine.dispose()


def response_text(slack: SlackStandin, reply: Reply) -> str:
    """What the bot last posted to a reply's response_url (waits for it: it comes after the ack)."""
    url_id = (reply.response_url or "").rsplit("/", 1)[-1]

    def posted() -> list[dict]:
        return [r for r in slack.responses if r.get("url_id") == url_id]

    assert slack.wait_for(lambda: bool(posted()), timeout=10), "the bot never answered through response_url"
    return str(posted()[-1].get("text", ""))


@contextmanager
def held(gcp: ComputeStandin) -> Iterator[None]:
    """GCP operations frozen for the block; released even when an assertion fails inside it,
    so the bot's workers (and the fixture teardown that waits for them) are never left hanging."""
    gcp.hold_operations()
    try:
        yield
    finally:
        gcp.release_operations()


def until(predicate: Callable[[], object], timeout: float, *, every: float = 0.05) -> bool:
    """Whether ``predicate`` became true within ``timeout`` seconds, asked every ``every`` seconds
    (for state no stand-in announces: the store, a subprocess, a held GCP operation)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True
