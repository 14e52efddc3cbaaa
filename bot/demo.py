"""``python -m bot demo``: vmbot with no Slack workspace and no GCP account.

Starts the simulated Compute Engine and Slack that the tests use, serves the
real bot (same Bolt app, handlers and workflows as production) on a local port,
and plays Slack in the terminal: type ``/vm create test-vm-22``, watch the
acknowledgement and the thread grow, press a button by its number. ``home`` opens the
App Home tab (drawn by standins.slack_driver.render_view); ``/vm create`` with no name
opens the create form, filled in with ``submit NAME [zone=...] [machine-type=...]``.
"""

from __future__ import annotations

import argparse
import io
import re
import secrets
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from bot import logs
from bot.app import create_app
from bot.redaction import secrets_of
from bot.web.server import make_http_server
from handlers.api import PREFIX as API_PREFIX
from bot.settings import Settings
from standins.compute import MACHINE_TYPES, ComputeStandin
from standins.slack_api import Message, SlackStandin
from standins.slack_driver import Reply, SlackDriver, render_view

USER, USER_NAME, CHANNEL, CHANNEL_NAME = "U0DEMO", "you", "C0DEMO", "demo"
API_ACTOR = "demo-api"  # the demo's HTTP API token's name: the requester of what it starts
EMOJI = {
    ":white_check_mark:": "✅", ":x:": "❌", ":warning:": "⚠️", ":hourglass_flowing_sand:": "⏳",
    ":rocket:": "🚀", ":recycle:": "♻️", ":parking:": "🅿️", ":mag:": "🔍", ":large_green_circle:": "🟢",
    ":double_vertical_bar:": "⏸", ":wastebasket:": "🗑", ":bangbang:": "‼️", ":arrow_forward:": "▶", ":repeat:": "🔁", ":arrows_counterclockwise:": "🔄", ":information_source:": "ℹ️", ":broom:": "🧹", ":no_entry:": "⛔",
    ":grey_question:": "❔", ":wave:": "👋", ":alarm_clock:": "⏰", ":zzz:": "💤", ":calendar:": "📅", ":hourglass:": "⌛",
    ":moneybag:": "💰", ":fast_forward:": "⏩", ":ok_hand:": "👌", ":bulb:": "💡", ":inbox_tray:": "📥",
}
INTRO = f"""\
vmbot demo: a simulated Compute Engine and Slack on this machine; nothing leaves it.
You are @{USER_NAME} in #{CHANNEL_NAME}. Try:
  /vm create test-vm-22      then  /vm park test-vm-22   then press the button's number
  /vm restore test-vm-22     /vm list     /vm status test-vm-22     /vm help
  /vm images test-vm-22      /vm sweep dry-run     /vm sweep   (the demo sweeps dirty images at once: no grace)
  /vm delete test-vm-22      (for good: asks first, like park)
  home                       the App Home tab: your VMs, their costs, a button per thing you may do
  /vm create                 (no name) the create form: then  submit NAME [zone=Z] [machine-type=T]  or  cancel
  /vm stop test-vm-22   /vm start test-vm-22   /vm suspend test-vm-22   /vm resume test-vm-22   /vm savings
  /vm schedule test-vm-22 park-at=HH:MM   (a couple of minutes ahead, UTC: the demo warns 1 min before;
                                           press a notice's button to snooze, skip or park now)
Also: `wait` (until running operations end), `quit`. A button in a thread (Retry) is pressed by its number too.
"""
FORM_FIELDS = {"zone": "zone", "machine-type": "machine_type", "family": "image_family"}


