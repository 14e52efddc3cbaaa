"""Issue 18: a restore brings back the same VM, nothing attached is lost, and VMs made outside vmbot can be adopted.

Read as a transcript: a VM made in the console (the stand-in's ``seed_instance``) with tags, labels, metadata, a
service account, spot scheduling, a GPU, shielded VM settings and a data disk is adopted, parked (two images; the VM
and both disks deleted only after both images are READY) and restored; the restored instance is compared with the
original field by field. All through Slack and the real google-cloud-compute client against the stand-in.
"""

from __future__ import annotations

import pytest

from bot.settings import Settings
from conftest import PROJECT, Running, create_vm, park_vm, replace, restore_vm
from fidelity_support import ACCOUNT, DEBIAN, ZONE, comparable, console_vm
from durable_support import assert_nothing_orphaned
from standins.compute import ComputeStandin
from standins.slack_api import SlackStandin
from standins.slack_driver import SlackDriver
from storage.models import ImageState, OperationState, Verb, VmState


ADMIN = "U900"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """These tests' bot has one admin, ``U900``, who may adopt a VM for someone else."""
    return replace(settings, admins=frozenset({ADMIN}))


def refusal(running: Running, name: str, verb: Verb, *, before_thread: bool = True) -> str:
    """What the person was told when the operation was refused (its record keeps the same words)."""
    op = next(op for op in running.bot.store.operations_for(name, limit=20) if op.verb is verb)
    op = running.bot.store.operation(op.id)
    assert op.state is OperationState.REJECTED
    assert op.thread_ts is None or not before_thread, "refused before anything began: no thread"
    return op.error or ""


def thread_end(slack: SlackStandin, running: Running, name: str, verb: Verb) -> str:
    op = next(op for op in running.bot.store.operations_for(name, limit=20) if op.verb is verb)
    assert op.channel and op.thread_ts
    return slack.thread(op.channel, op.thread_ts)[-1].text


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_adopt_park_restore_brings_back_the_same_vm(
    driver: SlackDriver, running: Running, gcp: ComputeStandin, slack: SlackStandin
) -> None:
    console_vm(gcp, "legacy-app")
    gcp.operation_seconds = 0.01

    # Adopt: labelled (its own labels kept), recorded with its shape, the requester owns it.
    assert "Adopting `legacy-app`" in driver.command("adopt legacy-app").text
    running.settle()
    store = running.bot.store
    vm = store.vm("legacy-app")
    assert (vm.state, vm.owner, vm.machine_type, vm.zone) == (VmState.RUNNING, "U100", "n1-standard-1", ZONE)
    original = gcp.instance(PROJECT, ZONE, "legacy-app")
    assert original["labels"] == {"team": "data", "managed-by": "vmbot", "vmbot-vm": "legacy-app"}
    assert vm.shape["data_disks"][0]["device_name"] == "data" and vm.shape["vmbot_startup_script"] is False
    assert "is mine to manage now" in thread_end(slack, running, "legacy-app", Verb.ADOPT)
    before = comparable(gcp, original)

    # Park: two images; the VM and both disks are deleted only once both images are READY.
    gcp.hold_operations()
    driver.click("park_confirm", blocks=driver.command("park legacy-app").blocks)
    _release(gcp, "stop", "/instances/legacy-app")
    boot_image = _release(gcp, "insert", "/global/images/legacy-app-2")
    assert gcp.wait_for(lambda: _held(gcp, "insert", "/global/images/legacy-app-data-"))
    assert not _held(gcp, "delete", "/instances/") and len(gcp.disks(PROJECT)) == 2, "deleted before every image was READY"
    data_image = _release(gcp, "insert", "/global/images/legacy-app-data-")
    _release(gcp, "delete", "/instances/legacy-app")
    _release(gcp, "delete", "/disks/legacy-app-data")
    gcp.release_operations()
    running.settle()
    park = next(op for op in store.operations_for("legacy-app") if op.verb is Verb.PARK)
    assert store.operation(park.id).state is OperationState.SUCCEEDED
    assert gcp.instances(PROJECT) == [] and gcp.disks(PROJECT) == []
    images = store.images("legacy-app")
    assert [(i.device_name, i.disk_name, i.state, i.disk_deleted_at is not None) for i in images] == [
        (None, "legacy-app", ImageState.READY, True), ("data", "legacy-app-data", ImageState.READY, True)]
    assert {boot_image, data_image} == {i.name for i in images}
    assert images[1].family == "legacy-app-data" and gcp.image(PROJECT, images[1].name)["labels"]["vmbot-vm"] == "legacy-app"
    assert "is parked" in thread_end(slack, running, "legacy-app", Verb.PARK)

    # /vm images shows both, with the disk each holds and that vmbot deleted it.
    listing = str(driver.command("images legacy-app").blocks)
    assert "of its boot disk (`legacy-app`, deleted by me" in listing
    assert "of its disk `data` (`legacy-app-data`, deleted by me" in listing

    # Restore: the same VM, field by field (only its ephemeral external IP is new, and the thread says so).
    restore_vm(driver, running, "legacy-app")
    restored = gcp.instance(PROJECT, ZONE, "legacy-app")
    assert restored is not None, thread_end(slack, running, "legacy-app", Verb.RESTORE)
    after = comparable(gcp, restored)
    for key in before:
        assert after[key] == before[key], key
    assert ("startup-script", "echo theirs") in after["metadata"], "its own script, and not vmbot's"
    end = thread_end(slack, running, "legacy-app", Verb.RESTORE)
    old_ip = original["networkInterfaces"][0]["accessConfigs"][0]["natIP"]
    new_ip = restored["networkInterfaces"][0]["accessConfigs"][0]["natIP"]
    assert f"changed from {old_ip} to {new_ip}" in end and "ephemeral" in end
    assert store.vm("legacy-app").state is VmState.RUNNING
    assert all(image.disk_restored_at is not None for image in store.images("legacy-app"))
    listing = str(driver.command("images legacy-app").blocks)
    assert "(`legacy-app-data`, deleted by me " in listing and ", made again by a restore " in listing
    assert_nothing_orphaned(gcp, store)


