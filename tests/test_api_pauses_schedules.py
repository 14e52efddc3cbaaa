"""The HTTP API's stop/start/suspend/resume, schedules, time to live, savings, create options, adopt and
restore with another machine type, over real HTTP on the same bot, store and Compute stand-in as Slack.

Read as a script's transcript: each refusal has a stable code and changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from api_client import API_TOKENS, DEPLOY_TOKEN, WAIT, ApiClient
from conftest import PROJECT, Running
from test_api import error, world

from bot.core.vm_costs import price_table, vm_costs
from bot.settings import Settings
from handlers.api import ERROR_CODES
from standins.compute import ComputeStandin
from standins.slack_api import SlackStandin
from standins.slack_driver import SlackDriver
from storage.models import Verdict, VmState, utcnow

ZONE = "us-central1-a"
VMS = "/api/v1/vms"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, api_tokens=API_TOKENS, admins=frozenset({"deploy-bot"}), timezone="UTC")


@pytest.fixture
def api(running: Running) -> Iterator[ApiClient]:
    client = ApiClient(running.base_url)  # as "ci", which is no admin
    yield client
    client.session.close()


def refuses(api: ApiClient, running: Running, gcp: ComputeStandin, slack: SlackStandin,
            cases: list[tuple[str, str, Any, int, str, str]]) -> None:  # fmt: skip
    for method, path, body, status, code, words in cases:
        before = world(running, gcp, slack)
        response = api.call(method, path, json=body)
        case = f"{method} {path} {body!r}"
        assert error(response)[:2] == (status, code), f"{case}: {response.text}"
        assert words in error(response)[2], f"{case}: {response.text}"
        assert ERROR_CODES[code] == status
        assert world(running, gcp, slack) == before, f"{case} changed something"


# ---- stop, start, suspend, resume ----------------------------------------------------------------------


def test_stop_start_suspend_resume(api: ApiClient, running: Running, gcp: ComputeStandin, slack: SlackStandin) -> None:
    api.done(VMS, {"name": "test-vm-22"})
    store = running.bot.store

    accepted = api.post(f"{VMS}/test-vm-22/stop", {})
    assert accepted.status_code == 202 and accepted.headers["Location"].startswith("/api/v1/operations/")
    op = api.get(accepted.headers["Location"], params={"wait": WAIT}).json()["operation"]
    assert (op["verb"], op["state"], op["requested_by"]) == ("stop", "succeeded", "ci")
    assert gcp.instance(PROJECT, ZONE, "test-vm-22")["status"] == "TERMINATED"
    assert api.get(f"{VMS}/test-vm-22").json()["vm"]["state"] == "stopped"

    refuses(api, running, gcp, slack, [
        ("POST", f"{VMS}/test-vm-22/stop", {}, 409, "state_conflict", "test-vm-22 is stopped, so it cannot be stopped"),
        ("POST", f"{VMS}/test-vm-22/resume", {}, 409, "state_conflict", "cannot be resumed"),
        ("POST", f"{VMS}/test-vm-22/start", {"image": "x"}, 400, "invalid_field", "Unknown field 'image'"),
        ("POST", f"{VMS}/no-such-vm/start", {}, 404, "vm_not_found", "I don't know a VM called no-such-vm"),
    ])  # fmt: skip
    assert api.done(f"{VMS}/test-vm-22/start")["state"] == "succeeded"
    assert gcp.instance(PROJECT, ZONE, "test-vm-22")["status"] == "RUNNING"

    assert api.done(f"{VMS}/test-vm-22/suspend")["state"] == "succeeded"
    assert gcp.instance(PROJECT, ZONE, "test-vm-22")["status"] == "SUSPENDED"
    assert store.vm("test-vm-22").state is VmState.SUSPENDED
    refuses(api, running, gcp, slack, [
        ("POST", f"{VMS}/test-vm-22/start", {}, 409, "state_conflict", "test-vm-22 is suspended, so it cannot be started"),
    ])  # fmt: skip
    assert api.done(f"{VMS}/test-vm-22/resume")["state"] == "succeeded"
    assert gcp.instance(PROJECT, ZONE, "test-vm-22")["status"] == "RUNNING"
    assert store.vm("test-vm-22").state is VmState.RUNNING
    entry = store.audit_log(limit=1)[0]
    assert (entry.kind, entry.user_id, entry.verdict, entry.text) == ("api", "ci", Verdict.ALLOWED, f"POST {VMS}/test-vm-22/resume")


def test_only_the_owner_or_an_admin_stops_a_vm(api: ApiClient, driver: SlackDriver, running: Running,
                                                gcp: ComputeStandin, slack: SlackStandin) -> None:  # fmt: skip
    driver.command("create slack-vm", user="U100")
    running.settle()
    refuses(api, running, gcp, slack, [
        ("POST", f"{VMS}/slack-vm/stop", {}, 403, "forbidden", "Only slack-vm's owner U100 or an admin (deploy-bot (API)) may stop it"),
        ("PUT", f"{VMS}/slack-vm/schedule", {"park_at": "19:00"}, 403, "forbidden", "may schedule it"),
        ("PUT", f"{VMS}/slack-vm/ttl", {"ttl": "8h"}, 403, "forbidden", "may ttl it"),
        ("DELETE", f"{VMS}/slack-vm/schedule", None, 403, "forbidden", "Only slack-vm's owner"),
    ])  # fmt: skip
    admin = api.call("POST", f"{VMS}/slack-vm/stop", params={"wait": WAIT}, token=DEPLOY_TOKEN).json()["operation"]
    assert (admin["state"], admin["requested_by"]) == ("succeeded", "deploy-bot")


# ---- schedules, time to live, savings -------------------------------------------------------------------


def test_set_read_and_remove_a_schedule(api: ApiClient, driver: SlackDriver, running: Running,
                                        gcp: ComputeStandin, slack: SlackStandin) -> None:  # fmt: skip
    api.done(VMS, {"name": "test-vm-22"})
    body = {"park_at": "19:00", "restore_at": "08:00", "days": "mon-fri", "tz": "Europe/Berlin", "skip": "2030-12-25"}
    answer = api.call("PUT", f"{VMS}/test-vm-22/schedule", json=body)
    assert answer.status_code == 200, answer.text
    got = answer.json()
    assert got["vm"] == "test-vm-22" and got["set_by"] == "ci" and got["channel"] is None
    assert got["schedule"] == {"park_at": "19:00", "restore_at": "08:00", "days": "mon,tue,wed,thu,fri",
                               "tz": "Europe/Berlin", "skip": "2030-12-25"}  # fmt: skip
    assert got["description"].startswith("parks at 19:00 and restores at 08:00 Europe/Berlin on Mon-Fri, except 2030-12-25")
    assert got["next"]["action"] in ("park", "restore") and got["next"]["local"] in got["description"]
    assert got["next"]["at"].endswith("+00:00")
    entry = running.bot.store.audit_log(limit=1)[0]
    assert (entry.user_id, entry.verdict, entry.vm_name) == ("ci", Verdict.ALLOWED, "test-vm-22")
    assert entry.text.startswith(f"PUT {VMS}/test-vm-22/schedule {{")
    assert "test-vm-22" in driver.command("schedules").text, "Slack reads the same schedule"

    listed = api.get("/api/v1/schedules").json()
    assert [s["vm"] for s in listed["schedules"]] == ["test-vm-22"] and listed["ttls"] == []
    assert listed["schedules"][0] == got | {"next": listed["schedules"][0]["next"]}
    one = api.get(f"{VMS}/test-vm-22/schedule", token=DEPLOY_TOKEN)  # any caller reads it, as the list
    assert one.status_code == 200 and one.json() == got | {"next": one.json()["next"]}

    refuses(api, running, gcp, slack, [
        ("PUT", f"{VMS}/test-vm-22/schedule", {"park_at": "25:00"}, 400, "invalid_schedule", "park_at"),
        ("PUT", f"{VMS}/test-vm-22/schedule", {"park_at": "19:00", "start_at": "08:00"}, 400, "invalid_schedule",
         "comes back with restore_at, not start_at"),
        ("PUT", f"{VMS}/test-vm-22/schedule", {"park_at": "19:00", "tz": "Mars/Olympus"}, 400, "invalid_schedule", "Mars/Olympus"),
        ("PUT", f"{VMS}/test-vm-22/schedule", {"days": "mon-fri"}, 400, "invalid_schedule", "say when"),
        ("PUT", f"{VMS}/test-vm-22/schedule", {"park_at": "19:00", "colour": "red"}, 400, "invalid_field", "Unknown field 'colour'"),
        ("PUT", f"{VMS}/test-vm-22/schedule", {"park_at": 1900}, 400, "invalid_field", "'park_at' must be a string"),
        ("PUT", f"{VMS}/test-vm-22/schedule", {"park_at": "19:00", "channel": "#ops"}, 400, "invalid_option", "not a Slack channel id"),
        ("PUT", f"{VMS}/no-such-vm/schedule", {"park_at": "19:00"}, 404, "vm_not_found", "no-such-vm"),
    ])  # fmt: skip
    bad = api.call("PUT", f"{VMS}/test-vm-22/schedule", json={"park_at": "19:00", "start_at": "08:00"}).json()["error"]
    assert bad["option"] == "start_at"
    assert api.call("PUT", f"{VMS}/test-vm-22/schedule", json={"park_at": "7pm"}).json()["error"]["option"] == "park_at"

    removed = api.call("DELETE", f"{VMS}/test-vm-22/schedule")
    assert removed.status_code == 204 and removed.content == b""
    assert running.bot.store.vm_schedule("test-vm-22") is None
    refuses(api, running, gcp, slack, [
        ("DELETE", f"{VMS}/test-vm-22/schedule", None, 404, "schedule_not_found", "test-vm-22 has no schedule"),
        ("GET", f"{VMS}/test-vm-22/schedule", None, 404, "schedule_not_found", "PUT /api/v1/vms/test-vm-22/schedule"),
        ("GET", f"{VMS}/no-such-vm/schedule", None, 404, "vm_not_found", "no-such-vm"),
        ("GET", f"{VMS}/test-vm-22/schedule?at=now", None, 400, "invalid_option", "Unknown query parameter 'at'"),
    ])  # fmt: skip


def test_a_schedules_channel_is_where_its_notices_go(api: ApiClient, running: Running) -> None:
    api.done(VMS, {"name": "test-vm-22"})
    answer = api.call("PUT", f"{VMS}/test-vm-22/schedule", json={"stop_at": "18:30", "channel": "C100"}).json()
    assert answer["schedule"] == {"stop_at": "18:30", "days": "mon,tue,wed,thu,fri,sat,sun", "tz": "UTC"}
    assert answer["next"]["action"] == "stop" and answer["next"]["local"].endswith("18:30 UTC")
    assert running.bot.store.vm_schedule("test-vm-22").channel == "C100"


def test_a_time_to_live_on_create_and_by_itself(api: ApiClient, running: Running, gcp: ComputeStandin, slack: SlackStandin) -> None:
    before = utcnow()
    created = api.done(VMS, {"name": "short-lived", "ttl": "2h"})
    assert created["state"] == "succeeded"
    deadline = running.bot.store.ttl("short-lived")
    assert deadline is not None and timedelta(minutes=119) <= deadline.park_at - before.replace(second=0, microsecond=0) <= timedelta(hours=2)

    answer = api.call("PUT", f"{VMS}/short-lived/ttl", json={"ttl": "8h"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["vm"] == "short-lived" and answer.json()["set_by"] == "ci"
    assert answer.json()["local"].endswith(" UTC")
    assert [t["vm"] for t in api.get("/api/v1/schedules").json()["ttls"]] == ["short-lived"]
    assert api.get(f"{VMS}/short-lived/ttl").json() == answer.json()
    refuses(api, running, gcp, slack, [
        ("PUT", f"{VMS}/short-lived/ttl", {"ttl": "8 hours"}, 400, "invalid_schedule", "8h"),
        ("PUT", f"{VMS}/short-lived/ttl", {"ttl": "400d"}, 400, "invalid_schedule", "between 1m and 365d"),
        ("PUT", f"{VMS}/short-lived/ttl", {"ttl": "off"}, 400, "invalid_schedule", "DELETE"),
        ("PUT", f"{VMS}/short-lived/ttl", {}, 400, "invalid_field", "'ttl' is required"),
        ("POST", VMS, {"name": "other-vm", "ttl": "soon"}, 400, "invalid_schedule", "ttl=soon"),
    ])  # fmt: skip
    assert api.call("DELETE", f"{VMS}/short-lived/ttl").status_code == 204
    assert running.bot.store.ttl("short-lived") is None
    refuses(api, running, gcp, slack, [
        ("DELETE", f"{VMS}/short-lived/ttl", None, 404, "ttl_not_found", "short-lived has no time to live"),
        ("GET", f"{VMS}/short-lived/ttl", None, 404, "ttl_not_found", "short-lived has no time to live"),
    ])  # fmt: skip


def test_savings_and_a_vms_costs_and_shape(api: ApiClient, running: Running, driver: SlackDriver) -> None:
    assert api.get("/api/v1/savings").json() == {
        "vms": [], "total": 0.0, "unpriced": 0,
        "label": price_table(None).label, "as_of": str(price_table(None).as_of),
    }  # fmt: skip
    api.done(VMS, {"name": "test-vm-22", "machine_type": "e2-small"})
    vm = api.get(f"{VMS}/test-vm-22").json()["vm"]
    figures = vm_costs(price_table(None), running.bot.store.vm("test-vm-22"), running.bot.store.images("test-vm-22"))
    assert vm["costs"] == {"running_per_day": figures.running_per_day, "parked_per_month": figures.parked_per_month,
                           "label": "list price, before discounts"}  # fmt: skip
    assert vm["costs"]["running_per_day"] > 0
    assert vm["family"] is None

    assert api.done(f"{VMS}/test-vm-22/park", {"family": "fam-22"})["state"] == "succeeded"
    vm = api.get(f"{VMS}/test-vm-22").json()["vm"]
    assert vm["shape"]["machine_type"] == "e2-small" and vm["shape"]["zone"] == ZONE, "read from GCP before the park"
    saved = api.get("/api/v1/savings").json()
    [row] = saved["vms"]
    assert row["vm"] == "test-vm-22" and row["parked_hours"] >= 0 and row["stopped_hours"] == 0
    assert row["saved"] is not None and saved["total"] == row["saved"] and saved["unpriced"] == 0
    assert "Saved so far" in driver.command("savings").text or "test-vm-22" in str(driver.command("savings").blocks)


# ---- create options, adopt, restore as another machine type ---------------------------------------------


def test_create_options_reach_gcp_and_are_checked_as_slack_checks_them(
    api: ApiClient, running: Running, gcp: ComputeStandin, slack: SlackStandin
) -> None:
    refuses(api, running, gcp, slack, [
        ("POST", VMS, {"name": "opt-vm", "image": "img-1", "image_family": "debian-12"}, 400, "invalid_option", "not both"),
        ("POST", VMS, {"name": "opt-vm", "image_project": "debian-cloud"}, 400, "invalid_option", "needs `image-family=`"),
        ("POST", VMS, {"name": "opt-vm", "disk_size": 5}, 400, "invalid_option", "is not a disk size"),
        ("POST", VMS, {"name": "opt-vm", "disk_size": "30"}, 400, "invalid_field", "'disk_size' must be a whole number"),
        ("POST", VMS, {"name": "opt-vm", "disk_type": "fast"}, 400, "invalid_option", "is not a disk type"),
        ("POST", VMS, {"name": "opt-vm", "spot": "yes"}, 400, "invalid_field", "'spot' must be true or false"),
        ("POST", VMS, {"name": "opt-vm", "tags": "db,ssh"}, 400, "invalid_field", "'tags' must be a list of strings"),
        ("POST", VMS, {"name": "opt-vm", "tags": ["DB"]}, 400, "invalid_option", "not a valid network tag"),
        ("POST", VMS, {"name": "opt-vm", "service_account": "me"}, 400, "invalid_option", "is not a service account"),
        ("POST", VMS, {"name": "opt-vm", "network": "Prod"}, 400, "invalid_option", "not a valid network name"),
    ])  # fmt: skip
    op = api.done(VMS, {"name": "opt-vm", "image_project": "debian-cloud", "image_family": "debian-12", "disk_size": 30,
                        "disk_type": "pd-ssd", "spot": True, "tags": ["db", "ssh"]})  # fmt: skip
    assert op["state"] == "succeeded", op
    assert op["params"] == {"image_project": "debian-cloud", "image_family": "debian-12", "disk_size": "30",
                            "disk_type": "pd-ssd", "spot": "yes", "tags": "db,ssh"}  # fmt: skip
    instance = gcp.instance(PROJECT, ZONE, "opt-vm")
    assert instance["scheduling"]["provisioningModel"] == "SPOT"
    assert {"db", "ssh"} <= set(instance["tags"]["items"])
    boot = gcp.disk(PROJECT, ZONE, "opt-vm")
    assert boot["sizeGb"] == "30" and boot["type"].endswith("/diskTypes/pd-ssd")


def test_adopt_an_instance_and_be_refused_a_managed_one(
    api: ApiClient, running: Running, gcp: ComputeStandin, slack: SlackStandin
) -> None:
    gcp.seed_instance(PROJECT, ZONE, "legacy-app", labels={"team": "data"}, machine_type="n1-standard-1")
    api.done(VMS, {"name": "test-vm-22"})
    refuses(api, running, gcp, slack, [
        ("POST", f"{VMS}/legacy-app/adopt", {"owner": "U012AB3CD"}, 403, "forbidden", "Only admins may adopt a VM for someone else"),
        ("POST", f"{VMS}/legacy-app/adopt", {"owner": "ci"}, 400, "invalid_option", "not a Slack user id"),
        ("POST", f"{VMS}/legacy-app/adopt", {"zone": "moon"}, 400, "invalid_option", "zones look like"),
        ("POST", f"{VMS}/test-vm-22/adopt", {}, 409, "vm_exists", "test-vm-22 is managed by vmbot already"),
    ])  # fmt: skip
    managed = api.post(f"{VMS}/test-vm-22/adopt", {}).json()["error"]
    assert managed["reason"] == "already_managed"

    accepted = api.post(f"{VMS}/legacy-app/adopt", {"family": "legacy"})
    assert accepted.status_code == 202
    op = api.get(accepted.headers["Location"], params={"wait": WAIT}).json()["operation"]
    assert (op["verb"], op["state"], op["params"]) == ("adopt", "succeeded", {"owner": "ci", "family": "legacy"})
    vm = api.get(f"{VMS}/legacy-app").json()["vm"]
    assert (vm["state"], vm["owner"], vm["machine_type"], vm["family"]) == ("running", "ci", "n1-standard-1", "legacy")
    assert vm["shape"]["machine_type"] == "n1-standard-1"
    assert gcp.instance(PROJECT, ZONE, "legacy-app")["labels"] == {"team": "data", "managed-by": "vmbot", "vmbot-vm": "legacy-app"}

    gcp.seed_instance(PROJECT, ZONE, "for-someone", machine_type="e2-small")
    by_admin = api.call("POST", f"{VMS}/for-someone/adopt", json={"owner": "U012AB3CD"}, params={"wait": WAIT},
                        token=DEPLOY_TOKEN).json()["operation"]  # fmt: skip
    assert by_admin["state"] == "succeeded" and running.bot.store.vm("for-someone").owner == "U012AB3CD"


def test_restore_as_another_machine_type(api: ApiClient, running: Running, gcp: ComputeStandin, slack: SlackStandin) -> None:
    api.done(VMS, {"name": "test-vm-22", "machine_type": "e2-small"})
    api.done(f"{VMS}/test-vm-22/park")
    refuses(api, running, gcp, slack, [
        ("POST", f"{VMS}/test-vm-22/restore", {"machine_type": "HUGE"}, 400, "invalid_option", "is not a machine type"),
    ])  # fmt: skip
    op = api.done(f"{VMS}/test-vm-22/restore", {"machine_type": "e2-medium"})
    assert op["state"] == "succeeded" and op["params"] == {"machine_type": "e2-medium"}
    assert gcp.instance(PROJECT, ZONE, "test-vm-22")["machineType"].endswith("/machineTypes/e2-medium")
