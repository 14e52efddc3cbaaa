"""Nobody owns a VM reconcile adopted from GCP: no token, admin or Slack user is its placeholder owner."""

from __future__ import annotations

from dataclasses import replace

import pytest
from api_client import CI_TOKEN, ApiClient

from bot.core import permissions
from bot.core.workflows import labels_for
from bot.settings import Settings, SettingsError
from conftest import PROJECT, Running
from standins.compute import ComputeStandin
from standins.slack_driver import SlackDriver
from storage.models import UNKNOWN_OWNER, VmState

BASE = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "GOOGLE_CLOUD_PROJECT": "p"}
PLACEHOLDER_TOKEN = "placeholder-token-0123456789"
ZONE = "us-central1-a"


@pytest.mark.parametrize(
    ("variable", "value"),
    [("VMBOT_API_TOKENS", f"{UNKNOWN_OWNER}={PLACEHOLDER_TOKEN}"), ("VMBOT_ADMINS", UNKNOWN_OWNER)],
)
def test_the_placeholder_owner_is_a_reserved_name(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as error:
        Settings.from_env({**BASE, variable: value})
    assert any("reserved" in line and repr(UNKNOWN_OWNER) in line for line in error.value.problems), error.value.problems
    assert PLACEHOLDER_TOKEN not in str(error.value)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A token named like the placeholder, as if it had got past the settings (built in code)."""
    return replace(settings, api_tokens=((UNKNOWN_OWNER, PLACEHOLDER_TOKEN), ("ci", CI_TOKEN)), admins=frozenset({UNKNOWN_OWNER}))


@pytest.fixture
def adopted(running: Running, gcp: ComputeStandin) -> str:
    gcp.seed_instance(PROJECT, ZONE, "hand-made", labels=labels_for("hand-made"))
    running.bot.start()  # reconcile adopts it at start-up
    running.settle()
    vm = running.bot.store.vm("hand-made")
    assert vm is not None and vm.owner == UNKNOWN_OWNER and vm.state is VmState.RUNNING
    return "hand-made"


def test_a_token_named_like_the_placeholder_owns_nothing_through_the_api(
    adopted: str, running: Running, gcp: ComputeStandin
) -> None:
    placeholder = ApiClient(running.base_url, token=PLACEHOLDER_TOKEN)
    for verb in ("park", "delete"):
        response = placeholder.post(f"/api/v1/vms/{adopted}/{verb}", {})
        assert response.status_code == 403, (verb, response.text)
        assert response.json()["error"]["code"] == "forbidden"
    running.settle()
    assert running.bot.store.vm(adopted).state is VmState.RUNNING
    assert gcp.instance(PROJECT, ZONE, adopted) is not None


def test_nobody_in_slack_owns_an_adopted_vm_and_the_refusal_says_so(
    adopted: str, driver: SlackDriver, running: Running
) -> None:
    reply = driver.command(f"park {adopted}", user="U300")
    assert reply.text == (
        ":warning: `hand-made` has no owner (reconcile found it in GCP): "
        "only an admin (none are configured: VMBOT_ADMINS) may park it."
    )
    vm = running.bot.store.vm(adopted)
    assert not permissions.owns(UNKNOWN_OWNER, vm)
    with pytest.raises(Exception):
        permissions.require_requester_or_admin(running.bot.settings, UNKNOWN_OWNER, None, vm)
