"""Who may do what, through signed Slack requests: owners, admins, bystanders, channels.

U100 (alice) creates the VM and owns it; UADMIN is an admin; U300 (bob) is a bystander.
"""

from __future__ import annotations

import re

import pytest
from security_support import effects

from bot.core import permissions
from bot.core.errors import Reason, Refused
from bot.slack.refusals import slack_text
from bot.slack.parsing import Command
from bot.settings import Settings, SettingsError
from conftest import PROJECT, Running, replace
from standins.compute import ComputeStandin
from standins.slack_api import SlackStandin
from standins.slack_driver import Reply, SlackDriver
from storage.models import Verdict, VmState

OWNER, ADMIN, BYSTANDER = "U100", "UADMIN", "U300"
ZONE = "us-central1-a"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, admins=frozenset({ADMIN}))


@pytest.fixture
def vm(driver: SlackDriver, running: Running) -> str:
    """test-vm-22, running, owned by U100."""
    assert "Creating" in driver.command("create test-vm-22", user=OWNER).text
    running.settle()
    return "test-vm-22"


def mutations(gcp: ComputeStandin) -> list[str]:
    return [f"{r.method} {r.path}" for r in gcp.requests if r.method != "GET"]


def test_a_bystander_may_not_park_or_restore_and_is_told_who_can(
    driver: SlackDriver, running: Running, gcp: ComputeStandin, vm: str
) -> None:
    store, before, gcp_before = running.bot.store, effects(running.bot.store), mutations(gcp)

    reply = driver.command(f"park {vm}", user=BYSTANDER)

    assert reply.status == 200 and reply.blocks is not None
    assert not any(b["type"] == "actions" for b in reply.blocks), "no buttons for a bystander"
    assert reply.text == (
        f":warning: Only `{vm}`'s owner <@{OWNER}> or an admin (<@{ADMIN}>) may park it. Ask them to."
    )
    running.settle()
    assert effects(store) == before and mutations(gcp) == gcp_before
    assert store.audit_log(limit=1)[0].verdict is Verdict.REFUSED

    # Parked by its owner, it may not be restored by the bystander either.
    question = driver.command(f"park {vm}", user=OWNER)
    driver.click("park_confirm", blocks=question.blocks or [], user=OWNER)
    running.settle()
    assert store.vm(vm).state is VmState.PARKED
    reply = driver.command(f"restore {vm}", user=BYSTANDER)
    assert "may restore it" in reply.text and f"<@{OWNER}>" in reply.text
    running.settle()
    assert store.vm(vm).state is VmState.PARKED and gcp.instance(PROJECT, ZONE, vm) is None


def test_an_admin_may_park_and_restore_anyones_vm(driver: SlackDriver, running: Running, gcp: ComputeStandin, vm: str) -> None:
    question = driver.command(f"park {vm}", user=ADMIN)
    assert driver.click("park_confirm", blocks=question.blocks or [], user=ADMIN).status == 200
    running.settle()
    assert running.bot.store.vm(vm).state is VmState.PARKED
    assert "Restoring" in driver.command(f"restore {vm}", user=ADMIN).text
    running.settle()
    assert gcp.instance(PROJECT, ZONE, vm)["status"] == "RUNNING"
    assert running.bot.store.vm(vm).owner == OWNER, "acting on a VM does not take it over"


def press(driver: SlackDriver, question: Reply, action_id: str, user: str) -> Reply:
    return driver.click(action_id, blocks=question.blocks or [], user=user)


@pytest.mark.parametrize("button", ["park_confirm", "park_cancel"])
def test_a_bystanders_click_on_someone_elses_question_is_refused_and_changes_nothing(
    button: str, driver: SlackDriver, running: Running, slack: SlackStandin, gcp: ComputeStandin, vm: str
) -> None:
    store = running.bot.store
    question = driver.command(f"park {vm}", user=OWNER)
    before, gcp_before = effects(store), mutations(gcp)

    assert press(driver, question, button, BYSTANDER).status == 200
    running.settle()

    assert effects(store) == before and mutations(gcp) == gcp_before
    assert gcp.instance(PROJECT, ZONE, vm)["status"] == "RUNNING"
    refusal = slack.responses[-1]
    assert refusal["replace_original"] is False, "the owner's question stays as it is"
    assert refusal["text"] == (
        f":no_entry: This button is <@{OWNER}>'s: only they or an admin (<@{ADMIN}>) may press it. Nothing was changed."
    )
    entry = store.audit_log(limit=1)[0]
    assert (entry.kind, entry.user_id, entry.verdict, entry.vm_name) == ("button", BYSTANDER, Verdict.REFUSED, vm)

    # The person who asked can still answer their question.
    press(driver, question, button, OWNER)
    running.settle()
    expected = VmState.PARKED if button == "park_confirm" else VmState.RUNNING
    assert store.vm(vm).state is expected


def test_an_admin_may_confirm_a_park_someone_else_asked_for(driver: SlackDriver, running: Running, vm: str) -> None:
    question = driver.command(f"park {vm}", user=OWNER)
    press(driver, question, "park_confirm", ADMIN)
    running.settle()
    op = running.bot.store.operations_for(vm, limit=1)[0]
    assert op.verb.value == "park" and op.requested_by == ADMIN
    assert running.bot.store.vm(vm).state is VmState.PARKED


