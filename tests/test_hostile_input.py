"""Hostile command text, through the real signed HTTP path.

A property-based test sends hundreds of generated command texts (Slack markup,
quotes, control characters, unicode, option soup, over-long input) to one
running bot and checks that every answer is a usage message, a refusal or a
normal answer; that nothing crashes or leaks a traceback; that user text is
never echoed as live Slack markup; and that only valid commands touch GCP or
the store.
"""

from __future__ import annotations

import re
import shlex

import pytest
from hypothesis import HealthCheck, example, given, strategies as st
from hypothesis import settings as hypothesis_settings
from security_support import effects

from bot.core.errors import UsageError
from bot.slack.parsing import NAME_RE, SUBCOMMANDS, Command, mentioned_vm, parse
from bot.settings import Settings
from conftest import Running, replace
from standins.compute import ComputeStandin
from standins.slack_api import SlackStandin
from standins.slack_driver import Reply, SlackDriver

OWNER, ADMIN, BYSTANDER = "U100", "UADMIN", "U300"

HOSTILE = [
    "<!channel>", "<!here>", "<!everyone>", "<@U0BOSS>", "<#C0SECRET>", "<http://evil.example|click me>",
    "<https://evil.example>", "http://evil.example/x", "`", "```", "*bold*", "_it_", "~s~", "&amp;", "&lt;", "&",
    "\n", "\r\n", "\t", "\x00", "\x1b[31m", "'", '"', "\\", "$(reboot)", "; rm -rf /", "| cat", "../../etc/passwd",
    "%00", "=", "==", "zone=", "page=0", "page=-1", "page=99999", "ＣＲＥＡＴＥ", "İ", "ß", "\u202e", "\u200b", "🙂",
    "a" * 64, "x" * 301, "Traceback (most recent call last):", "{{7*7}}", "%s%s%n", "None", "null", "-1",
]
NAMES = ["test-vm-22", "other-vm", "brand-new", "Test-VM-22", "9lives", "a-", "a" * 63, "a" * 64, "test-vm-22\n",
         "vm_1", "vm.1", "-vm", ""]
VALUES = ["us-central1-a", "europe-west1-b", "e2-small", "n2-standard-4", "custom-4-8192", "1", "2", "12",
          "us-central1-a\n", "moon", "US-CENTRAL1-A", "e2 small", "a-" * 40 + "a1-b"]
KEYS = ["zone", "machine-type", "page", "colour", "", "ZONE", "zone ", "name"]


def quoted(token: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(token, token.map(shlex.quote), token.map(lambda t: f'"{t}"'), token.map(lambda t: f"'{t}"))


def command_texts() -> st.SearchStrategy[str]:
    """Mostly almost-valid commands (a verb, a name-like word, options), plus free text and known traps."""
    words = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=24))
    good_names = st.from_regex(NAME_RE, fullmatch=True)
    names = st.one_of(
        st.sampled_from(NAMES),
        good_names,
        st.builds(lambda name, trap: name + trap, good_names, st.sampled_from(["\n", "\r", "\x00", " x", "<!here>", "\u200b"])),
        st.text(max_size=70),
    )
    values = st.one_of(st.sampled_from(VALUES), st.sampled_from(HOSTILE), st.text(max_size=70))
    options = st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS), values)
    tokens = quoted(st.one_of(names, options, words))
    verbs = st.one_of(
        st.sampled_from(["create", "park", "restore", "status", "history"]),
        st.sampled_from([*SUBCOMMANDS, "sweep", "delete", "CREATE", "Park", "crate", "", *HOSTILE[:6]]),
    )
    aimed = st.builds(lambda verb, name, rest: " ".join([verb, name, *rest]), verbs, quoted(names), st.lists(tokens, max_size=3))
    loose = st.builds(lambda verb, rest: " ".join([verb, *rest]), verbs, st.lists(tokens, max_size=4))
    return st.one_of(aimed, aimed, loose, st.text(max_size=350), st.sampled_from(HOSTILE))


def valid(text: str) -> Command | None:
    try:
        return parse(text)
    except UsageError:
        return None


# What a reply may start with: a usage message or refusal (":warning:"), or a verb's normal answer.
NORMAL_ANSWERS = {
    "help": r"vmbot: ",
    "list": r"I don't manage any VMs yet|[0-9]+ VMs: ",
    "status": r":mag: Looking up ",
    "history": r"History of ",
    "create": r":rocket: Creating ",
    "park": r"Park ",
    "delete": r"Delete ",
    "restore": r":recycle: Restoring ",
    "images": r"`[a-z0-9-]+` has no images yet|[0-9]+ images? of ",
    "sweep": r":broom: ",
    "stop": r"Stop ",
    "suspend": r"Suspend ",
    "start": r":arrow_forward: Starting ",
    "resume": r":arrow_forward: Resuming ",
    "schedule": r":calendar: |`[a-z0-9-]+` had no schedule",
    "schedules": r"No VM has a schedule|[0-9]+ schedules: ",
    "ttl": r":hourglass: |`[a-z0-9-]+` had no time to live",
    "savings": r"Nothing saved yet|Saved so far",
    "adopt": r":inbox_tray: Adopting ",
}
ACTING_VERBS = ("create", "sweep", "schedule", "ttl", "adopt")  # valid ones may change the store (and call GCP to mutate)
OUR_MARKUP = re.compile(r"<[@#][UCW][A-Z0-9]+>")  # mentions and channel links the bot writes itself
LEAKS = ("Traceback", 'File "', "Exception", "something went wrong on my side")


