"""The API's stable error codes, the ApiError that carries one, and the words for the core's refusals.

Every answer that is not a success is ``{"error": {"code": ..., "message": ...}}``: the
codes below are the contract a script branches on; the messages say what to do instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from bot.core.errors import Reason, Refused
from bot.core.schedules import ACTION_OPTIONS, ScheduleError
from bot.slack.text import SLACK_USER_RE
from storage.models import Verb

if TYPE_CHECKING:  # pydantic loads with the API (bot.web.server loads the API on its first request)
    from pydantic import BaseModel, ValidationError

PREFIX = "/api/v1"
MAX_WAIT_SECONDS = 600  # the longest ``?wait=`` (bot.web.long_polls bounds how many wait at once)

# The stable error codes a script may branch on, with their HTTP status.
ERROR_CODES: dict[str, int] = {
    "invalid_json": 400,  # the body is not a JSON object
    "invalid_field": 400,  # a field is missing, unknown, or of the wrong type
    "invalid_name": 400,  # the VM name breaks GCP's naming rule
    "invalid_option": 400,  # zone, machine_type, image, family, notify_channel, a create option or a query parameter is not valid
    "invalid_schedule": 400,  # a schedule or a TTL that does not parse; "option" names the field
    "unauthorized": 401,  # no bearer token, or not one of VMBOT_API_TOKENS
    "forbidden": 403,  # park/restore of a VM this token neither owns nor may act on as an admin
    "not_found": 404,  # no such route
    "api_disabled": 404,  # VMBOT_API_TOKENS is not set
    "vm_not_found": 404,
    "operation_not_found": 404,
    "schedule_not_found": 404,  # GET or DELETE of a schedule the VM does not have
    "ttl_not_found": 404,  # GET or DELETE of a time to live the VM does not have
    "method_not_allowed": 405,
    "body_incomplete": 408,  # the body stopped short of its length (answered by the server: bot.web.stalled_bodies)
    "vm_exists": 409,  # create of a name the store already holds
    "state_conflict": 409,  # e.g. park of a parked VM, restore of a running one
    "operation_in_progress": 409,  # another operation holds the VM
    "image_exists": 409,  # park with an image name already recorded
    "payload_too_large": 413,
    "gcp_error": 502,  # ?live=true and GCP could not be asked
    "internal_error": 500,
}


class ApiError(Exception):
    """A refusal: ``code`` is one of ERROR_CODES, ``message`` says what to do instead."""

    def __init__(self, code: str, message: str, *, headers: Iterable[tuple[str, str]] = (), **details: Any) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, ERROR_CODES[code]
        self.headers, self.details = list(headers), details

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.details}}


def schedule_error(error: ScheduleError) -> ApiError:
    """A schedule or TTL the core's parser refused (bot.core.schedules), in the API's field names (park_at)."""
    message = str(error)
    for option in ACTION_OPTIONS:
        message = message.replace(option, option.replace("-", "_"))
    option = error.option.replace("-", "_") if error.option else None
    message = message if message.endswith(".") else f"{message}."
    return ApiError("invalid_schedule", message, **({"option": option} if option else {}))


def unknown_vm(name: str) -> ApiError:
    return ApiError("vm_not_found", f"I don't know a VM called {name}. GET {PREFIX}/vms lists the VMs I manage.")


# ---- pydantic's findings as the API's codes --------------------------------------------------------------

_RANK = {"extra_forbidden": 0, "missing": 1}  # what the old hand-written checks said first; then types, then rules


def invalid(error: ValidationError, model: type[BaseModel], *, query: bool = False) -> ApiError:
    """The first problem pydantic found in a body (or a query string), in the words the API has always used."""
    first = min(enumerate(error.errors(include_url=False)), key=lambda item: (_rank(item[1]["type"]), item[0]))[1]
    key = str(first["loc"][0]) if first["loc"] else ""
    if first["type"] in ERROR_CODES:  # a rule of the core (bot.core.names), already worded
        return ApiError(first["type"], str(first["ctx"]["message"]))
    if query:
        accepted = ", ".join(f"?{name}=" for name in sorted(model.model_fields)) or "none"
        what = f"Unknown query parameter {key!r}" if first["type"] == "extra_forbidden" else f"?{key}= is not valid here"
        return ApiError("invalid_option", f"{what} (accepted: {accepted}).")
    if not first["loc"]:  # a list, a string, a number: not an object
        return ApiError("invalid_json", "The body must be a JSON object, like {\"name\": \"test-vm-22\"}.")
    if first["type"] == "extra_forbidden":
        return ApiError("invalid_field", f"Unknown field {key!r}; this request takes {', '.join(sorted(model.model_fields)) or 'no fields'}.")
    if first["type"] == "missing":
        return ApiError("invalid_field", f"The field {key!r} is required.")
    return ApiError("invalid_field", f"The field {key!r} must be {_KINDS.get(_kind(first), 'a string')}.")


_KINDS = {"int": "a whole number", "bool": "true or false", "list": "a list of strings"}


def _kind(error: Any) -> str:
    """What the field should have been: int_type -> int; an item of a list -> list."""
    return "list" if len(error["loc"]) > 1 else str(error["type"]).split("_")[0]


def _rank(error_type: str) -> int:
    return _RANK.get(error_type, 3 if error_type in ERROR_CODES else 2)


# ---- the core's refusals ----------------------------------------------------------------------------------

_PAST = {Verb.CREATE: "created", Verb.PARK: "parked", Verb.RESTORE: "restored", Verb.DELETE: "deleted",
         Verb.STOP: "stopped", Verb.START: "started", Verb.SUSPEND: "suspended", Verb.RESUME: "resumed",
         Verb.ADOPT: "adopted"}


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
            return unknown_vm(name)
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
