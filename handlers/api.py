"""The HTTP API under ``/api/v1``: the Slack commands' operations, as JSON, for scripts and CI.

Mutations take the very path a slash command takes (``bot.core.lifecycle.start_operation``
claims the VM in the store, ``bot.jobs.runner`` runs ``bot.core.workflows``), so a park started
by a script is in ``/vm list`` and its history like any other. They answer
``202 Accepted`` at once with the operation and a ``Location`` to poll; ``?wait=SECONDS``
(at most MAX_WAIT_SECONDS) holds the answer until the operation ends, woken by the
workflow's own completion signal rather than by polling the store.

Every refusal is ``{"error": {"code": ..., "message": ...}}`` with a stable code (see
ERROR_CODES) and is decided before anything is recorded, so it changes nothing.

Auth: ``Authorization: Bearer TOKEN`` with a token from VMBOT_API_TOKENS; the token's
name is the operation's ``requested_by`` and the VM's owner when it creates one. Park
and restore follow bot.core.permissions as in Slack: the VM's owner or an admin
(VMBOT_ADMINS may name a token), else 403 ``forbidden``. Every authenticated
mutation, allowed or refused, goes into the audit trail (bot.core.audit). With no tokens configured the API is off and
every ``/api/v1`` path answers 404 ``api_disabled``. Tokens are compared in constant time
and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from bot.core import audit, permissions
from bot.slack.text import SLACK_USER_RE, escape
from bot.core.errors import InvalidInput, Reason, Refused
from bot.gcp.compute import GceError
from bot.core.lifecycle import check_allowed, check_image_name_free, start_operation
from bot.core.names import NAME_RE, check_name, check_option, explain
from bot.settings import SLACK_CHANNEL_RE
from handlers.openapi import ERROR_CODES, MAX_WAIT_SECONDS, PREFIX, SPEC
from storage.models import FINISHED_STATES, Image, Operation, OperationStep, Verb, Verdict, Vm, VmState

if TYPE_CHECKING:
    from bot.deps import Deps
    from storage.store import VmSummary

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024
Json = dict[str, Any]
StartResponse = Callable[..., Any]

STATUS_LINES = {
    200: "200 OK",
    202: "202 Accepted",
    400: "400 Bad Request",
    401: "401 Unauthorized",
    403: "403 Forbidden",
    404: "404 Not Found",
    405: "405 Method Not Allowed",
    409: "409 Conflict",
    413: "413 Payload Too Large",
    500: "500 Internal Server Error",
    502: "502 Bad Gateway",
}


class ApiError(Exception):
    """A refusal: ``code`` is one of ERROR_CODES, ``message`` says what to do instead."""

    def __init__(self, code: str, message: str, *, headers: Iterable[tuple[str, str]] = (), **details: Any) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, ERROR_CODES[code]
        self.headers, self.details = list(headers), details

    def body(self) -> Json:
        return {"error": {"code": self.code, "message": self.message, **self.details}}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    raw_body: bytes
    actor: str
    args: dict[str, str] = field(default_factory=dict)  # the route's path parameters

    def json(self, *, allowed: set[str], required: frozenset[str] = frozenset()) -> Json:
        """The body as a JSON object of string fields (``notify_channel`` may be null); empty means {}."""
        if not self.raw_body.strip():
            body: Any = {}
        else:
            try:
                body = json.loads(self.raw_body)
            except (ValueError, UnicodeDecodeError):
                raise ApiError("invalid_json", "The body is not valid JSON; send a JSON object.") from None
        if not isinstance(body, dict):
            raise ApiError("invalid_json", "The body must be a JSON object, like {\"name\": \"test-vm-22\"}.")
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise ApiError(
                "invalid_field",
                f"Unknown field {unknown[0]!r}; this request takes {', '.join(sorted(allowed)) or 'no fields'}.",
            )
        missing = sorted(required - set(body))
        if missing:
            raise ApiError("invalid_field", f"The field {missing[0]!r} is required.")
        for key, value in body.items():
            if not isinstance(value, str) and not (key == "notify_channel" and value is None):
                raise ApiError("invalid_field", f"The field {key!r} must be a string.")
        return body

    def query_options(self, allowed: set[str]) -> dict[str, str]:
        unknown = sorted(set(self.query) - allowed)
        if unknown:
            accepted = ", ".join(f"?{key}=" for key in sorted(allowed)) or "none"
            raise ApiError("invalid_option", f"Unknown query parameter {unknown[0]!r} (accepted: {accepted}).")
        return self.query


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # as the OpenAPI description spells it
    handler: str  # the Api method that serves it

    @property
    def pattern(self) -> re.Pattern[str]:
        """The template as a regex: ``{name}`` matches one path segment, checked by the handler."""
        parts = re.split(r"\{(\w+)\}", self.template)  # literal, name, literal, ...
        return re.compile("^" + "".join(f"(?P<{p}>[^/]+)" if i % 2 else re.escape(p) for i, p in enumerate(parts)) + "$")


ROUTES: tuple[Route, ...] = (
    Route("GET", f"{PREFIX}/openapi.json", "openapi"),
    Route("GET", f"{PREFIX}/vms", "list_vms"),
    Route("POST", f"{PREFIX}/vms", "create_vm"),
    Route("GET", f"{PREFIX}/vms/{{name}}", "get_vm"),
    Route("POST", f"{PREFIX}/vms/{{name}}/park", "park_vm"),
    Route("POST", f"{PREFIX}/vms/{{name}}/restore", "restore_vm"),
    Route("POST", f"{PREFIX}/vms/{{name}}/delete", "delete_vm"),
    Route("GET", f"{PREFIX}/operations/{{id}}", "get_operation"),
)
PUBLIC_ROUTES = frozenset({f"{PREFIX}/openapi.json"})  # the description needs no token (the API must be on)


class Api:
    """The WSGI app for ``/api/v1``, mounted by bot.web.server next to ``/slack/events``."""

    def __init__(self, bot: Deps) -> None:
        self.bot = bot
        # Compare digests, not tokens: equal lengths, and hmac.compare_digest keeps the time constant.
        self._tokens = [(name, _digest(token)) for name, token in bot.settings.api_tokens]
        self._routes = [(route, route.pattern) for route in ROUTES]
        if self._tokens:
            log.info("HTTP API on at %s for %s", PREFIX, ", ".join(name for name, _ in self._tokens))
        else:
            log.info("HTTP API off (set VMBOT_API_TOKENS to turn it on)")

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "")
        actor = "-"
        try:
            if not self._tokens:
                raise ApiError("api_disabled", "The HTTP API is off on this vmbot: set VMBOT_API_TOKENS to turn it on.")
            route, args = self._route(method, path)
            if route.template not in PUBLIC_ROUTES:
                actor = self._authenticate(environ.get("HTTP_AUTHORIZATION", ""))
            request = Request(method, path, _query(environ), _read_body(environ), actor, args)
            if method != "POST":
                status, body, headers = getattr(self, route.handler)(request)
            else:
                with audit.recording(_audit_request(request)) as recording:  # an operation is written with its entry
                    try:
                        status, body, headers = getattr(self, route.handler)(request)
                    except Exception as error:
                        self._audit(recording, error)
                        raise
                    self._audit(recording, None)
        except ApiError as error:
            status, body, headers = error.status, error.body(), error.headers
        except Exception:
            reference = uuid.uuid4().hex[:8]
            log.exception("unhandled error in %s %s (ref %s)", method, path, reference)
            error = ApiError("internal_error", f"Something went wrong on my side (ref {reference}).")
            status, body, headers = error.status, error.body(), []
        log.info("API %s %s by %s: %s", method, path, actor, status)
        data = json.dumps(body, indent=None).encode()
        start_response(
            STATUS_LINES[status],
            [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *headers],
        )
        return [data]

    # ---- routing and auth ----------------------------------------------------------------

    def _route(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        allowed = []
        for route, pattern in self._routes:
            match = pattern.match(path)
            if match and route.method == method:
                return route, match.groupdict()
            if match:
                allowed.append(route.method)
        if allowed:
            raise ApiError(
                "method_not_allowed", f"{path} does not take {method} (it takes {', '.join(allowed)}).",
                headers=[("Allow", ", ".join(allowed))],
            )
        raise ApiError("not_found", f"There is no {path}; GET {PREFIX}/openapi.json describes the API.")

    def _authenticate(self, header: str) -> str:
        """The caller's name for a valid bearer token; every configured token is compared, in constant time."""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("This API needs an 'Authorization: Bearer TOKEN' header with a token from VMBOT_API_TOKENS.")
        offered = _digest(token.strip())
        actor = None
        for name, digest in self._tokens:
            if hmac.compare_digest(offered, digest):
                actor = name
        if actor is None:
            raise _unauthorized("That token is not one of this vmbot's API tokens (VMBOT_API_TOKENS).")
        return actor

    def _audit(self, recording: audit.Recording, error: Exception | None) -> None:
        """Record an authenticated mutation's verdict as the audit trail records a Slack command's."""
        if error is None:
            verdict, detail = Verdict.ALLOWED, None
        elif isinstance(error, ApiError):
            verdict = Verdict.INVALID if error.status in (400, 405, 413) else Verdict.REFUSED
            verdict = Verdict.ERROR if error.status >= 500 else verdict
            # Stored as Slack text (the history shows it there): the plain API message is escaped again.
            detail = escape(f"{error.code}: {error.message}")
        else:
            verdict, detail = Verdict.ERROR, "internal error; see the bot's log"
        recording.record(self.bot.store, verdict, detail=detail)

    # ---- reads --------------------------------------------------------------------------------

    def openapi(self, request: Request) -> tuple[int, Json, list[tuple[str, str]]]:
        return 200, SPEC, []

    def list_vms(self, request: Request) -> tuple[int, Json, list[tuple[str, str]]]:
        request.query_options(set())
        return 200, {"vms": [summary_json(item) for item in self.bot.store.list_vms()]}, []

    def get_vm(self, request: Request) -> tuple[int, Json, list[tuple[str, str]]]:
        live = _flag(request.query_options({"live"}), "live")
        name = _vm_name(request.args["name"])
        vm = self.bot.store.vm(name)
        if vm is None:
            raise _unknown_vm(name)
        body = {
            **vm_json(vm, self.bot.store.newest_image(name)),
            "images": [image_json(image) for image in self.bot.store.images(name)],
            "operations": [operation_json(op, with_steps=False) for op in self.bot.store.operations_for(name)],
        }
        if live:
            body["gcp"] = self._live_state(vm)
        return 200, {"vm": body}, []

    def get_operation(self, request: Request) -> tuple[int, Json, list[tuple[str, str]]]:
        wait = _wait_seconds(request.query_options({"wait"}))
        op_id = request.args["id"]
        op = self.bot.store.operation(int(op_id)) if op_id.isdigit() and len(op_id) < 12 else None
        if op is None:
            raise ApiError("operation_not_found", f"There is no operation {op_id[:20]!r}.")
        return 200, {"operation": operation_json(self._wait_for(op, wait))}, []

    # ---- mutations ------------------------------------------------------------------------------

    def create_vm(self, request: Request) -> tuple[int, Json, list[tuple[str, str]]]:
        wait = _wait_seconds(request.query_options({"wait"}))
        body = request.json(allowed={"name", "zone", "machine_type", "notify_channel"}, required=frozenset({"name"}))
        name = _vm_name(body["name"])
        zone = _option(body, "zone", "zone") or self.bot.settings.zone
        machine_type = _option(body, "machine_type", "machine-type") or self.bot.settings.machine_type
        channel = self._notify_channel(body)
        self._check_allowed(Verb.CREATE, name)
        op = self._start(Verb.CREATE, name, request.actor, zone=zone, machine_type=machine_type, channel=channel)
        return self._accepted(op, wait)

    def park_vm(self, request: Request) -> tuple[int, Json, list[tuple[str, str]]]:
        wait = _wait_seconds(request.query_options({"wait"}))
        name = _vm_name(request.args["name"])
        body = request.json(allowed={"image", "family", "notify_channel"})
        params = {key: value for key in ("image", "family") if (value := _option(body, key, key))}
        channel = self._notify_channel(body)
        vm = self._known_vm(Verb.PARK, name)
        self._check_permission(request.actor, vm, Verb.PARK)
        if "image" in params:
            try:
                check_image_name_free(self.bot.store, params["image"])
            except Refused as refusal:
                raise refusal_error(refusal) from None
        op = self._start(
            Verb.PARK, name, request.actor, zone=vm.zone, machine_type=vm.machine_type, channel=channel, params=params
        )
        return self._accepted(op, wait)

    def restore_vm(self, request: Request) -> tuple[int, Json, list[tuple[str, str]]]:
        return self._act_on(request, Verb.RESTORE)

    def delete_vm(self, request: Request) -> tuple[int, Json, list[tuple[str, str]]]:
        """No question asked here: a script that calls this has decided (the CLI asks for --yes)."""
        return self._act_on(request, Verb.DELETE)

    def _act_on(self, request: Request, verb: Verb) -> tuple[int, Json, list[tuple[str, str]]]:
        """A verb on a known VM that takes no options (restore, delete), as its owner or an admin."""
        wait = _wait_seconds(request.query_options({"wait"}))
        name = _vm_name(request.args["name"])
        channel = self._notify_channel(request.json(allowed={"notify_channel"}))
        vm = self._known_vm(verb, name)
        self._check_permission(request.actor, vm, verb)
        op = self._start(verb, name, request.actor, zone=vm.zone, machine_type=vm.machine_type, channel=channel)
        return self._accepted(op, wait)

    # ---- shared pieces ----------------------------------------------------------------------------

    def _notify_channel(self, body: Json) -> str | None:
        """Where the operation's thread goes: the field, else VMBOT_API_NOTIFY_CHANNEL; null means nowhere."""
        if "notify_channel" not in body:
            return self.bot.settings.api_notify_channel
        channel = body["notify_channel"]
        if channel is not None and not SLACK_CHANNEL_RE.match(channel):
            raise ApiError(
                "invalid_option", f"{channel[:40]!r} is not a Slack channel id; notify_channel looks like 'C0123ABCD'."
            )
        return channel

    def _check_allowed(self, verb: Verb, name: str) -> Vm | None:
        """The lifecycle table's verdict (bot.core.lifecycle), as an API error; the VM (None only for a create)."""
        vm = self.bot.store.vm(name)
        try:
            check_allowed(verb, name, vm)
        except Refused as refusal:
            raise refusal_error(refusal) from None
        return vm

    def _check_permission(self, actor: str, vm: Vm, verb: Verb) -> None:
        """The same rule as in Slack (bot.core.permissions): the VM's owner or an admin."""
        try:
            permissions.require_owner_or_admin(self.bot.settings, actor, vm, verb.value)
        except Refused as refusal:
            raise refusal_error(refusal) from None

    def _known_vm(self, verb: Verb, name: str) -> Vm:
        vm = self._check_allowed(verb, name)
        assert vm is not None, "only a create starts without a VM"
        return vm

    def _start(self, verb: Verb, name: str, actor: str, *, channel: str | None, **kwargs: Any) -> Operation:
        """Record and claim through the same lifecycle as Slack, then hand the work to the job runner."""
        try:
            op = start_operation(self.bot.store, verb, name, requested_by=actor, channel=channel, **kwargs)
        except Refused as refusal:  # lost a race since _check_allowed: the core says why, from the fresh state
            raise refusal_error(refusal) from None
        log.info("API: %s asked to %s %s (operation %s)", actor, verb.value, name, op.id)
        self.bot.runner.submit(self.bot.workflows.run, op.id)
        return op

    def _accepted(self, op: Operation, wait: float) -> tuple[int, Json, list[tuple[str, str]]]:
        """202 with the operation as it is now; 200 only when asked to ``wait`` and it has ended."""
        op = self._wait_for(op, wait)
        status = 200 if wait > 0 and op.state in FINISHED_STATES else 202
        return status, {"operation": operation_json(op)}, [("Location", f"{PREFIX}/operations/{op.id}")]

    def _wait_for(self, op: Operation, seconds: float) -> Operation:
        """The operation once it has ended, or as it is after ``seconds``; woken by Workflows.run, no polling."""
        with self.bot.workflows.completions.watch(op.id) as ended:
            current = self._reread(op)
            if seconds > 0 and current.state not in FINISHED_STATES:
                ended.wait(seconds)
                current = self._reread(op)
        return current

    def _reread(self, op: Operation) -> Operation:
        current = self.bot.store.operation(op.id)
        assert current is not None, "operations are never deleted"
        return current

    def _live_state(self, vm: Vm) -> Json:
        try:
            live = self.bot.compute.get_instance(vm.zone, vm.name)
        except GceError as error:
            raise ApiError("gcp_error", f"I could not ask GCP about {vm.name}: {error.message}") from None
        if live is None:
            return {"exists": False}
        return {"exists": True, "status": live.status, "external_ip": live.external_ip, "machine_type": live.machine_type}


