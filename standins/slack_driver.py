"""Sends slash commands, button clicks, shortcuts, events and modal submissions to a Bolt app as Slack does.

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
* Shortcuts (``shortcut``, ``message_action``) and ``view_submission`` are
  forms with a ``payload`` too; Events API deliveries (``event_callback``,
  e.g. ``app_home_opened``) are signed JSON bodies.
* Every command, shortcut and interaction carries a ``trigger_id``; with a
  ``SlackStandin`` it is issued by the stand-in, so ``views.open`` accepts it
  within 3 seconds, once.

``render_view`` draws a home tab or a modal as text for the terminal Slack.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import urlencode

import requests

from standins.slack_api import MAX_BLOCKS, MAX_TEXT, block_errors

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
    # what Slack's checks say about an ack that carries a message (see ``slack_error``)
    block_errors: list[str] = field(default_factory=list)

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
    def slack_error(self) -> str | None:
        """Why Slack would not show the message in this ack: ``invalid_blocks``
        (see ``block_errors``), ``msg_too_long``, or None when it is fine."""
        if self.block_errors:
            return "invalid_blocks"
        if self.json is not None and len(str(self.json.get("text") or "")) > MAX_TEXT:
            return "msg_too_long"
        return None

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


def _ack_block_errors(ack: JsonDict | None) -> list[str]:
    """Slack checks the blocks of a message in an ack as it checks chat.postMessage's."""
    blocks = ack.get("blocks") if ack is not None else None
    if not isinstance(blocks, list):
        return []
    if len(blocks) > MAX_BLOCKS:
        return [f"no more than {MAX_BLOCKS} items allowed [json-pointer:/blocks]"]
    return block_errors(blocks)


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
        parsed = parsed if isinstance(parsed, dict) else None
        return Reply(response.status_code, response.text, parsed, elapsed, response_url, _ack_block_errors(parsed))

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

    # ---- shortcuts, App Home and modal submissions ---------------------------

    def shortcut(self, callback_id: str, *, user: str = "U100", user_name: str = "alice",
                 timestamp: int | None = None) -> Reply:
        """A global shortcut (type ``shortcut``), with a trigger_id the stand-in can exchange for a modal."""
        payload: JsonDict = {
            "type": "shortcut", "token": self.verification_token, "action_ts": self._fake_ts(),
            "team": {"id": self.team_id, "domain": self.team_domain},
            "user": {"id": user, "username": user_name, "team_id": self.team_id},
            "is_enterprise_install": False, "enterprise": None,
            "callback_id": callback_id, "trigger_id": self._trigger(user),
        }
        return self._send_form({"payload": json.dumps(payload)}, timestamp=timestamp, response_url=None)

    def message_shortcut(self, callback_id: str, *, channel: str, message_ts: str, user: str = "U100",
                         user_name: str = "alice", channel_name: str = "ops",
                         timestamp: int | None = None) -> Reply:
        """A message shortcut (type ``message_action``) on the stand-in's message ``message_ts``."""
        response_url = self._response_url("app", channel=channel, user=user, message_ts=message_ts)
        stored = self.slack.message(channel, message_ts) if self.slack is not None else None
        message = (self.slack.api_message(stored) if self.slack is not None and stored is not None
                   else {"type": "message", "ts": message_ts, "text": ""})
        payload: JsonDict = {
            "type": "message_action", "token": self.verification_token, "action_ts": self._fake_ts(),
            "team": {"id": self.team_id, "domain": self.team_domain},
            "user": {"id": user, "name": user_name, "team_id": self.team_id},
            "channel": {"id": channel, "name": channel_name},
            "is_enterprise_install": False, "enterprise": None, "callback_id": callback_id,
            "trigger_id": self._trigger(user), "response_url": response_url,
            "message_ts": message_ts, "message": message,
        }
        return self._send_form({"payload": json.dumps(payload)}, timestamp=timestamp, response_url=response_url)

    def click_in_view(self, action_id: str, view: JsonDict, *, user: str = "U100", user_name: str = "alice",
                      timestamp: int | None = None) -> Reply:
        """A click on the button ``action_id`` in a home tab or a modal (a block_actions payload whose
        container is the view: no channel, no response_url)."""
        block, button = find_button(list(view.get("blocks") or []), action_id)
        payload: JsonDict = {
            "type": "block_actions",
            "user": {"id": user, "username": user_name, "name": user_name, "team_id": self.team_id},
            "api_app_id": self.api_app_id, "token": self.verification_token,
            "container": {"type": "view", "view_id": view.get("id")},
            "trigger_id": self._trigger(user, view_id=view.get("id")),
            "team": {"id": self.team_id, "domain": self.team_domain},
            "enterprise": None, "is_enterprise_install": False,
            "view": copy.deepcopy(view),
            "actions": [self._action(block, button)],
        }
        return self._send_form({"payload": json.dumps(payload)}, timestamp=timestamp, response_url=None)

    def event(self, event: JsonDict, *, timestamp: int | None = None) -> Reply:
        """An Events API ``event_callback`` (a signed JSON body) carrying ``event``."""
        body = json.dumps({
            "token": self.verification_token, "team_id": self.team_id, "api_app_id": self.api_app_id,
            "event": {"event_ts": self._fake_ts(), **event}, "type": "event_callback",
            "event_id": f"Ev{secrets.token_hex(5).upper()}", "event_time": int(time.time()),
            "authorizations": [{"enterprise_id": None, "team_id": self.team_id, "user_id": "UBOT",
                                "is_bot": True, "is_enterprise_install": False}],
            "is_ext_shared_channel": False,
        }).encode()
        headers = {"Content-Type": "application/json", "User-Agent": SLACK_USER_AGENT, **self.sign(body, timestamp)}
        return self.send(body, headers)

    def app_home_opened(self, user: str = "U100", *, tab: str = "home") -> Reply:
        """The user opens the app's Home tab (``app_home_opened``, with the view published for them if any)."""
        event: JsonDict = {"type": "app_home_opened", "user": user, "channel": "D" + user[1:], "tab": tab}
        view = self.slack.home_view(user) if self.slack is not None else None
        if view is not None:
            event["view"] = view
        return self.event(event)

    def submit_view(self, view_id: str, values: dict[str, dict[str, Any]], *, user: str = "U100",
                    user_name: str = "alice", timestamp: int | None = None) -> Reply:
        """The user presses a modal's submit button (``view_submission``).

        ``values`` is ``{block_id: {action_id: value}}``: a string for a text
        input, the chosen option's ``value`` for a select.  Slack closes the
        modal (with its stack) when the app acks with no body or
        ``response_action: clear``; it stays open on ``errors``.
        """
        if self.slack is None:
            raise RuntimeError("submit_view needs a SlackStandin")
        view = self.slack.view(view_id)
        if view is None:
            raise LookupError(f"no view {view_id!r} in the stand-in")
        view["state"] = {"values": _state_values(view, values)}
        payload: JsonDict = {
            "type": "view_submission", "team": {"id": self.team_id, "domain": self.team_domain},
            "user": {"id": user, "username": user_name, "name": user_name, "team_id": self.team_id},
            "api_app_id": self.api_app_id, "token": self.verification_token,
            "trigger_id": self._trigger(user, view_id=view_id), "view": view, "response_urls": [],
            "is_enterprise_install": False, "enterprise": None,
        }
        reply = self._send_form({"payload": json.dumps(payload)}, timestamp=timestamp, response_url=None)
        action = (reply.json or {}).get("response_action")
        if reply.status == 200 and action in (None, "clear"):
            self.slack.close_view(view_id)
        return reply

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