def test_a_static_external_ip_is_kept(driver: SlackDriver, running: Running, gcp: ComputeStandin, slack: SlackStandin) -> None:
    console_vm(gcp, "fixed-ip", networkInterfaces=[{"accessConfigs": [{"type": "ONE_TO_ONE_NAT", "name": "External NAT",
                                                                        "natIP": "198.51.100.7"}]}])  # fmt: skip
    driver.command("adopt fixed-ip")
    running.settle()
    park_vm(driver, running, "fixed-ip")
    assert running.bot.store.vm("fixed-ip").shape["external_access"] == "static"
    restore_vm(driver, running, "fixed-ip")
    assert gcp.instance(PROJECT, ZONE, "fixed-ip")["networkInterfaces"][0]["accessConfigs"][0]["natIP"] == "198.51.100.7"
    assert "kept its reserved (static) external IP 198.51.100.7" in thread_end(slack, running, "fixed-ip", Verb.RESTORE)


def test_a_static_external_ip_of_a_vm_stopped_before_its_park_is_kept(
    driver: SlackDriver, running: Running, gcp: ComputeStandin
) -> None:
    """A VM stopped already is not stopped nor read again: the read its shape came from shows the address kept."""
    console_vm(gcp, "fixed-ip", networkInterfaces=[{"accessConfigs": [{"type": "ONE_TO_ONE_NAT", "name": "External NAT",
                                                                        "natIP": "198.51.100.7"}]}])  # fmt: skip
    driver.command("adopt fixed-ip")
    running.settle()
    driver.click("stop_confirm", blocks=driver.command("stop fixed-ip").blocks)
    running.settle()
    assert gcp.instance(PROJECT, ZONE, "fixed-ip")["status"] == "TERMINATED"
    park_vm(driver, running, "fixed-ip")
    assert running.bot.store.vm("fixed-ip").shape["external_access"] == "static"
    restore_vm(driver, running, "fixed-ip")
    assert gcp.instance(PROJECT, ZONE, "fixed-ip")["networkInterfaces"][0]["accessConfigs"][0]["natIP"] == "198.51.100.7"


