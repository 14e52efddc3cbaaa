"""`/vm list` with a thousand VMs: pages of at most 50 within Slack's limits, a next-page button that
reaches every VM exactly once, `page=N`, `mine` and a state to narrow it; `GET /api/v1/vms` pages
with a cursor. The pages are read in SQL (keyset on the name), on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from slack_sdk.models.blocks import Block

from api_client import API_TOKENS, ApiClient
from conftest import Running, replace
from bot.settings import Settings
from bot.slack.blocks import LIST_NEXT, LIST_PAGE_SIZE, MAX_BLOCKS
from standins.slack_api import SlackStandin
from standins.slack_driver import SlackDriver
from storage.models import Vm, VmState
from storage.store import Store

@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, allowed_channels=frozenset({"C100"}), api_tokens=API_TOKENS)


@pytest.fixture
def api(running: Running) -> Iterator[ApiClient]:
    client = ApiClient(running.base_url)
    yield client
    client.session.close()


NAME = re.compile(r"^\*([a-z][-a-z0-9]*)\*  ", re.M)


def seed(store: Store, count: int, *, parked_every: int = 0, owner_every: int = 0) -> list[str]:
    """``count`` VMs straight into the store (set-up): every ``parked_every``-th parked, every
    ``owner_every``-th owned by U200 instead of U100. Longest names GCP allows, in shuffled order."""
    names = [f"vm-{(i * 7919) % count:04d}-" + "x" * 54 for i in range(count)]
    with store.sessions.begin() as s:
        for i, name in enumerate(names):
            state = VmState.PARKED if parked_every and i % parked_every == 0 else VmState.RUNNING
            owner = "U200" if owner_every and i % owner_every == 0 else "U100"
            s.add(Vm(name=name, zone="northamerica-northeast1-c", machine_type="n2-highmem-128", owner=owner,
                     state=state, external_ip="203.0.113.255"))  # fmt: skip
    return names


def check_within_slacks_limits(blocks: list[dict]) -> None:
    assert len(blocks) <= MAX_BLOCKS
    for block in blocks:
        Block.parse(block).to_dict()  # Slack's own validators: SlackObjectFormationError on any limit
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000


def names_on(blocks: list[dict]) -> list[str]:
    return [m for b in blocks if b["type"] == "section" for m in NAME.findall(b["text"]["text"])]


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_a_thousand_vms_page_within_slacks_limits_and_the_button_reaches_each_exactly_once(
    driver: SlackDriver, slack: SlackStandin, running: Running
) -> None:
    names = seed(running.bot.store, 1000)
    reply = driver.command("list")
    assert reply.slack_error is None and reply.in_time
    seen: list[str] = []
    blocks = reply.blocks
    pages = 0
    while True:
        pages += 1
        check_within_slacks_limits(blocks)
        shown = names_on(blocks)
        assert 0 < len(shown) <= LIST_PAGE_SIZE
        assert blocks[0]["text"]["text"].startswith(f"*1000 VMs* · page {pages} of 20 · ")
        seen += shown
        if not any(b["type"] == "actions" for b in blocks):
            break
        driver.click(LIST_NEXT, blocks=blocks)
        running.settle()
        answer = slack.responses[-1]
        assert answer["replace_original"] is True
        blocks = answer["blocks"]
    assert sorted(seen) == sorted(names) and len(seen) == len(set(seen)) == 1000
    assert pages == 20, "the longest names still fit 50 VMs a page"


def test_page_n_mine_and_a_state_narrow_the_list(driver: SlackDriver, running: Running) -> None:
    names = sorted(seed(running.bot.store, 130, parked_every=2, owner_every=5))
    third = driver.command("list page=3")
    assert names_on(third.blocks) == names[100:130]
    assert third.blocks[0]["text"]["text"].startswith("*130 VMs* · page 3 of 3 · 101–130")
    assert not any(b["type"] == "actions" for b in third.blocks)

    parked = driver.command("list parked")
    shown = names_on(parked.blocks)
    assert len(shown) == 50 and all(running.bot.store.vm(n).state is VmState.PARKED for n in shown)
    assert parked.blocks[0]["text"]["text"].startswith("*65 VMs* matching `/vm list parked` · page 1 of 2")

    mine = driver.command("list mine parked", user="U200")
    shown = names_on(mine.blocks)
    expected = sorted(n for n in names if running.bot.store.vm(n).owner == "U200" and running.bot.store.vm(n).state is VmState.PARKED)
    assert shown == expected and mine.blocks[0]["text"]["text"] == f"*{len(expected)} VMs* matching `/vm list mine parked`"

    assert "has 3 pages" in driver.command("list page=9").text and "`/vm list page=3`" in driver.command("list page=9").text
    assert "No VMs match `/vm list suspended`" in driver.command("list suspended").text
    assert "one state at a time" in driver.command("list parked running").text


def test_the_next_button_of_a_filtered_list_keeps_its_filter(driver: SlackDriver, slack: SlackStandin, running: Running) -> None:
    names = seed(running.bot.store, 120, parked_every=1)
    first = driver.command("list parked")
    driver.click(LIST_NEXT, blocks=first.blocks)
    running.settle()
    second = slack.responses[-1]["blocks"]
    assert names_on(second) == sorted(names)[50:100]
    assert second[0]["text"]["text"].startswith("*120 VMs* matching `/vm list parked` · page 2 of 3 · 51–100")


def test_a_press_outside_the_allowed_channels_is_refused_and_the_list_stays(
    driver: SlackDriver, slack: SlackStandin, running: Running
) -> None:
    seed(running.bot.store, 60)
    first = driver.command("list")
    driver.click(LIST_NEXT, blocks=first.blocks, channel="C555")  # the list, shared where the bot does not act
    running.settle()
    answer = slack.responses[-1]
    assert answer["replace_original"] is False and answer["response_type"] == "ephemeral"
    assert "C100" in answer["text"] and names_on(answer["blocks"]) == []


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_the_api_pages_with_an_opaque_cursor(api: ApiClient, running: Running) -> None:
    names = seed(running.bot.store, 250)
    first = api.get("/api/v1/vms", params={"limit": "100"}).json()
    assert len(first["vms"]) == 100 and first["next_cursor"]
    seen = [vm["name"] for vm in first["vms"]]
    cursor = first["next_cursor"]
    while cursor:
        page = api.get("/api/v1/vms", params={"limit": "100", "cursor": cursor}).json()
        seen += [vm["name"] for vm in page["vms"]]
        cursor = page.get("next_cursor")
    assert set(page) == {"vms"}, "the last page has the shape a one-page list always had"
    assert seen == [item.vm.name for item in running.bot.store.list_vms()], "the database's order, each once"
    assert sorted(seen) == sorted(names) and len(set(seen)) == 250
    for bad in ("nope", "YWZ0ZXI6Tk9U", "a" * 500):  # not base64 of ours; "after:NOT" (not a VM name)
        answer = api.get("/api/v1/vms", params={"cursor": bad})
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_option"
    assert api.get("/api/v1/vms", params={"limit": "0"}).status_code == 400
    assert api.get("/api/v1/vms", params={"limit": "1001"}).status_code == 400