def test_the_owner_may_not_press_a_question_an_admin_asked(driver: SlackDriver, running: Running, slack: SlackStandin, vm: str) -> None:
    """The button belongs to whoever asked; owning the VM does not make someone else's question yours."""
    question = driver.command(f"park {vm}", user=ADMIN)
    press(driver, question, "park_confirm", OWNER)
    running.settle()
    assert running.bot.store.vm(vm).state is VmState.RUNNING
    assert f"This button is <@{ADMIN}>'s" in slack.responses[-1]["text"]


def test_anyone_may_create_and_look(driver: SlackDriver, running: Running, vm: str) -> None:
    assert "Creating `other-vm`" in driver.command("create other-vm", user=BYSTANDER).text
    running.settle()
    assert running.bot.store.vm("other-vm").owner == BYSTANDER
    assert "test-vm-22" in driver.command("list", user=BYSTANDER).text
    assert "Looking up `test-vm-22`" in driver.command(f"status {vm}", user=BYSTANDER).text


def test_only_admins_may_sweep(driver: SlackDriver, running: Running, slack: SlackStandin, gcp: ComputeStandin, vm: str) -> None:
    store, posted, gcp_requests = running.bot.store, len(slack.calls_to("chat.postMessage")), len(gcp.requests)
    before = effects(store)
    for text in ("sweep", "sweep dry-run"):
        assert driver.command(text, user=OWNER).text == ":warning: Only admins may use `/vm sweep`: <@UADMIN>."
    running.settle()
    assert effects(store) == before and len(gcp.requests) == gcp_requests
    assert len(slack.calls_to("chat.postMessage")) == posted
    assert [e.verdict for e in store.audit_log(limit=2)] == [Verdict.REFUSED, Verdict.REFUSED]
    assert "Sweeping dirty images now" in driver.command("sweep", user=ADMIN).text
    running.settle()


class TestAllowedChannels:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return replace(settings, allowed_channels=frozenset({"C100", "C200"}))

    def test_the_bot_acts_only_in_its_channels(self, driver: SlackDriver, running: Running, gcp: ComputeStandin) -> None:
        before = effects(running.bot.store)
        for text in ("create test-vm-22", "list", "help", "park test-vm-22"):
            reply = driver.command(text, channel="C999")
            assert reply.text == ":warning: I don't act in this channel. Use `/vm` in <#C100>, <#C200>."
        running.settle()
        assert effects(running.bot.store) == before and gcp.requests == []
        assert "Creating" in driver.command("create test-vm-22", channel="C200").text

    def test_a_click_from_another_channel_is_refused(self, driver: SlackDriver, running: Running, slack: SlackStandin, vm: str) -> None:
        question = driver.command(f"park {vm}", user=OWNER)
        driver.click("park_confirm", blocks=question.blocks or [], user=OWNER, channel="C999")
        running.settle()
        assert running.bot.store.vm(vm).state is VmState.RUNNING
        assert "I don't act in this channel" in slack.responses[-1]["text"]


# ---- the rules themselves ---------------------------------------------------------


def test_require_admin_is_one_line_and_says_who_can(settings: Settings) -> None:
    permissions.require_admin(settings, ADMIN, "sweep dirty images")
    with pytest.raises(Refused) as refused:
        permissions.require_admin(settings, OWNER, "sweep dirty images")
    assert refused.value.reason is Reason.ADMIN_ONLY
    assert re.match(r"^Only admins may sweep dirty images: <@UADMIN>\.$", slack_text(refused.value))
    with pytest.raises(Refused) as refused:
        permissions.require_admin(replace(settings, admins=frozenset()), ADMIN, "sweep dirty images")
    assert re.search(r"none are configured \(VMBOT_ADMINS\)", slack_text(refused.value))


def test_admin_only_verbs_are_checked_before_they_run(settings: Settings, running: Running) -> None:
    store = running.bot.store
    with pytest.raises(Refused) as refused:
        permissions.check_command(settings, store, OWNER, Command("sweep"))
    assert "Only admins may use `/vm sweep`" in slack_text(refused.value)
    permissions.check_command(settings, store, ADMIN, Command("sweep"))


def test_admins_and_channels_come_from_the_environment(settings: Settings) -> None:
    env = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "GOOGLE_CLOUD_PROJECT": "p",
           "VMBOT_ADMINS": " U1AAA, W2BBB ,, nightly-ci", "VMBOT_ALLOWED_CHANNELS": "C0OPS"}
    parsed = Settings.from_env(env)
    assert parsed.admins == {"U1AAA", "W2BBB", "nightly-ci"} and parsed.allowed_channels == {"C0OPS"}
    assert Settings.from_env({**env, "VMBOT_ADMINS": "", "VMBOT_ALLOWED_CHANNELS": ""}).allowed_channels == set()
    with pytest.raises(SettingsError) as error:
        Settings.from_env({**env, "VMBOT_ADMINS": "@alice", "VMBOT_ALLOWED_CHANNELS": "#ops"})
    assert error.value.problems == [
        "VMBOT_ADMINS: '@alice' is not a Slack user id like U012AB3CD, or an API token's name; see README > Configuration",
        "VMBOT_ALLOWED_CHANNELS: '#ops' is not a Slack channel id like C012AB3CD; see README > Configuration",
    ]
