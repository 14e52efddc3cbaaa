"""The sweeper from Slack and on its schedule: `/vm sweep [dry-run]`, `/vm images NAME`, the
scheduled job's report, and the scheduler's start and stop. Signed requests in, the Slack and
Compute stand-ins out, as in test_end_to_end."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest
from sqlalchemy import select

from bot.app import create_app
from bot.core.errors import UsageError
from bot.slack.parsing import Command, parse
from bot.jobs.scheduler import sweep_job
from bot.settings import Settings, SettingsError
from bot.jobs.sweeper import SWEEP_LEASE
from conftest import PROJECT, Running, fast_compute
from standins.compute import ComputeStandin
from standins.slack_api import Message, SlackStandin
from standins.slack_driver import Reply, SlackDriver
from storage.models import Image, ImageState, Lease, Sweep, VmState

CHANNEL = "C100"
REPORTS = "C0REPORTS"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """No grace period: an image is swept as soon as it is dirty (test_sweeper covers the grace).
    The driver's user (U100) is an admin: `/vm sweep` is admin-only (test_permissions)."""
    return replace(settings, sweep_grace=0, report_channel=REPORTS, admins=frozenset({"U100"}))


@dataclass
class Chat:
    """Drives the bot as a person in #ops would, and waits for the work each command starts:
    first for the effect it expects (on the Slack stand-in), then for the runner to go idle."""

    driver: SlackDriver
    slack: SlackStandin
    running: Running

    def create(self, name: str) -> None:
        self.driver.command(f"create {name}")
        self.settle(self._vm_is(name, VmState.RUNNING))

    def park(self, name: str) -> None:
        question = self.driver.command(f"park {name}")
        assert "park_confirm" in str(question.blocks), question.text
        self.driver.click("park_confirm", blocks=question.blocks)
        self.settle(self._vm_is(name, VmState.PARKED))

    def restore(self, name: str) -> None:
        self.driver.command(f"restore {name}")
        self.settle(self._vm_is(name, VmState.RUNNING))

    def sweep(self, text: str = "sweep") -> Reply:
        """``/vm sweep ...``, returning the ack once the report is in its thread."""
        before = self.reports()
        reply = self.driver.command(text)
        self.settle(lambda: self.reports() > before)
        return reply

    def reports(self) -> int:
        """Sweep threads that have their report."""
        roots = [m for m in self.slack.messages(CHANNEL) if m.text.startswith(("Image sweep", "Dry run"))]
        return sum(1 for root in roots if len(self.slack.thread(CHANNEL, root.ts)) > 1)

    def settle(self, done: Callable[[], bool]) -> None:
        assert self.slack.wait_for(done, timeout=30), "the background work did not finish"
        assert self.running.bot.runner.drain(timeout=30) and self.running.bot.outbox.drain(timeout=30)

    def _vm_is(self, name: str, state: VmState) -> Callable[[], bool]:
        def check() -> bool:
            vm = self.running.bot.store.vm(name)
            return vm is not None and vm.state is state and vm.active_operation_id is None

        return check


@pytest.fixture
def chat(driver: SlackDriver, slack: SlackStandin, running: Running) -> Chat:
    return Chat(driver, slack, running)


def newest_thread(slack: SlackStandin, channel: str = CHANNEL) -> list[Message]:
    return slack.thread(channel, slack.messages(channel)[-1].ts)


def image_deletes(gcp: ComputeStandin) -> list[str]:
    return [r.path.rsplit("/", 1)[-1] for r in gcp.requests if r.method == "DELETE" and "/global/images/" in r.path]


def store_rows(running: Running) -> list[tuple]:
    with running.bot.store.sessions() as s:
        images = [(i.name, i.state, i.dirty_since, i.deleted_at, i.delete_error) for i in s.scalars(select(Image))]
        return images + list(s.scalars(select(Sweep))) + list(s.scalars(select(Lease)))