def leaks(shown: str, typed: str) -> list[str]:
    """Signs of a stack trace or a crash in a reply (the person's own words echoed back do not count)."""
    return [leak for leak in LEAKS if leak in shown and leak not in typed]


def shown_text(reply: Reply) -> str:
    parts = [reply.text]
    for block in reply.blocks or []:
        if block.get("type") == "section":
            parts.append(block["text"]["text"])
        for element in block.get("elements", []):
            parts.append(str(element.get("text", "")))
    return "\n".join(parts)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, admins=frozenset({ADMIN}))


@pytest.fixture
def seeded(driver: SlackDriver, running: Running) -> SlackDriver:
    """One running VM, test-vm-22, owned by U100, for the generated commands to aim at."""
    assert "Creating" in driver.command("create test-vm-22", user=OWNER).text
    running.settle()
    return driver


@hypothesis_settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=command_texts(), user=st.sampled_from([OWNER, ADMIN, BYSTANDER]))
@example(text='create "brand-new\n"', user=OWNER)  # "$" in a regex matches before a trailing newline
@example(text="park test-vm-22 <!channel>", user=BYSTANDER)
@example(text="frob`<http://evil.example|x>`", user=BYSTANDER)
@example(text="create brand-new zone=us-central1-a zone=x", user=OWNER)
@example(text="create payload", user=OWNER)  # slack_bolt took any form with "payload" in it for an interaction
def test_any_command_text_gets_a_clear_answer_and_only_valid_ones_act(
    seeded: SlackDriver, running: Running, gcp: ComputeStandin, slack: SlackStandin, text: str, user: str
) -> None:
    store = running.bot.store
    before, audited, gcp_before, responses_before = effects(store), len(store.audit_log(limit=10_000)), len(gcp.requests), len(slack.responses)
    command = valid(text)

    reply = seeded.command(text, user=user)
    running.settle()

    assert reply.status == 200, f"HTTP {reply.status} for {text!r}"
    shown = shown_text(reply)
    assert not leaks(shown, text), shown
    assert all(OUR_MARKUP.fullmatch(tag) for tag in re.findall(r"<[^>]*>", shown)), f"live markup echoed: {shown!r}"
    follow_ups = [str(r) for r in slack.responses[responses_before:]]
    assert not any(leaks(f, text) for f in follow_ups)
    assert len(store.audit_log(limit=10_000)) == audited + 1, "every command is recorded once"

    if text.strip().lower() == "create":  # no name: the create form opens to ask for the rest (tests/test_surfaces.py)
        assert not reply.text.strip() and slack.calls_to("views.open", ok=True), reply.text
        assert effects(store) == before and len(gcp.requests) == gcp_before
        return
    if command is None:
        assert reply.text.startswith(":warning: "), reply.text
        assert effects(store) == before, f"{text!r} was refused but changed the store"
        assert len(gcp.requests) == gcp_before, f"{text!r} was refused but called GCP"
        entry = store.audit_log(limit=1)[0]
        assert entry.vm_name == mentioned_vm(text)
        return
    assert re.match(f":warning: |{NORMAL_ANSWERS[command.verb]}", reply.text), f"{text!r} -> {reply.text!r}"
    if command.verb not in ACTING_VERBS:
        assert effects(store) == before, f"{text!r} is not a create but changed the store"
        assert all(r.method == "GET" for r in gcp.requests[gcp_before:]), f"{text!r} changed something in GCP"
    for vm in store.list_vms(include_deleted=True):
        assert NAME_RE.fullmatch(vm.vm.name), f"a VM named {vm.vm.name!r} got into the store"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('create "test-vm-22\n"', "is not a valid VM name"),  # "$" would match before the newline
        ("create a zone=us-central1-a zone=europe-west1-b", "`zone=` is given more than once"),
        ("create a zone=" + "a" * 60 + "-b1-c", "is not a zone name"),
        ("create a machine-type=" + "e2-" * 30 + "x", "is not a machine type"),
        ("history a page=0", "`page=0` is not a page number"),
        ("history a page=10000", "is not a page number"),
        ("park a <!channel>", "(`a &lt;!channel&gt;`)"),
        ("frob`<@U1>`", "`/vm frob'&lt;@U1&gt;'`"),
    ],
)
def test_strict_parsing_rules(text: str, message: str) -> None:
    with pytest.raises(UsageError) as error:
        parse(text)
    assert message in str(error.value)


def test_a_name_with_a_newline_creates_nothing(seeded: SlackDriver, running: Running, gcp: ComputeStandin) -> None:
    before, requests = effects(running.bot.store), len(gcp.requests)
    reply = seeded.command('create "brand-new\n"')
    running.settle()
    assert reply.text.startswith(":warning: `brand-new") and "is not a valid VM name" in reply.text
    assert effects(running.bot.store) == before and len(gcp.requests) == requests
