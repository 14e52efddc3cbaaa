"""Slack surfaces through the real Bolt app and the Slack stand-in: the App Home dashboard, the
create form, the message shortcut, and help that fits the person.

Every view the bot sends is validated by the stand-in (slack_sdk.models.views/blocks, Slack's
limits) and checked again here with slack_sdk.models.views.View.
"""

from __future__ import annotations

import re
import sys
import threading

from typing import Any

import pytest
from slack_sdk.models.views import View

from conftest import Running, create_vm, replace
from bot.settings import Settings
from bot.slack import views
from standins.compute import ComputeStandin
from standins.slack_api import SlackStandin
from standins.slack_driver import SlackDriver, render_view
from storage.models import OperationState, Verdict, VmState

OWNER, BYSTANDER, ADMIN = "U100", "U200", "U900"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, admins=frozenset({ADMIN}), zones_offered=("us-central1-a", "europe-west1-b"))


def valid(view: dict[str, Any]) -> dict[str, Any]:
    """The view as Slack holds it, after slack_sdk's own validation of what the bot sent."""
    View(**{k: v for k, v in view.items() if k in ("type", "title", "submit", "close", "blocks", "private_metadata", "callback_id")}).to_dict()
    return view


def open_home(driver: SlackDriver, slack: SlackStandin, running: Running, user: str = OWNER) -> dict[str, Any]:
    reply = driver.app_home_opened(user)
    assert reply.status == 200
    running.settle()
    view = slack.home_view(user)
    assert view is not None, "app_home_opened publishes the tab"
    return valid(view)


def home_text(view: dict[str, Any]) -> str:
    return "\n".join(render_view(view))


def action_ids(view: dict[str, Any]) -> list[str]:
    return [e.get("action_id") for b in view["blocks"] for e in b.get("elements") or [] if e.get("type") == "button"]


# ---- App Home ---------------------------------------------------------------------


def test_the_home_tab_shows_the_owners_vms_with_costs_and_the_buttons_they_may_press(
    driver: SlackDriver, slack: SlackStandin, running: Running
) -> None:
    create_vm(driver, running, "vm-home")
    view = open_home(driver, slack, running)
    text = home_text(view)
    assert "vm-home" in text and "running" in text and "us-central1-a · e2-small" in text
    assert "/day running" in text and "/month parked" in text and "price unknown" not in text
    assert "Nothing scheduled" in text
    assert action_ids(view) == ["home_create", "vm_park", "vm_delete", "vm_open_thread"]
    op = running.bot.store.operations_for("vm-home")[0]
    link = next(e for b in view["blocks"] for e in b.get("elements") or [] if e.get("action_id") == "vm_open_thread")
    assert link["url"] == f"https://slack.com/archives/{op.channel}/p{op.thread_ts.replace('.', '')}"
    assert slack.calls_to("views.publish", ok=True)

    # someone else sees none of it; an admin sees it with its owner, and may act on it
    assert "vm-home" not in home_text(open_home(driver, slack, running, BYSTANDER))
    admin_view = open_home(driver, slack, running, ADMIN)
    assert "vm-home" in home_text(admin_view) and "@U100" in home_text(admin_view).replace("<@", "@")
    assert "vm_park" in action_ids(admin_view)


def test_the_home_tab_shows_the_next_scheduled_action_in_the_schedules_zone(
    driver: SlackDriver, slack: SlackStandin, running: Running
) -> None:
    create_vm(driver, running, "vm-sched")
    reply = driver.command("schedule vm-sched park-at=19:00 restore-at=08:00 tz=Europe/Berlin", user=OWNER)
    assert reply.status == 200 and ":calendar:" in reply.text, reply.text
    text = home_text(open_home(driver, slack, running))
    assert "Nothing scheduled" not in text
    assert re.search(r"(park|restore) \w{3} \d{1,2} \w{3} (19:00|08:00) CE[S]?T", text), text


def test_an_unpriced_machine_type_says_price_unknown(driver: SlackDriver, slack: SlackStandin, running: Running) -> None:
    running.bot.store.adopt_vm("vm-odd", zone="us-central1-a", machine_type="m9-unknown-1", state=VmState.RUNNING,
                               external_ip=None, drift="found in GCP")
    assert "price unknown" in home_text(open_home(driver, slack, running, ADMIN))