def test_a_local_ssd_vm_is_refused_untouched(driver: SlackDriver, running: Running, gcp: ComputeStandin, slack: SlackStandin) -> None:
    disks = [{"boot": True, "autoDelete": True, "initializeParams": {"sourceImage": DEBIAN}},
             {"type": "SCRATCH", "autoDelete": True, "interface": "NVME", "deviceName": "scratch",
              "initializeParams": {"diskType": f"zones/{ZONE}/diskTypes/local-ssd"}}]  # fmt: skip
    gcp.seed_instance(PROJECT, ZONE, "fast-vm", fields={"disks": disks})
    driver.command("adopt fast-vm")
    running.settle()
    gcp.clear_requests()
    park_vm(driver, running, "fast-vm")
    assert [r.method for r in gcp.requests if r.method != "GET"] == [], "park touched the VM"
    assert gcp.instance(PROJECT, ZONE, "fast-vm")["status"] == "RUNNING" and gcp.images(PROJECT) == [] or all(
        image["family"] != "fast-vm" for image in gcp.images(PROJECT))
    end = refusal(running, "fast-vm", Verb.PARK)
    assert "`scratch`" in end and "local SSD" in end and "Nothing was changed" in end
    assert running.bot.store.vm("fast-vm").state is VmState.RUNNING


def test_deletion_protection_is_refused_by_park(driver: SlackDriver, running: Running, gcp: ComputeStandin, slack: SlackStandin) -> None:
    gcp.seed_instance(PROJECT, ZONE, "guarded", fields={"deletionProtection": True})
    driver.command("adopt guarded")
    running.settle()
    gcp.clear_requests()
    park_vm(driver, running, "guarded")
    assert [r.method for r in gcp.requests if r.method != "GET"] == []
    assert "deletion protection" in refusal(running, "guarded", Verb.PARK)
    assert gcp.instance(PROJECT, ZONE, "guarded")["deletionProtection"] is True


def test_a_disk_shared_with_another_vm_is_refused(driver: SlackDriver, running: Running, gcp: ComputeStandin, slack: SlackStandin) -> None:
    gcp.seed_disk(PROJECT, ZONE, "shared-ref", size_gb=10)
    shared = {"source": f"projects/{PROJECT}/zones/{ZONE}/disks/shared-ref", "mode": "READ_ONLY", "deviceName": "ref"}
    boot = {"boot": True, "autoDelete": True, "initializeParams": {"sourceImage": DEBIAN}}
    gcp.seed_instance(PROJECT, ZONE, "reader-1", fields={"disks": [boot, shared]})
    gcp.seed_instance(PROJECT, ZONE, "reader-2", fields={"disks": [boot, shared]})
    driver.command("adopt reader-1")
    running.settle()
    park_vm(driver, running, "reader-1")
    end = refusal(running, "reader-1", Verb.PARK)
    assert "`shared-ref`" in end and "attached to 2 VMs" in end
    assert gcp.instance(PROJECT, ZONE, "reader-1")["status"] == "RUNNING"


def test_adopt_refusals_change_nothing(driver: SlackDriver, running: Running, gcp: ComputeStandin, slack: SlackStandin) -> None:
    gcp.seed_instance(PROJECT, ZONE, "mig-member", group="web-group")
    gcp.seed_instance(PROJECT, ZONE, "other-bots", labels={"managed-by": "vmbot", "vmbot-vm": "other-bots"})
    gcp.seed_instance(PROJECT, ZONE, "locked")
    gcp.fail_request("POST", r"/instances/locked/setLabels", status=403, reason="forbidden",
                     message="Required 'compute.instances.setLabels' permission for 'projects/vmbot-test/zones/us-central1-a/instances/locked'")  # fmt: skip
    for name, words in [("mig-member", "managed instance group `web-group`"), ("other-bots", "labelled `managed-by=vmbot` already"),
                        ("locked", "Required 'compute.instances.setLabels' permission"), ("nowhere", "There is no instance `nowhere`")]:  # fmt: skip
        before = gcp.instance(PROJECT, ZONE, name)
        driver.command(f"adopt {name}")
        running.settle()
        assert words in refusal(running, name, Verb.ADOPT, before_thread=name != "locked"), name
        assert gcp.instance(PROJECT, ZONE, name) == before, f"{name} was changed"
        assert running.bot.store.vm(name).state is VmState.DELETED
    # Already mine: refused at once, and owner= is for admins.
    create_vm(driver, running, "mine")
    assert "I manage `mine` already" in driver.command("adopt mine").text
    assert "Only admins may adopt a VM for someone else" in driver.command("adopt mig-member owner=U999").text


