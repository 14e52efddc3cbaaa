"""A GCP operation that outlasts the bot's operation timeout: its outcome is unknown, not failed. The image
GCP is still making is neither marked failed nor deleted; the operation keeps its GCP operation's name, and
the resumer settles it from what GCP says once the operation ends."""

from __future__ import annotations

import threading
import time

from bot.app import create_app
from bot.gcp.compute import Compute
from bot.settings import Settings
from conftest import PROJECT, SIGNING_SECRET, replace
from bot.web.server import make_http_server
from durable_support import CHANNEL, until
from standins.compute import ComputeStandin
from standins.slack_api import SlackStandin
from standins.slack_driver import SlackDriver
from storage.models import ImageState, OperationState, Verb, VmState



def test_an_image_that_outlasts_the_timeout_is_kept_and_the_park_ends_when_gcp_does(
    settings: Settings, gcp: ComputeStandin, slack: SlackStandin
) -> None:
    settings = replace(settings, operation_lease=0.6)
    gcp.wait_timeout_seconds = 0.1  # GCP's operations.wait returns before the operation is done, as it does after ~2 min
    compute = Compute(PROJECT, endpoint=gcp.url, retry_initial=0.01, retry_deadline=10, operation_timeout=0.5)
    bot = create_app(settings, compute=compute)
    server = make_http_server(bot, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    driver = SlackDriver(f"http://127.0.0.1:{server.server_port}/slack/events", SIGNING_SECRET, slack)
    store = bot.store
    try:
        driver.command("create vm-a")
        assert bot.runner.drain(timeout=30)
        bot.resumer.start()
        gcp.hold_operations()
        driver.click("park_confirm", blocks=driver.command("park vm-a").blocks)
        assert until(lambda: bool(gcp.held_operations("stop")), 10), "the stop was not begun"
        gcp.release_operations(gcp.held_operations("stop")[0]["name"])
        assert until(lambda: bool(gcp.held_operations("insert")), 10), "the image was not begun"
        image_op = gcp.held_operations("insert")[0]["name"]
        time.sleep(1.5)  # the image outlasts the timeout (0.5 s), more than once
        park = next(op for op in store.operations_for("vm-a") if op.verb is Verb.PARK)
        assert store.operation(park.id).state is OperationState.RUNNING, "a timeout is not a failure"
        (image,) = store.images("vm-a")
        assert image.state is ImageState.PENDING
        assert [i["name"] for i in gcp.images(PROJECT)] == [image.name], "the image GCP is making was deleted"
        steps = store.operation(park.id).steps
        assert steps[-1].name == "image" and steps[-1].gcp_operation == image_op

        gcp.release_operations()
        assert until(lambda: store.operation(park.id).state is OperationState.SUCCEEDED, 20)
        assert store.vm("vm-a").state is VmState.PARKED
        assert [(i.name, i.state) for i in store.images("vm-a")] == [(image.name, ImageState.READY)]
        assert [i["status"] for i in gcp.images(PROJECT)] == ["READY"]
        assert len([op for op in gcp.operations() if op["operationType"] == "insert" and "/global/images/" in op["targetLink"]]) == 1
        assert bot.runner.drain(timeout=30) and bot.outbox.drain(timeout=30)
        replies = [m.text for m in slack.thread(CHANNEL, store.operation(park.id).thread_ts)[1:]]
        assert sum("is parked:" in text for text in replies) == 1, replies
    finally:
        gcp.release_operations()
        driver.close()
        server.shutdown()
        server.server_close()
        bot.runner.drain(timeout=30)
        bot.shutdown()
        store.engine.dispose()
