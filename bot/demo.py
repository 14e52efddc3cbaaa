"""``python -m bot demo``: vmbot with no Slack workspace and no GCP account.

Starts the simulated Compute Engine and Slack that the tests use, serves the
real bot (same Bolt app, handlers and workflows as production) on a local port,
and plays Slack in the terminal: type ``/vm create test-vm-22``, watch the
acknowledgement and the thread grow, press a button by its number.
"""

from __future__ import annotations

import argparse
import re
import secrets
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, TextIO

from bot import logs
from bot.app import create_app
from bot.redaction import secrets_of
from bot.web.server import make_http_server
from bot.settings import Settings
from standins.compute import ComputeStandin
from standins.slack_api import Message, SlackStandin
from standins.slack_driver import Reply, SlackDriver

USER, USER_NAME, CHANNEL, CHANNEL_NAME = "U0DEMO", "you", "C0DEMO", "demo"
EMOJI = {
    ":white_check_mark:": "✅", ":x:": "❌", ":warning:": "⚠️", ":hourglass_flowing_sand:": "⏳",
    ":rocket:": "🚀", ":recycle:": "♻️", ":parking:": "🅿️", ":mag:": "🔍", ":large_green_circle:": "🟢",
    ":double_vertical_bar:": "⏸", ":wastebasket:": "🗑", ":bangbang:": "‼️", ":arrow_forward:": "▶", ":repeat:": "🔁", ":arrows_counterclockwise:": "🔄", ":information_source:": "ℹ️", ":broom:": "🧹", ":no_entry:": "⛔",
    ":grey_question:": "❔", ":wave:": "👋", ":inbox_tray:": "📥",
}
INTRO = f"""\
vmbot demo: a simulated Compute Engine and Slack on this machine; nothing leaves it.
You are @{USER_NAME} in #{CHANNEL_NAME}. Try:
  /vm create test-vm-22      then  /vm park test-vm-22   then press the button's number
  /vm restore test-vm-22     /vm list     /vm status test-vm-22     /vm help
  /vm images test-vm-22      /vm sweep dry-run     /vm sweep   (the demo sweeps dirty images at once: no grace)
  /vm delete test-vm-22      (for good: asks first, like park)
Also: `wait` (until running operations end), `quit`.
"""


def render(text: str) -> str:
    """Slack mrkdwn, as a terminal can show it."""
    text = text.replace(f"<@{USER}>", f"@{USER_NAME}").replace(f"<#{CHANNEL}>", f"#{CHANNEL_NAME}")
    text = re.sub(r"<@(\w+)>", r"@\1", text)
    for code, char in EMOJI.items():
        text = text.replace(code, char)
    text = re.sub(r"\*([^*\n]+)\*", r"\1", text)  # *bold*
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def render_blocks(text: str, blocks: list[dict[str, Any]] | None, buttons: list[dict[str, Any]]) -> list[str]:
    """Lines for a message; buttons found are appended to ``buttons`` and shown by number."""
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
                if element["type"] == "button":
                    buttons.append(element)
                    labels.append(f"[{len(buttons)}] {element['text']['text']}")
            lines.append("  " + "   ".join(labels))
    return lines


class Terminal:
    """Shows what "Slack" received, as it arrives, from a background thread."""

    def __init__(self, slack: SlackStandin, out: TextIO) -> None:
        self.slack, self.out = slack, out
        self.seen: dict[str, int] = {}  # ts -> edits shown
        self.responses_seen = 0
        self.lock = threading.RLock()  # held while a request is sent, so its ack prints before its effects
        self.buttons: list[dict[str, Any]] = []
        self.blocks_of_buttons: list[dict[str, Any]] = []
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
                    lines = render_blocks(response.get("text", ""), response.get("blocks"), [])
                    self._print("(only you)", lines)
            self.responses_seen = len(responses)

    def _show(self, message: Message, *, is_reply: bool) -> None:
        shown = self.seen.get(message.ts, -1)
        if shown >= message.edits:
            return
        prefix = "   ↳ thread" if is_reply else f"#{CHANNEL_NAME} vmbot"
        if shown >= 0:
            prefix = f"#{CHANNEL_NAME} vmbot (edited)"
        self._print(prefix, render_blocks(message.text, message.blocks, []))
        self.seen[message.ts] = message.edits

    def _print(self, prefix: str, lines: list[str]) -> None:
        print(f"{prefix}: {lines[0]}", file=self.out)
        for line in lines[1:]:
            print(" " * (len(prefix) + 2) + line, file=self.out)
        self.out.flush()