def test_re_park_then_sweep_from_slack(
    chat: Chat, driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    store = running.bot.store
    chat.create("test-vm-22")
    chat.park("test-vm-22")
    (first,) = [image["name"] for image in gcp.images(PROJECT)]
    chat.restore("test-vm-22")
    chat.park("test-vm-22")

    # Re-parking made the first image dirty; /vm images says so.
    states = {image.name: image.state for image in store.images("test-vm-22")}
    (second,) = [name for name in states if name != first]
    assert states == {first: ImageState.DIRTY, second: ImageState.READY}
    listing = driver.command("images test-vm-22")
    assert listing.text == "2 images of test-vm-22"
    lines = str(listing.blocks)
    assert f"`{first}`  :broom: dirty since" in lines and f"`{second}`  :large_green_circle: ready" in lines

    # The sweep: acknowledged at once, the report in a thread.
    gcp.clear_requests()
    ack = chat.sweep()
    assert ack.status == 200 and ack.in_time and "Sweeping dirty images now" in ack.text
    assert image_deletes(gcp) == [first]
    assert {image["name"] for image in gcp.images(PROJECT)} == {second}
    root, report = newest_thread(slack)
    assert root.edits == 1 and root.history[0].text.startswith("<@U100> started an image sweep #1")
    assert root.text == "Image sweep #1: deleted 1 image (2.9 GB), 1 kept"  # the newest image, its way back (issue 16)
    details = str(report.blocks)
    assert f"*Deleted* (2.9 GB freed): 1\\n• `{first}` (test-vm-22)" in details
    assert "*Kept*: not dirty (each a VM's way back, or in use): 1 image" in details
    row = next(image for image in store.images("test-vm-22") if image.name == first)
    assert row.state is ImageState.DELETED and row.deleted_by == "sweep #1"
    assert "sweep #1" in str(driver.command("images test-vm-22").blocks)

    # Nothing dirty remains: a second sweep deletes nothing.
    chat.sweep()
    assert image_deletes(gcp) == [first]
    assert newest_thread(slack)[0].text == "Image sweep #2: deleted 0 images (0.0 GB), 1 kept"


def test_sweep_dry_run_changes_nothing(chat: Chat, slack: SlackStandin, gcp: ComputeStandin, running: Running) -> None:
    chat.create("vm-a")
    for _ in range(2):
        chat.park("vm-a")
        chat.restore("vm-a")
    dirty = [image.name for image in running.bot.store.images("vm-a") if image.state is ImageState.DIRTY]
    assert len(dirty) == 1
    gcp.seed_image(PROJECT, "orphan-7", labels={"managed-by": "vmbot"})
    before, gcp_before = store_rows(running), gcp.images(PROJECT)
    gcp.clear_requests()

    ack = chat.sweep("sweep dry-run")
    assert "dry run: I delete nothing" in ack.text

    assert [r.method for r in gcp.requests if r.method != "GET"] == [], "no DELETE (nor anything else) reached GCP"
    assert gcp.images(PROJECT) == gcp_before and store_rows(running) == before
    root, report = newest_thread(slack)
    assert root.history[0].text.startswith("<@U100> started a dry run of the image sweep")
    assert root.text == "Dry run of the image sweep: would delete 1 image (2.9 GB), 1 kept, 1 orphan"
    details = str(report.blocks)
    assert f"*Would delete* (2.9 GB to free): 1\\n• `{dirty[0]}` (vm-a)" in details
    assert "*Orphans*" in details and "`orphan-7`" in details and "Dry run: nothing was changed." in details
    assert slack.calls_to("chat.postMessage", ok=True)[-1].params["channel"] == CHANNEL
    assert not [c for c in slack.calls if c.params.get("channel") == REPORTS], "manual sweeps report where asked"


def test_a_sweep_while_another_runs_says_so_and_does_nothing(
    chat: Chat, driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    chat.create("vm-a")
    chat.park("vm-a")
    chat.restore("vm-a")
    chat.park("vm-a")
    assert running.bot.store.take_lease(SWEEP_LEASE, "replica-2:77/abcd", 300)
    posted, responses = len(slack.calls_to("chat.postMessage")), len(slack.responses)

    driver.command("sweep")
    chat.settle(lambda: len(slack.responses) > responses)  # the answer, through response_url

    assert image_deletes(gcp) == []
    assert len(slack.calls_to("chat.postMessage")) == posted
    assert "I did not sweep: another sweep is running (replica-2:77/abcd" in slack.responses[-1]["text"]


BAD_COMMANDS = [
    ("sweep now", "`/vm sweep` got more than I expected (`now`). Usage: `/vm sweep [dry-run]`"),
    ("sweep dry-run=yes", "`/vm sweep` has no option `dry-run=`"),
    ("images", "`/vm images` needs a VM name. Usage: `/vm images NAME`"),
    ("images nope", "I don't know a VM called `nope`"),
    ("images Bad_Name", "is not a valid VM name"),
    ("images a b", "got more than I expected"),
]


def test_bad_sweep_and_images_commands_change_nothing(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    before = store_rows(running)
    gcp.clear_requests()
    for text, message in BAD_COMMANDS:
        reply = driver.command(text)
        running.settle()
        assert reply.status == 200 and message in reply.text, text
    assert gcp.requests == [] and store_rows(running) == before and slack.calls_to("chat.postMessage") == []


def test_parsing_sweep_and_images() -> None:
    assert parse("sweep") == Command("sweep")
    assert parse("sweep dry-run") == Command("sweep", flags=frozenset({"dry-run"}))
    assert parse("SWEEP DRY-RUN") == Command("sweep", flags=frozenset({"dry-run"}))
    assert parse("images vm-a") == Command("images", "vm-a")
    assert parse("park dry-run") == Command("park", "dry-run"), "sweep's flag is just a name to other verbs"
    with pytest.raises(UsageError, match="got more than I expected"):
        parse("sweep dry-run dry-run now")


def test_help_lists_the_new_verbs(driver: SlackDriver) -> None:
    text = driver.command("help").text
    assert "/vm sweep [dry-run]" in text and "/vm images NAME" in text


# ---- on its schedule ---------------------------------------------------------------------


def test_the_scheduler_starts_with_the_bot_and_stops_with_it(settings: Settings) -> None:
    bot = create_app(replace(settings, sweep_interval=1234), compute=fast_compute(settings))
    assert not bot.scheduler.running, "building the app starts no scheduler thread"
    bot.start()
    try:
        assert bot.scheduler.running
        job = {job.id: job for job in bot.scheduler.jobs()}["sweep"]  # beside it: reconcile (test_reconcile)
        assert job.func is sweep_job and job.trigger.interval.total_seconds() == 1234
        assert job.max_instances == 1 and job.coalesce
    finally:
        bot.shutdown()
    assert not bot.scheduler.running and bot.sweeper.stopping.is_set()


def test_a_scheduled_sweep_posts_its_report_to_the_report_channel(
    chat: Chat, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    chat.create("vm-a")
    chat.park("vm-a")
    chat.restore("vm-a")
    chat.park("vm-a")

    sweep_job(running.bot)
    assert len(image_deletes(gcp)) == 1
    root, report = slack.thread(REPORTS, slack.messages(REPORTS)[-1].ts)
    assert root.text == "Image sweep #1: deleted 1 image (2.9 GB), 1 kept"
    assert "scheduled" in str(root.blocks) and "*Deleted* (2.9 GB freed): 1" in str(report.blocks)

    sweep_job(running.bot)  # the next run within half an interval: this interval is swept already
    assert len(slack.messages(REPORTS)) == 1 and running.bot.store.last_sweep().id == 1


def test_a_scheduled_sweep_that_did_nothing_stays_quiet(slack: SlackStandin, running: Running) -> None:
    sweep_job(running.bot)
    last = running.bot.store.last_sweep(trigger="scheduled")
    assert last is not None and last.deleted == 0 and last.completed
    assert [call.method for call in slack.calls if call.method.startswith("chat.")] == []


def test_sweep_settings_from_the_environment(tmp_path) -> None:  # type: ignore[no-untyped-def]
    base = {"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": "y", "GOOGLE_CLOUD_PROJECT": "p"}
    defaults = Settings.from_env(base)
    assert (defaults.sweep_interval, defaults.keep_images, defaults.sweep_grace) == (3600, 1, 86400)
    assert defaults.report_channel is None and defaults.sweep_concurrency == 8
    custom = Settings.from_env(
        {**base, "VMBOT_SWEEP_INTERVAL": "600", "VMBOT_KEEP_IMAGES": "3", "VMBOT_SWEEP_GRACE": "0",
         "VMBOT_REPORT_CHANNEL": "C0OPS", "VMBOT_SWEEP_CONCURRENCY": "16"}
    )  # fmt: skip
    assert (custom.sweep_interval, custom.keep_images, custom.sweep_grace) == (600, 3, 0)
    assert custom.report_channel == "C0OPS" and custom.sweep_concurrency == 16
    with pytest.raises(SettingsError) as error:
        Settings.from_env(
            {**base, "VMBOT_KEEP_IMAGES": "0", "VMBOT_SWEEP_GRACE": "-1", "VMBOT_SWEEP_INTERVAL": "soon",
             "VMBOT_REPORT_CHANNEL": "#ops"}
        )  # fmt: skip
    assert error.value.problems == [
        "VMBOT_SWEEP_INTERVAL='soon' is not a number; see README > Configuration",
        "VMBOT_KEEP_IMAGES='0' must be greater than 0; see README > Configuration",
        "VMBOT_SWEEP_GRACE='-1' must be 0 or more; see README > Configuration",
        "VMBOT_REPORT_CHANNEL='#ops' is not a Slack channel id (like C0123ABCD)",
    ]
