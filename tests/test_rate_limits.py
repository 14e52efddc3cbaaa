"""Politeness towards Slack: a small budget of Web API calls per operation, every 429 waited out and
retried (Web API and response_url alike), and many operations in one channel kept to Slack's
one message per second without losing a message.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from slack_sdk import WebClient
from slack_sdk.http_retry import builtin_handlers

from bot.app import create_app, create_web_client
from bot.slack.pacing import ChannelPacer, retry_rate_limits
from bot.slack.threads import SlackThread
from bot.web.server import make_http_server
from bot.settings import Settings, SettingsError
from conftest import BOT_TOKEN, PROJECT, SIGNING_SECRET, Running, fast_compute, replace
from standins.compute import ComputeStandin
from standins.slack_api import SlackStandin
from standins.slack_driver import SlackDriver
from storage.models import Verb
from storage.store import Store

ZONE = "us-central1-a"
CHANNEL = "C100"


@pytest.fixture
def retry_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """slack_sdk's retry handlers sleep Retry-After (+ jitter) before retrying: record the sleeps instead."""
    sleeps: list[float] = []
    monkeypatch.setattr(builtin_handlers, "time", SimpleNamespace(sleep=sleeps.append))
    return sleeps


def methods_since(slack: SlackStandin, start: int) -> list[str]:
    return [call.method for call in slack.calls[start:]]


# ---- the budget -----------------------------------------------------------------------------------


def test_a_create_costs_four_web_api_calls_and_a_park_six(driver: SlackDriver, slack: SlackStandin, running: Running) -> None:
    start = len(slack.calls)  # auth.test at start-up is not counted
    driver.command("create test-vm-1")
    running.settle()
    create = methods_since(slack, start)
    assert create == ["chat.postMessage", "chat.postMessage", "chat.update", "chat.postMessage"]  # root, step, root, result

    start = len(slack.calls)
    question = driver.command("park test-vm-1")
    driver.click("park_confirm", blocks=question.blocks)
    running.settle()
    park = methods_since(slack, start)
    assert park == ["chat.postMessage"] * 4 + ["chat.update", "chat.postMessage"]  # root, 3 steps, root, result
    assert len(create) <= 4 and len(park) <= 6
    assert all(call.ok for call in slack.calls)


# ---- 429 + Retry-After, everywhere ---------------------------------------------------------------------


def test_web_api_429s_are_waited_out_and_retried(
    driver: SlackDriver, slack: SlackStandin, running: Running, retry_sleeps: list[float]
) -> None:
    slack.rate_limit("chat.postMessage", times=2, retry_after=2)
    slack.rate_limit("chat.update", times=1, retry_after=1)
    driver.command("create test-vm-1")
    running.settle()

    assert [(c.status, c.error) for c in slack.calls_to("chat.postMessage")][:3] == [
        (429, "ratelimited"), (429, "ratelimited"), (200, None)]
    assert [c.status for c in slack.calls_to("chat.update")] == [429, 200]
    assert [int(s) for s in retry_sleeps] == [2, 2, 1], "each retry waited the Retry-After it was given"
    root, *replies = slack.thread(CHANNEL, slack.messages(CHANNEL)[-1].ts)
    assert root.text == "Create test-vm-1: done" and "is created" in replies[-1].text


def test_respond_retries_a_rate_limited_response_url(
    driver: SlackDriver, slack: SlackStandin, running: Running, retry_sleeps: list[float]
) -> None:
    driver.command("create test-vm-1")
    running.settle()
    question = driver.command("park test-vm-1")
    slack.rate_limit_responses(times=1, retry_after=2)
    driver.click("park_cancel", blocks=question.blocks)
    running.settle()

    cancelled = "Cancelled: `test-vm-1` stays as it is."
    assert [r["text"] for r in slack.responses] == [cancelled, cancelled], "refused once, then accepted"
    assert [m.text for m in slack.ephemerals("U100")] == [cancelled]
    assert [int(s) for s in retry_sleeps] == [2]