def test_parking_from_the_home_tab_runs_the_park_and_shows_the_tab_again(
    driver: SlackDriver, slack: SlackStandin, running: Running
) -> None:
    create_vm(driver, running, "vm-p")
    view = open_home(driver, slack, running)
    park = next(e for b in view["blocks"] for e in b.get("elements") or [] if e.get("action_id") == "vm_park")
    assert park["confirm"]["title"]["text"] == "Park this VM?", "park asks first, as the slash command does"

    reply = driver.click_in_view("vm_park", view, user=OWNER)
    assert reply.status == 200 and reply.in_time
    running.settle()

    store = running.bot.store
    assert store.vm("vm-p").state is VmState.PARKED
    op = store.operations_for("vm-p")[0]
    assert (op.verb.value, op.state, op.requested_by) == ("park", OperationState.SUCCEEDED, OWNER)
    assert op.channel == store.operations_for("vm-p")[1].channel, "the park reports in the VM's own thread channel"
    assert any(m.thread_ts == op.thread_ts for m in slack.thread(op.channel, op.thread_ts))
    after = valid(slack.home_view(OWNER))
    assert action_ids(after) == ["home_create", "vm_restore", "vm_delete", "vm_open_thread"]
    assert "parked" in home_text(after)
    entry = store.audit_trail("vm-p")[0][0]
    assert (entry.kind, entry.verb, entry.verdict, entry.operation_id) == ("button", "park", Verdict.ALLOWED, op.id)


def test_a_bystanders_press_is_refused_with_a_message_and_changes_nothing(
    driver: SlackDriver, slack: SlackStandin, running: Running
) -> None:
    create_vm(driver, running, "vm-b")
    owners_view = open_home(driver, slack, running)
    before = len(running.bot.store.operations_for("vm-b"))

    assert driver.click_in_view("vm_delete", owners_view, user=BYSTANDER).status == 200
    running.settle()

    store = running.bot.store
    assert store.vm("vm-b").state is VmState.RUNNING
    assert len(store.operations_for("vm-b")) == before
    told = home_text(valid(slack.home_view(BYSTANDER)))
    assert "vm-b" in told and "owner" in told.lower()
    entry = store.audit_trail("vm-b")[0][0]
    assert (entry.user_id, entry.verdict) == (BYSTANDER, Verdict.REFUSED)


def test_the_home_tab_pages_within_slacks_100_blocks(driver: SlackDriver, slack: SlackStandin, running: Running) -> None:
    store = running.bot.store
    count = views.VMS_PER_PAGE + 5
    for number in range(count):
        store.adopt_vm(f"vm-{number:03d}", zone="us-central1-a", machine_type="e2-small", state=VmState.RUNNING,
                       external_ip=None, drift="found in GCP")
    first = open_home(driver, slack, running, ADMIN)
    assert len(first["blocks"]) <= 100
    assert "vm-000" in home_text(first) and f"vm-{count - 1:03d}" not in home_text(first)
    assert "Page 1 of 2" in home_text(first) and "home_page" in action_ids(first)

    driver.click_in_view("home_page", first, user=ADMIN)
    running.settle()
    second = valid(slack.home_view(ADMIN))
    assert f"vm-{count - 1:03d}" in home_text(second) and "Page 2 of 2" in home_text(second)
    assert [b for b in second["blocks"] if b.get("block_id") == "home_pager"][0]["elements"][0]["text"]["text"] == "Previous"


def test_a_full_page_with_a_notice_and_every_button_fits(driver: SlackDriver, slack: SlackStandin, running: Running) -> None:
    """The most blocks a page can have: every VM with buttons and a thread link, and a notice on top."""
    cards = [
        views.VmCard(running.bot.store.vm("x") or _vm(f"vm-{n}"), None, "$1.00/day", "$0.40/month",
                     views.HOME_VERBS, "https://slack.com/archives/C1/p1", "park at 19:00 UTC")
        for n in range(views.VMS_PER_PAGE)
    ]
    view = views.home_view(cards, user=OWNER, everyone=True, page=2, pages=3, total=99, price_label="list", notice="hi")
    assert len(view["blocks"]) <= 100
    valid(view)


