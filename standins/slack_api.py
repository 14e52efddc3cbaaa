"""A local stand-in for Slack's Web API and its ``response_url`` endpoints.

The real ``slack_sdk.WebClient(token=..., base_url=standin.api_url)`` works
against it unmodified.  It follows Slack's public API documentation rather
than whatever vmbot happens to send, including these quirks:

* Every method answers HTTP 200 with ``{"ok": false, "error": "..."}`` for
  application errors; only rate limiting (429 + ``Retry-After`` seconds),
  unknown methods (404) and outages a test switches on (``fail``: 5xx,
  ``drop_connections``: no answer at all) use other status codes.
* Blocks are checked with ``slack_sdk.models`` (Slack's documented limits);
  a bad message gets ``invalid_blocks`` with an ``errors`` list, text over
  40,000 characters ``msg_too_long``.
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
import hashlib
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
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import parse_qsl, urlsplit

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

if TYPE_CHECKING:
    from standins.slack_socket import SocketModeStandin

RATE_LIMITED_TOKEN = "xoxb-429"  # always answered 429, like bolt-python's mock server
CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]+$")
USER_ID = re.compile(r"^[UW][A-Z0-9]+$")
MAX_BLOCKS = 50  # Slack refuses messages with more blocks (invalid_blocks)
MAX_TEXT = 40_000  # chat.postMessage's documented limit for ``text`` (msg_too_long beyond it)
MAX_VIEW_BLOCKS = 100  # home tabs and modals
MAX_VIEW_BYTES = 250 * 1024  # "view_too_large: ... greater than 250kb"
MAX_EXTERNAL_ID = 255
MAX_MODAL_STACK = 3  # views.push: push_limit_reached beyond three views in a stack
MAX_MPIM_USERS = 8  # conversations.open: too_many_users beyond it
TRIGGER_TTL = 3.0  # seconds a trigger_id can be exchanged for a view
RESPONSE_URL_MAX_USES = 5
RESPONSE_URL_TTL = 30 * 60.0
DEFAULT_CHANNEL_BURST = 3
RESPONSE_URL = "response_url"  # fault key: posts to response_urls
ALL_METHODS = "*"  # fault key: every Web API method (not response_urls)
DROPPED = 0  # ApiCall.status of a request whose connection was closed unanswered
SERVER_ERRORS = {500: "internal_error", 502: "bad_gateway", 503: "service_unavailable", 504: "request_timeout"}
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
    errors: list[str] = field(default_factory=list)  # Slack's reasons, e.g. for invalid_blocks


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
class _Trigger:
    """A trigger_id Slack put in a command, shortcut or interaction:
    exchangeable once, within 3 seconds, for a view shown to ``user``.
    ``view_id`` is the modal the interaction came from (views.push stacks on it)."""

    issued: float
    user: str | None
    view_id: str | None = None
    exchanged: bool = False


@dataclass
class StoredView:
    """A published home tab or an opened modal.  ``view`` is Slack's view
    object as views.* methods answer it (id, hash, state ... included)."""

    id: str
    user: str | None
    view: JsonDict
    closed: bool = False

    @property
    def type(self) -> str:
        return str(self.view.get("type"))

    @property
    def hash(self) -> str:
        return str(self.view.get("hash"))


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

    def __init__(self, error: str, status: int = 200, retry_after: int | None = None,
                 errors: list[str] | None = None, extra: JsonDict | None = None):
        super().__init__(error)
        self.error = error
        self.status = status
        self.retry_after = retry_after
        self.errors = errors or []  # Slack's per-item reasons (invalid_blocks, invalid_arguments)
        self.extra = extra or {}  # more keys for the answer body


@dataclass
class _Fault:
    """An outage switched on for one method: ``remaining`` answers to spoil
    (None: until ``SlackStandin.recover``)."""

    kind: str  # "ratelimited" | "server_error" | "drop"
    status: int
    retry_after: int | None
    remaining: int | None

    def error(self, for_response_url: bool) -> _ApiError:
        if self.kind == "ratelimited":
            return _ApiError("rate_limited" if for_response_url else "ratelimited", status=429,
                             retry_after=self.retry_after)
        return _ApiError(SERVER_ERRORS.get(self.status, "internal_error"), status=self.status,
                         retry_after=self.retry_after)


class _Dropped(Exception):
    """The stand-in closes the connection without an answer."""


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


def _names(method: str | Iterable[str]) -> list[str]:
    return [method] if isinstance(method, str) else list(method)


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


def block_errors(blocks: list[Any], pointer: str = "/blocks") -> list[str]:
    """What Slack's schema check says about ``blocks``, one line per bad block.

    Each block goes through ``slack_sdk.models`` (``Block.parse`` then
    ``to_dict()``, which runs ``validate_json()`` on the block and on every
    element, text and confirm object inside it): the limits Slack documents,
    such as section text <= 3000, button text <= 75, action_id <= 255,
    value <= 2000 and confirm text <= 300.  The lines mimic Slack's
    ``errors`` entries: ``"<reason> [json-pointer:/blocks/2]"``.
    """
    errors: list[str] = []
    for index, raw in enumerate(blocks):
        where = f"[json-pointer:{pointer}/{index}]"
        if not isinstance(raw, dict) or not raw.get("type"):
            errors.append(f"missing required field: type {where}")
            continue
        try:
            block = Block.parse(raw)
            if block is None:  # slack_sdk knows every documented block type
                errors.append(f"unsupported type: {raw['type']} {where}")
                continue
            block.to_dict()
        except SlackObjectFormationError as e:
            errors.append(f"{e} {where}")
        except (TypeError, KeyError, ValueError, AttributeError) as e:  # malformed nested objects
            errors.append(f"invalid block ({type(e).__name__}: {e}) {where}")
    return errors


def _decode_blocks(value: Any) -> list[Any] | None:
    """``blocks`` as a list: Slack takes a list or, in forms, a JSON string.

    None when absent; raises invalid_blocks_format when it is not a list.
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
    return value