def test_a_refusal_through_response_url_is_retried_too(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running, retry_sleeps: list[float]
) -> None:
    gcp.seed_instance(PROJECT, ZONE, "not-ours")  # exists in GCP, unknown to the store: the create is refused
    slack.rate_limit_responses(times=2, retry_after=1)
    driver.command("create not-ours")
    running.settle()

    refusals = [m.text for m in slack.ephemerals("U100")]
    assert len(refusals) == 1 and "already exists in project" in refusals[0]
    assert len(slack.responses) == 3 and [int(s) for s in retry_sleeps] == [1, 1]


# ---- one busy channel ----------------------------------------------------------------------------------

SPEED_UP = 10  # the busy-channel test runs Slack's clock 10x fast: 1 message/s there is 10/s of real time


@pytest.fixture
def busy_channel(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[SlackStandin, SlackDriver, Running]]:
    """Slack with its ~1 message/s per channel limit, and the bot pacing itself to it, on a clock 10x fast.

    Everything that measures time (the stand-in's limit, the bot's pacer, slack_sdk's Retry-After
    sleeps) uses the same fast clock, so the test plays out exactly as in real time, ten times sooner.
    """
    fast_clock = lambda: time.monotonic() * SPEED_UP  # noqa: E731
    fast_sleep = lambda seconds: time.sleep(seconds / SPEED_UP)  # noqa: E731
    monkeypatch.setattr(builtin_handlers, "time", SimpleNamespace(sleep=fast_sleep))
    with SlackStandin(bot_token=settings.slack_bot_token, clock=fast_clock) as slack:
        slack.channel_rate_limit(1)
        paced = replace(settings, slack_api_url=slack.api_url, workers=20)
        pacer = ChannelPacer(1.0, clock=fast_clock, sleep=fast_sleep)
        bot = create_app(paced, compute=fast_compute(paced), pacer=pacer)
        server = make_http_server(bot, "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_port}"
        driver = SlackDriver(f"{base}/slack/events", SIGNING_SECRET, slack)
        try:
            yield slack, driver, Running(bot, f"{base}/slack/events", base)
        finally:
            driver.close()
            server.shutdown()
            server.server_close()
            bot.runner.drain(timeout=60)
            bot.shutdown()


def test_twenty_operations_in_one_channel_lose_no_message(
    busy_channel: tuple[SlackStandin, SlackDriver, Running],
) -> None:
    slack, driver, running = busy_channel
    names = [f"vm-{i:02d}" for i in range(20)]
    for name in names:
        assert "Creating" in driver.command(f"create {name}").text
    assert running.bot.runner.drain(timeout=60), "the creates did not finish"
    assert running.bot.outbox.drain(timeout=60), "their messages were not all posted"

    roots = {root.history[0].text.split()[1]: root for root in slack.messages(CHANNEL)}
    assert sorted(roots) == names, "every operation has its thread"
    for name, root in roots.items():
        *_, result = slack.thread(CHANNEL, root.ts)
        assert root.text == f"Create {name}: done", "the root shows the final state"
        assert result.text.startswith(f"`{name}` is created: RUNNING"), "the thread ends with its result"
        calls = [c for c in slack.calls if c.ok and root.ts in (c.params.get("ts"), c.params.get("thread_ts"))]
        assert len(calls) + 1 <= 4, f"{name}: within the budget of a create, steps coalesced into the root"
    assert len(slack.calls_to("chat.postMessage", ok=True)) >= 40, "a root and a result for each"


# ---- the pacer itself ------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_pacer_allows_a_burst_then_one_post_per_second_per_channel() -> None:
    clock, sleeps = FakeClock(), []
    pacer = ChannelPacer(1.0, burst=3, clock=clock, sleep=sleeps.append)
    assert [pacer.try_post("C1") for _ in range(4)] == [True, True, True, False]
    assert pacer.try_post("C2"), "each channel has its own budget"
    clock.now += 1
    assert pacer.try_post("C1") and not pacer.try_post("C1")

    for _ in range(3):  # posts that must go out queue up, one per second, in order
        pacer.wait_to_post("C1")
    assert sleeps == [1.0, 2.0, 3.0]
    clock.now += 2.5
    assert not pacer.try_post("C1"), "queued posts come before a step's reply"
    assert sleeps == [1.0, 2.0, 3.0]


def test_a_post_that_meets_a_429_takes_a_new_turn_in_its_channels_queue(slack: SlackStandin) -> None:
    """Retried on its own it could lose to the posts already queued, every time, until it gave up."""
    clock, sleeps = FakeClock(), []
    pacer = ChannelPacer(1.0, burst=2, clock=clock, sleep=sleeps.append)
    client = retry_rate_limits(WebClient(token=BOT_TOKEN, base_url=slack.api_url), pacer)
    pacer.wait_to_post("C1")  # the bot counts the post it is about to send ...
    slack.rate_limit("chat.postMessage", times=1, retry_after=2)  # ... but Slack finds the budget spent

    posted = client.chat_postMessage(channel="C1", text="root")

    assert posted["ok"] and [c.status for c in slack.calls_to("chat.postMessage")] == [429, 200]
    assert sleeps == [2.0, 1.0], "Retry-After, then the next free turn (the 429 spent the channel's budget)"
    pacer.wait_to_post("C1")
    assert sleeps[-1] == 2.0, "and the posts after it queue behind it"


def test_pacing_off() -> None:
    pacer = ChannelPacer(None, sleep=lambda seconds: pytest.fail("slept"))
    assert all(pacer.try_post("C1") for _ in range(100))
    pacer.wait_to_post("C1")


def test_a_step_in_a_busy_channel_updates_the_thread_root(slack: SlackStandin, database_url: str) -> None:
    """When the channel's budget is spent, a step is shown on the root; the result waits for its turn."""
    store = Store.from_url(database_url)
    op = store.begin(Verb.CREATE, "vm-1", allowed_from=[None], requested_by="U100", zone=ZONE,
                     machine_type="e2-small", channel=CHANNEL)
    clock, sleeps = FakeClock(), []
    client = create_web_client(Settings(slack_bot_token=BOT_TOKEN, slack_signing_secret="s", project=PROJECT,
                                        slack_api_url=slack.api_url))
    thread = SlackThread(client, store, op, ChannelPacer(1.0, burst=1, clock=clock, sleep=sleeps.append))

    thread.started("e2-small in us-central1-a")  # takes the channel's only post
    thread.step("Creating `vm-1`…")
    thread.finished(ok=True, headline="`vm-1` is RUNNING", detail="`vm-1` is created.", took=1.0)

    root, *replies = slack.thread(CHANNEL, thread.thread_ts or "")
    assert [r.text for r in replies] == ["`vm-1` is created."], "no reply for the step"
    assert [version.blocks[-1]["elements"][0]["text"] for version in root.history[1:]] == [":arrow_forward: Creating `vm-1`…"]
    assert root.text == "Create vm-1: done"
    assert sleeps == [1.0], "the result waited one second for the channel's next post"
    assert [c.method for c in slack.calls] == ["chat.postMessage", "chat.update", "chat.update", "chat.postMessage"]


def test_channel_rate_setting() -> None:
    env = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "GOOGLE_CLOUD_PROJECT": "p"}
    assert Settings.from_env(env).slack_channel_rate == 1.0
    assert Settings.from_env({**env, "VMBOT_SLACK_CHANNEL_RATE": "0.5"}).slack_channel_rate == 0.5
    assert Settings.from_env({**env, "VMBOT_SLACK_CHANNEL_RATE": "off"}).slack_channel_rate is None
    for bad in ("0", "fast"):
        with pytest.raises(SettingsError) as raised:
            Settings.from_env({**env, "VMBOT_SLACK_CHANNEL_RATE": bad})
        assert raised.value.problems[0].startswith(f"VMBOT_SLACK_CHANNEL_RATE={bad!r}")
