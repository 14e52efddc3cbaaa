"""The workflows are plain Python: driven here with no Slack at all, over the real GCP adapter and store."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bot.gcp.compute import Compute
from bot.core.lifecycle import start_operation
from bot.settings import Settings
from bot.core.workflows import Workflows, image_name_for
from standins.compute import ComputeStandin
from storage.models import Operation, Verb, VmState
from storage.store import Store


@dataclass
class Transcript:
    """A Progress that writes down what it is told."""

    lines: list[str] = field(default_factory=list)

    def started(self, detail: str) -> None:
        self.lines.append(f"started: {detail}")

    def step(self, text: str) -> None:
        self.lines.append(f"step: {text}")

    def finished(self, *, ok: bool, headline: str, detail: str, took: float, retry: bool = True) -> None:
        self.lines.append(f"{'ok' if ok else 'failed'}: {headline}")

    def refused(self, text: str) -> None:
        self.lines.append(f"refused: {text}")


def test_create_then_park_without_slack(gcp: ComputeStandin, tmp_path: Path) -> None:
    settings = Settings(slack_bot_token="-", slack_signing_secret="-", project="p1", compute_endpoint=gcp.url)
    store = Store.from_url(f"sqlite:///{tmp_path / 'w.db'}")
    transcript = Transcript()
    workflows = Workflows(store, Compute("p1", endpoint=gcp.url), settings, lambda op: transcript)

    def run(verb: Verb) -> Operation:
        op = start_operation(store, verb, "w1", requested_by="script", zone="europe-west1-b", machine_type="e2-micro")
        workflows.run(op.id)
        return op

    run(Verb.CREATE)
    park = run(Verb.PARK)
    image = image_name_for("w1", park.created_at, park.id)
    assert [line.split("…")[0] for line in transcript.lines] == [
        "started: e2-micro in europe-west1-b",
        "step: Creating `w1` from `projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64`",
        transcript.lines[2],  # the IP is checked below
        "started: e2-micro in europe-west1-b",
        "step: Stopping `w1`",
        f"step: Imaging its boot disk into `{image}` (family `w1`)",
        "step: Image ready. Deleting the VM `w1`",
        f"ok: `w1` is parked as image `{image}`",
    ]
    assert transcript.lines[2].startswith("ok: `w1` is RUNNING at 203.0.113.")
    assert store.vm("w1").state is VmState.PARKED
    assert gcp.image("p1", image)["family"] == "w1"


def test_image_names_fit_gcp_rules() -> None:
    from datetime import datetime, timezone

    from bot.slack.parsing import NAME_RE

    when = datetime(2026, 11, 25, 12, 30, tzinfo=timezone.utc)
    assert image_name_for("test-vm-22", when, 7) == "test-vm-22-20261125-1230-7"
    long_name = "a" + "-b" * 31  # 63 characters
    made = image_name_for(long_name, when, 123456)
    assert len(made) <= 63 and NAME_RE.match(made) and made.endswith("-20261125-1230-123456")