def _state_values(view: JsonDict, values: dict[str, dict[str, Any]]) -> JsonDict:
    """``view.state.values`` as Slack sends it, from ``{block_id: {action_id: value}}``."""
    elements = {(b.get("block_id"), (b.get("element") or {}).get("action_id")): b.get("element") or {}
                for b in view.get("blocks") or [] if b.get("type") == "input"}
    state: JsonDict = {}
    for block_id, by_action in values.items():
        for action_id, value in by_action.items():
            element = elements.get((block_id, action_id))
            if element is None:
                raise LookupError(f"no input {block_id}/{action_id} in the view (inputs: {sorted(map(str, elements))})")
            kind = element.get("type")
            if kind == "plain_text_input":
                entry: JsonDict = {"type": kind, "value": value}
            elif kind == "static_select":
                options = list(element.get("options") or [])
                options += [o for g in element.get("option_groups") or [] for o in g.get("options") or []]
                chosen = next((o for o in options if o.get("value") == value), None)
                if chosen is None and value is not None:
                    raise LookupError(f"{value!r} is not an option of {block_id}/{action_id}")
                entry = {"type": kind, "selected_option": chosen}
            else:
                entry = {"type": kind, "value": value}
            state.setdefault(block_id, {})[action_id] = entry
    return state