def _parse_blocks(value: Any, *, strict: bool = True) -> list[JsonDict] | None:
    """Decodes and validates a message's ``blocks`` (at most 50, each valid).

    Returns None when absent; raises invalid_blocks_format / invalid_blocks
    (with Slack's ``errors`` list).  ``strict=False`` keeps only the count and
    ``type`` checks (see ``SlackStandin(strict_blocks=...)``).
    """
    value = _decode_blocks(value)
    if value is None:
        return None
    if len(value) > MAX_BLOCKS:
        raise _ApiError("invalid_blocks", errors=[f"no more than {MAX_BLOCKS} items allowed [json-pointer:/blocks]"])
    if strict:
        errors = block_errors(value)
    else:
        errors = [f"missing required field: type [json-pointer:/blocks/{i}]"
                  for i, b in enumerate(value) if not (isinstance(b, dict) and b.get("type"))]
    if errors:
        raise _ApiError("invalid_blocks", errors=errors)
    blocks = copy.deepcopy(value)
    _fill_generated_ids(blocks)
    return blocks


def _decode_view(value: Any) -> JsonDict:
    """``view``: a JSON-encoded string (or an object in a JSON body), else invalid_arguments."""
    if value is None or value == "":
        raise _ApiError("invalid_arguments", errors=["missing required field: view"])
    if isinstance(value, str):
        if len(value.encode()) > MAX_VIEW_BYTES:
            raise _ApiError("view_too_large")
        try:
            value = json.loads(value)
        except ValueError:
            raise _ApiError("invalid_arguments", errors=["invalid json [json-pointer:/view]"]) from None
    if not isinstance(value, dict):
        raise _ApiError("invalid_arguments", errors=["must be an object [json-pointer:/view]"])
    if len(json.dumps(value).encode()) > MAX_VIEW_BYTES:
        raise _ApiError("view_too_large")
    return value