def _vm(name: str) -> Any:
    from storage.models import Vm

    return Vm(name=name, zone="us-central1-a", machine_type="e2-small", owner=OWNER, state=VmState.RUNNING)


# ---- the create form ---------------------------------------------------------------


def modal_of(slack: SlackStandin, user: str = OWNER) -> dict[str, Any]:
    (modal,) = slack.modals(user)
    return valid(modal)


def test_vm_create_with_no_name_opens_the_form_and_a_bad_name_is_shown_in_its_field(
    driver: SlackDriver, slack: SlackStandin, running: Running
) -> None:
    reply = driver.command("create")
    assert reply.status == 200 and reply.in_time and not reply.body.strip()
    modal = modal_of(slack)
    form = "\n".join(render_view(modal))
    assert "Create a VM" in form and "Machine type" in form and "e2-small · $" in form and "europe-west1-b" in form

    bad = driver.submit_view(modal["id"], {"name": {"value": "Bad_Name"}, "zone": {"value": "us-central1-a"},
                                           "machine_type": {"value": "e2-small"}})
    assert bad.json["response_action"] == "errors" and "GCP allows" in bad.json["errors"]["name"]
    assert slack.modals(OWNER), "the form stays open with what was typed"
    assert running.bot.store.vm("Bad_Name") is None

    good = driver.submit_view(modal["id"], {"name": {"value": "vm-form"}, "zone": {"value": "europe-west1-b"},
                                            "machine_type": {"value": "e2-medium"}})
    assert good.status == 200 and not good.body.strip() and not slack.modals(OWNER)
    running.settle()
    vm = running.bot.store.vm("vm-form")
    assert (vm.state, vm.zone, vm.machine_type, vm.owner) == (VmState.RUNNING, "europe-west1-b", "e2-medium", OWNER)
    op = running.bot.store.operations_for("vm-form")[0]
    assert op.channel == "C100", "the thread goes in the channel the form was opened from"


def test_the_create_shortcut_reports_in_the_persons_dm(driver: SlackDriver, slack: SlackStandin, running: Running) -> None:
    assert driver.shortcut("create_vm", user=OWNER).status == 200
    modal = modal_of(slack)
    assert "direct messages" in "\n".join(render_view(modal))
    taken = driver.submit_view(modal["id"], {"name": {"value": "vm-dm"}, "zone": {"value": "us-central1-a"},
                                             "machine_type": {"value": "e2-small"},
                                             "image_family": {"value": "ubuntu-2204-lts"}})
    assert taken.status == 200
    running.settle()
    op = running.bot.store.operations_for("vm-dm")[0]
    assert op.state is OperationState.SUCCEEDED and op.params == {"image_family": "ubuntu-2204-lts"}
    assert op.channel == "D" + OWNER[1:] and slack.opened_conversations() == {op.channel: [OWNER]}
    assert slack.messages(op.channel), "the thread is in the DM"


def test_a_second_form_for_a_taken_name_is_refused_in_the_name_field(
    driver: SlackDriver, slack: SlackStandin, running: Running
) -> None:
    create_vm(driver, running, "vm-twice")
    driver.command("create")
    modal = modal_of(slack)
    reply = driver.submit_view(modal["id"], {"name": {"value": "vm-twice"}, "zone": {"value": "us-central1-a"},
                                             "machine_type": {"value": "e2-small"}})
    assert reply.json["response_action"] == "errors" and "already exists" in reply.json["errors"]["name"]


# ---- the message shortcut ------------------------------------------------------------