# ---- text rendering of views (the terminal Slack draws home tabs and modals) ------------


def _plain(text_object: Any) -> str:
    """The text of a text object (plain_text or mrkdwn), or of a bare string."""
    if isinstance(text_object, dict):
        return str(text_object.get("text", ""))
    return str(text_object or "")


def _element_line(element: JsonDict, buttons: list[JsonDict] | None) -> str:
    """One interactive element: buttons get a number (their index in ``buttons`` + 1) when collected."""
    kind = element.get("type")
    if kind == "button":
        label = _plain(element.get("text"))
        if buttons is None:
            return f"[{label}]"
        buttons.append(element)
        return f"[{len(buttons)}] {label}"
    if kind in ("static_select", "external_select", "users_select", "conversations_select", "channels_select"):
        options = [_plain(o.get("text")) for o in element.get("options") or []]
        for group in element.get("option_groups") or []:
            options.extend(_plain(o.get("text")) for o in group.get("options") or [])
        chosen = _plain((element.get("initial_option") or {}).get("text")) or _plain(element.get("placeholder"))
        shown = f" ({' | '.join(options)})" if options else ""
        return f"<{chosen or 'choose'} ▾>{shown}"
    if kind == "plain_text_input":
        initial = str(element.get("initial_value") or "")
        return f"[ {initial or _plain(element.get('placeholder'))} ]"
    if kind == "overflow":
        return "[⋯]"
    if kind == "image":
        return f"[image: {element.get('alt_text', '')}]"
    return _plain(element.get("text")) or f"<{kind}>"


def render_view_blocks(blocks: list[JsonDict], *, text: Callable[[str], str] = str,
                       buttons: list[JsonDict] | None = None) -> list[str]:
    """Lines for the blocks of a view (or a message): header, section (text, fields,
    accessory), divider, context, actions, input, image.  ``text`` turns mrkdwn into
    what the terminal shows; buttons are appended to ``buttons`` and numbered."""
    lines: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            title = text(_plain(block.get("text")))
            lines += [title.upper(), "═" * len(title)]
        elif kind == "section":
            body = text(_plain(block.get("text"))).splitlines()
            accessory = block.get("accessory")
            if isinstance(accessory, dict):
                widget = _element_line(accessory, buttons)
                body = [*body[:-1], f"{body[-1]}   {widget}"] if body else [widget]
            lines += body
            fields = [text(_plain(f)) for f in block.get("fields") or []]
            lines += ["  " + "   ".join(fields[i:i + 2]) for i in range(0, len(fields), 2)]
        elif kind == "divider":
            lines.append("─" * 40)
        elif kind == "context":
            parts = [text(_plain(e)) if e.get("type") != "image" else _element_line(e, None)
                     for e in block.get("elements") or []]
            lines.append("  " + " · ".join(parts))
        elif kind == "actions":
            lines.append("  " + "   ".join(_element_line(e, buttons) for e in block.get("elements") or []))
        elif kind == "input":
            optional = " (optional)" if block.get("optional") else ""
            lines.append(f"{_plain(block.get('label'))}{optional}: {_element_line(block.get('element') or {}, None)}")
            if block.get("hint"):
                lines.append(f"  {_plain(block['hint'])}")
        elif kind == "image":
            lines.append(f"[image: {block.get('alt_text', '')}]")
        else:
            lines.append(f"<{kind} block>")
    return lines


def render_view(view: JsonDict, *, text: Callable[[str], str] = str,
                buttons: list[JsonDict] | None = None) -> list[str]:
    """A home tab or a modal as the terminal draws it.

    A modal is boxed with its title on top and its close/submit buttons at
    the bottom; a home tab is a page under a "Home" heading.
    """
    body = render_view_blocks(list(view.get("blocks") or []), text=text, buttons=buttons)
    if view.get("type") != "modal":
        return ["── Home ──", *body]
    title = _plain(view.get("title"))
    footer = "   ".join(f"[{_plain(view[key])}]" for key in ("close", "submit") if view.get(key))
    width = max([len(title), len(footer), *(len(line) for line in body)]) + 2
    out = [f"┌{'─' * width}┐", f"│ {title.ljust(width - 1)}│", f"├{'─' * width}┤"]
    out += [f"│ {line.ljust(width - 1)}│" for line in body]
    if footer:
        out += [f"├{'─' * width}┤", f"│ {footer.rjust(width - 2)} │"]
    out.append(f"└{'─' * width}┘")
    return out