def render(text: str) -> str:
    """Slack mrkdwn, as a terminal can show it."""
    text = text.replace(f"<@{USER}>", f"@{USER_NAME}").replace(f"<#{CHANNEL}>", f"#{CHANNEL_NAME}")
    text = re.sub(r"<@(\w+)>", r"@\1", text)
    for code, char in EMOJI.items():
        text = text.replace(code, char)
    text = re.sub(r"\*([^*\n]+)\*", r"\1", text)  # *bold*
    text = _italics(text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


ITALIC_ON, ITALIC_OFF = "\x1b[3m", "\x1b[23m"
_ITALIC = re.compile(r"(?<![\w])_([^_\n]+?)_(?![\w])")


def _italics(text: str) -> str:
    """Slack's ``_italics_`` outside code spans: italic on a terminal that shows it, else the bare words."""
    on, off = (ITALIC_ON, ITALIC_OFF) if sys.stdout.isatty() else ("", "")
    parts = text.split("`")
    return "`".join(_ITALIC.sub(f"{on}\\1{off}", part) if i % 2 == 0 else part for i, part in enumerate(parts))


def render_blocks(
    text: str, blocks: list[dict[str, Any]] | None, register: Callable[[dict[str, Any]], int] | None = None
) -> list[str]:
    """Lines for a message; each button found is shown by the number ``register`` gives it (not at all without)."""
    if not blocks:
        return [render(text)]
    lines: list[str] = []
    for block in blocks:
        if block["type"] == "section":
            lines.extend(render(block["text"]["text"]).splitlines())
        elif block["type"] == "context":
            lines.extend("  " + line for line in render(" · ".join(e.get("text", "") for e in block["elements"])).splitlines())
        elif block["type"] == "actions":
            labels = []
            for element in block["elements"]:
                if element["type"] == "button" and register is not None:
                    labels.append(f"[{register(element)}] {element['text']['text']}")
            if labels:
                lines.append("  " + "   ".join(labels))
    return lines


class Terminal:
    """Shows what "Slack" received, as it arrives, from a background thread."""

    def __init__(self, slack: SlackStandin, out: TextIO) -> None:
        self.slack, self.out = slack, out
        self.seen: dict[str, int] = {}  # ts -> edits shown
        self.responses_seen = 0
        self.lock = threading.RLock()  # held while a request is sent, so its ack prints before its effects
        self.buttons: list[Button] = []  # numbered as shown: from private replies, channel messages, threads, the Home tab
        self.home_open = False  # the person is looking at the Home tab: draw it again when it changes
        self.home_hash: str | None = None
        self.stopped = threading.Event()

    def watch(self) -> None:
        while not self.stopped.is_set():
            self.slack.wait_for(self._has_news, timeout=0.5)
            self.show_news()

    def _has_news(self) -> bool:
        messages = self.slack.messages(CHANNEL)
        replies = [m for root in messages for m in self.slack.thread(CHANNEL, root.ts)]
        return len(self.slack.responses) > self.responses_seen or any(
            self.seen.get(m.ts, -1) < m.edits for m in replies
        )

    def show_news(self) -> None:
        with self.lock:
            for root in self.slack.messages(CHANNEL):
                for message in self.slack.thread(CHANNEL, root.ts):
                    self._show(message, is_reply=message.ts != root.ts)
            responses = self.slack.responses
            for response in responses[self.responses_seen :]:
                if response.get("text") or response.get("blocks"):
                    lines = render_blocks(response.get("text", ""), response.get("blocks"))
                    self._print("(only you)", lines)
            self.responses_seen = len(responses)
            home = self.slack.home_view(USER)
            if self.home_open and home is not None and home["hash"] != self.home_hash:
                self.show_home(home)

    def show_home(self, view: dict[str, Any]) -> None:
        """Draw the Home tab; its buttons become the ones a number presses."""
        with self.lock:
            found: list[dict[str, Any]] = []
            lines = render_view(view, text=render, buttons=found)
            self.buttons = [Button(element, [], None, view=view) for element in found]
            self.home_hash = view["hash"]
            print("\n".join(lines), file=self.out)
            self.out.flush()

    def show_modal(self) -> dict[str, Any] | None:
        modals = self.slack.modals(USER)
        if not modals:
            return None
        print("\n".join(render_view(modals[-1], text=render)), file=self.out)
        print("Fill it in: submit NAME [zone=ZONE] [machine-type=TYPE] [family=FAMILY], or cancel", file=self.out)
        self.out.flush()
        return modals[-1]

    def _show(self, message: Message, *, is_reply: bool) -> None:
        shown = self.seen.get(message.ts, -1)
        if shown >= message.edits:
            return
        prefix = "   ↳ thread" if is_reply else f"#{CHANNEL_NAME} vmbot"
        if shown >= 0:
            prefix = f"#{CHANNEL_NAME} vmbot (edited)"
        self._print(prefix, render_blocks(message.text, message.blocks, self.registrar(message.blocks, ts=message.ts)))
        self.seen[message.ts] = message.edits

    def registrar(self, blocks: list[dict[str, Any]] | None, *, ts: str | None) -> Callable[[dict[str, Any]], int]:
        """Numbers a message's buttons after those shown already, so each can be pressed by its number.

        A button in the channel or a thread (a failed operation's Retry) is pressable as well as one in
        a private reply (``ts`` None); pressing it sends what Slack sends for a click on that message.
        """

        def register(element: dict[str, Any]) -> int:
            self.buttons.append(Button(element, blocks or [], ts))
            return len(self.buttons)

        return register

    def _print(self, prefix: str, lines: list[str]) -> None:
        print(f"{prefix}: {lines[0]}", file=self.out)
        for line in lines[1:]:
            print(" " * (len(prefix) + 2) + line, file=self.out)
        self.out.flush()


@dataclass(frozen=True)
class Button:
    element: dict[str, Any]
    blocks: list[dict[str, Any]]
    ts: str | None  # the channel message it is on; None for a private reply
    view: dict[str, Any] | None = None  # the Home tab it is on, if it is on one


def run_demo(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot demo", description=__doc__.splitlines()[0])
    add_api_options(parser)
    parser.add_argument("--operation-seconds", type=float, default=2.0, help="how long each simulated GCP operation takes")
    parser.add_argument("--no-terminal", action="store_true",
                        help="no Slack in this terminal: serve the bot headless until Ctrl-C or SIGTERM")
    args = parser.parse_args(argv)
    # The bot's log goes to a buffer, not into the middle of the playback; it is shown when the demo ends.
    log = io.StringIO()
    logs.configure(level="WARNING", stream=log_stream(args, log))

    with tempfile.TemporaryDirectory(prefix="vmbot-demo-") as tmp, ComputeStandin(
        operation_seconds=args.operation_seconds
    ) as gcp, SlackStandin() as slack:
        slack.add_channel(CHANNEL, CHANNEL_NAME)
        slack.add_user(USER, USER_NAME)
        settings = Settings(
            slack_bot_token=slack.bot_token,
            slack_signing_secret=secrets.token_hex(16),
            project="vmbot-demo",
            slack_api_url=slack.api_url,
            compute_endpoint=gcp.url,
            database_url=f"sqlite:///{Path(tmp) / 'vmbot-demo.db'}",
            admins=frozenset({USER}),  # the demo's one person may try the admin verbs (`/vm sweep`)
            sweep_grace=0,  # so `/vm sweep` after a second park shows a deletion
            zones_offered=("us-central1-a", "europe-west1-b"),  # the create form's choices: what the simulated GCP has
            machine_types_offered=tuple(MACHINE_TYPES),
            schedule_notice=60,  # so a schedule set a couple of minutes ahead warns first, then parks
            api_tokens=((API_ACTOR, secrets.token_urlsafe(24)),),  # a new token each run, printed below
            api_notify_channel=CHANNEL,  # operations started over the API show in #demo too
        )
        logs.configure(level="WARNING", stream=log_stream(args, log), secrets=secrets_of(settings))  # now that the secrets are known
        bot = create_app(settings)
        bot.start()
        server = make_http_server(bot, "127.0.0.1", args.port)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        if args.no_terminal:
            url = f"http://127.0.0.1:{server.server_port}"
            print(f"vmbot demo serving on {url} (Ctrl-C or SIGTERM stops it)", flush=True)
            print_api(settings, server.server_port)
            try:
                wait_for_stop_signal()
            finally:
                server.shutdown()
                bot.shutdown()  # running jobs end while the stand-ins they talk to are still up
            return 0
        terminal = Terminal(slack, sys.stdout)
        threading.Thread(target=terminal.watch, daemon=True).start()
        driver = SlackDriver(f"http://127.0.0.1:{server.server_port}/slack/events", settings.slack_signing_secret, slack)
        interactive = sys.stdin.isatty()
        print_api(settings, server.server_port)
        print(INTRO)
        try:
            repl(driver, bot, terminal, interactive)
        finally:
            settle(bot, 600)
            terminal.show_news()
            terminal.stopped.set()
            server.shutdown()
            bot.shutdown()
            if log.getvalue():
                print(f"\nThe bot's log during the demo (warnings and errors):\n{log.getvalue()}", end="", file=sys.stderr)
    return 0


def settle(bot: Any, timeout: float) -> None:
    """Until the bot's background work has ended and Slack (the stand-in) has every message it posted."""
    bot.runner.drain(timeout=timeout)
    bot.outbox.drain(timeout=timeout)


def wait_for_stop_signal() -> None:
    """Until SIGINT (Ctrl-C) or SIGTERM; call from the main thread (signal handlers live there)."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()


def repl(driver: SlackDriver, bot: Any, terminal: Terminal, interactive: bool) -> None:
    while True:
        line = read_line("> " if interactive else "", interactive)
        if line is None or line in ("quit", "exit"):
            return
        if not line:
            continue
        if line == "wait":
            settle(bot, 600)
            terminal.show_news()
            continue
        if line.isdigit() or line.startswith(("click ", "press ")):
            press(driver, terminal, line.split()[-1], interactive)
        elif line == "home":
            open_home(driver, bot, terminal)
            continue
        elif line.startswith(("submit", "cancel")):
            submit_form(driver, terminal, line)
        elif line.startswith("/vm"):
            terminal.home_open = False
            with terminal.lock:
                show_ack(terminal, driver.command(line[3:].strip(), user=USER, user_name=USER_NAME, channel=CHANNEL, channel_name=CHANNEL_NAME))
            terminal.show_modal()
        else:
            print("Type a /vm command, a button's number, `home`, `wait` or `quit`.")
            continue
        if not interactive:  # a scripted demo reads like a transcript: one step at a time
            settle(bot, 600)
            terminal.show_news()


def read_line(prompt: str, interactive: bool) -> str | None:
    try:
        line = input(prompt)
    except EOFError:
        return None
    if not interactive:
        print(f"> {line}")
    return line.strip()


def open_home(driver: SlackDriver, bot: Any, terminal: Terminal) -> None:
    """Open the App Home tab, as clicking the app's name in Slack does: the bot publishes it (on its job runner)."""
    driver.app_home_opened(USER)
    settle(bot, 60)
    view = driver.slack.home_view(USER) if driver.slack is not None else None
    if view is None:
        print("(the bot published no Home tab)")
        return
    terminal.home_open = True
    terminal.show_home(view)


def submit_form(driver: SlackDriver, terminal: Terminal, line: str) -> None:
    """``submit NAME [zone=...] [machine-type=...] [family=...]`` fills in the open create form and submits it."""
    modals = terminal.slack.modals(USER)
    if not modals:
        print("No form is open; `/vm create` (with no name) opens one.")
        return
    form = modals[-1]
    if line.startswith("cancel"):
        terminal.slack.close_view(form["id"])
        print("(form closed; nothing was sent)")
        return
    words = line.split()[1:]
    values: dict[str, dict[str, Any]] = {}
    for word in words:
        key, _, value = word.partition("=")
        if value and key in FORM_FIELDS:
            values[FORM_FIELDS[key]] = {"value": value}
        elif not value:
            values["name"] = {"value": word}
    for block in form["blocks"]:  # a select left alone keeps its initial option, as in Slack
        initial = (block.get("element") or {}).get("initial_option")
        if block.get("type") == "input" and initial and block["block_id"] not in values:
            values[block["block_id"]] = {"value": initial["value"]}
    reply = driver.submit_view(form["id"], values, user=USER, user_name=USER_NAME)
    errors = (reply.json or {}).get("errors") if (reply.json or {}).get("response_action") == "errors" else None
    if errors:
        for field, error in errors.items():
            print(f"(in the form, under {field}) ⚠️ {error}")
    elif reply.status == 200:
        print("(form submitted and closed)")
    else:
        print(f"(Slack would show an error: the bot answered HTTP {reply.status})")


def show_ack(terminal: Terminal, reply: Reply) -> None:
    if reply.status != 200:
        print(f"(Slack would show an error: the bot answered HTTP {reply.status})")
        return
    if not reply.body.strip():
        return  # an empty ack: Slack shows nothing (a form opened instead)
    with terminal.lock:
        lines = render_blocks(reply.text, reply.blocks, terminal.registrar(reply.blocks, ts=None))
        terminal._print("(only you)", lines)


def press(driver: SlackDriver, terminal: Terminal, choice: str, interactive: bool) -> None:
    buttons = terminal.buttons
    pressed = buttons[int(choice) - 1] if choice.isdigit() and 0 < int(choice) <= len(buttons) else None
    if pressed is None:
        print("No such button; buttons show as [1], [2] under a message.")
        return
    button = pressed.element
    if button.get("url"):
        print(f"(Slack opens {button['url']})")
        return
    confirm = button.get("confirm")
    if confirm:
        print(f"┌ {confirm['title']['text']}\n│ {render(confirm['text']['text'])}")
        answer = read_line(f"└ [{confirm['confirm']['text']}: y / {confirm['deny']['text']}: n] ", interactive)
        if (answer or "").lower() not in ("y", "yes"):
            print("(dialog closed; nothing was sent)")
            return
    with terminal.lock:
        if pressed.view is not None:  # a button on the Home tab
            driver.click_in_view(button["action_id"], pressed.view, user=USER, user_name=USER_NAME)
            return
        driver.click(button["action_id"], blocks=pressed.blocks, user=USER, user_name=USER_NAME, channel=CHANNEL,
                     channel_name=CHANNEL_NAME, is_ephemeral=pressed.ts is None, message_ts=pressed.ts)


def add_api_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=0,
                        help="the local port for Slack's events and the HTTP API (default: a free one, printed)")  # fmt: skip


def log_stream(args: argparse.Namespace, buffer: TextIO) -> TextIO:
    """Headless, nothing plays back in the terminal: the bot's warnings go to stderr as they happen
    (the buffer is shown only when an interactive demo ends)."""
    return sys.stderr if args.no_terminal else buffer


def print_api(settings: Settings, port: int) -> None:
    """Where the HTTP API is and its token, as the lines to paste: the README's curl examples read
    VMBOT and TOKEN, vmbot-cli reads VMBOT_API_URL and VMBOT_API_TOKEN."""
    url = f"http://127.0.0.1:{port}"
    token = dict(settings.api_tokens)[API_ACTOR]
    print(f"vmbot demo: HTTP API at {url}{API_PREFIX} with the token below (its name: {API_ACTOR!r}); "
          "README > HTTP API and CLI has the curl and vmbot-cli examples. In another terminal:", flush=True)  # fmt: skip
    print(f"  export VMBOT={url} TOKEN={token} VMBOT_API_URL={url} VMBOT_API_TOKEN={token}", flush=True)
