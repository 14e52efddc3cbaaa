"""Times GCP writes with an offset ("-07:00") are stored as the instant they name, on both databases, so the
image a restore picks and the one reconcile keeps are the newest in UTC."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from bot.core.workflows import labels_for
from bot.jobs.reconcile import Reconciler
from conftest import PROJECT, Running, create_vm
from standins.compute import ComputeStandin
from standins.slack_driver import SlackDriver
from storage.models import ImageState, Verb
from storage.store import Store

PACIFIC = timezone(timedelta(hours=-7))


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_an_offset_time_is_stored_as_its_instant(database_url: str) -> None:
    store = Store.from_url(database_url)
    op = store.begin(Verb.CREATE, "vm-t", allowed_from=[None], requested_by="U1", zone="z", machine_type="m")
    store.finish(op.id, op.state, vm_values={})
    # 00:33 UTC as GCP writes it in California, and a later image written in UTC
    early = datetime(2026, 3, 1, 17, 33, tzinfo=PACIFIC)  # = 2026-03-02 00:33 UTC
    later = datetime(2026, 3, 2, 1, 0, tzinfo=timezone.utc)
    store.adopt_image("vm-t", "vm-t-utc", family="vm-t", state=ImageState.READY, created_at=later,
                      disk_size_gb=None, archive_size_bytes=None)  # fmt: skip
    store.adopt_image("vm-t", "vm-t-offset", family="vm-t", state=ImageState.READY, created_at=early,
                      disk_size_gb=None, archive_size_bytes=None)  # fmt: skip
    offset = store.image("vm-t-offset")
    assert offset.created_at == early and offset.created_at.utcoffset() == timedelta(0)
    assert offset.created_at.hour == 0 and offset.created_at.minute == 33
    # 01:00 UTC is newer than 00:33 UTC, though "17:33" reads later than "01:00" as wall time
    assert store.newest_image("vm-t").name == "vm-t-utc"
    store.engine.dispose()


def test_reconcile_keeps_the_newest_of_several_found_images_in_utc(
    driver: SlackDriver, gcp: ComputeStandin, running: Running
) -> None:
    create_vm(driver, running, "vm-r")
    base = datetime(2026, 7, 1, tzinfo=timezone.utc).timestamp()
    # Found in GCP, made outside the bot: "-1" is the newer by an hour; "-0" comes first by name.
    gcp.seed_image(PROJECT, "vm-r-0", family="vm-r", labels=labels_for("vm-r"), created=base)
    gcp.seed_image(PROJECT, "vm-r-1", family="vm-r", labels=labels_for("vm-r"), created=base + 3600)
    gcp.seed_image(PROJECT, "vm-r-2", family="vm-r", labels=labels_for("vm-r"), created=base - 3600)

    Reconciler(running.bot.store, running.bot.compute).run()

    states = {image.name: image.state for image in running.bot.store.images("vm-r")}
    assert states == {"vm-r-0": ImageState.DIRTY, "vm-r-1": ImageState.READY, "vm-r-2": ImageState.DIRTY}
    assert running.bot.store.newest_image("vm-r").name == "vm-r-1"
