"""Sends slash commands and button clicks to a Bolt app exactly as Slack does.

Slack's side of the protocol, per its public docs:

* Slash commands arrive as ``application/x-www-form-urlencoded`` bodies with
  a fixed set of fields (``token``, ``team_id`` ... ``trigger_id``).
* Interactions (block_actions) arrive as a form with a single ``payload``
  field holding the JSON document.
* Every request is signed: ``X-Slack-Signature: v0=<hex HMAC-SHA256 of
  "v0:{timestamp}:{raw body}" keyed with the signing secret>`` plus
  ``X-Slack-Request-Timestamp``; apps refuse requests older than 5 minutes.
* Slack waits 3 seconds for the HTTP answer (the "ack") and then shows the
  user an error, so ``Reply.elapsed`` matters.
* For ephemeral messages the block_actions payload has no ``message``.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import requests

if TYPE_CHECKING:
    from standins.slack_api import SlackStandin

SLACK_ACK_DEADLINE = 3.0  # seconds Slack waits for the ack
SLACK_USER_AGENT = "Slackbot 1.0 (+https://api.slack.com/robots)"

JsonDict = dict[str, Any]


@dataclass
class Reply:
    """The app's HTTP answer to one request from "Slack"."""

    status: int
    body: str
    json: JsonDict | None
    elapsed: float
    response_url: str | None = None

    @property
    def text(self) -> str:
        """The ack's ``text`` when the app answered JSON, else the raw body."""
        if self.json is not None and "text" in self.json:
            return str(self.json["text"])
        return self.body

    @property
    def blocks(self) -> list[JsonDict] | None:
        return self.json.get("blocks") if self.json is not None else None

    @property
    def in_time(self) -> bool:
        """Whether Slack would have accepted the ack (3-second deadline)."""
        return self.elapsed <= SLACK_ACK_DEADLINE


@dataclass(frozen=True)
class Prepared:
    """A signed request, ready for ``SlackDriver.send_prepared``."""

    body: bytes
    headers: dict[str, str]
    response_url: str | None


def _trigger_id() -> str:
    return f"{secrets.randbelow(10**10)}.{secrets.randbelow(10**10)}.{secrets.token_hex(16)}"


def find_button(blocks: list[JsonDict], action_id: str) -> tuple[JsonDict, JsonDict]:
    """(block, button) for the button with ``action_id`` in actions elements
    or a section accessory; LookupError listing what is there otherwise."""
    seen: list[str] = []
    for block in blocks:
        elements = list(block.get("elements") or [])
        if isinstance(block.get("accessory"), dict):
            elements.append(block["accessory"])
        for element in elements:
            if not isinstance(element, dict) or element.get("type") != "button":
                continue
            if element.get("action_id") == action_id:
                return block, element
            seen.append(str(element.get("action_id")))
    raise LookupError(f"no button with action_id {action_id!r} in blocks (buttons: {seen})")