def test_the_message_shortcut_offers_the_verbs_valid_now(driver: SlackDriver, slack: SlackStandin, running: Running) -> None:
    create_vm(driver, running, "vm-m")
    op = running.bot.store.operations_for("vm-m")[0]
    reply = driver.message_shortcut("vm_actions", channel=op.channel, message_ts=op.thread_ts, user=OWNER)
    assert reply.status == 200 and reply.in_time
    running.settle()
    card = slack.responses[-1]
    assert [e["action_id"] for b in card["blocks"] for e in b.get("elements") or []] == ["vm_park", "vm_delete"]

    driver.click("vm_park", blocks=card["blocks"], user=OWNER, channel=op.channel)
    running.settle()
    assert running.bot.store.vm("vm-m").state is VmState.PARKED
    assert "Parking `vm-m`" in slack.responses[-1]["text"]

    driver.message_shortcut("vm_actions", channel=op.channel, message_ts=op.thread_ts, user=BYSTANDER)
    running.settle()
    told = slack.responses[-1]
    assert "owner" in told["blocks"][0]["text"]["text"] and not [b for b in told["blocks"] if b["type"] == "actions"]


def test_the_message_shortcut_on_another_message_says_what_it_is_for(
    driver: SlackDriver, slack: SlackStandin, running: Running
) -> None:
    driver.message_shortcut("vm_actions", channel="C100", message_ts="1700000000.000100", user=OWNER)
    running.settle()
    assert "does not start one of my operation threads" in slack.responses[-1]["text"]


# ---- help -------------------------------------------------------------------------------


def test_help_lists_what_the_person_may_run(driver: SlackDriver, running: Running) -> None:
    everyone = driver.command("help", user=BYSTANDER).text
    assert "/vm sweep" not in everyone and "/vm create" in everyone and "e.g. `/vm park test-vm-22`" in everyone
    notes = " ".join(e["text"] for b in driver.command("help", user=BYSTANDER).blocks if b["type"] == "context" for e in b["elements"])
    assert "for its owner and admins" in notes
    admin = driver.command("help", user=ADMIN).text
    assert "/vm sweep" in admin and "e.g. `/vm sweep`" in admin


def test_a_form_that_cannot_open_in_time_says_what_to_type_instead(
    driver: SlackDriver, slack: SlackStandin, running: Running
) -> None:
    """Slack takes a trigger_id for 3 s: past that, views.open fails and the ack says so."""
    import time

    trigger = slack.issue_trigger_id(user=OWNER)
    slack.clock = lambda: time.monotonic() + 10
    reply = driver.command("create", trigger_id=trigger)
    assert reply.status == 200 and "could not open the create form" in reply.text and "/vm create NAME" in reply.text
    assert slack.calls_to("views.open", ok=False) and not slack.modals(OWNER)


def test_operations_started_from_the_form_and_the_home_tab_hold_no_thread_while_they_wait_on_gcp(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    """They go to the job runner's operations (bot.jobs.runner), watched with the others, as a slash command's do."""
    create_vm(driver, running, "vm-p")
    view = open_home(driver, slack, running)
    gcp.hold_operations()
    assert driver.click_in_view("vm_park", view, user=OWNER).status == 200
    assert driver.shortcut("create_vm", user=OWNER).status == 200
    driver.submit_view(modal_of(slack)["id"], {"name": {"value": "vm-dm"}, "zone": {"value": "us-central1-a"},
                                               "machine_type": {"value": "e2-small"},
                                               "image_family": {"value": "ubuntu-2204-lts"}})  # fmt: skip
    watcher = running.bot.runner.watcher
    watched = gcp.wait_for(lambda: watcher.watching() == 2, timeout=10)
    waiting = [t for t in threading.enumerate() if t.name.startswith(("vmbot-job", "vmbot-op")) and _in_gcp_wait(t)]
    gcp.release_operations()
    assert watched, "both wait in the watcher"
    assert not waiting, "no job or operation thread waits on GCP"
    running.settle()
    assert running.bot.store.vm("vm-p").state is VmState.PARKED
    assert running.bot.store.vm("vm-dm").state is VmState.RUNNING
    assert "parked" in home_text(valid(slack.home_view(OWNER))), "the tab shown again once the park ended"


def _in_gcp_wait(thread: threading.Thread) -> bool:
    frame = sys._current_frames().get(thread.ident or 0)
    while frame is not None:
        if frame.f_code.co_name == "_wait_until_done":
            return True
        frame = frame.f_back
    return False