def view_errors(view: JsonDict, expected_type: str) -> list[str]:
    """What Slack says about a view payload (views.publish/open/update/push).

    The view goes through ``slack_sdk.models.views.View`` (type, title <= 24,
    submit/close <= 24, private_metadata <= 3000, callback_id <= 255, 1..100
    blocks, no submit/close on a home tab), its blocks through
    ``block_errors``; on top of that, what Slack's docs require and slack_sdk
    leaves out: the type the method takes, a modal's title, a submit button
    when a modal has input blocks, external_id <= 255.
    """
    errors: list[str] = []
    kind = view.get("type")
    if kind != expected_type:
        errors.append(f'type must be "{expected_type}" for this method [json-pointer:/view/type]')
    blocks = view.get("blocks")
    if not isinstance(blocks, list) or not blocks:
        errors.append("missing required field: blocks [json-pointer:/view/blocks]")
        blocks = []
    elif len(blocks) > MAX_VIEW_BLOCKS:
        errors.append(f"no more than {MAX_VIEW_BLOCKS} items allowed [json-pointer:/view/blocks]")
    else:
        errors.extend(block_errors(blocks, "/view/blocks"))
    if kind == "modal":
        if not isinstance(view.get("title"), dict):
            errors.append("missing required field: title [json-pointer:/view/title]")
        has_input = any(isinstance(b, dict) and b.get("type") == "input" for b in blocks)
        if has_input and not isinstance(view.get("submit"), dict):
            errors.append("submit is required when a modal has input blocks [json-pointer:/view/submit]")
    if len(str(view.get("external_id") or "")) > MAX_EXTERNAL_ID:
        errors.append(f"must be at most {MAX_EXTERNAL_ID} characters [json-pointer:/view/external_id]")
    outline = {k: v for k, v in view.items() if k != "blocks"}
    try:
        # the view without its blocks (checked above, one line per block) but with a
        # stand-in block so that slack_sdk's 1..100 rule does not fire twice
        View(**{**outline, "blocks": [{"type": "divider"}]}).to_dict()
    except SlackObjectFormationError as e:
        errors.append(f"{e} [json-pointer:/view]")
    except (TypeError, KeyError, ValueError, AttributeError) as e:
        errors.append(f"invalid view ({type(e).__name__}: {e}) [json-pointer:/view]")
    return errors


# --------------------------------------------------------------------------
# The stand-in
# --------------------------------------------------------------------------


