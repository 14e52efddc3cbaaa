"""`python -m bot.cli` against the bot over real HTTP: output, JSON and exit codes."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import requests
from api_client import API_TOKENS, CI_TOKEN
from conftest import PROJECT, Running

from bot.cli import EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, EXIT_UNREACHABLE, EXIT_USAGE, main
from bot.settings import Settings
from bot.web.server import long_poll_slots
from standins.compute import ComputeStandin
from storage.models import VmState

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, api_tokens=API_TOKENS)


@pytest.fixture
def cli(running: Running, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator[Cli]:
    monkeypatch.setenv("VMBOT_API_URL", running.base_url)
    monkeypatch.setenv("VMBOT_API_TOKEN", CI_TOKEN)
    yield Cli(capsys)


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = self.capsys.readouterr()
        return code, out, err


def test_create_park_restore_list_status(cli: Cli, gcp: ComputeStandin) -> None:
    code, out, err = cli("create", "test-vm-22", "--zone", "us-central1-a", "--machine-type", "e2-small", "--json")
    assert code == EXIT_OK, err
    op = json.loads(out)["operation"]
    assert (op["verb"], op["state"], op["requested_by"]) == ("create", "succeeded", "ci")

    code, out, err = cli("park", "test-vm-22", "--image", "image-224", "--family", "segmind-fam")
    assert code == EXIT_OK, err
    assert out == f"test-vm-22 is parked as image image-224  (operation #{op['id'] + 1})\n"
    assert gcp.image(PROJECT, "image-224")["family"] == "segmind-fam"

    code, out, _ = cli("list")
    header, row = out.splitlines()
    assert header.split() == ["NAME", "STATE", "ZONE", "MACHINE", "TYPE", "OWNER", "EXTERNAL", "IP", "NEWEST", "IMAGE"]
    assert row.split() == ["test-vm-22", "parked", "us-central1-a", "e2-small", "ci", "-", "image-224"]

    code, out, err = cli("restore", "test-vm-22")
    assert code == EXIT_OK, err
    assert out.startswith("test-vm-22 is RUNNING at ")

    code, out, _ = cli("status", "test-vm-22")
    assert code == EXIT_OK
    lines = out.splitlines()
    assert lines[0].split() == ["name", "test-vm-22"] and lines[2].split()[:3] == ["GCP", "now", "RUNNING"]
    assert any(line.split()[:3] == ["image-224", "segmind-fam", "ready"] for line in lines)
    assert [line.split()[:3] for line in lines if line.startswith("#")] == [
        ["#3", "restore", "succeeded"], ["#2", "park", "succeeded"], ["#1", "create", "succeeded"],
    ]

    code, out, _ = cli("status", "test-vm-22", "--json", "--no-live")
    vm = json.loads(out)["vm"]
    assert (vm["state"], vm["newest_image"], "gcp" in vm) == ("running", "image-224", False)


def test_failures_exit_non_zero_with_the_message(cli: Cli, gcp: ComputeStandin, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = cli("restore", "nope")
    assert (code, out) == (EXIT_FAILED, "")
    assert err == "error: I don't know a VM called nope. GET /api/v1/vms lists the VMs I manage. (vm_not_found)\n"

    code, out, err = cli("park", "nope", "--image", "Image_1", "--json")
    assert code == EXIT_FAILED
    assert json.loads(out)["error"]["code"] == "invalid_option" and "not a valid image name" in err

    gcp.fail_operation("POST", r"/instances$", message="Quota 'CPUS' exceeded. Limit: 8.0 in region us-central1.")
    code, out, err = cli("create", "test-vm-22", "--json")
    assert code == EXIT_FAILED
    assert json.loads(out)["operation"]["state"] == "failed"
    assert "error: operation #1 (create test-vm-22) failed: Create of test-vm-22 failed while creating the instance" in err
    assert "Quota 'CPUS' exceeded" in err

    code, _, err = cli("list", "--token", "not-the-token-at-all")
    assert code == EXIT_FAILED and err.endswith("(unauthorized)\n")

    code, _, err = cli("park")
    assert code == EXIT_USAGE and "the following arguments are required: name" in err

    monkeypatch.delenv("VMBOT_API_TOKEN")
    code, _, err = cli("list")
    assert (code, err) == (EXIT_USAGE, "error: VMBOT_API_TOKEN (or --token) is not set; see README > HTTP API and CLI\n")

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    code, _, err = cli("list", "--url", closed, "--token", CI_TOKEN)
    assert code == EXIT_UNREACHABLE and err.startswith(f"error: cannot reach vmbot at {closed}")


def test_no_wait_and_giving_up_waiting(cli: Cli, gcp: ComputeStandin, running: Running) -> None:
    gcp.hold_operations()
    try:
        code, out, err = cli("create", "test-vm-22", "--no-wait")
        assert code == EXIT_OK, err
        assert out.startswith("Operation #1 (create test-vm-22) is ")
        assert out.rstrip().endswith(f"follow it at {running.base_url}/api/v1/operations/1")

        code, out, err = cli("park", "test-vm-22", "--timeout", "0.2", "--json")
        assert code == EXIT_FAILED and "(operation_in_progress)" in err, "the create still holds the VM; no operation recorded"

        code, out, err = cli("create", "other-vm", "--timeout", "0.2", "--json")
        assert code == EXIT_TIMEOUT
        assert json.loads(out)["operation"]["done"] is False
        assert err.splitlines()[0].startswith("operation #2 create other-vm: "), "the progress line"
        assert err.splitlines()[-1] == "error: gave up waiting after 0.2 s; operation #2 is still " + json.loads(out)["operation"]["state"]
    finally:
        gcp.release_operations()
    running.settle()


def test_as_a_command(running: Running) -> None:
    env = {**os.environ, "VMBOT_API_URL": running.base_url + "/api/v1/", "VMBOT_API_TOKEN": CI_TOKEN}
    listed = subprocess.run([sys.executable, "-m", "bot.cli", "list", "--json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert (listed.returncode, json.loads(listed.stdout)) == (0, {"vms": []})
    refused = subprocess.run([sys.executable, "-m", "bot.cli", "status", "nope"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == EXIT_FAILED and "vm_not_found" in refused.stderr


def test_delete_asks_for_yes_then_deletes_for_good(cli: Cli, gcp: ComputeStandin, running: Running) -> None:
    code, _, err = cli("create", "test-vm-22")
    assert code == EXIT_OK, err

    code, out, err = cli("delete", "test-vm-22")
    assert (code, out) == (EXIT_USAGE, "")
    assert err == "error: deleting test-vm-22 cannot be undone: add --yes to delete it for good\n"
    assert gcp.instance(PROJECT, "us-central1-a", "test-vm-22") is not None

    code, out, err = cli("delete", "test-vm-22", "--yes")
    assert code == EXIT_OK, err
    assert out.startswith("test-vm-22 is deleted  (operation #2)")
    assert gcp.instance(PROJECT, "us-central1-a", "test-vm-22") is None
    assert running.bot.store.vm("test-vm-22").state is VmState.DELETED


def test_turned_away_from_waiting_it_comes_back_after_retry_after(
    cli: Cli, gcp: ComputeStandin, running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """With every long-poll slot taken (bot.web.long_polls), the server answers a ?wait= at once with
    Retry-After: the CLI sleeps that long instead of asking again in a tight loop."""
    slots = long_poll_slots(running.bot.settings.http_threads)
    gcp.hold_operations()
    try:
        assert cli("create", "held-vm", "--no-wait")[0] == EXIT_OK
        poll = {"params": {"wait": "30"}, "headers": {"Authorization": f"Bearer {CI_TOKEN}"}, "timeout": 60}
        holders = [threading.Thread(target=requests.get, args=(f"{running.base_url}/api/v1/operations/1",),
                                    kwargs=poll, daemon=True) for _ in range(slots)]
        for holder in holders:
            holder.start()
        caplog.set_level(logging.INFO, logger="handlers.api")
        time.sleep(0.5)  # the holders reach their slots and wait there (GCP is held: nothing can end)

        code, out, err = cli("create", "other-vm", "--timeout", "2")

        assert code == EXIT_TIMEOUT, err
        polls = [r for r in caplog.records if r.getMessage().startswith("API GET /api/v1/operations/2 ")]
        assert 1 <= len(polls) <= 2, f"{len(polls)} polls in 2 s: the CLI did not wait as Retry-After asked"
    finally:
        gcp.release_operations()
    for holder in holders:
        holder.join(60)
    running.settle()


def test_pauses_schedules_ttl_savings_and_create_options(cli: Cli, running: Running, gcp: ComputeStandin) -> None:
    code, _, err = cli("create", "test-vm-22", "--disk-size", "30", "--spot", "--tags", "db,ssh", "--ttl", "8h")
    assert code == EXIT_OK, err
    assert gcp.instance(PROJECT, "us-central1-a", "test-vm-22")["scheduling"]["provisioningModel"] == "SPOT"
    assert running.bot.store.ttl("test-vm-22") is not None

    for verb, state, status in (("stop", VmState.STOPPED, "TERMINATED"), ("start", VmState.RUNNING, "RUNNING"),
                                ("suspend", VmState.SUSPENDED, "SUSPENDED"), ("resume", VmState.RUNNING, "RUNNING")):
        code, out, err = cli(verb, "test-vm-22")
        assert code == EXIT_OK, err
        assert running.bot.store.vm("test-vm-22").state is state, verb
        assert gcp.instance(PROJECT, "us-central1-a", "test-vm-22")["status"] == status, verb
    code, _, err = cli("resume", "test-vm-22")
    assert code == EXIT_FAILED and "cannot be resumed" in err and "(state_conflict)" in err

    code, out, err = cli("schedule", "test-vm-22", "--park-at", "19:00", "--restore-at", "08:00", "--days", "mon-fri", "--tz", "UTC")
    assert code == EXIT_OK, err
    assert out.startswith("test-vm-22 parks at 19:00 and restores at 08:00 UTC on Mon-Fri; next: ")
    assert cli("schedule", "test-vm-22")[:2] == (EXIT_OK, out), "no times: the schedule as it is"
    code, _, err = cli("schedule", "test-vm-22", "--park-at", "7pm")
    assert code == EXIT_FAILED and "(invalid_schedule)" in err
    code, out, _ = cli("schedules")
    assert "test-vm-22" in out and "parked when its time to live runs out" in out
    assert cli("schedule", "test-vm-22", "--off")[:2] == (EXIT_OK, "test-vm-22 has no schedule now.\n")
    assert cli("schedule", "test-vm-22", "--off")[0] == EXIT_FAILED
    code, _, err = cli("schedule", "test-vm-22")
    assert code == EXIT_FAILED and "(schedule_not_found)" in err
    assert cli("ttl", "test-vm-22", "off")[:2] == (EXIT_OK, "test-vm-22 has no time to live now.\n")
    assert running.bot.store.ttl("test-vm-22") is None and running.bot.store.vm_schedule("test-vm-22") is None

    code, out, _ = cli("savings")
    assert code == EXIT_OK and "test-vm-22" in out and "total ~$" in out

    assert cli("park", "test-vm-22")[0] == EXIT_OK
    code, _, err = cli("restore", "test-vm-22", "--machine-type", "e2-medium")
    assert code == EXIT_OK, err
    assert gcp.instance(PROJECT, "us-central1-a", "test-vm-22")["machineType"].endswith("/e2-medium")


def test_adopt_from_the_cli(cli: Cli, running: Running, gcp: ComputeStandin) -> None:
    gcp.seed_instance(PROJECT, "us-central1-a", "legacy-app")
    code, _, err = cli("adopt", "legacy-app", "--family", "legacy")
    assert code == EXIT_OK, err
    vm = running.bot.store.vm("legacy-app")
    assert (vm.owner, vm.family) == ("ci", "legacy")
    code, _, err = cli("adopt", "legacy-app")
    assert code == EXIT_FAILED and "managed by vmbot already" in err and "(vm_exists)" in err