def run_demo(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot demo", description=__doc__.splitlines()[0])
    parser.add_argument("--operation-seconds", type=float, default=2.0, help="how long each simulated GCP operation takes")
    args = parser.parse_args(argv)
    logs.configure(level="WARNING")

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
        )
        logs.configure(level="WARNING", secrets=secrets_of(settings))  # now that the secrets are known
        bot = create_app(settings)
        bot.start()
        server = make_http_server(bot, "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        terminal = Terminal(slack, sys.stdout)
        threading.Thread(target=terminal.watch, daemon=True).start()
        driver = SlackDriver(f"http://127.0.0.1:{server.server_port}/slack/events", settings.slack_signing_secret, slack)
        interactive = sys.stdin.isatty()
        print(INTRO)
        try:
            repl(driver, bot, terminal, interactive)
        finally:
            bot.runner.drain(timeout=600)
            terminal.show_news()
            terminal.stopped.set()
            server.shutdown()
            bot.shutdown()
    return 0


def repl(driver: SlackDriver, bot: Any, terminal: Terminal, interactive: bool) -> None:
    while True:
        line = read_line("> " if interactive else "", interactive)
        if line is None or line in ("quit", "exit"):
            return
        if not line:
            continue
        if line == "wait":
            bot.runner.drain(timeout=600)
            terminal.show_news()
            continue
        if line.isdigit() or line.startswith(("click ", "press ")):
            press(driver, terminal, line.split()[-1], interactive)
        elif line.startswith("/vm"):
            with terminal.lock:
                show_ack(terminal, driver.command(line[3:].strip(), user=USER, user_name=USER_NAME, channel=CHANNEL, channel_name=CHANNEL_NAME))
        else:
            print("Type a /vm command, a button's number, `wait` or `quit`.")
            continue
        if not interactive:  # a scripted demo reads like a transcript: one step at a time
            bot.runner.drain(timeout=600)
            terminal.show_news()


def read_line(prompt: str, interactive: bool) -> str | None:
    try:
        line = input(prompt)
    except EOFError:
        return None
    if not interactive:
        print(f"> {line}")
    return line.strip()


def show_ack(terminal: Terminal, reply: Reply) -> None:
    if reply.status != 200:
        print(f"(Slack would show an error: the bot answered HTTP {reply.status})")
        return
    with terminal.lock:
        terminal.buttons = []
        lines = render_blocks(reply.text, reply.blocks, terminal.buttons)
        terminal.blocks_of_buttons = reply.blocks or []
        terminal._print("(only you)", lines)


def press(driver: SlackDriver, terminal: Terminal, choice: str, interactive: bool) -> None:
    buttons = terminal.buttons
    button = buttons[int(choice) - 1] if choice.isdigit() and 0 < int(choice) <= len(buttons) else None
    if button is None:
        print("No such button; buttons show as [1], [2] under a message.")
        return
    confirm = button.get("confirm")
    if confirm:
        print(f"┌ {confirm['title']['text']}\n│ {render(confirm['text']['text'])}")
        answer = read_line(f"└ [{confirm['confirm']['text']}: y / {confirm['deny']['text']}: n] ", interactive)
        if (answer or "").lower() not in ("y", "yes"):
            print("(dialog closed; nothing was sent)")
            return
    with terminal.lock:
        terminal.buttons = []
        driver.click(button["action_id"], blocks=terminal.blocks_of_buttons, user=USER, user_name=USER_NAME, channel=CHANNEL, channel_name=CHANNEL_NAME)