def test_create_options_reach_gcp(driver: SlackDriver, running: Running, gcp: ComputeStandin) -> None:
    driver.command("create opts-vm image-project=debian-cloud image-family=debian-12 disk-size=30 disk-type=pd-ssd "
                   "spot=yes tags=db,ssh service-account=runner@vmbot-test.iam.gserviceaccount.com network=default")  # fmt: skip
    running.settle()
    vm = gcp.instance(PROJECT, "us-central1-a", "opts-vm")
    assert vm is not None, "the create failed"
    disk = gcp.disk(PROJECT, "us-central1-a", vm["disks"][0]["source"].rsplit("/", 1)[-1])
    assert disk["sourceImage"].endswith("/debian-cloud/global/images/debian-12-bookworm-v20241009")
    assert (disk["sizeGb"], disk["type"].rsplit("/", 1)[-1]) == ("30", "pd-ssd")
    assert vm["scheduling"]["provisioningModel"] == "SPOT" and vm["scheduling"]["automaticRestart"] is False
    assert vm["tags"]["items"] == ["vmbot-web", "db", "ssh"]
    assert vm["serviceAccounts"][0]["email"] == ACCOUNT
    # Restore with another machine type; the rest of the shape unchanged.
    park_vm(driver, running, "opts-vm")
    restore_vm(driver, running, "opts-vm")
    again = gcp.instance(PROJECT, "us-central1-a", "opts-vm")
    assert again["machineType"].endswith("/e2-small") and again["scheduling"]["provisioningModel"] == "SPOT"
    park_vm(driver, running, "opts-vm")
    restore_vm_as(driver, running, "opts-vm", "e2-medium")
    assert gcp.instance(PROJECT, "us-central1-a", "opts-vm")["machineType"].endswith("/e2-medium")
    assert running.bot.store.vm("opts-vm").machine_type == "e2-medium"
    assert running.bot.store.vm("opts-vm").shape["machine_type"] == "e2-medium", "/vm status shows what runs"
    assert gcp.instance(PROJECT, "us-central1-a", "opts-vm")["tags"]["items"] == ["vmbot-web", "db", "ssh"]


def restore_vm_as(driver: SlackDriver, running: Running, name: str, machine_type: str) -> None:
    driver.command(f"restore {name} machine-type={machine_type}")
    running.settle()


def test_bad_create_options_are_refused_before_gcp(driver: SlackDriver, gcp: ComputeStandin) -> None:
    cases = {
        "disk-size=5": "is not a disk size",
        "disk-type=local-ssd": "is not a disk type I make",
        "spot=true": "is not `yes` or `no`",
        "tags=web,Bad_Tag": "is not a valid network tag",
        "service-account=me@gmail.com": "is not a service account",
        "image-project=x": "is not a project id",
        "image=a image-family=b": "not both",
        "image-project=debian-cloud": "needs `image-family=` or `image=`",
        "subnet=Sub": "is not a valid subnetwork name",
    }
    for option, words in cases.items():
        assert words in driver.command(f"create bad-vm {option}").text, option
    assert not [r for r in gcp.requests if r.method == "POST"]


def test_status_shows_the_shape(driver: SlackDriver, running: Running, gcp: ComputeStandin, slack: SlackStandin) -> None:
    console_vm(gcp, "shown")
    driver.command("adopt shown")
    running.settle()
    reply = driver.command("status shown")
    running.settle()
    url_id = (reply.response_url or "").rsplit("/", 1)[-1]
    said = str([r for r in slack.responses if r.get("url_id") == url_id][-1]["blocks"])
    assert "Shape: n1-standard-1 in us-central1-a · network default/default · spot · 1× nvidia-tesla-t4 · " in said
    assert "boot pd-ssd 20 GB · disk data (pd-balanced 50 GB) · tags web,ssh" in said
    assert f"service account {ACCOUNT} · 1 label · 2 metadata items · ephemeral external IP" in said


def _held(gcp: ComputeStandin, op_type: str, target: str) -> list[str]:
    return [op["name"] for op in gcp.held_operations(op_type) if target in op["targetLink"]]


def _release(gcp: ComputeStandin, op_type: str, target: str) -> str:
    """Let one held GCP operation finish once it has begun; returns its target's last path segment."""
    assert gcp.wait_for(lambda: bool(_held(gcp, op_type, target)), timeout=30), f"no {op_type} of {target} began"
    (name,) = _held(gcp, op_type, target)
    link = next(op["targetLink"] for op in gcp.held_operations(op_type) if op["name"] == name)
    gcp.release_operations(name)
    return link.rsplit("/", 1)[-1]