class SlackDriver:
    """Plays Slack's part towards the app's request URL (``events_url``).

    With a ``SlackStandin``, response_urls come from it (so ``respond()``
    lands there) and clicked messages are looked up in it.
    """

    def __init__(self, events_url: str, signing_secret: str, slack: SlackStandin | None = None, *,
                 team_id: str = "T0001", team_domain: str = "acme", api_app_id: str = "A0VMBOT",
                 verification_token: str = "standin-verification-token", timeout: float = 10.0) -> None:
        self.events_url = events_url
        self.signing_secret = signing_secret
        self.slack = slack
        self.team_id = team_id
        self.team_domain = team_domain
        self.api_app_id = api_app_id
        self.verification_token = verification_token  # deprecated by Slack, still sent
        self.timeout = timeout
        self.session = requests.Session()

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> "SlackDriver":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- signing and sending ---------------------------------------------

    def sign(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """Slack's v0 request-signing headers for ``body``."""
        ts = int(time.time()) if timestamp is None else timestamp
        base = b"v0:" + str(ts).encode() + b":" + body
        digest = hmac.new(self.signing_secret.encode(), base, hashlib.sha256).hexdigest()
        return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": f"v0={digest}"}

    def send(self, body: bytes, headers: dict[str, str], *, response_url: str | None = None) -> Reply:
        """POSTs ``body`` with exactly ``headers`` (nothing added): for forged or
        stale signatures."""
        started = time.perf_counter()
        response = self.session.post(self.events_url, data=body, headers=headers, timeout=self.timeout)
        elapsed = time.perf_counter() - started
        try:
            parsed = response.json() if response.content else None
        except ValueError:
            parsed = None
        return Reply(response.status_code, response.text,
                     parsed if isinstance(parsed, dict) else None, elapsed, response_url)

    def send_prepared(self, prepared: Prepared) -> Reply:
        """Sends a request built earlier (see ``prepare_command``)."""
        return self.send(prepared.body, prepared.headers, response_url=prepared.response_url)

    def _form(self, fields: dict[str, str], *, timestamp: int | None,
              response_url: str | None, extra_headers: dict[str, str] | None = None) -> Prepared:
        body = urlencode(fields).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   "User-Agent": SLACK_USER_AGENT, **self.sign(body, timestamp), **(extra_headers or {})}
        return Prepared(body, headers, response_url)

    def _send_form(self, fields: dict[str, str], *, timestamp: int | None,
                   response_url: str | None, extra_headers: dict[str, str] | None = None) -> Reply:
        return self.send_prepared(self._form(fields, timestamp=timestamp, response_url=response_url,
                                             extra_headers=extra_headers))

    # ---- slash commands ----------------------------------------------------

    def command(self, text: str, *, user: str = "U100", user_name: str = "alice", channel: str = "C100",
                channel_name: str = "ops", command: str = "/vm", timestamp: int | None = None,
                retry_num: int | None = None, retry_reason: str | None = None,
                trigger_id: str | None = None, response_url: str | None = None) -> Reply:
        """A slash command invocation, with every field Slack documents.

        A redelivery is the same invocation again: pass the first one's
        ``trigger_id`` and ``response_url`` with ``retry_num``/``retry_reason``.
        """
        return self.send_prepared(self.prepare_command(
            text, user=user, user_name=user_name, channel=channel, channel_name=channel_name, command=command,
            timestamp=timestamp, retry_num=retry_num, retry_reason=retry_reason, trigger_id=trigger_id,
            response_url=response_url))

    def prepare_command(self, text: str, *, user: str = "U100", user_name: str = "alice", channel: str = "C100",
                        channel_name: str = "ops", command: str = "/vm", timestamp: int | None = None,
                        retry_num: int | None = None, retry_reason: str | None = None,
                        trigger_id: str | None = None, response_url: str | None = None) -> Prepared:
        """``command()``'s request, signed but not sent: to time many sent at the same moment."""
        response_url = response_url or self._response_url("commands", channel=channel, user=user)
        fields = {
            "token": self.verification_token,
            "team_id": self.team_id,
            "team_domain": self.team_domain,
            "channel_id": channel,
            "channel_name": channel_name,
            "user_id": user,
            "user_name": user_name,
            "command": command,
            "text": text,
            "api_app_id": self.api_app_id,
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": self._trigger(user, trigger_id),
        }
        retry: dict[str, str] = {}
        if retry_num is not None:
            retry["X-Slack-Retry-Num"] = str(retry_num)
        if retry_reason is not None:
            retry["X-Slack-Retry-Reason"] = retry_reason
        return self._form(fields, timestamp=timestamp, response_url=response_url, extra_headers=retry)

    # ---- button clicks -----------------------------------------------------

    def click(self, action_id: str, *, blocks: list[JsonDict], user: str = "U100", user_name: str = "alice",
              channel: str = "C100", message_ts: str | None = None, is_ephemeral: bool = True,
              response_url: str | None = None, timestamp: int | None = None,
              channel_name: str = "ops") -> Reply:
        """A click on the button ``action_id`` found in ``blocks``, sent as a
        block_actions payload."""
        block, button = find_button(blocks, action_id)
        message_ts = message_ts or self._locate_message(channel, blocks) or self._fake_ts()
        if response_url is None:
            response_url = self._response_url("actions", channel=channel, user=user, message_ts=message_ts)
        payload: JsonDict = {
            "type": "block_actions",
            "user": {"id": user, "username": user_name, "name": user_name, "team_id": self.team_id},
            "api_app_id": self.api_app_id,
            "token": self.verification_token,
            "container": {"type": "message", "message_ts": message_ts, "channel_id": channel,
                          "is_ephemeral": is_ephemeral},
            "trigger_id": self._trigger(user),
            "team": {"id": self.team_id, "domain": self.team_domain},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel, "name": channel_name},
            "state": {"values": {}},
            "response_url": response_url,
            "actions": [self._action(block, button)],
        }
        if not is_ephemeral:  # Slack leaves the message out for ephemeral messages
            payload["message"] = self._message_object(channel, message_ts, blocks)
        return self._send_form({"payload": json.dumps(payload)}, timestamp=timestamp, response_url=response_url)

    @staticmethod
    def _action(block: JsonDict, button: JsonDict) -> JsonDict:
        text = copy.deepcopy(button.get("text") or {"type": "plain_text", "text": ""})
        if text.get("type") == "plain_text":
            text.setdefault("emoji", True)  # Slack adds it
        action: JsonDict = {
            "action_id": button["action_id"],
            # Slack always has a block_id: it generates one when the app omits it
            "block_id": block.get("block_id") or secrets.token_urlsafe(3),
            "text": text,
        }
        if "value" in button:
            action["value"] = button["value"]
        if "style" in button:
            action["style"] = button["style"]
        action.update(type="button", action_ts=f"{time.time():.6f}")
        return action

    # ---- helpers -----------------------------------------------------------

    def _trigger(self, user: str, trigger_id: str | None = None, *, view_id: str | None = None) -> str:
        """A trigger_id for one delivery: issued by the stand-in (so views.open
        can exchange it within 3 s) when there is one, else Slack-shaped."""
        if self.slack is not None:
            return self.slack.issue_trigger_id(trigger_id, user=user, view_id=view_id)
        return trigger_id or _trigger_id()

    def _response_url(self, kind: str, *, channel: str, user: str, message_ts: str | None = None) -> str:
        if self.slack is not None:
            return self.slack.new_response_url(channel=channel, user=user, message_ts=message_ts)
        # Slack's own shape; nothing listens there
        return f"https://hooks.slack.com/{kind}/{self.team_id}/{secrets.randbelow(10**12)}/{secrets.token_hex(12)}"

    def _locate_message(self, channel: str, blocks: list[JsonDict]) -> str | None:
        """The newest stand-in message (channel or ephemeral) showing ``blocks``."""
        if self.slack is None:
            return None
        candidates = self.slack.messages(channel) + [m for m in self.slack.ephemerals() if m.channel == channel]
        matching = [m for m in candidates if m.blocks == blocks]
        return max(matching, key=lambda m: float(m.ts)).ts if matching else None

    def _message_object(self, channel: str, ts: str, blocks: list[JsonDict]) -> JsonDict:
        stored = self.slack.message(channel, ts) if self.slack is not None else None
        if stored is not None:
            return self.slack.api_message(stored)  # type: ignore[union-attr]
        bot_user = self.slack.bot_user_id if self.slack is not None else "UBOT"
        return {"type": "message", "user": bot_user, "ts": ts, "text": "", "blocks": copy.deepcopy(blocks),
                "team": self.team_id, "app_id": self.api_app_id}

    @staticmethod
    def _fake_ts() -> str:
        return f"{time.time():.6f}"
