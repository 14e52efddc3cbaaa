"""Every message the bot builds passes Slack's own validators, with the longest names GCP allows.

``slack_sdk.models`` carries Slack's documented limits (a section's text at most 3000
characters, a confirm dialog's text at most 300, a button's label at most 75, ...);
a message Slack would refuse never reaches the person. Each builder in
bot/slack/blocks.py is fed 63-character VM, image and family names, long GCP
messages and API actor names, and checked with ``Block.parse(...).to_dict()``, which runs every validator of the block
and of each object in it (``validate_json`` alone checks only the block itself).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest
from slack_sdk.models.blocks import Block

from bot.gcp.compute import InstanceInfo
from bot.jobs.sweeper import SweepReport, Tally
from bot.slack import blocks
from bot.slack.blocks import MAX_BLOCKS, Message
from conftest import Running
from standins.slack_api import SlackStandin
from standins.slack_driver import SlackDriver
from storage.models import AuditEntry, Image, ImageState, Operation, OperationState, Verb, Verdict, Vm, VmState
from storage.store import VmSummary

NOW = datetime(2026, 1, 2, 3, 4, tzinfo=timezone.utc)
VM = "v" + "m-" * 30 + "vm"  # 63 characters, GCP's longest name
IMAGE = "i" + "m-" * 30 + "im"
FAMILY = "f" + "a-" * 30 + "fa"
ZONE = "northamerica-northeast1-c"
MACHINE = "n2-highmem-128"
API_ACTOR = "a" + "b" * 39  # the longest HTTP API token name
GCP_TEXT = "Quota 'CPUS' exceeded <!channel> & `x`\n" * 100  # GCP's messages can be long
assert len(VM) == len(IMAGE) == len(FAMILY) == 63


def vm(state: VmState = VmState.RUNNING, owner: str = "U0123ABCDEF") -> Vm:
    return Vm(id=1, name=VM, zone=ZONE, machine_type=MACHINE, owner=owner, state=state, external_ip="203.0.113.255",
              drift=GCP_TEXT[:500], drift_at=NOW)  # fmt: skip


def operation(verb: Verb = Verb.PARK, state: OperationState = OperationState.FAILED, by: str = API_ACTOR) -> Operation:
    return Operation(id=123456, verb=verb, vm_name=VM, requested_by=by, channel="C0123ABCDEF", state=state,
                     step="image", error=GCP_TEXT, result=f"`{VM}` is parked as image `{IMAGE}`", created_at=NOW)  # fmt: skip


def image(n: int, state: ImageState = ImageState.DIRTY) -> Image:
    name = IMAGE[: 63 - len(str(n))] + str(n)
    return Image(id=n, name=name, family=FAMILY, state=state, created_at=NOW, dirty_since=NOW, deleted_at=NOW,
                 deleted_by="sweep #99999", archive_size_bytes=10**12, delete_error=GCP_TEXT)  # fmt: skip


def full_tally(count: int = 5000) -> Tally:
    tally = Tally()
    for n in range(count):
        tally.add(image(n).name, f"{VM}: {GCP_TEXT[:200]}")
    return tally


def sweep_report() -> SweepReport:
    report = SweepReport(dry_run=False, trigger="manual", requested_by="U0123ABCDEF", keep=3, grace=86400, sweep_id=99999,
                         stopped=GCP_TEXT, deleted=full_tally(), already_gone=full_tally(), failed=full_tally(),
                         orphans=full_tally(), orphans_error=GCP_TEXT, next_eligible=NOW, freed_bytes=10**15, took=3600,
                         untouched=10**6)  # fmt: skip
    report.kept = {reason: full_tally() for reason in ("in its grace period", "retention", "parked", "restoring", "unlabelled")}
    return report


def history_entries(count: int) -> list[AuditEntry]:
    return [
        AuditEntry(id=n, at=NOW, user_id="U0123ABCDEF", channel_id="C0123ABCDEF", kind=kind, text=text,
                   verb="park", vm_name=VM, verdict=verdict, operation_id=123456, detail=GCP_TEXT[:2000])  # fmt: skip
        for n in range(count)
        for kind, text, verdict in (
            ("button", f"park_confirm {VM}", Verdict.ALLOWED),
            ("command", f"park {VM} image={IMAGE} family={FAMILY} " + "x" * 900, Verdict.REFUSED),
        )
    ][:count]


def summaries(count: int) -> list[VmSummary]:
    return [VmSummary(vm(), IMAGE, operation(state=OperationState.RUNNING)) for _ in range(count)]


LIVE = InstanceInfo(VM, ZONE, "RUNNING", MACHINE, "203.0.113.255", None, {})

MESSAGES: dict[str, Callable[[], Message]] = {
    "help": blocks.help_message,
    "park question": lambda: blocks.park_confirmation(vm(), "U0123ABCDEF", image=IMAGE, family=FAMILY),
    "park question, default names": lambda: blocks.park_confirmation(vm(), "U0123ABCDEF"),
    "delete question": lambda: blocks.delete_confirmation(vm(), "U0123ABCDEF", images=100000, grace=86400 * 365),
    "delete question, parked": lambda: blocks.delete_confirmation(vm(VmState.PARKED), API_ACTOR, images=1, grace=0),
    "thread root": lambda: blocks.operation_started(operation(), f"from image `{IMAGE}` · {MACHINE} in {ZONE}"),
    "thread root, busy channel": lambda: blocks.operation_progress(operation(), "x" * 200, f"Imaging into `{IMAGE}` (family `{FAMILY}`)…"),
    "thread root, finished": lambda: blocks.operation_finished(operation(), ok=False, headline=GCP_TEXT, took=86400),
    "step": lambda: blocks.step(f"Imaging its boot disk into `{IMAGE}` (family `{FAMILY}`)…"),
    "result": lambda: blocks.operation_succeeded_reply(f"`{VM}` is parked: only image `{IMAGE}` (family `{FAMILY}`) remains."),
    "failure reply, park": lambda: blocks.operation_failed_reply(operation(Verb.PARK), f"Parking `{VM}` failed. GCP said: _{GCP_TEXT}_."),
    "failure reply, delete": lambda: blocks.operation_failed_reply(operation(Verb.DELETE), "x" * 2900),
    "failure reply, create": lambda: blocks.operation_failed_reply(operation(Verb.CREATE), "x" * 2900),
    "failure reply, no retry": lambda: blocks.operation_failed_reply(operation(Verb.CREATE), "x" * 2900, retry=False),
    "refusal in the channel": lambda: blocks.operation_refused(operation(by=API_ACTOR), "x" * 2000),
    "list, one": lambda: blocks.vm_list(summaries(1)),
    "list, 880": lambda: blocks.vm_list(summaries(880)),
    "list, 5000": lambda: blocks.vm_list(summaries(5000)),
    "list, none": lambda: blocks.vm_list([]),
    "list, all deleted": lambda: blocks.vm_list([], deleted=5000),
    "status": lambda: blocks.vm_status(vm(), LIVE, [image(n) for n in range(40)], [operation() for _ in range(5)], live_drift=GCP_TEXT[:500]),
    "status, deleted": lambda: blocks.vm_status(vm(VmState.DELETED), None, [image(n) for n in range(40)], []),
    "images": lambda: blocks.image_list(VM, [image(n, state) for n in range(40) for state in ImageState][:40], 100000, grace=86400),
    "images, none": lambda: blocks.image_list(VM, [], 0, grace=0),
    "sweep started": lambda: blocks.sweep_started(sweep_report()),
    "sweep headline": lambda: blocks.sweep_headline(sweep_report()),
    "sweep report": lambda: blocks.sweep_report(sweep_report()),
    "sweep skipped": lambda: blocks.sweep_skipped(SweepReport(False, "manual", None, 1, 0, skipped=GCP_TEXT)),
    "history": lambda: blocks.audit_history(VM, history_entries(10), page=99999, pages=100000, total=10**6,
                                            operations={123456: operation(state=OperationState.SUCCEEDED)}),  # fmt: skip
    "history, one entry": lambda: blocks.audit_history(VM, history_entries(1), page=1, pages=1, total=1),
}


@pytest.mark.parametrize("kind", MESSAGES)
def test_every_message_passes_slacks_validators_with_the_longest_names(kind: str) -> None:
    message = MESSAGES[kind]()
    assert message.text and len(message.text) <= 40000
    assert len(message.blocks) <= MAX_BLOCKS, f"{len(message.blocks)} blocks"
    for block in message.blocks:
        parsed = Block.parse(block)
        assert parsed is not None, block
        parsed.to_dict()  # validates the block and everything in it: SlackObjectFormationError on any limit
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000
        for element in block.get("elements", []):
            if "confirm" in element:
                assert len(element["confirm"]["text"]["text"]) <= 300, element["confirm"]["text"]["text"]


@pytest.mark.parametrize("verb", ["park", "delete"])
def test_a_confirm_dialog_cuts_long_names_and_the_message_keeps_them_whole(verb: str) -> None:
    if verb == "park":
        message = blocks.park_confirmation(vm(), "U1", image=IMAGE, family=FAMILY)
    else:
        message = blocks.delete_confirmation(vm(), "U1", images=3, grace=86400)
    dialog = message.blocks[1]["elements"][0]["confirm"]["text"]["text"]
    assert len(dialog) <= 300 and "…" in dialog and VM[:10] in dialog and VM[-10:] in dialog
    assert f"`{VM}`" in message.blocks[0]["text"]["text"], "the message above the buttons names the VM in full"
    if verb == "park":
        assert f"`{IMAGE}`" in message.blocks[0]["text"]["text"] and f"`{FAMILY}`" in message.blocks[0]["text"]["text"]


def test_a_list_too_long_for_one_message_shows_a_page_and_says_how_many_more_the_button_brings() -> None:
    message = blocks.vm_list(summaries(2000))
    button = message.blocks[-1]["elements"][0]
    shown = sum(block["text"]["text"].count(f"*{VM}*") for block in message.blocks if block["type"] == "section")
    assert shown == blocks.LIST_PAGE_SIZE, "50 of the longest lines fit Slack's blocks"
    assert button["action_id"] == blocks.LIST_NEXT and button["text"]["text"] == f"Next 50 of {2000 - shown} more"
    assert json.loads(button["value"])["after"] == VM and len(message.blocks) <= MAX_BLOCKS
    assert "880" not in str(message.blocks) and f"({2000 - shown} more)" in message.text


def test_a_message_that_fits_has_no_note() -> None:
    message = blocks.vm_list(summaries(3))
    assert "not shown" not in str(message.blocks) and message.blocks[0]["text"]["text"] == "*3 VMs*"
    assert not any(block["type"] == "actions" for block in message.blocks), "no next page"


def test_history_reads_in_words_in_the_singular_with_outcomes() -> None:
    message = blocks.audit_history(VM, history_entries(1), page=1, pages=1, total=1,
                                   operations={123456: operation(state=OperationState.SUCCEEDED)})  # fmt: skip
    text = str(message.blocks)
    assert "park_confirm" not in text and f"`pressed Park {VM}`" in text
    assert "1 entry." in text and "1 entries" not in text
    assert f"succeeded: `{VM}` is parked as image `{IMAGE}`" in text


def test_the_slack_standin_refuses_what_slack_refuses(slack: SlackStandin) -> None:
    """The stand-in checks blocks with slack_sdk.models too, so a message Slack would refuse fails every test."""
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError

    client = WebClient(token=slack.bot_token, base_url=slack.api_url)
    too_long = blocks.confirm_dialog("Park?", "x" * 301, "Park", "Keep")
    button = {"type": "button", "action_id": "a", "text": {"type": "plain_text", "text": "Park"}, "confirm": too_long}
    for bad in ([{"type": "actions", "elements": [button]}], [blocks.section("x" * 2900) | {"text": {"type": "mrkdwn", "text": "x" * 3001}}]):
        with pytest.raises(SlackApiError) as error:
            client.chat_postMessage(channel="C100", text="t", blocks=bad)
        assert error.value.response["error"] == "invalid_blocks"
    assert client.chat_postMessage(channel="C100", text="t", blocks=[blocks.section("x" * 3000)])["ok"]


def test_parking_a_vm_with_the_longest_names_reaches_slack_whole(
    driver: SlackDriver, running: Running, slack: SlackStandin
) -> None:
    driver.command(f"create {VM}")
    running.settle()
    question = driver.command(f"park {VM} image={IMAGE} family={FAMILY}")
    for block in question.blocks or []:
        Block.parse(block).to_dict()
    driver.click("park_confirm", blocks=question.blocks)
    running.settle()
    assert running.bot.store.vm(VM).state is VmState.PARKED
    assert not slack.calls_to("chat.postMessage", ok=False) and not slack.calls_to("chat.update", ok=False)
    assert f"`{VM}` is parked: only image `{IMAGE}` (family `{FAMILY}`) remains." in slack.thread("C100", slack.messages("C100")[-1].ts)[-1].text
