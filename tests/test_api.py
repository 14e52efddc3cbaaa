"""The HTTP API (/api/v1) over real HTTP, on the same bot, store and Compute stand-in as Slack.

A script's view: POST a mutation, get 202 and a Location, wait on it; every refusal is
a JSON error with a stable code and changes nothing.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from api_client import API_TOKENS, CI_TOKEN, DEPLOY_TOKEN, WAIT, ApiClient
from conftest import PROJECT, Running
from sqlalchemy import func, select

from bot import __version__
from bot.settings import Settings
from handlers.api import ERROR_CODES
from handlers.api.app import MAX_BODY_BYTES, create_api
from handlers.api.openapi import SPEC
from standins.compute import ComputeStandin
from standins.slack_api import SlackStandin
from standins.slack_driver import SlackDriver
from storage.models import ImageState, Operation, VmState

ZONE = "us-central1-a"
VMS = "/api/v1/vms"


@pytest.fixture
def api_tokens() -> tuple[tuple[str, str], ...]:
    return API_TOKENS


@pytest.fixture
def api_notify_channel() -> str | None:
    return None


@pytest.fixture
def settings(settings: Settings, api_tokens: tuple[tuple[str, str], ...], api_notify_channel: str | None) -> Settings:
    return replace(settings, api_tokens=api_tokens, api_notify_channel=api_notify_channel)


@pytest.fixture
def api(running: Running) -> Iterator[ApiClient]:
    client = ApiClient(running.base_url)
    yield client
    client.session.close()


def gcp_mutations(gcp: ComputeStandin) -> list[tuple[str, str]]:
    """Requests that change something in GCP (operation waits are POSTs too, but read-only)."""
    return [(r.method, r.path) for r in gcp.requests if r.method != "GET" and not r.path.endswith("/wait")]


def world(running: Running, gcp: ComputeStandin, slack: SlackStandin) -> dict[str, Any]:
    """Everything a request could change: the store, GCP, Slack."""
    store = running.bot.store
    with store.sessions() as session:
        operations = session.scalar(select(func.count()).select_from(Operation))
    return {
        "vms": [(s.vm.name, s.vm.state, s.vm.active_operation_id) for s in store.list_vms(include_deleted=True)],
        "images": [(i.name, i.state) for s in store.list_vms() for i in store.images(s.vm.name)],
        "operations": operations,
        "gcp": gcp_mutations(gcp),
        "slack": len(slack.calls),
    }


def error(response: Any) -> tuple[int, str, str]:
    body = response.json()["error"]
    return response.status_code, body["code"], body["message"]


# ---- the whole life of a VM, from a script ------------------------------------------------------


def test_create_park_with_image_name_and_family_restore_park_again(
    api: ApiClient, running: Running, gcp: ComputeStandin, slack: SlackStandin
) -> None:
    store = running.bot.store

    # create: 202 at once, with a Location to poll
    accepted = api.post(VMS, {"name": "test-vm-22", "zone": ZONE, "machine_type": "e2-small"})
    assert accepted.status_code == 202
    op = accepted.json()["operation"]
    assert accepted.headers["Location"] == f"/api/v1/operations/{op['id']}" == op["url"]
    assert (op["verb"], op["vm"], op["requested_by"]) == ("create", "test-vm-22", "ci")
    polled = api.get(accepted.headers["Location"], params={"wait": WAIT})
    assert polled.status_code == 200
    op = polled.json()["operation"]
    assert (op["state"], op["done"]) == ("succeeded", True)
    assert [step["name"] for step in op["steps"]] == ["create"] and op["steps"][0]["gcp_operation"]
    instance = gcp.instance(PROJECT, ZONE, "test-vm-22")
    assert instance["status"] == "RUNNING"
    assert instance["labels"] == {"managed-by": "vmbot", "vmbot-vm": "test-vm-22"}
    vm = store.vm("test-vm-22")
    assert vm.state is VmState.RUNNING and vm.owner == "ci"
    assert op["slack"] is None and slack.calls_to("chat.postMessage") == [], "no notify channel: no Slack thread"

    # park with the seed's options: a custom image name and family
    op = api.done(f"{VMS}/test-vm-22/park", {"image": "image-224", "family": "segmind-fam"})
    assert op["state"] == "succeeded" and op["params"] == {"image": "image-224", "family": "segmind-fam"}
    assert [step["name"] for step in op["steps"]] == ["stop", "image", "delete"]
    assert "image-224" in op["result"]
    assert gcp.instance(PROJECT, ZONE, "test-vm-22") is None
    image = gcp.image(PROJECT, "image-224")
    assert image["family"] == "segmind-fam" and image["status"] == "READY"
    assert image["sourceDisk"].endswith(f"/zones/{ZONE}/disks/test-vm-22")
    assert image["labels"] == {"managed-by": "vmbot", "vmbot-vm": "test-vm-22"}
    assert [(i.name, i.family, i.state) for i in store.images("test-vm-22")] == [("image-224", "segmind-fam", ImageState.READY)]
    assert store.vm("test-vm-22").state is VmState.PARKED

    # restore: from image-224
    op = api.done(f"{VMS}/test-vm-22/restore")
    assert op["state"] == "succeeded"
    assert gcp.instance(PROJECT, ZONE, "test-vm-22")["status"] == "RUNNING"
    assert gcp.disk(PROJECT, ZONE, "test-vm-22")["sourceImage"].endswith("/global/images/image-224")

    # park again into the same family: image-224 becomes dirty
    op = api.done(f"{VMS}/test-vm-22/park", {"image": "image-225", "family": "segmind-fam"})
    assert op["state"] == "succeeded" and "image-225" in op["result"]
    assert {i["name"]: i["family"] for i in gcp.images(PROJECT) if i["name"].startswith("image-")} == {
        "image-224": "segmind-fam",
        "image-225": "segmind-fam",
    }
    assert {i.name: i.state for i in store.images("test-vm-22")} == {
        "image-224": ImageState.DIRTY,
        "image-225": ImageState.READY,
    }

    # the API's view of it all
    vm = api.get(f"{VMS}/test-vm-22").json()["vm"]
    assert (vm["state"], vm["newest_image"], vm["owner"], vm["busy"]) == ("parked", "image-225", "ci", None)
    assert [(i["name"], i["state"]) for i in vm["images"]] == [("image-224", "dirty"), ("image-225", "ready")]
    assert [(o["verb"], o["state"], o["requested_by"]) for o in vm["operations"]] == [
        ("park", "succeeded", "ci"),
        ("restore", "succeeded", "ci"),
        ("park", "succeeded", "ci"),
        ("create", "succeeded", "ci"),
    ]
    listed = api.get(VMS).json()["vms"]
    assert [(v["name"], v["state"], v["newest_image"]) for v in listed] == [("test-vm-22", "parked", "image-225")]


def test_the_default_image_name_and_family_when_none_is_given(api: ApiClient, gcp: ComputeStandin) -> None:
    api.done(VMS, {"name": "plain-vm"})
    op = api.done(f"{VMS}/plain-vm/park")
    assert op["state"] == "succeeded" and op["params"] == {}
    ours = [i for i in gcp.images(PROJECT) if i.get("labels", {}).get("vmbot-vm") == "plain-vm"]
    assert len(ours) == 1 and ours[0]["family"] == "plain-vm" and ours[0]["name"].startswith("plain-vm-")


# ---- refusals: a status, a stable code, a message, and nothing changed -------------------------------


def test_every_refusal_has_its_status_and_code_and_changes_nothing(
    api: ApiClient, running: Running, gcp: ComputeStandin, slack: SlackStandin
) -> None:
    api.done(VMS, {"name": "test-vm-22"})
    api.done(VMS, {"name": "parked-vm"})
    api.done(f"{VMS}/parked-vm/park", {"image": "image-224"})
    cases: list[tuple[str, str, Any, int, str, str]] = [
        # method, path, body, status, code, words in the message
        ("POST", VMS, {"name": "Test-VM"}, 400, "invalid_name", "Did you mean `test-vm`?"),
        ("POST", VMS, {"name": "9lives"}, 400, "invalid_name", "is not a valid VM name"),
        ("POST", VMS, {"name": "a" * 64}, 400, "invalid_name", "at most 63 characters"),
        ("POST", VMS, {}, 400, "invalid_field", "'name' is required"),
        ("POST", VMS, {"name": 22}, 400, "invalid_field", "'name' must be a string"),
        ("POST", VMS, {"name": "ok-vm", "colour": "blue"}, 400, "invalid_field", "Unknown field 'colour'"),
        ("POST", VMS, {"name": "ok-vm", "zone": "moon"}, 400, "invalid_option", "zones look like `us-central1-a`"),
        ("POST", VMS, {"name": "ok-vm", "machine_type": "HUGE"}, 400, "invalid_option", "is not a machine type"),
        ("POST", VMS, {"name": "ok-vm", "notify_channel": "#ops"}, 400, "invalid_option", "not a Slack channel id"),
        ("POST", VMS, "not json", 400, "invalid_json", "not valid JSON"),
        ("POST", VMS, ["test-vm-23"], 400, "invalid_json", "must be a JSON object"),
        ("POST", f"{VMS}?wait=601", {"name": "ok-vm"}, 400, "invalid_option", "from 0 to 600"),
        ("POST", f"{VMS}?wait=soon", {"name": "ok-vm"}, 400, "invalid_option", "from 0 to 600"),
        ("POST", f"{VMS}?colour=blue", {"name": "ok-vm"}, 400, "invalid_option", "Unknown query parameter 'colour'"),
        ("POST", f"{VMS}/test-vm-22/park", {"image": "Image_224"}, 400, "invalid_option", "not a valid image name"),
        ("POST", f"{VMS}/test-vm-22/park", {"family": "fam-"}, 400, "invalid_option", "not a valid image family name"),
        ("POST", f"{VMS}/test-vm-22/park", {"zone": ZONE}, 400, "invalid_field", "Unknown field 'zone'"),
        ("POST", f"{VMS}/Test-VM-22/park", {}, 400, "invalid_name", "is not a valid VM name"),
        ("POST", f"{VMS}/test-vm-22/restore", {"image": "image-224"}, 400, "invalid_field", "Unknown field 'image'"),
        ("POST", f"{VMS}/no-such-vm/park", {}, 404, "vm_not_found", "I don't know a VM called no-such-vm"),
        ("POST", f"{VMS}/no-such-vm/restore", None, 404, "vm_not_found", "I don't know a VM called no-such-vm"),
        ("GET", f"{VMS}/no-such-vm", None, 404, "vm_not_found", "I don't know a VM called no-such-vm"),
        ("GET", "/api/v1/operations/999", None, 404, "operation_not_found", "no operation '999'"),
        ("GET", "/api/v1/operations/abc", None, 404, "operation_not_found", "no operation 'abc'"),
        ("GET", "/api/v1/nothing", None, 404, "not_found", "openapi.json describes the API"),
        ("DELETE", f"{VMS}/test-vm-22", None, 405, "method_not_allowed", "it takes GET"),
        ("POST", VMS, {"name": "test-vm-22"}, 409, "vm_exists", "already exists (running)"),
        ("POST", VMS, {"name": "parked-vm"}, 409, "vm_exists", "already exists (parked)"),
        ("POST", f"{VMS}/parked-vm/park", {}, 409, "state_conflict", "parked-vm is parked, so it cannot be parked"),
        ("POST", f"{VMS}/test-vm-22/restore", {}, 409, "state_conflict", "test-vm-22 is running, so it cannot be restored"),
        ("POST", f"{VMS}/test-vm-22/park", {"image": "image-224"}, 409, "image_exists", "image-224"),
    ]
    for method, path, body, status, code, words in cases:
        before = world(running, gcp, slack)
        kwargs = {"data": body} if isinstance(body, str) else {"json": body}
        response = api.call(method, path, **kwargs)
        case = f"{method} {path} {body!r}"
        assert error(response)[:2] == (status, code), f"{case}: {response.text}"
        assert words in error(response)[2], f"{case}: {response.text}"
        assert ERROR_CODES[code] == status
        assert world(running, gcp, slack) == before, f"{case} changed something"
    assert gcp.instance(PROJECT, ZONE, "test-vm-22")["status"] == "RUNNING"


def test_a_vm_with_an_operation_under_way_is_refused(api: ApiClient, running: Running, gcp: ComputeStandin, slack: SlackStandin) -> None:
    api.done(VMS, {"name": "test-vm-22"})
    created = gcp_mutations(gcp)
    gcp.hold_operations()
    try:
        park = api.post(f"{VMS}/test-vm-22/park").json()["operation"]
        assert running.bot.store.vm("test-vm-22").active_operation_id == park["id"]
        for method, path in (("park", f"{VMS}/test-vm-22/park"), ("restore", f"{VMS}/test-vm-22/restore"), ("create", VMS)):
            before = {key: value for key, value in world(running, gcp, slack).items() if key != "gcp"}
            response = api.post(path, {"name": "test-vm-22"} if method == "create" else {})
            assert error(response)[:2] == (409, "operation_in_progress"), f"{method}: {response.text}"
            assert response.json()["error"]["operation_id"] == park["id"]
            assert f"operation {park['id']} (park, asked by ci) is under way" in error(response)[2]
            assert {key: value for key, value in world(running, gcp, slack).items() if key != "gcp"} == before
        # the only GCP change is the held park's own stop (it may not have been sent yet)
        assert set(gcp_mutations(gcp)) - set(created) <= {("POST", f"/compute/v1/projects/{PROJECT}/zones/{ZONE}/instances/test-vm-22/stop")}
        still = api.get(park["url"], params={"wait": "0"}).json()["operation"]
        assert still["done"] is False and still["state"] in ("queued", "running")
    finally:
        gcp.release_operations()
    assert api.get(park["url"], params={"wait": WAIT}).json()["operation"]["state"] == "succeeded"


def test_wait_is_woken_by_the_end_of_the_operation(
    api: ApiClient, running: Running, gcp: ComputeStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request waiting 600 s answers when the workflow ends: the operation is released only once it waits."""
    completions = running.bot.workflows.completions
    watching = threading.Event()
    watch = completions.watch

    def noted_watch(op_id: int) -> Any:
        watching.set()
        return watch(op_id)

    monkeypatch.setattr(completions, "watch", noted_watch)
    gcp.hold_operations()
    try:
        op = api.post(VMS, {"name": "test-vm-22"}).json()["operation"]
        answers: list[Any] = []
        waiter = threading.Thread(target=lambda: answers.append(api.get(op["url"], params={"wait": "600"})))
        waiter.start()
        assert watching.wait(timeout=30)
    finally:
        gcp.release_operations()
    waiter.join(timeout=60)
    assert not waiter.is_alive(), "the wait was not woken by the operation's end"
    assert answers[0].status_code == 200 and answers[0].json()["operation"]["state"] == "succeeded"


