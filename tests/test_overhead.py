"""What keeps the bot's own overhead small: no polling of GCP operations, Slack answered before
background work starts, only the Compute Engine clients it uses loaded, Alembic only when there is
something to migrate.

(How fast it actually is lives in the benchmark, `python -m bench`; nothing here is timed.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bot.settings import REPO_ROOT
from conftest import PROJECT, Running
from standins.compute import ComputeStandin
from standins.slack_driver import SlackDriver
from storage.models import VmState


def test_a_park_watches_its_gcp_operations_by_list_never_one_by_one(
    driver: SlackDriver, gcp: ComputeStandin, running: Running
) -> None:
    """Issue 19: the watcher (bot.gcp.watcher) asks about the operations in flight with a list call per
    zone, so a park never holds a ``wait`` call (and a thread) per operation, nor reads one by one."""
    gcp.operation_seconds = 0.05  # long enough that no operation is DONE when it is answered
    driver.command("create test-vm-1")
    running.settle()
    question = driver.command("park test-vm-1")
    start = len(gcp.requests)
    driver.click("park_confirm", blocks=question.blocks)
    running.settle()

    calls = [(r.method, route(r.path)) for r in gcp.requests[start:]]
    mutations = [i for i, (method, _path) in enumerate(calls) if method != "GET"]
    assert [calls[i] for i in mutations] == [
        ("POST", "zones/us-central1-a/instances/stop"),
        ("POST", "global/images"),
        ("DELETE", "zones/us-central1-a/instances"),
    ]
    lists = [i for i, call in enumerate(calls) if call in (("GET", "zones/us-central1-a/operations"), ("GET", "global/operations"))]
    one_by_one = [r.path for r in gcp.requests[start:] if "/operations/" in r.path]  # get or wait on one operation
    assert not one_by_one, "no operation is waited on or read one by one"
    for mutation, following in zip(mutations, [*mutations[1:], len(calls)]):
        assert any(mutation < i < following for i in lists), "each operation is watched before the next step"
    assert len(lists) <= 2 * len(mutations), "about one look each: the operations end before the watcher's first"
    assert all(gcp.requests[start + i].status == 200 for i in mutations + lists)


def test_a_park_reads_each_thing_once(driver: SlackDriver, gcp: ComputeStandin, running: Running) -> None:
    """The instance is read once for its status and its shape, and an image name this park found free
    before the stop is not looked for again before the insert (a resumed or retried park still looks)."""
    driver.command("create test-vm-1")
    running.settle()
    assert park_calls(driver, gcp, running) == [
        ("GET", "zones/us-central1-a/instances"),  # its status and shape
        ("GET", "zones/us-central1-a/disks"),  # its boot disk's type and size
        ("GET", "global/images"),  # the image's name is free (404)
        ("POST", "zones/us-central1-a/instances/stop"),
        ("GET", "zones/us-central1-a/instances"),  # stopped, does it keep its external IP (static)?
        ("POST", "global/images"),
        ("GET", "global/images"),  # the READY image's sizes
        ("DELETE", "zones/us-central1-a/instances"),
    ]


def test_a_stopped_vm_is_parked_on_what_its_first_read_said(
    driver: SlackDriver, gcp: ComputeStandin, running: Running
) -> None:
    driver.command("create test-vm-1")
    running.settle()
    driver.click("stop_confirm", blocks=driver.command("stop test-vm-1").blocks)
    running.settle()
    assert park_calls(driver, gcp, running) == [
        ("GET", "zones/us-central1-a/instances"),  # TERMINATED already: no stop, and no second read
        ("GET", "zones/us-central1-a/disks"),
        ("GET", "global/images"),
        ("POST", "global/images"),
        ("GET", "global/images"),
        ("DELETE", "zones/us-central1-a/instances"),
    ]


def test_a_delete_reads_the_instance_once(driver: SlackDriver, gcp: ComputeStandin, running: Running) -> None:
    driver.command("create test-vm-1")
    running.settle()
    assert confirmed_calls("delete", VmState.DELETED, driver, gcp, running) == [
        ("GET", "zones/us-central1-a/instances"),  # its status and disks
        ("GET", "zones/us-central1-a/disks"),  # does its boot disk outlive it (auto-delete off)?
        ("DELETE", "zones/us-central1-a/instances"),
    ]


def test_an_adopt_reads_the_instance_for_its_shape_and_labels_once(
    driver: SlackDriver, gcp: ComputeStandin, running: Running
) -> None:
    gcp.seed_instance(PROJECT, "us-central1-a", "test-vm-1", labels={"team": "data"})
    start = len(gcp.requests)
    assert "Adopting `test-vm-1`" in driver.command("adopt test-vm-1").text
    running.settle()
    assert running.bot.store.vm("test-vm-1").state is VmState.RUNNING
    assert calls_since(gcp, start) == [
        ("GET", "zones/us-central1-a/instances"),  # its shape, labels and their fingerprint
        ("GET", "zones/us-central1-a/disks"),  # its boot disk's type and size
        ("POST", "zones/us-central1-a/instances/setLabels"),
        ("GET", "zones/us-central1-a/instances"),  # labelled: its status and address, for the thread
    ]
    assert gcp.instance(PROJECT, "us-central1-a", "test-vm-1")["labels"]["team"] == "data"


def park_calls(driver: SlackDriver, gcp: ComputeStandin, running: Running) -> list[tuple[str, str]]:
    """A confirmed park's Compute Engine calls."""
    return confirmed_calls("park", VmState.PARKED, driver, gcp, running)