class SlackStandin:
    """Slack Web API + response_url server on 127.0.0.1 (random port).

    Thread-safe: the server handles requests on several threads, tests read
    the recordings from theirs.  ``clock`` (monotonic seconds) drives
    ``ApiCall.at``, the per-channel rate limit, response_url and trigger_id
    expiry, so tests can move time forward without sleeping.

    Methods: auth.test, chat.postMessage/update/postEphemeral/delete,
    conversations.info/open, users.info, views.publish/open/update/push,
    apps.connections.open.  Outages: ``fail`` (5xx), ``drop_connections``,
    ``rate_limit`` (429), each for N calls or until ``recover``.  Views:
    ``home_view``, ``modals``, ``modal_stack``, ``view``; trigger_ids come
    from ``issue_trigger_id`` (the driver calls it per delivery).
    ``strict_blocks=False`` turns off the slack_sdk.models checks of blocks.
    """

    def __init__(self, *, bot_token: str = "xoxb-standin", bot_user_id: str = "UBOT",
                 team_id: str = "T0001", team_domain: str = "acme", app_id: str = "A0VMBOT",
                 clock: Callable[[], float] = time.monotonic, strict_blocks: bool = True) -> None:
        self.bot_token = bot_token
        # Block Kit validation with slack_sdk.models; False keeps only the count and type checks
        self.strict_blocks = strict_blocks
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
        self._faults: dict[str, list[_Fault]] = {}  # method (or RESPONSE_URL, ALL_METHODS) -> queued outages
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
            "views.publish": self._views_publish,
            "views.open": self._views_open,
            "views.update": self._views_update,
            "views.push": self._views_push,
            "conversations.open": self._conversations_open,
        }
        self._triggers: dict[str, _Trigger] = {}
        self._views: dict[str, StoredView] = {}
        self._home: dict[str, str] = {}  # user -> id of their home tab view
        self._ims: dict[str, list[str]] = {}  # DM / group DM id -> its users (conversations.open)
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

    def rate_limit(self, method: str | Iterable[str] = "chat.postMessage", *, times: int | None = 1,
                   retry_after: int = 1) -> None:
        """The next ``times`` calls to ``method`` answer 429 with Retry-After
        (``times=None``: every call until ``recover()``).

        ``method`` may be several methods, ``ALL_METHODS`` ("*") or
        ``RESPONSE_URL``.  Refused calls change nothing.
        """
        self._add_fault(method, _Fault("ratelimited", 429, retry_after, times))

    def outage(self, *methods: str, status: int = 500) -> None:
        """Until ``outage_over()``, every call to ``methods`` (every method if none is named) answers
        ``status`` (Slack's 5xx during an incident) and changes nothing."""
        self.fail(list(methods) if methods else ALL_METHODS, status=status, times=None)

    def outage_over(self) -> None:
        self.recover()

    def rate_limit_responses(self, *, times: int | None = 1, retry_after: int = 1) -> None:
        """The next ``times`` response_url posts answer 429 with Retry-After
        (Slack rate-limits its webhooks too); they change nothing and do not
        count as uses."""
        self.rate_limit(RESPONSE_URL, times=times, retry_after=retry_after)

    def fail(self, method: str | Iterable[str] = "chat.postMessage", *, status: int = 500,
             times: int | None = None, retry_after: int | None = None) -> None:
        """``method`` answers HTTP ``status`` (500, 503 ...) for ``times`` calls,
        or until ``recover()`` when ``times`` is None: a Slack outage.

        The body is Slack's ``{"ok": false, "error": "internal_error"}``
        (``service_unavailable`` for 503); nothing is stored.  Faults queue in
        the order they are switched on, per method.
        """
        if status < 500:
            raise ValueError("fail() is for server errors; use rate_limit() for 429")
        self._add_fault(method, _Fault("server_error", status, retry_after, times))

    def drop_connections(self, method: str | Iterable[str] = "chat.postMessage", *,
                         times: int | None = None) -> None:
        """Requests to ``method`` get their connection closed without any
        answer (the client sees a reset / RemoteDisconnected), for ``times``
        requests or until ``recover()``.  Nothing is stored."""
        self._add_fault(method, _Fault("drop", DROPPED, None, times))

    def recover(self, method: str | Iterable[str] | None = None) -> None:
        """Ends the outages switched on for ``method`` (all of them when None)."""
        with self._cond:
            if method is None:
                self._faults.clear()
            else:
                for name in _names(method):
                    self._faults.pop(name, None)

    def _add_fault(self, method: str | Iterable[str], fault: _Fault) -> None:
        if fault.remaining is not None and fault.remaining < 1:
            return
        with self._cond:
            for name in _names(method):
                self._faults.setdefault(name, []).append(copy.copy(fault))

    def _take_fault(self, *names: str) -> _Fault | None:
        """The first outage queued for the first of ``names`` that has one; counts one use."""
        for name in names:
            queue = self._faults.get(name)
            if not queue:
                continue
            fault = queue[0]
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    queue.pop(0)
            return fault
        return None

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

    def issue_trigger_id(self, trigger_id: str | None = None, *, user: str | None = None,
                         view_id: str | None = None) -> str:
        """A trigger_id as Slack puts in a slash command, shortcut or interaction
        (``SlackDriver`` asks for one per delivery).  It can be exchanged once
        for a view (views.open/push) within 3 s of the stand-in's clock.

        Passing a ``trigger_id`` registers it (a redelivery keeps its first
        issue time); ``view_id`` is the modal an interaction came from.
        """
        with self._cond:
            trigger_id = trigger_id or (f"{secrets.randbelow(10**10)}.{secrets.randbelow(10**10)}."
                                        f"{secrets.token_hex(16)}")
            if trigger_id not in self._triggers:
                self._triggers[trigger_id] = _Trigger(self.clock(), user, view_id)
            return trigger_id

    def close_view(self, view_id: str) -> None:
        """The user closed a modal (with its stack) or Slack dismissed it."""
        with self._cond:
            root = self._views[view_id].view["root_view_id"]
            for view in self._views.values():
                if view.view["root_view_id"] == root and view.type == "modal":
                    view.closed = True

    # ---- recordings ------------------------------------------------------

    def home_view(self, user: str) -> JsonDict | None:
        """The App Home view last published for ``user`` (Slack's view object), or None."""
        with self._cond:
            view_id = self._home.get(user)
            return copy.deepcopy(self._views[view_id].view) if view_id else None

    def home_views(self) -> dict[str, JsonDict]:
        """Every user's current home view, by user id."""
        with self._cond:
            return {user: copy.deepcopy(self._views[view_id].view) for user, view_id in self._home.items()}

    def view(self, view_id: str) -> JsonDict | None:
        """Any view's current version by id (closed modals included)."""
        with self._cond:
            found = self._views.get(view_id)
            return copy.deepcopy(found.view) if found else None

    def modals(self, user: str | None = None) -> list[JsonDict]:
        """Open modals (of ``user``), oldest first; a stack's views are listed root first."""
        with self._cond:
            return [copy.deepcopy(v.view) for v in self._views.values()
                    if v.type == "modal" and not v.closed and (user is None or v.user == user)]

    def modal_stack(self, root_view_id: str | None) -> list[JsonDict]:
        """The open views of one modal stack, root first."""
        with self._cond:
            return [copy.deepcopy(v.view) for v in self._views.values()
                    if v.type == "modal" and not v.closed and v.view["root_view_id"] == root_view_id]

    def opened_conversations(self) -> dict[str, list[str]]:
        """DMs and group DMs the app opened with conversations.open: id -> users."""
        with self._cond:
            return copy.deepcopy(self._ims)


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
            if status == DROPPED:
                handler.close_connection = True
                return
            _reply(handler, status, json.dumps(body).encode(), "application/json; charset=utf-8", headers)
        elif request.path.startswith("/response/") and handler.command == "POST":
            status, text, headers = self._respond(request.path[len("/response/"):], request)
            if status == DROPPED:
                handler.close_connection = True
                return
            _reply(handler, status, text.encode(), "text/html", headers)
        else:
            _reply(handler, 404, b"not found", "text/plain")

    def _api(self, method: str, request: _Request) -> tuple[int, JsonDict, dict[str, str]]:
        with self._cond:
            try:
                body = {"ok": True, **self._answer(method, request)}
                status, headers, error = 200, {}, None
            except _Dropped:
                status, error, errors, body, headers = DROPPED, "connection_dropped", [], {}, {}
            except _ApiError as e:
                status, error, errors = e.status, e.error, e.errors
                body = {"ok": False, "error": e.error, **e.extra}
                if e.errors:
                    if e.error == "invalid_blocks":
                        body["errors"] = list(e.errors)
                    body["response_metadata"] = {"messages": [f"[ERROR] {line}" for line in e.errors]}
                headers = {"Retry-After": str(e.retry_after)} if e.retry_after is not None else {}
                if status == 404:
                    body["req_method"] = method
            else:
                errors = []
            self._calls.append(ApiCall(method, copy.deepcopy(request.params), request.token,
                                       status, error is None, error, self.clock(), list(errors)))
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
        fault = self._take_fault(method, ALL_METHODS)
        if fault is not None:
            if fault.kind == "drop":
                raise _Dropped()
            raise fault.error(for_response_url=False)
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

    def _content(self, params: JsonDict) -> tuple[str, list[JsonDict] | None]:
        """text + blocks; Slack requires at least one of them (no_text), text
        up to 40,000 characters (msg_too_long) and valid blocks (invalid_blocks)."""
        text = str(params.get("text") or "")
        if len(text) > MAX_TEXT:
            raise _ApiError("msg_too_long")
        blocks = _parse_blocks(params.get("blocks"), strict=self.strict_blocks)
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
        text = str(params["text"]) if "text" in params else message.text
        if len(text) > MAX_TEXT:
            raise _ApiError("msg_too_long")
        blocks = (_parse_blocks(params["blocks"], strict=self.strict_blocks) if "blocks" in params
                  else message.blocks)
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

    # ---- views and DMs -----------------------------------------------------

    def _exchange_trigger(self, params: JsonDict) -> _Trigger:
        """trigger_id (or interactivity_pointer): known, unused, at most 3 s old."""
        trigger_id = str(params.get("trigger_id") or params.get("interactivity_pointer") or "")
        if not trigger_id:
            raise _ApiError("invalid_arguments", errors=["missing required field: trigger_id"])
        trigger = self._triggers.get(trigger_id)
        if trigger is None:
            raise _ApiError("invalid_trigger_id")
        if self.clock() - trigger.issued > TRIGGER_TTL:
            raise _ApiError("expired_trigger_id")
        if trigger.exchanged:
            raise _ApiError("exchanged_trigger_id")
        return trigger

    def _checked_view(self, params: JsonDict, expected_type: str) -> JsonDict:
        view = _decode_view(params.get("view"))
        errors = view_errors(view, expected_type)
        if errors:
            raise _ApiError("invalid_arguments", errors=errors)
        external_id = view.get("external_id")
        if external_id and any(v.view.get("external_id") == external_id and v.id != view.get("id")
                               for v in self._views.values()):
            raise _ApiError("duplicate_external_id")
        return view

    def _store_view(self, view: JsonDict, user: str | None, *, view_id: str | None = None,
                    root_view_id: str | None = None, previous_view_id: str | None = None) -> StoredView:
        """Slack's view object for ``view`` (blocks get generated ids), stored under ``view_id``."""
        view_id = view_id or "V" + _random_id(10).upper()
        blocks = copy.deepcopy(view["blocks"])
        _fill_generated_ids(blocks)
        stored = {
            "id": view_id, "team_id": self.team_id, "type": view["type"],
            "title": view.get("title"), "close": view.get("close"), "submit": view.get("submit"),
            "blocks": blocks, "private_metadata": str(view.get("private_metadata") or ""),
            "callback_id": str(view.get("callback_id") or ""), "external_id": str(view.get("external_id") or ""),
            "state": {"values": {}}, "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
            "clear_on_close": _flag(view.get("clear_on_close")), "notify_on_close": _flag(view.get("notify_on_close")),
            "root_view_id": root_view_id or view_id, "previous_view_id": previous_view_id,
            "app_id": self.app_id, "bot_id": self.bot_id,
        }
        record = StoredView(view_id, user, stored)
        self._views[view_id] = record
        return record

    def _views_publish(self, params: JsonDict) -> JsonDict:
        """The user's App Home tab: one view per user, replaced on each publish."""
        user = str(params.get("user_id") or "")
        if not USER_ID.match(user):
            raise _ApiError("invalid_arguments", errors=["invalid `user_id`"])
        view = self._checked_view(params, "home")
        current = self._views.get(self._home.get(user, ""))
        self._check_hash(params, current)
        record = self._store_view(view, user, view_id=current.id if current else None)
        self._home[user] = record.id
        return {"view": copy.deepcopy(record.view)}

    def _views_open(self, params: JsonDict) -> JsonDict:
        trigger = self._exchange_trigger(params)
        view = self._checked_view(params, "modal")
        trigger.exchanged = True
        return {"view": copy.deepcopy(self._store_view(view, trigger.user).view)}

    def _views_push(self, params: JsonDict) -> JsonDict:
        """Stacks a modal on the one the trigger's interaction came from (a new stack otherwise)."""
        trigger = self._exchange_trigger(params)
        view = self._checked_view(params, "modal")
        below = self._views.get(trigger.view_id or "")
        root = below.view["root_view_id"] if below else None
        if below is not None and len(self.modal_stack(root)) >= MAX_MODAL_STACK:
            raise _ApiError("push_limit_reached")
        trigger.exchanged = True
        record = self._store_view(view, trigger.user, root_view_id=root, previous_view_id=below and below.id)
        return {"view": copy.deepcopy(record.view)}

    def _views_update(self, params: JsonDict) -> JsonDict:
        """By view_id or external_id; a ``hash`` that is not the view's current one is a hash_conflict."""
        view_id, external_id = params.get("view_id"), params.get("external_id")
        if not view_id and not external_id:
            raise _ApiError("invalid_arguments", errors=["either view_id or external_id is required"])
        if view_id:
            current = self._views.get(str(view_id))
        else:
            current = next((v for v in self._views.values() if v.view["external_id"] == external_id), None)
        if current is None or current.closed:
            raise _ApiError("not_found")
        view = _decode_view(params.get("view"))
        view.setdefault("external_id", current.view["external_id"])  # the view keeps its external_id
        view = self._checked_view({"view": {**view, "id": current.id}}, current.type)
        self._check_hash(params, current)
        record = self._store_view(view, current.user, view_id=current.id,
                                  root_view_id=current.view["root_view_id"],
                                  previous_view_id=current.view["previous_view_id"])
        return {"view": copy.deepcopy(record.view)}

    @staticmethod
    def _check_hash(params: JsonDict, current: StoredView | None) -> None:
        given = params.get("hash")
        if given and current is not None and str(given) != current.hash:
            raise _ApiError("hash_conflict")

    def _conversations_open(self, params: JsonDict) -> JsonDict:
        """A DM ("D" + the user id's tail, as ``channel=<user id>`` is read) or a group DM ("G...")."""
        channel = str(params.get("channel") or "")
        if channel:
            if channel not in self._ims:
                raise _ApiError("channel_not_found")
            return {"no_op": True, "already_open": True, "channel": self._im_object(channel, params)}
        users = [u.strip() for u in str(params.get("users") or "").split(",") if u.strip()]
        if not users:
            raise _ApiError("users_list_not_supplied")
        if any(not USER_ID.match(u) for u in users):
            raise _ApiError("user_not_found")
        if len(users) > MAX_MPIM_USERS:
            raise _ApiError("too_many_users")
        if len(users) == 1:
            channel = "D" + users[0][1:]
        else:
            channel = "G" + hashlib.sha1(",".join(sorted(users)).encode()).hexdigest()[:10].upper()
        already = channel in self._ims
        self._ims[channel] = users
        out: JsonDict = {"channel": self._im_object(channel, params)}
        if already:
            out.update(no_op=True, already_open=True)
        return out

    def _im_object(self, channel: str, params: JsonDict) -> JsonDict:
        if not _flag(params.get("return_im")):
            return {"id": channel}
        users = self._ims[channel]
        return {"id": channel, "created": 1_600_000_000, "is_im": channel.startswith("D"),
                "is_mpim": channel.startswith("G"), "is_org_shared": False,
                "user": users[0] if len(users) == 1 else None, "is_open": True}

    # ---- response_url ------------------------------------------------------

    def _respond(self, url_id: str, request: _Request) -> tuple[int, str, dict[str, str]]:
        """A POST to a response_url: answers 200 "ok" or an error word, as
        hooks.slack.com does (plain text, not JSON)."""
        with self._cond:
            self._responses.append({**copy.deepcopy(request.params), "url_id": url_id})
            headers: dict[str, str] = {}
            try:
                fault = self._take_fault(RESPONSE_URL)
                if fault is not None:
                    if fault.kind == "drop":
                        self._cond.notify_all()
                        return DROPPED, "", headers
                    raise fault.error(for_response_url=True)
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