def test_an_image_name_taken_in_gcp_is_refused_before_the_vm_is_touched(
    api: ApiClient, running: Running, gcp: ComputeStandin
) -> None:
    api.done(VMS, {"name": "test-vm-22"})
    gcp.seed_image(PROJECT, "image-224", family="someone-elses")
    before = gcp_mutations(gcp)
    op = api.done(f"{VMS}/test-vm-22/park", {"image": "image-224", "family": "segmind-fam"})
    assert op["state"] == "rejected" and op["steps"] == []
    assert "An image named `image-224` already exists in project" in op["error"]
    assert gcp_mutations(gcp) == before, "no stop, no image, no delete"
    assert gcp.instance(PROJECT, ZONE, "test-vm-22")["status"] == "RUNNING"
    vm = running.bot.store.vm("test-vm-22")
    assert vm.state is VmState.RUNNING and vm.active_operation_id is None
    assert gcp.image(PROJECT, "image-224")["family"] == "someone-elses"


# ---- auth -----------------------------------------------------------------------------------------------


def test_no_token_or_a_wrong_token_is_refused_and_tokens_are_never_logged(
    api: ApiClient, running: Running, gcp: ComputeStandin, slack: SlackStandin, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "ci-token-0123456789abcdeX"
    for token, headers in (
        (None, {}),
        (wrong, {}),
        (None, {"Authorization": f"Basic {CI_TOKEN}"}),
        (None, {"Authorization": "Bearer "}),
        (CI_TOKEN + "x", {}),
    ):
        for method, path in (("POST", VMS), ("GET", VMS), ("GET", f"{VMS}/test-vm-22"), ("GET", "/api/v1/operations/1")):
            before = world(running, gcp, slack)
            response = api.call(method, path, json={"name": "test-vm-22"} if method == "POST" else None, token=token, headers=headers)
            assert error(response)[:2] == (401, "unauthorized"), response.text
            assert response.headers["WWW-Authenticate"] == 'Bearer realm="vmbot"'
            assert world(running, gcp, slack) == before
    assert running.bot.store.vm("test-vm-22") is None

    op = api.post(VMS, {"name": "test-vm-22"}, token=DEPLOY_TOKEN).json()["operation"]
    assert op["requested_by"] == "deploy-bot", "the token's name is the operation's actor"
    running.settle()
    assert running.bot.store.vm("test-vm-22").owner == "deploy-bot"
    for secret in (CI_TOKEN, DEPLOY_TOKEN, wrong):
        assert secret not in caplog.text
    assert "by deploy-bot" in caplog.text, "the actor's name is logged, the token is not"
    assert CI_TOKEN not in repr(running.bot.settings)


@pytest.mark.parametrize("api_tokens", [()])
def test_the_api_is_off_without_tokens(api: ApiClient, running: Running) -> None:
    for method, path in (("GET", VMS), ("POST", VMS), ("GET", "/api/v1/openapi.json"), ("GET", "/api/v1")):
        response = api.call(method, path, json={"name": "test-vm-22"})
        assert error(response)[:2] == (404, "api_disabled")
        assert "set VMBOT_API_TOKENS" in error(response)[2]
    assert running.bot.store.vm("test-vm-22") is None
    assert api.session.get(running.base_url + "/healthz").json() == {
        "ok": True, "version": __version__, "database": "reachable", "slack": "reachable"
    }


# ---- Slack sees what scripts do ----------------------------------------------------------------------------


def test_an_api_operation_shows_in_slack(
    api: ApiClient, running: Running, driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin
) -> None:
    gcp.hold_operations()
    try:
        op = api.post(VMS, {"name": "test-vm-22", "notify_channel": "C200"}).json()["operation"]
        assert slack.wait_for(lambda: bool(slack.messages("C200")))
        listed = driver.command("list")
        assert "*test-vm-22*  :hourglass_flowing_sand: busy: creating" in str(listed.blocks)
        assert "`ci` (API)" in str(listed.blocks)
        busy = driver.command("create test-vm-22")  # a park would be refused first: the VM is ci's, not U100's
        assert "`test-vm-22` is busy: `ci` (API) is running a create on it (see the thread in <#C200>)" in busy.text
    finally:
        gcp.release_operations()
    assert api.get(op["url"], params={"wait": WAIT}).json()["operation"]["state"] == "succeeded"

    listed = driver.command("list")
    assert "*test-vm-22*  :large_green_circle: running" in str(listed.blocks) and "`ci` (API)" in str(listed.blocks)
    first = slack.messages("C200")[0].ts  # its result is posted from the outbox, a moment after ?wait= answers
    assert slack.wait_for(lambda: "is created" in slack.thread("C200", first)[-1].text)
    root, *replies = slack.thread("C200", first)
    assert root.history[0].text == "Creating test-vm-22 (asked by `ci` (API))"
    assert "`ci` (API) asked to create `test-vm-22`" in str(root.blocks)
    assert "is created" in replies[-1].text
    op = api.get(op["url"]).json()["operation"]
    assert op["slack"] == {"channel": "C200", "thread_ts": root.ts}


@pytest.mark.parametrize("api_notify_channel", ["C300"])
def test_the_notify_channel_setting_posts_every_api_operation(api: ApiClient, slack: SlackStandin, gcp: ComputeStandin) -> None:
    api.done(VMS, {"name": "test-vm-22"})
    # The result is posted from the outbox once the operation has ended: a moment after ?wait= answers.
    assert slack.wait_for(lambda: [m.text for m in slack.messages("C300")] == ["Create test-vm-22: done"])
    api.done(VMS, {"name": "quiet-vm", "notify_channel": None})
    assert len(slack.messages("C300")) == 1, "notify_channel: null asks for no thread"
    gcp.seed_image(PROJECT, "taken-image")
    op = api.done(f"{VMS}/test-vm-22/park", {"image": "taken-image"})
    assert op["state"] == "rejected"
    assert slack.wait_for(lambda: slack.messages("C300")[-1].text.startswith(":warning:"))
    refusal = slack.messages("C300")[-1].text
    assert refusal.startswith(":warning: `ci` (API) asked to park `test-vm-22`: refused. An image named `taken-image`")


# ---- the description -------------------------------------------------------------------------------------


def test_every_route_is_described_in_the_openapi_document(api: ApiClient, running: Running) -> None:
    served = api.get("/api/v1/openapi.json", token=None)
    assert served.status_code == 200 and served.json() == SPEC, "the description needs no token"
    assert SPEC["openapi"].startswith("3.")
    routes = create_api(running.bot).url_map.iter_rules()  # what Flask serves, not the table the document is made from
    implemented = {(re.sub(r"<(\w+)>", r"{\1}", rule.rule), method.lower()) for rule in routes for method in rule.methods - {"HEAD"}}
    described = {(path, method) for path, item in SPEC["paths"].items() for method in item}
    assert implemented == described
    references = set(re.findall(r'"\$ref": "#/components/schemas/(\w+)"', json.dumps(SPEC)))
    assert references and references <= set(SPEC["components"]["schemas"]), "every schema a route names is in the document"
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            named = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert named == set(re.findall(r"\{(\w+)\}", path)), (path, method)
            success = "204" if method == "delete" else "200"  # a DELETE answers with no content
            assert success in operation["responses"], (path, method)
    for path in ("/vms/{name}/stop", "/vms/{name}/start", "/vms/{name}/suspend", "/vms/{name}/resume", "/vms/{name}/adopt"):
        assert "202" in SPEC["paths"][f"/api/v1{path}"]["post"]["responses"], path
    for path, methods in (("/vms/{name}/schedule", {"get", "put", "delete"}), ("/vms/{name}/ttl", {"get", "put", "delete"}),
                          ("/schedules", {"get"}), ("/savings", {"get"})):
        assert set(SPEC["paths"][f"/api/v1{path}"]) == methods, path
    schemas = SPEC["components"]["schemas"]
    assert {"stopped", "suspended"} <= set(schemas["VmState"]["enum"]), "the states come from storage.models.VmState"
    assert {"stop", "start", "suspend", "resume", "adopt"} <= set(schemas["Verb"]["enum"])
    assert {"invalid_schedule", "schedule_not_found"} <= set(schemas["ErrorDetail"]["properties"]["code"]["enum"])


def test_a_body_over_the_limit_is_refused(api: ApiClient, running: Running) -> None:
    response = api.post(VMS, data=b"{" + b" " * MAX_BODY_BYTES + b"}", headers={"Content-Type": "application/json"})
    assert error(response)[:2] == (413, "payload_too_large")
    assert running.bot.store.list_vms() == []


def test_live_state_on_request(api: ApiClient, gcp: ComputeStandin) -> None:
    api.done(VMS, {"name": "test-vm-22"})
    ip = gcp.instance(PROJECT, ZONE, "test-vm-22")["networkInterfaces"][0]["accessConfigs"][0]["natIP"]
    vm = api.get(f"{VMS}/test-vm-22", params={"live": "true"}).json()["vm"]
    assert vm["gcp"] == {"exists": True, "status": "RUNNING", "external_ip": ip, "machine_type": "e2-small"}
    assert "gcp" not in api.get(f"{VMS}/test-vm-22").json()["vm"], "the store's view alone never waits on GCP"
    gcp.fail_request("GET", r"/instances/test-vm-22$", status=403, reason="forbidden", message="Required 'compute.instances.get' permission")
    status, code, message = error(api.get(f"{VMS}/test-vm-22", params={"live": "true"}))
    assert (status, code) == (502, "gcp_error") and "Required 'compute.instances.get' permission" in message


def test_delete_a_vm_and_be_refused_what_cannot_be_deleted(api: ApiClient, running: Running, gcp: ComputeStandin) -> None:
    api.done(VMS, {"name": "test-vm-22"})
    api.done(f"{VMS}/test-vm-22/park")
    image = running.bot.store.newest_image("test-vm-22")

    op = api.done(f"{VMS}/test-vm-22/delete")
    assert (op["verb"], op["state"], op["steps"]) == ("delete", "succeeded", [])  # parked: no instance to delete
    assert "is deleted" in op["result"]
    assert running.bot.store.vm("test-vm-22").state is VmState.DELETED
    assert running.bot.store.image(image.name).state is ImageState.DIRTY

    gone = api.post(f"{VMS}/test-vm-22/delete")
    assert (gone.status_code, gone.json()["error"]["code"]) == (404, "vm_not_found")
    api.done(VMS, {"name": "test-vm-22"})
    op = api.done(f"{VMS}/test-vm-22/delete")
    assert [step["name"] for step in op["steps"]] == ["delete"] and gcp.instances(PROJECT) == []


# ---- hostile input: a 4xx with a JSON code, promptly, and nothing changed ------------------------------------


def test_hostile_bodies_and_paths_are_refused_with_a_code(
    api: ApiClient, running: Running, gcp: ComputeStandin, slack: SlackStandin
) -> None:
    cases: list[tuple[str, str, Any, int, str, str]] = [
        # nested past any parser's patience: json.loads raised RecursionError (a 500)
        ("POST", VMS, "[" * 5000, 400, "invalid_json", "not valid JSON"),
        ("POST", VMS, '{"name": ' * 1500, 400, "invalid_json", "not valid JSON"),
        # '²'.isdigit() is true, and int('²') raised (a 500); %B2 alone is not even UTF-8
        ("GET", "/api/v1/operations/%B2", None, 404, "operation_not_found", "There is no operation"),
        ("GET", "/api/v1/operations/%C2%B2", None, 404, "operation_not_found", "There is no operation '²'"),
        ("GET", "/api/v1/operations/%D9%A3", None, 404, "operation_not_found", "There is no operation"),  # Arabic-Indic 3
        # a channel id with a line break after it: `.match` with `$` let it through
        ("POST", VMS, {"name": "ok-vm", "notify_channel": "C0OPS0001\n"}, 400, "invalid_option", "not a Slack channel id"),
        ("POST", VMS, {"name": "ok-vm\n"}, 400, "invalid_name", "is not a valid VM name"),
        ("POST", VMS, {"name": "ok-vm", "notify_channel": 5}, 400, "invalid_field", "'notify_channel' must be a string"),
        ("GET", f"{VMS}?wait=nan", None, 400, "invalid_option", "Unknown query parameter 'wait' (accepted: ?cursor=, ?limit=)"),
        ("GET", "/api/v1/operations/1?wait=nan", None, 400, "invalid_option", "from 0 to 600"),
        ("GET", f"{VMS}/ok-vm?live=maybe", None, 400, "invalid_option", "live='maybe': use true or false"),
    ]
    for method, path, body, status, code, words in cases:
        before = world(running, gcp, slack)
        kwargs = {"data": body} if isinstance(body, str) else {"json": body}
        response = api.call(method, path, **kwargs)
        case = f"{method} {path} {str(body)[:40]!r}"
        assert error(response)[:2] == (status, code), f"{case}: {response.text[:300]}"
        assert words in error(response)[2], f"{case}: {response.text[:300]}"
        assert world(running, gcp, slack) == before, f"{case} changed something"


class ShortInput:
    """A wsgi.input that holds fewer bytes than the Content-Length says, or stalls until the server gives up."""

    def __init__(self, data: bytes, *, stalls: bool = False) -> None:
        self.data, self.stalls = data, stalls

    def read(self, size: int = -1) -> bytes:
        if self.stalls:
            raise TimeoutError("timed out")  # what a socket read raises at the server's timeout
        data, self.data = self.data[:size], self.data[size:]
        return data


def test_a_body_shorter_than_its_content_length_is_refused_not_parsed_in_part(running: Running) -> None:
    from werkzeug.test import EnvironBuilder

    app = create_api(running.bot)
    whole = b'{"name": "test-vm-22"}'
    for wsgi_input in (ShortInput(whole), ShortInput(whole, stalls=True)):
        environ = EnvironBuilder(
            path=VMS, method="POST", data=whole, headers={"Authorization": f"Bearer {API_TOKENS[0][1]}"},
            content_type="application/json",
        ).get_environ()
        environ.update({"CONTENT_LENGTH": str(len(whole) + 100), "wsgi.input": wsgi_input})
        statuses: list[str] = []
        body = b"".join(app(environ, lambda status, headers, *_, seen=statuses: seen.append(status)))
        assert statuses == ["400 BAD REQUEST"], body
        assert b'"invalid_json"' in body and f"ended after {0 if wsgi_input.stalls else len(whole)} of the".encode() in body
    assert running.bot.store.vm("test-vm-22") is None


def test_the_first_requests_at_once_all_get_the_api_they_load(running: Running) -> None:
    """The server loads the API on its first request under /api/v1 (bot.web.server.ApiOnFirstUse): eight first
    requests at once each get an answer from it, one API built for all."""
    clients = [ApiClient(running.base_url) for _ in range(8)]
    answers: list[Any] = [None] * len(clients)

    def ask(i: int) -> None:
        answers[i] = clients[i].get(VMS)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [answer.status_code for answer in answers] == [200] * len(clients), [a.text for a in answers]
    assert all(answer.json()["vms"] == [] for answer in answers)