_PAST = {Verb.CREATE: "created", Verb.PARK: "parked", Verb.RESTORE: "restored", Verb.DELETE: "deleted"}


# ---- request pieces ------------------------------------------------------------------------------


def _field(raw_body: bytes, key: str) -> str | None:
    """One string field of a JSON body, if it is one (for the audit trail; the handler checks it properly)."""
    try:
        value = json.loads(raw_body).get(key)
    except (ValueError, UnicodeDecodeError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _unauthorized(message: str) -> ApiError:
    return ApiError("unauthorized", message, headers=[("WWW-Authenticate", 'Bearer realm="vmbot"')])


def _unknown_vm(name: str) -> ApiError:
    return ApiError("vm_not_found", f"I don't know a VM called {name}. GET {PREFIX}/vms lists the VMs I manage.")


def _query(environ: dict[str, Any]) -> dict[str, str]:
    return dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))


def _read_body(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY_BYTES:
        raise ApiError("payload_too_large", f"The body is {length} bytes; the limit is {MAX_BODY_BYTES}.")
    return environ["wsgi.input"].read(length) if length > 0 else b""


def _vm_name(name: str) -> str:
    try:
        check_name(name, what="VM name")
    except InvalidInput as invalid:
        raise ApiError("invalid_name", explain(invalid, _quote)) from None
    return name


def _option(body: Json, key: str, parsing_key: str) -> str | None:
    """A field checked by bot.slack.parsing's rule for the matching ``/vm`` option; absent or empty means not given."""
    value = body.get(key)
    if not value:
        return None
    try:
        check_option(parsing_key, value)
    except InvalidInput as invalid:
        raise ApiError("invalid_option", f"{key}: {explain(invalid, _quote)}") from None
    return value


def _quote(value: str) -> str:
    return f"`{value}`"


def _who(name: str) -> str:
    """A Slack user id as it is; an API token's name marked as one, as Slack shows it."""
    return name if SLACK_USER_RE.match(name) else f"{name} (API)"


def refusal_error(refusal: Refused) -> ApiError:
    """The core's refusal as the API says it: a stable code, a plain message, and the facts a script needs."""
    name, facts = refusal.vm or "", refusal.facts
    admins = ", ".join(_who(admin) for admin in facts.get("admins", ()))
    or_admin = f" or an admin ({admins})" if admins else ""
    match refusal.reason:
        case Reason.VM_UNKNOWN | Reason.VM_GONE:
            return _unknown_vm(name)
        case Reason.VM_BUSY:
            op = facts["operation"]
            return ApiError(
                "operation_in_progress",
                f"{name} is busy: operation {op.id} ({op.verb.value}, asked by {op.requested_by}) is under way. "
                f"Try again when it has finished (GET {PREFIX}/operations/{op.id}?wait=60).",
                operation_id=op.id,
            )
        case Reason.CLAIM_LOST:
            return ApiError("operation_in_progress", f"Someone else just started an operation on {name}. GET {PREFIX}/vms/{name} shows it.")
        case Reason.VM_EXISTS:
            return ApiError("vm_exists", f"A VM named {name} already exists ({facts['state']}). Pick another name.")
        case Reason.WRONG_STATE:
            allowed = " or ".join(facts["allowed"])
            past = _PAST[Verb(facts["verb"])]
            return ApiError(
                "state_conflict", f"{name} is {facts['state']}, so it cannot be {past} now (only when {allowed}).",
                state=facts["state"],
            )
        case Reason.IMAGE_EXISTS:
            return ApiError(
                "image_exists",
                f"An image named `{facts['image']}` is already in my records (made for `{facts['made_for']}`, now "
                f"{facts['image_state']}); image names are never reused. Pick another image name.",
            )
        case Reason.NOT_OWNER:
            return ApiError("forbidden", f"Only {name}'s owner {_who(facts['owner'])}{or_admin} may {facts['verb']} it. Ask them to.")
        case Reason.ADMIN_ONLY:
            return ApiError("forbidden", f"Only admins may {facts.get('action') or facts['verb']}.")
        case Reason.ALREADY_MANAGED | Reason.IN_MANAGED_GROUP | Reason.NO_PERMISSION | Reason.NOT_IN_GCP:
            code, words = _ADOPT_REFUSALS[refusal.reason]
            return ApiError(code, words.format(name=name, **facts), reason=refusal.reason.value)
        case Reason.DELETION_PROTECTED:
            return ApiError("state_conflict", f"{name} has deletion protection on; vmbot never lifts it. Nothing was changed.",
                            reason=refusal.reason.value)  # fmt: skip
        case Reason.DISK_NOT_IMAGEABLE:
            return ApiError("state_conflict", f"{name} cannot be parked: its disk {facts['disk']} (device "
                            f"{facts['device']}) cannot be imaged ({facts['why']}). Nothing was changed.",
                            reason=refusal.reason.value)  # fmt: skip
    raise AssertionError(f"the API has no words for {refusal!r}")


_ADOPT_REFUSALS = {  # (the API's error code, its words)
    Reason.ALREADY_MANAGED: ("vm_exists", "{name} is managed by vmbot already. Nothing was changed."),
    Reason.IN_MANAGED_GROUP: ("state_conflict", "{name} belongs to the managed instance group {group}; vmbot cannot adopt it. Nothing was changed."),
    Reason.NO_PERMISSION: ("forbidden", "vmbot may not manage {name} in {zone}: GCP said: {gcp}. Nothing was changed."),
    Reason.NOT_IN_GCP: ("vm_not_found", "There is no instance {name} in {zone} (project {project})."),
}


def _audit_request(request: Request) -> audit.Request:
    """An API mutation as the audit trail describes it: who, the method and path, and the body sent."""
    body = request.raw_body.decode("utf-8", "replace").strip()
    name = request.args.get("name") or _field(request.raw_body, "name")
    name = name if name and NAME_RE.fullmatch(name) else None
    return audit.Request("api", request.actor, None, f"{request.method} {request.path} {body}".strip(),
                         verb=request.path.rsplit("/", 1)[-1] if request.args else "create", vm_name=name)


def _wait_seconds(query: dict[str, str]) -> float:
    raw = query.get("wait")
    if raw is None:
        return 0.0
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_WAIT_SECONDS:
        raise ApiError("invalid_option", f"wait={raw[:20]!r}: give a number of seconds from 0 to {MAX_WAIT_SECONDS}.")
    return seconds


def _flag(query: dict[str, str], key: str) -> bool:
    raw = query.get(key)
    if raw is None:
        return False
    if raw.lower() in ("", "1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise ApiError("invalid_option", f"{key}={raw[:20]!r}: use true or false.")


# ---- JSON shapes (described in handlers.openapi) ------------------------------------------------------------


def _time(when: datetime | None) -> str | None:
    if when is None:
        return None
    return when.isoformat()


def vm_json(vm: Vm, newest_image: Image | str | None) -> Json:
    active = vm.active_operation
    return {
        "name": vm.name,
        "state": vm.state.value,
        "busy": {"operation_id": active.id, "verb": active.verb.value} if active else None,
        "zone": vm.zone,
        "machine_type": vm.machine_type,
        "owner": vm.owner,
        "external_ip": vm.external_ip,
        "newest_image": newest_image.name if isinstance(newest_image, Image) else newest_image,
        "created_at": _time(vm.created_at),
        "updated_at": _time(vm.updated_at),
    }


def summary_json(summary: VmSummary) -> Json:
    return vm_json(summary.vm, summary.newest_image)


def image_json(image: Image) -> Json:
    return {
        "name": image.name,
        "family": image.family,
        "state": image.state.value,
        "disk_size_gb": image.disk_size_gb,
        "archive_size_bytes": image.archive_size_bytes,
        "created_at": _time(image.created_at),
        "dirty_since": _time(image.dirty_since),
    }


def operation_json(op: Operation, *, with_steps: bool = True) -> Json:
    """``with_steps`` only for rows read by Store.operation (the one read that loads them)."""
    body: Json = {
        "id": op.id,
        "url": f"{PREFIX}/operations/{op.id}",
        "verb": op.verb.value,
        "vm": op.vm_name,
        "state": op.state.value,
        "done": op.state in FINISHED_STATES,
        "step": op.step,
        "requested_by": op.requested_by,
        "params": op.params or {},
        "slack": {"channel": op.channel, "thread_ts": op.thread_ts} if op.channel else None,
        "result": op.result,
        "error": op.error,
        "created_at": _time(op.created_at),
        "started_at": _time(op.started_at),
        "finished_at": _time(op.finished_at),
    }
    if with_steps:
        body["steps"] = [step_json(step) for step in op.steps]
    return body


def step_json(step: OperationStep) -> Json:
    return {
        "name": step.name,
        "state": step.state.value,
        "gcp_operation": step.gcp_operation,
        "error": step.error,
        "started_at": _time(step.started_at),
        "finished_at": _time(step.finished_at),
    }