def test_delete_names_the_data_disks_that_outlive_the_vm(
    driver: SlackDriver, running: Running, gcp: ComputeStandin, slack: SlackStandin
) -> None:
    console_vm(gcp, "kept-disk")
    driver.command("adopt kept-disk")
    running.settle()
    driver.click("delete_confirm", blocks=driver.command("delete kept-disk").blocks)
    running.settle()
    assert gcp.instance(PROJECT, ZONE, "kept-disk") is None
    assert [disk["name"] for disk in gcp.disks(PROJECT)] == ["kept-disk-data"]
    assert "disk `kept-disk-data` outlives the VM in GCP (auto-delete is off)" in thread_end(slack, running, "kept-disk", Verb.DELETE)


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_upgrading_to_vm_shape_keeps_parked_vms_restorable(database_url: str) -> None:
    """0008 adds vms.shape/family and images.device_name/disk_name/disk_deleted_at: a VM parked before it has
    no shape (a restore then uses zone and machine type, as before) and its image holds the boot disk."""
    from alembic import command
    from sqlalchemy import create_engine, text

    from storage import migrate
    from storage.store import Store

    engine = create_engine(database_url)
    with engine.begin() as connection:
        config = migrate.alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "0005_reports")
        connection.execute(text(
            "INSERT INTO vms (name, zone, machine_type, owner, state, created_at, updated_at) "
            "VALUES ('old-vm', 'us-central1-a', 'e2-small', 'U1', 'parked', :at, :at)"), {"at": "2026-11-20 10:00:00"})
        connection.execute(text(
            "INSERT INTO images (vm_id, name, family, state, created_at) "
            "SELECT id, 'old-vm-1', 'old-vm', 'ready', :at FROM vms WHERE name = 'old-vm'"), {"at": "2026-11-20 10:00:00"})
    migrate.upgrade(engine)
    store = Store.from_url(database_url, create=False)
    assert store.vm("old-vm").shape is None and store.vm("old-vm").family is None
    image = store.newest_image("old-vm")
    assert (image.name, image.device_name, image.disk_name, image.disk_deleted_at) == ("old-vm-1", None, None, None)
    store.engine.dispose()
    engine.dispose()


def test_a_restore_whose_disk_name_is_taken_says_so_and_stays_parked(
    driver: SlackDriver, running: Running, gcp: ComputeStandin, slack: SlackStandin
) -> None:
    console_vm(gcp, "taken")
    driver.command("adopt taken")
    running.settle()
    park_vm(driver, running, "taken")
    gcp.seed_disk(PROJECT, ZONE, "taken-data")  # someone made a disk of that name meanwhile
    restore_vm(driver, running, "taken")
    end = thread_end(slack, running, "taken", Verb.RESTORE)
    assert "projects/vmbot-test/zones/us-central1-a/disks/taken-data" in end and "already exists" in end, end
    assert running.bot.store.vm("taken").state is VmState.PARKED
    assert gcp.instance(PROJECT, ZONE, "taken") is None and [d["name"] for d in gcp.disks(PROJECT)] == ["taken-data"]


def test_adopt_in_another_zone_for_another_owner_with_a_family(
    driver: SlackDriver, running: Running, gcp: ComputeStandin, slack: SlackStandin
) -> None:
    gcp.seed_instance(PROJECT, "europe-west1-b", "eu-box")
    driver.command("adopt eu-box zone=europe-west1-b family=eu-boxes owner=U777", user=ADMIN)
    running.settle()
    vm = running.bot.store.vm("eu-box")
    assert (vm.state, vm.zone, vm.family, vm.owner) == (VmState.RUNNING, "europe-west1-b", "eu-boxes", "U777")
    park_vm_as(driver, running, "eu-box", "U777")
    assert [image.family for image in running.bot.store.images("eu-box")] == ["eu-boxes"]
    assert running.bot.store.vm("eu-box").state is VmState.PARKED


def park_vm_as(driver: SlackDriver, running: Running, name: str, user: str) -> None:
    driver.click("park_confirm", blocks=driver.command(f"park {name}", user=user).blocks, user=user)
    running.settle()