def confirmed_calls(
    verb: str, ends: VmState, driver: SlackDriver, gcp: ComputeStandin, running: Running
) -> list[tuple[str, str]]:
    """The Compute Engine calls of ``/vm VERB test-vm-1`` once confirmed, which leaves the VM ``ends``."""
    question = driver.command(f"{verb} test-vm-1")
    start = len(gcp.requests)
    driver.click(f"{verb}_confirm", blocks=question.blocks)
    running.settle()
    assert running.bot.store.vm("test-vm-1").state is ends
    return calls_since(gcp, start)


def calls_since(gcp: ComputeStandin, start: int) -> list[tuple[str, str]]:
    """The calls from request ``start`` on but the watcher's lists of operations."""
    return [(r.method, route(r.path)) for r in gcp.requests[start:] if not r.path.endswith("/operations")]


def route(path: str) -> str:
    """A request path without project and names: "zones/us-central1-a/instances/test-vm-1/stop" -> ".../instances/stop"."""
    parts = path.split("/compute/v1/projects/vmbot-test/")[1].split("/")
    return "/".join(part for part in parts if not part.startswith(("operation-", "test-vm-1")))


def test_only_the_compute_clients_the_bot_uses_are_loaded() -> None:
    """google-cloud-compute would load all of its ~120 service clients (about 40 MB) at import."""
    probe = (
        "import json, sys; import bot.app; from bot.gcp.compute import compute_v1; "
        "compute_v1.InstancesClient, compute_v1.ImagesClient, compute_v1.ZoneOperationsClient, "
        "compute_v1.GlobalOperationsClient, compute_v1.Operation.Status.DONE; "
        "print(json.dumps(sorted(m.rsplit('.', 1)[1] for m in sys.modules "
        "if m.startswith('google.cloud.compute_v1.services.') and m.count('.') == 4)))"
    )
    loaded = json.loads(subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, check=True,
                                       capture_output=True, text=True).stdout)
    assert loaded == ["global_operations", "images", "instances", "zone_operations"]


def test_the_http_api_is_not_loaded_until_a_request_asks_for_it() -> None:
    """Flask and pydantic are about 15 MB of the bot's memory: the server loads the API on its first request
    (tests/test_api.py shows that request answered)."""
    probe = (
        "import json, sys; import bot.web.server, bot.web.stalled_bodies, handlers.api; "
        "print(json.dumps([m for m in ('flask', 'pydantic', 'handlers.api.app') if m in sys.modules]))"
    )
    loaded = json.loads(subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, check=True,
                                       capture_output=True, text=True).stdout)
    assert loaded == []


def test_the_lean_package_is_the_real_one_underneath() -> None:
    from google.cloud import compute_v1
    from google.cloud.compute_v1.services.instances import InstancesClient
    from google.cloud.compute_v1.types import compute

    assert compute_v1.InstancesClient is InstancesClient
    assert compute_v1.Instance is compute.Instance
    assert compute_v1.__version__
    with pytest.raises(AttributeError):
        compute_v1.NoSuchThing  # noqa: B018


def test_start_up_on_a_migrated_database_does_not_load_alembic(database_url: str) -> None:
    from sqlalchemy import create_engine, text

    from storage.schema_version import at_head
    from storage.store import Store

    engine = create_engine(database_url)
    assert not at_head(engine), "a new database has no version table"
    Store.from_url(database_url)
    assert at_head(engine)
    probe = f"import sys; from storage.store import Store; Store.from_url({database_url!r}); print('alembic' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, check=True, capture_output=True, text=True)
    assert loaded.stdout.strip() == "False"

    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'older'"))
    assert not at_head(engine), "a database behind the scripts is migrated as before"
    engine.dispose()


def test_script_heads_follow_down_revisions(tmp_path: Path) -> None:
    from storage.schema_version import script_heads

    def revision(file: str, body: str) -> None:
        (tmp_path / file).write_text(f'"""a migration"""\nfrom alembic import op\n\n{body}\nbranch_labels = None\n')

    revision("0001_a.py", "revision = '0001'\ndown_revision = None")
    revision("0002_b.py", "revision: str = \"0002\"\ndown_revision: str | None = '0001'")
    revision("0003_c.py", "revision = '0003'\ndown_revision = '0001'")
    assert script_heads(tmp_path) == {"0002", "0003"}, "two branches: two heads"
    revision("0004_merge.py", "revision = '0004'\ndown_revision = ('0002', '0003')")
    assert script_heads(tmp_path) == {"0004"}
    revision("0005_odd.py", "revision = make_revision()\ndown_revision = '0004'")
    assert script_heads(tmp_path) is None, "a file it cannot read means: let Alembic decide"
