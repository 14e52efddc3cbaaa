"""The HTTP API follows the same rules as Slack: owners and admins, and an audit entry per mutation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from api_client import API_TOKENS, ApiClient
from security_support import effects

from bot.settings import Settings
from conftest import Running
from standins.slack_driver import SlackDriver
from storage.models import Verdict, VmState

VMS = "/api/v1/vms"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, api_tokens=API_TOKENS, admins=frozenset({"deploy-bot"}))


@pytest.fixture
def api(running: Running) -> Iterator[ApiClient]:
    client = ApiClient(running.base_url)  # as "ci", which is no admin
    yield client
    client.session.close()


@pytest.fixture
def slack_vm(driver: SlackDriver, running: Running) -> str:
    driver.command("create test-vm-22", user="U100")
    running.settle()
    return "test-vm-22"


def test_a_token_may_not_park_a_vm_it_does_not_own(api: ApiClient, running: Running, slack_vm: str) -> None:
    before = effects(running.bot.store)
    response = api.post(f"{VMS}/{slack_vm}/park")
    assert response.status_code == 403
    assert response.json()["error"] == {
        "code": "forbidden",
        "message": "Only test-vm-22's owner U100 or an admin (deploy-bot (API)) may park it. Ask them to.",
    }
    running.settle()
    assert effects(running.bot.store) == before
    entry = running.bot.store.audit_log(limit=1)[0]
    assert (entry.kind, entry.user_id, entry.vm_name, entry.verdict) == ("api", "ci", slack_vm, Verdict.REFUSED)
    assert entry.text == f"POST {VMS}/{slack_vm}/park" and entry.detail.startswith("forbidden: Only test-vm-22")


def test_an_admin_token_may_park_it_and_the_trail_says_who(api: ApiClient, driver: SlackDriver, running: Running, slack_vm: str) -> None:
    op = api.call("POST", f"{VMS}/{slack_vm}/park", params={"wait": "60"}, token="deploy-token-fedcba9876543210").json()
    assert op["operation"]["state"] == "succeeded" and op["operation"]["requested_by"] == "deploy-bot"
    assert running.bot.store.vm(slack_vm).state is VmState.PARKED

    entry = running.bot.store.audit_log(limit=1)[0]
    assert (entry.kind, entry.user_id, entry.verdict, entry.operation_id) == ("api", "deploy-bot", Verdict.ALLOWED, op["operation"]["id"])
    history = str(driver.command(f"history {slack_vm}").blocks)
    assert f"`deploy-bot` (API) · `POST {VMS}/{slack_vm}/park` · allowed · operation #{op['operation']['id']}" in history


def test_a_token_owns_what_it_creates(api: ApiClient, driver: SlackDriver, running: Running) -> None:
    created = api.done(VMS, {"name": "ci-vm"})
    entry = running.bot.store.audit_log(limit=1)[0]
    assert (entry.text, entry.vm_name, entry.operation_id) == (f'POST {VMS} {{"name": "ci-vm"}}', "ci-vm", created["id"])
    assert api.done(f"{VMS}/ci-vm/park")["state"] == "succeeded"
    refusal = driver.command("restore ci-vm", user="U100").text
    assert refusal == ":warning: Only `ci-vm`'s owner `ci` (API) or an admin (`deploy-bot` (API)) may restore it. Ask them to."
