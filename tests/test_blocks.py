"""Block Kit builders, checked as data."""

from __future__ import annotations

import pytest

from bot.slack.blocks import delete_confirmation, escape, sections
from storage.models import Vm, VmState


def test_long_lists_are_split_into_sections_slack_accepts() -> None:
    lines = [f"line {i} " + "x" * 90 for i in range(100)]
    blocks = sections(lines)
    texts = [b["text"]["text"] for b in blocks]
    assert len(blocks) > 1 and all(len(t) <= 3000 for t in texts)
    assert "\n".join(texts).splitlines() == lines


def test_user_text_cannot_ping_or_link() -> None:
    assert "<" not in escape("<!channel> <@U1> <https://x|y>") and ">" not in escape("<!here>")


def _vm(state: str) -> Vm:

    return Vm(name="vm-a", zone="us-central1-a", machine_type="e2-small", owner="U1", state=VmState(state))


@pytest.mark.parametrize(
    ("state", "images", "grace", "says"),
    [
        ("running", 0, 0, "deletes the VM and its boot disk, and keeps nothing: it has no images."),
        ("parked", 1, 0, "marks its 1 image dirty: the sweeper deletes it at the next sweep."),
        ("stopped", 2, 86400, "deletes the VM and its boot disk, and marks its 2 images dirty: the sweeper deletes "
                              "them after a grace period of 24 h."),
    ],
)
def test_the_delete_question_says_what_goes_and_when(state: str, images: int, grace: float, says: str) -> None:
    question = delete_confirmation(_vm(state), "U1", images=images, grace=grace, nonce="n1")
    what = question.blocks[0]["text"]["text"]
    assert what == f":warning: Deleting `vm-a` {says} *There is no way back*: `/vm restore vm-a` will not work afterwards."
    actions = question.blocks[1]
    assert actions["block_id"] == "delete_confirmation:n1"
    confirm, cancel = actions["elements"]
    assert (confirm["action_id"], confirm["style"], cancel["action_id"]) == ("delete_confirm", "danger", "delete_cancel")
    assert confirm["confirm"]["title"]["text"] == "Delete this VM?" and confirm["confirm"]["style"] == "danger"
