"""A local stand-in for Slack's Web API and its ``response_url`` endpoints.

The real ``slack_sdk.WebClient(token=..., base_url=standin.api_url)`` works
against it unmodified.  It follows Slack's public API documentation rather
than whatever vmbot happens to send, including these quirks:

* Every method answers HTTP 200 with ``{"ok": false, "error": "..."}`` for
  application errors; only rate limiting (429 + ``Retry-After`` seconds) and
  unknown methods (404) use other status codes.
* Arguments arrive as a JSON body (slack_sdk uses JSON for the chat.* methods
  that carry blocks), as a form-encoded body (everything else), as
  multipart/form-data, or in the query string.  In a form, ``blocks`` is a
  JSON *string*; in a JSON body it is a list.
* The token travels in ``Authorization: Bearer``; form and query arguments
  may carry ``token=`` instead, but a ``token`` key inside a JSON body is
  ignored, as Slack ignores it.
* Slack generates a ``block_id`` (and a button ``action_id``) when the app
  leaves it out, so stored blocks may hold more keys than were sent.
* A ``response_url`` takes at most 5 posts within 30 minutes.

Everything is recorded (``calls``, ``messages()``, ``responses`` ...) so tests
can assert on what the bot really sent.
"""

from __future__ import annotations

import copy
import json
import math
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import parse_qsl, urlsplit

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block

if TYPE_CHECKING:
    from standins.slack_socket import SocketModeStandin

RATE_LIMITED_TOKEN = "xoxb-429"  # always answered 429, like bolt-python's mock server
CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]+$")
USER_ID = re.compile(r"^[UW][A-Z0-9]+$")
MAX_BLOCKS = 50  # Slack refuses messages with more blocks (invalid_blocks)
RESPONSE_URL_MAX_USES = 5
RESPONSE_URL_TTL = 30 * 60.0
DEFAULT_CHANNEL_BURST = 3
APP_TOKEN_METHODS = frozenset({"apps.connections.open"})  # the methods that take the app-level token

JsonDict = dict[str, Any]


# --------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------


@dataclass
class ApiCall:
    """One Web API request, whatever its outcome (refused and 429ed included).

    ``at`` comes from the stand-in's clock (``time.monotonic`` by default).
    """

    method: str
    params: JsonDict
    token: str | None
    status: int
    ok: bool
    error: str | None
    at: float


@dataclass
class MessageVersion:
    """An earlier version of an edited message."""

    text: str
    blocks: list[JsonDict] | None


@dataclass
class Message:
    """A message as the stand-in stores it (snapshots are handed out).

    ``thread_ts`` is None for top-level messages (in API output Slack also
    sets ``thread_ts`` on a root once it has replies; see
    ``SlackStandin.api_message``).  Deleted messages stay stored with
    ``deleted=True`` but the query methods leave them out.
    ``ephemeral`` messages are only seen by ``ephemeral_to`` (None when a
    response_url was not told which user it belongs to).
    ``source`` is "chat.postMessage", "chat.postEphemeral" or "response_url".
    """

    channel: str
    ts: str
    text: str
    blocks: list[JsonDict] | None = None
    thread_ts: str | None = None
    user: str = "UBOT"
    edits: int = 0
    history: list[MessageVersion] = field(default_factory=list)
    reply_count: int = 0
    reply_users: list[str] = field(default_factory=list)
    reply_broadcast: bool = False
    ephemeral: bool = False
    ephemeral_to: str | None = None
    source: str = "chat.postMessage"
    deleted: bool = False
    edited_ts: str | None = None

    def replace_content(self, text: str, blocks: list[JsonDict] | None, edited_ts: str) -> None:
        """Edit in place, keeping the previous version in ``history``."""
        self.history.append(MessageVersion(self.text, copy.deepcopy(self.blocks)))
        self.text, self.blocks = text, blocks
        self.edits += 1
        self.edited_ts = edited_ts


@dataclass
class _ResponseUrl:
    """What Slack knows about a response_url: where it points and its uses.

    ``original`` is the (channel, ts) of the message that ``replace_original``
    and ``delete_original`` act on: the clicked message for interactions, the
    first response for slash commands.
    """

    id: str
    channel: str | None
    user: str | None
    original: tuple[str, str] | None
    created: float
    uses: int = 0


class _ApiError(Exception):
    """Short-circuits a request with Slack's ``{"ok": false, "error": ...}``."""

    def __init__(self, error: str, status: int = 200, retry_after: int | None = None):
        super().__init__(error)
        self.error = error
        self.status = status
        self.retry_after = retry_after


@dataclass
class _Request:
    path: str
    params: JsonDict
    token: str | None
    body_error: str | None  # Slack's error code when the body could not be read


# --------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def do_POST(self) -> None:  # noqa: N802 (http.server naming)
        self.server.standin._dispatch(self)

    do_GET = do_POST  # Slack accepts GET with query-string arguments too

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    standin: "SlackStandin"


def _reply(handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str,
           headers: dict[str, str] | None = None) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


def _bearer(header: str | None) -> str | None:
    if header and header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return None


def _parse_multipart(raw: bytes, content_type: str) -> JsonDict:
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw
    )
    fields: JsonDict = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        is_file = part.get_param("filename", header="content-disposition") is not None
        fields[str(name)] = payload if is_file else payload.decode("utf-8")
    return fields


def _parse_request(handler: BaseHTTPRequestHandler) -> _Request:
    """Reads query string + body into one argument dict, as Slack merges them."""
    parts = urlsplit(handler.path)
    params: JsonDict = dict(parse_qsl(parts.query, keep_blank_values=True))
    length = int(handler.headers.get("Content-Length") or 0)
    raw = handler.rfile.read(length) if length else b""
    content_type = handler.headers.get("Content-Type") or ""
    body_error = None
    json_token = False
    if raw:
        try:
            if not content_type:
                body_error = "missing_post_type"
            elif content_type.startswith("application/json"):
                body = json.loads(raw)
                if not isinstance(body, dict):
                    raise ValueError("JSON body must be an object")
                json_token = "token" in body
                params.update(body)
            elif content_type.startswith("multipart/form-data"):
                params.update(_parse_multipart(raw, content_type))
            elif content_type.startswith(("application/x-www-form-urlencoded", "text/plain")):
                params.update(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
            else:
                body_error = "invalid_post_type"
        except ValueError:
            body_error = "invalid_json" if content_type.startswith("application/json") else "invalid_form_data"
    token = params.pop("token", None)
    if json_token:
        token = None  # Slack ignores a token inside a JSON body
    token = _bearer(handler.headers.get("Authorization")) or token
    return _Request(parts.path, params, token, body_error)


# --------------------------------------------------------------------------
# Argument helpers
# --------------------------------------------------------------------------


def _flag(value: Any) -> bool:
    """Slack booleans: true JSON values, or "true"/"1" in forms."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _random_id(length: int = 5) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _fill_generated_ids(blocks: list[JsonDict]) -> None:
    """Slack generates block_id / action_id when the app leaves them out."""
    for block in blocks:
        block.setdefault("block_id", _random_id())
        elements = list(block.get("elements") or [])
        if isinstance(block.get("accessory"), dict):
            elements.append(block["accessory"])
        for element in elements:
            if isinstance(element, dict) and element.get("type") == "button":
                element.setdefault("action_id", _random_id())


def _parse_blocks(value: Any) -> list[JsonDict] | None:
    """Accepts a list or, as Slack does for form bodies, a JSON-encoded string.

    Returns None when absent; raises invalid_blocks_format / invalid_blocks.
    """
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise _ApiError("invalid_blocks_format") from None
    if not isinstance(value, list):
        raise _ApiError("invalid_blocks_format")
    if len(value) > MAX_BLOCKS or not all(isinstance(b, dict) and b.get("type") for b in value):
        raise _ApiError("invalid_blocks")
    for block in value:  # Slack's documented limits (text lengths, a confirm dialog's 300 characters, ...)
        try:
            parsed = Block.parse(copy.deepcopy(block))
            if parsed is not None:
                parsed.to_dict()  # validates the block and every object in it (validate_json alone does not recurse)
        except (SlackObjectFormationError, KeyError, TypeError, ValueError):
            raise _ApiError("invalid_blocks") from None
    blocks = copy.deepcopy(value)
    _fill_generated_ids(blocks)
    return blocks


# --------------------------------------------------------------------------
# The stand-in
# --------------------------------------------------------------------------


class SlackStandin:
    """Slack Web API + response_url server on 127.0.0.1 (random port).

    Thread-safe: the server handles requests on several threads, tests read
    the recordings from theirs.  ``clock`` (monotonic seconds) drives
    ``ApiCall.at``, the per-channel rate limit and response_url expiry, so
    tests can move time forward without sleeping.
    """

    def __init__(self, *, bot_token: str = "xoxb-standin", bot_user_id: str = "UBOT",
                 team_id: str = "T0001", team_domain: str = "acme", app_id: str = "A0VMBOT",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.bot_token = bot_token
        self.bot_user_id = bot_user_id
        self.bot_id = "B" + bot_user_id.lstrip("UW")
        self.team_id = team_id
        self.team_domain = team_domain
        self.app_id = app_id
        self.clock = clock
        self._cond = threading.Condition(threading.RLock())
        self._calls: list[ApiCall] = []
        self._messages: dict[tuple[str, str], Message] = {}
        self._ephemerals: list[Message] = []
        self._responses: list[JsonDict] = []
        self._response_urls: dict[str, _ResponseUrl] = {}
        self._forced_429: dict[str, list[int]] = {}
        self._forced_response_429: list[int] = []
        self._channel_rate: float | None = None
        self._channel_burst = DEFAULT_CHANNEL_BURST
        self._channel_buckets: dict[str, tuple[float, float]] = {}  # channel -> (tokens, at)
        self._users: dict[str, JsonDict] = {}
        self._channel_names: dict[str, str] = {}
        self._kept_out: dict[str, str] = {}  # channel -> the error a post there gets (the bot is no member)
        self._last_ts_us = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._methods: dict[str, Callable[[JsonDict], JsonDict]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.delete": self._chat_delete,
            "conversations.info": self._conversations_info,
            "users.info": self._users_info,
            "apps.connections.open": self._apps_connections_open,
        }
        self.app_token: str | None = None  # the app-level token apps.connections.open takes (Socket Mode)
        self.socket_mode: SocketModeStandin | None = None

    # ---- lifecycle -------------------------------------------------------

    def start(self) -> None:
        """Serves on 127.0.0.1:0 from a daemon thread."""
        if self._server is not None:
            return
        server = _Server(("127.0.0.1", 0), _Handler)
        server.standin = self
        self._server = server
        # a short poll interval keeps stop() (server.shutdown) fast
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="slack-standin", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self.socket_mode is not None:
            self.socket_mode.stop()
            self.socket_mode = None
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> "SlackStandin":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("SlackStandin is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def api_url(self) -> str:
        """WebClient base_url (needs the trailing slash)."""
        return f"{self.url}/api/"

    # ---- test set-up -----------------------------------------------------

    def rate_limit(self, method: str = "chat.postMessage", *, times: int = 1, retry_after: int = 1) -> None:
        """The next ``times`` calls to ``method`` answer 429 with Retry-After."""
        with self._cond:
            self._forced_429.setdefault(method, []).extend([retry_after] * times)

    def rate_limit_responses(self, *, times: int = 1, retry_after: int = 1) -> None:
        """The next ``times`` response_url posts answer 429 with Retry-After
        (Slack rate-limits its webhooks too); they change nothing and do not
        count as uses."""
        with self._cond:
            self._forced_response_429.extend([retry_after] * times)

    def channel_rate_limit(self, per_second: float | None, *, burst: int = DEFAULT_CHANNEL_BURST) -> None:
        """Slack's special chat.postMessage limit: ~1 message/s per channel.

        A token bucket of ``burst`` messages refilled at ``per_second``;
        posts beyond it answer 429.  None disables the limit.
        """
        with self._cond:
            self._channel_rate = per_second
            self._channel_burst = burst
            self._channel_buckets.clear()

    def add_user(self, user_id: str, name: str, real_name: str | None = None) -> None:
        """Gives users.info a specific name instead of one derived from the id."""
        with self._cond:
            self._users[user_id] = {"name": name, "real_name": real_name or name.title()}

    def add_channel(self, channel_id: str, name: str) -> None:
        with self._cond:
            self._channel_names[channel_id] = name

    def keep_out(self, channel_id: str, *, private: bool = False) -> None:
        """The bot is not a member of ``channel_id``: without chat:write.public, posts there fail with
        ``not_in_channel``, or ``channel_not_found`` for a private channel (the bot cannot even see it).
        Slash commands typed there still reach the app, as in Slack."""
        with self._cond:
            self._kept_out[channel_id] = "channel_not_found" if private else "not_in_channel"

    def new_response_url(self, *, channel: str | None = None, user: str | None = None,
                         message_ts: str | None = None) -> str:
        """A fresh response_url, as Slack puts in commands and interactions.

        ``channel``/``user`` say where in_channel and ephemeral responses go;
        ``message_ts`` is the message an interaction came from (the
        "original" that replace_original/delete_original act on).
        """
        with self._cond:
            url_id = secrets.token_hex(8)
            original = (channel, message_ts) if channel and message_ts else None
            self._response_urls[url_id] = _ResponseUrl(url_id, channel, user, original, self.clock())
        return f"{self.url}/response/{url_id}"

    # ---- recordings ------------------------------------------------------

    @property
    def calls(self) -> list[ApiCall]:
        with self._cond:
            return list(self._calls)

    def calls_to(self, method: str, *, ok: bool | None = None) -> list[ApiCall]:
        """Calls to ``method``; ``ok=True``/``False`` keeps only (un)successful ones."""
        return [c for c in self.calls if c.method == method and (ok is None or c.ok == ok)]

    @property
    def responses(self) -> list[JsonDict]:
        """Every body POSTed to a response_url (refused ones too), plus "url_id"."""
        with self._cond:
            return copy.deepcopy(self._responses)

    def messages(self, channel: str) -> list[Message]:
        """Messages visible in the channel: roots and broadcast replies, oldest first."""
        with self._cond:
            return [copy.deepcopy(m) for m in self._live(channel)
                    if m.thread_ts is None or m.reply_broadcast]

    def thread(self, channel: str, ts: str) -> list[Message]:
        """The root message then its replies, oldest first."""
        with self._cond:
            return [copy.deepcopy(m) for m in self._live(channel) if ts in (m.ts, m.thread_ts)]

    def message(self, channel: str, ts: str) -> Message | None:
        """The current version of any message (ephemeral ones included)."""
        with self._cond:
            found = self._find(channel, ts)
            return copy.deepcopy(found) if found and not found.deleted else None

    def ephemerals(self, user: str | None = None) -> list[Message]:
        """chat.postEphemeral messages and ephemeral response_url posts."""
        with self._cond:
            return [copy.deepcopy(m) for m in self._ephemerals
                    if not m.deleted and (user is None or m.ephemeral_to == user)]

    def api_message(self, m: Message) -> JsonDict:
        """Slack's JSON message object for ``m`` (as in API responses and
        interaction payloads)."""
        out: JsonDict = {"type": "message", "text": m.text, "user": m.user, "ts": m.ts,
                         "bot_id": self.bot_id, "app_id": self.app_id, "team": self.team_id}
        if m.blocks is not None:
            out["blocks"] = copy.deepcopy(m.blocks)
        if m.thread_ts:
            out["thread_ts"] = m.thread_ts
            if m.reply_broadcast:
                out["subtype"] = "thread_broadcast"
        elif m.reply_count:
            out.update(thread_ts=m.ts, reply_count=m.reply_count, reply_users=list(m.reply_users))
        if m.edited_ts:
            out["edited"] = {"user": m.user, "ts": m.edited_ts}
        return out

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Waits until ``predicate()`` is true, re-checking after every recorded
        call or response_url post.  Returns False on timeout.

        The predicate runs with the stand-in's lock held: it may read the
        recordings (``messages()``, ``calls`` ...) but must not wait on the
        server itself.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    # ---- request dispatch ------------------------------------------------

    def _dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        request = _parse_request(handler)
        if request.path.startswith("/api/"):
            status, body, headers = self._api(request.path[len("/api/"):], request)
            _reply(handler, status, json.dumps(body).encode(), "application/json; charset=utf-8", headers)
        elif request.path.startswith("/response/") and handler.command == "POST":
            status, text, headers = self._respond(request.path[len("/response/"):], request)
            _reply(handler, status, text.encode(), "text/html", headers)
        else:
            _reply(handler, 404, b"not found", "text/plain")

    def _api(self, method: str, request: _Request) -> tuple[int, JsonDict, dict[str, str]]:
        with self._cond:
            try:
                body = {"ok": True, **self._answer(method, request)}
                status, headers, error = 200, {}, None
            except _ApiError as e:
                status, error = e.status, e.error
                body = {"ok": False, "error": e.error}
                headers = {"Retry-After": str(e.retry_after)} if e.retry_after is not None else {}
                if status == 404:
                    body["req_method"] = method
            self._calls.append(ApiCall(method, copy.deepcopy(request.params), request.token,
                                       status, error is None, error, self.clock()))
            self._cond.notify_all()
        headers["X-Slack-Req-Id"] = secrets.token_hex(16)
        return status, body, headers

    def _answer(self, method: str, request: _Request) -> JsonDict:
        """Checks in Slack's order: method, rate limits, auth, body, then the method."""
        handler = self._methods.get(method)
        if handler is None:
            raise _ApiError("unknown_method", status=404)
        if request.token == RATE_LIMITED_TOKEN:
            raise _ApiError("ratelimited", status=429, retry_after=1)
        pending = self._forced_429.get(method)
        if pending:
            raise _ApiError("ratelimited", status=429, retry_after=pending.pop(0))
        if not request.token:
            raise _ApiError("not_authed")
        app_level = method in APP_TOKEN_METHODS
        if request.token == (self.bot_token if app_level else self.app_token):
            raise _ApiError("not_allowed_token_type")  # a bot token for Socket Mode, or the reverse
        if request.token != (self.app_token if app_level else self.bot_token):
            raise _ApiError("invalid_auth")
        if request.body_error:
            raise _ApiError(request.body_error)
        return handler(request.params)

    # ---- storage helpers (call with the lock held) -----------------------

    def _next_ts(self) -> str:
        """Slack ts: "<unix seconds>.<6 digits>", unique and increasing."""
        now_us = int(time.time() * 1_000_000)
        self._last_ts_us = max(now_us, self._last_ts_us + 1)
        seconds, micros = divmod(self._last_ts_us, 1_000_000)
        return f"{seconds}.{micros:06d}"

    def _live(self, channel: str) -> list[Message]:
        return [m for (ch, _), m in self._messages.items() if ch == channel and not m.deleted]

    def _find(self, channel: str, ts: str) -> Message | None:
        found = self._messages.get((channel, ts))
        if found is None:
            found = next((m for m in self._ephemerals if m.channel == channel and m.ts == ts), None)
        return found

    def _store(self, message: Message) -> None:
        if message.ephemeral:
            self._ephemerals.append(message)
            return
        self._messages[(message.channel, message.ts)] = message
        root = self._messages.get((message.channel, message.thread_ts or ""))
        if root is not None:
            root.reply_count += 1
            if message.user not in root.reply_users:
                root.reply_users.append(message.user)

    def _thread_root(self, channel: str, thread_ts: Any) -> str | None:
        """A reply's ts stands for its parent (Slack threads are one level
        deep); an unknown thread_ts leaves the message at top level."""
        if not thread_ts:
            return None
        parent = self._messages.get((channel, str(thread_ts)))
        if parent is None or parent.deleted:
            return None
        return parent.thread_ts or parent.ts

    def _channel(self, params: JsonDict) -> str:
        """Validates ``channel``; a user id means the DM with that user."""
        channel = str(params.get("channel") or "")
        if USER_ID.match(channel):
            return "D" + channel[1:]
        if not CHANNEL_ID.match(channel):
            raise _ApiError("channel_not_found")
        return channel

    def _member_channel(self, params: JsonDict) -> str:
        """``_channel``, for methods that post: refused where the bot is not a member (keep_out)."""
        channel = self._channel(params)
        if channel in self._kept_out:
            raise _ApiError(self._kept_out[channel])
        return channel

    @staticmethod
    def _content(params: JsonDict) -> tuple[str, list[JsonDict] | None]:
        """text + blocks; Slack requires at least one of them (no_text)."""
        blocks = _parse_blocks(params.get("blocks"))
        text = str(params.get("text") or "")
        if not text and not blocks:
            raise _ApiError("no_text")
        return text, blocks

    def _take_channel_slot(self, channel: str) -> None:
        """Token bucket behind channel_rate_limit()."""
        rate = self._channel_rate
        if rate is None:
            return
        now = self.clock()
        tokens, last = self._channel_buckets.get(channel, (float(self._channel_burst), now))
        tokens = min(float(self._channel_burst), tokens + (now - last) * rate)
        if tokens < 1.0:
            self._channel_buckets[channel] = (tokens, now)
            raise _ApiError("ratelimited", status=429, retry_after=max(1, math.ceil((1.0 - tokens) / rate)))
        self._channel_buckets[channel] = (tokens - 1.0, now)

    # ---- Web API methods ---------------------------------------------------

    def _apps_connections_open(self, params: JsonDict) -> JsonDict:
        """Socket Mode's WebSocket URL (see enable_socket_mode)."""
        if self.socket_mode is None:
            raise _ApiError("internal_error")
        return {"url": self.socket_mode.url()}

    def enable_socket_mode(self, app_token: str = "xapp-1-standin") -> SocketModeStandin:
        """Serve Socket Mode: ``apps.connections.open`` with ``app_token`` hands out this stand-in's URL."""
        from standins.slack_socket import SocketModeStandin

        with self._cond:
            self.app_token = app_token
            if self.socket_mode is None:
                self.socket_mode = SocketModeStandin()
            return self.socket_mode

    def _auth_test(self, params: JsonDict) -> JsonDict:
        return {"url": f"https://{self.team_domain}.slack.com/", "team": self.team_domain.title(),
                "user": "vmbot", "team_id": self.team_id, "user_id": self.bot_user_id,
                "bot_id": self.bot_id, "is_enterprise_install": False}

    def _chat_post_message(self, params: JsonDict) -> JsonDict:
        channel = self._member_channel(params)
        text, blocks = self._content(params)
        self._take_channel_slot(channel)
        thread_ts = self._thread_root(channel, params.get("thread_ts"))
        message = Message(channel, self._next_ts(), text, blocks, thread_ts, user=self.bot_user_id,
                          reply_broadcast=bool(thread_ts) and _flag(params.get("reply_broadcast")))
        self._store(message)
        return {"channel": channel, "ts": message.ts, "message": self.api_message(message)}

    def _chat_update(self, params: JsonDict) -> JsonDict:
        """Omitted ``blocks`` keep the previous blocks (an empty list removes
        them); omitted ``text`` keeps the previous text."""
        channel = self._channel(params)
        message = self._messages.get((channel, str(params.get("ts") or "")))
        if message is None or message.deleted:
            raise _ApiError("message_not_found")
        if message.user != self.bot_user_id:
            raise _ApiError("cant_update_message")
        if "text" not in params and "blocks" not in params:
            raise _ApiError("no_text")
        blocks = _parse_blocks(params["blocks"]) if "blocks" in params else message.blocks
        text = str(params["text"]) if "text" in params else message.text
        if not text and not blocks:
            raise _ApiError("no_text")
        message.replace_content(text, blocks or None, self._next_ts())
        return {"channel": channel, "ts": message.ts, "text": message.text,
                "message": self.api_message(message)}

    def _chat_post_ephemeral(self, params: JsonDict) -> JsonDict:
        channel = self._member_channel(params)
        user = str(params.get("user") or "")
        if not USER_ID.match(user):
            raise _ApiError("user_not_found")
        text, blocks = self._content(params)
        message = Message(channel, self._next_ts(), text, blocks,
                          self._thread_root(channel, params.get("thread_ts")), user=self.bot_user_id,
                          ephemeral=True, ephemeral_to=user, source="chat.postEphemeral")
        self._store(message)
        return {"message_ts": message.ts}

    def _chat_delete(self, params: JsonDict) -> JsonDict:
        channel = self._channel(params)
        message = self._messages.get((channel, str(params.get("ts") or "")))
        if message is None or message.deleted:
            raise _ApiError("message_not_found")
        if message.user != self.bot_user_id:
            raise _ApiError("cant_delete_message")
        message.deleted = True
        root = self._messages.get((channel, message.thread_ts or ""))
        if root is not None:
            root.reply_count -= 1
        return {"channel": channel, "ts": message.ts}

    def _conversations_info(self, params: JsonDict) -> JsonDict:
        channel = self._channel(params)
        kind = channel[0]
        return {"channel": {
            "id": channel, "name": self._channel_names.get(channel, f"channel-{channel.lower()}"),
            "is_channel": kind == "C", "is_group": kind == "G", "is_im": kind == "D",
            "is_private": kind != "C", "is_archived": False, "is_member": True,
            "created": 1_600_000_000, "context_team_id": self.team_id,
        }}

    def _users_info(self, params: JsonDict) -> JsonDict:
        user = str(params.get("user") or "")
        if not USER_ID.match(user):
            raise _ApiError("user_not_found")
        known = self._users.get(user, {"name": user.lower(), "real_name": f"User {user}"})
        return {"user": {
            "id": user, "team_id": self.team_id, "name": known["name"], "real_name": known["real_name"],
            "deleted": False, "is_bot": user == self.bot_user_id, "is_admin": False, "tz": "UTC",
            "profile": {"real_name": known["real_name"], "display_name": known["name"]},
        }}

    # ---- response_url ------------------------------------------------------

    def _respond(self, url_id: str, request: _Request) -> tuple[int, str, dict[str, str]]:
        """A POST to a response_url: answers 200 "ok" or an error word, as
        hooks.slack.com does (plain text, not JSON)."""
        with self._cond:
            self._responses.append({**copy.deepcopy(request.params), "url_id": url_id})
            headers: dict[str, str] = {}
            try:
                if self._forced_response_429:
                    retry_after = self._forced_response_429.pop(0)
                    raise _ApiError("rate_limited", status=429, retry_after=retry_after)
                self._apply_response(url_id, request)
                result = (200, "ok")
            except _ApiError as e:
                result = (e.status, e.error)
                if e.retry_after is not None:
                    headers["Retry-After"] = str(e.retry_after)
            self._cond.notify_all()
            return (*result, headers)

    def _apply_response(self, url_id: str, request: _Request) -> None:
        """Only accepted posts count towards the 5 uses."""
        url = self._response_urls.get(url_id)
        if url is None:
            raise _ApiError("invalid_url", status=404)
        if self.clock() - url.created > RESPONSE_URL_TTL:
            raise _ApiError("expired_url", status=404)
        if url.uses >= RESPONSE_URL_MAX_USES:
            raise _ApiError("used_url", status=404)
        body = self._response_body(request)
        original = self._find(*url.original) if url.original else None
        if _flag(body.get("delete_original")):
            url.uses += 1
            if original is not None:
                original.deleted = True
            return
        try:
            text, blocks = self._content(body)
        except _ApiError as e:
            raise _ApiError(e.error, status=400) from None
        url.uses += 1
        if _flag(body.get("replace_original")) and original is not None and not original.deleted:
            original.replace_content(text, blocks, self._next_ts())
        else:
            self._post_response(url, body, text, blocks)

    @staticmethod
    def _response_body(request: _Request) -> JsonDict:
        """The JSON body (or a form's ``payload=<json>``) of a response_url post."""
        if request.body_error:
            raise _ApiError("invalid_payload", status=400)
        body = request.params
        if isinstance(body.get("payload"), str):
            try:
                body = json.loads(body["payload"])
            except ValueError:
                raise _ApiError("invalid_payload", status=400) from None
        if not isinstance(body, dict):
            raise _ApiError("invalid_payload", status=400)
        return body

    def _post_response(self, url: _ResponseUrl, body: JsonDict, text: str,
                       blocks: list[JsonDict] | None) -> None:
        """New message from a response_url; ephemeral unless response_type is in_channel."""
        channel = url.channel or ""
        ephemeral = body.get("response_type") != "in_channel"
        message = Message(channel, self._next_ts(), text, blocks,
                          self._thread_root(channel, body.get("thread_ts")), user=self.bot_user_id,
                          ephemeral=ephemeral, ephemeral_to=url.user if ephemeral else None,
                          source="response_url")
        self._store(message)
        if url.original is None:
            url.original = (channel, message.ts)
