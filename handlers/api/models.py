"""What the API takes and gives, as pydantic models: they validate requests and are the OpenAPI schemas.

Request bodies are strict (a number is not a string) and forbid unknown fields; query
parameters arrive as text, so their models convert it. A rule the core owns (GCP's naming
rule, a zone's shape) is checked by bot.core.names and raised as a PydanticCustomError whose
type is the API's error code, so handlers.api.errors turns every ValidationError into
the stable ``{"error": {"code", "message"}}`` without knowing any field.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    WrapValidator,
    computed_field,
)
from pydantic_core import PydanticCustomError

from bot.core.errors import InvalidInput
from bot.core.names import DISK_TYPES, check_name, check_option, explain
from bot.core.shapes import CREATE_OPTIONS
from bot.settings import SLACK_CHANNEL_RE
from handlers.api.errors import ERROR_CODES, MAX_WAIT_SECONDS, PREFIX
from storage.models import FINISHED_STATES, ImageState, OperationState, Verb, VmState

if TYPE_CHECKING:
    from storage.models import Image as ImageRow
    from storage.models import Vm as VmRow
    from storage.store import Store

NAME_PATTERN = "^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"


def refuse(code: str, message: str) -> PydanticCustomError:
    """A validation error carrying the API's stable ``code`` and the words a person reads."""
    return PydanticCustomError(code, "{message}", {"message": message})


def _quote(value: str) -> str:
    return f"`{value}`"


def _vm_name(name: str) -> str:
    try:
        check_name(name, what="VM name")
    except InvalidInput as invalid:
        raise refuse("invalid_name", explain(invalid, _quote)) from None
    return name


def _option(key: str, rule: str) -> Callable[[str], str]:
    """A field checked by the rule of the matching ``/vm`` option (bot.core.names); empty means not given."""

    def check(value: str) -> str:
        if value:
            try:
                check_option(rule, value)
            except InvalidInput as invalid:
                raise refuse("invalid_option", f"{key}: {explain(invalid, _quote)}") from None
        return value

    return check


def _channel(channel: str | None) -> str | None:
    if channel is not None and not SLACK_CHANNEL_RE.fullmatch(channel):
        raise refuse("invalid_option", f"{channel[:40]!r} is not a Slack channel id; notify_channel looks like 'C0123ABCD'.")
    return channel


def _reworded(code: str, words: Callable[[Any], str]) -> WrapValidator:
    """Any failure of the wrapped checks (type, bounds) becomes one error with these words."""

    def validate(value: Any, handler: Callable[[Any], Any]) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise refuse(code, words(value)) from None

    return WrapValidator(validate)


def _flag(raw: Any) -> Any:
    """``?live`` as a person writes it: empty, 1, true or yes; 0, false or no."""
    if isinstance(raw, str):
        if raw.lower() in ("", "1", "true", "yes"):
            return True
        if raw.lower() in ("0", "false", "no"):
            return False
        raise refuse("invalid_option", f"live={raw[:20]!r}: use true or false.")
    return raw


VmName = Annotated[
    str,
    AfterValidator(_vm_name),
    Field(
        description="GCP's rule: lowercase letters, digits and hyphens, starting with a letter, at most 63 characters.",
        json_schema_extra={"pattern": NAME_PATTERN, "examples": ["test-vm-22"]},
    ),
]
NotifyChannel = Annotated[
    str | None,
    AfterValidator(_channel),
    Field(
        description=(
            "A Slack channel id: the operation's thread is posted there as for a slash command. "
            "Absent: VMBOT_API_NOTIFY_CHANNEL (if set). null: no Slack thread."
        ),
        json_schema_extra={"pattern": SLACK_CHANNEL_RE.pattern},
    ),
]
Seconds = Annotated[
    float,
    Field(ge=0, le=MAX_WAIT_SECONDS, allow_inf_nan=False, description=(
        f"Hold the answer up to this many seconds (0 to {MAX_WAIT_SECONDS}) until the operation ends. "
        "The answer is 200 if it ended by then, else 202 as without wait."
    )),
    _reworded("invalid_option", lambda raw: f"wait={str(raw)[:20]!r}: give a number of seconds from 0 to {MAX_WAIT_SECONDS}."),
]


# ---- requests ---------------------------------------------------------------------------------------------


class Body(BaseModel):
    """A JSON request body: strict types, no unknown fields; an empty body is {}."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Query(BaseModel):
    """Query parameters: text converted to the field's type; no unknown parameters."""

    model_config = ConfigDict(extra="forbid")


Ttl = Annotated[str, Field(description="A duration such as 90m, 8h, 2d or 1d12h (1m to 365d): the VM is parked "
                                         "when it runs out, its owner warned first.", examples=["8h"])]
Text = Annotated[str, Field(description="Checked by the rule of the matching /vm option.")]


class CreateVm(Body):
    """A create; the options beside name, zone and machine type are those of ``/vm create`` (bot.core.shapes)."""

    name: VmName
    zone: Annotated[str, AfterValidator(_option("zone", "zone")), Field(examples=["us-central1-a"])] = ""
    machine_type: Annotated[str, AfterValidator(_option("machine_type", "machine-type")), Field(examples=["e2-small"])] = ""
    notify_channel: NotifyChannel = None
    ttl: Ttl = ""
    image_project: Annotated[Text, Field(examples=["debian-cloud"])] = ""
    image_family: Annotated[Text, Field(examples=["debian-12"])] = ""
    image: Annotated[Text, Field(description="One image (not with image_family)")] = ""
    disk_size: Annotated[int | None, Field(description="Boot disk size in GB (10 to 65536)", examples=[50])] = None
    disk_type: Annotated[str, Field(json_schema_extra={"enum": ["", *DISK_TYPES]})] = ""
    spot: Annotated[bool | None, Field(description="A Spot VM (GCP may stop it at any time)")] = None
    network: Text = ""
    subnet: Text = ""
    tags: Annotated[list[str] | None, Field(description="Network tags", examples=[["web", "ssh"]])] = None
    service_account: Annotated[Text, Field(examples=["runner@my-project.iam.gserviceaccount.com"])] = ""

    def create_options(self) -> dict[str, str]:
        """The create options as ``/vm create`` writes them (bot.core.shapes.create_params reads either)."""
        options = {key: getattr(self, key) for key in CREATE_OPTIONS if getattr(self, key) not in ("", None, [])}
        if self.disk_size is not None:
            options["disk_size"] = str(self.disk_size)
        if self.spot is not None:
            options["spot"] = "yes" if self.spot else "no"
        if self.tags:
            options["tags"] = ",".join(self.tags)
        return options


class RestoreVm(Body):
    machine_type: Annotated[str, AfterValidator(_option("machine_type", "machine-type")), Field(
        description="Restore with another machine type (the rest of the VM's shape unchanged).", examples=["e2-medium"],
    )] = ""
    notify_channel: NotifyChannel = None


class AdoptVm(Body):
    zone: Annotated[str, AfterValidator(_option("zone", "zone")), Field(
        description="Where the instance is (default VMBOT_ZONE).", examples=["us-central1-a"])] = ""
    owner: Annotated[str, AfterValidator(_option("owner", "owner")), Field(
        description="Admins only: the Slack user id who owns it (default: the caller).", examples=["U012AB3CD"])] = ""
    family: Annotated[str, AfterValidator(_option("family", "family")), Field(
        description="The image family its parks use (default: the VM's name).",
        json_schema_extra={"pattern": NAME_PATTERN})] = ""
    notify_channel: NotifyChannel = None


HHMM = Annotated[str | None, Field(description="Local time HH:MM in tz", examples=["19:00"])]


class SetSchedule(Body):
    """One off-action time and/or one on-action time (park/restore, stop/start, suspend/resume), as ``/vm schedule``."""

    park_at: HHMM = None
    stop_at: HHMM = None
    suspend_at: HHMM = None
    restore_at: HHMM = None
    start_at: HHMM = None
    resume_at: HHMM = None
    days: Annotated[str | None, Field(description="daily (default), weekdays, mon-fri, mon,wed ...")] = None
    tz: Annotated[str | None, Field(description="An IANA zone (default VMBOT_TIMEZONE)", examples=["Europe/Berlin"])] = None
    skip: Annotated[str | None, Field(description="Dates to skip: YYYY-MM-DD,YYYY-MM-DD")] = None
    channel: Annotated[str | None, AfterValidator(_channel), Field(
        description="The Slack channel for notices and scheduled threads (default VMBOT_API_NOTIFY_CHANNEL).",
        json_schema_extra={"pattern": SLACK_CHANNEL_RE.pattern})] = None

    def options(self) -> dict[str, str]:
        """As ``/vm schedule`` takes them (bot.core.schedules.parse_schedule): ``park-at=19:00`` ..."""
        return {key.replace("_", "-"): value for key, value in self if value is not None and key != "channel"}


class SetTtl(Body):
    ttl: Ttl


class ParkVm(Body):
    image: Annotated[str, AfterValidator(_option("image", "image")), Field(
        description="The image's name (default NAME-DATE-OPID); names already in vmbot's records are refused.",
        json_schema_extra={"pattern": NAME_PATTERN, "examples": ["image-224"]},
    )] = ""
    family: Annotated[str, AfterValidator(_option("family", "family")), Field(
        description="The image family (default: the VM's name).",
        json_schema_extra={"pattern": NAME_PATTERN, "examples": ["segmind-fam"]},
    )] = ""
    notify_channel: NotifyChannel = None


class VerbOnVm(Body):
    """Delete, stop, start, suspend and resume take no options, only where to report."""

    notify_channel: NotifyChannel = None


class PathName(Body):
    name: VmName


class NoQuery(Query):
    pass


class WaitQuery(Query):
    wait: Seconds = 0.0


MAX_LIST_LIMIT = 1000
CURSOR_PREFIX = "after:"


def encode_cursor(after: str) -> str:
    """An opaque ``next_cursor``: the last VM name of a page, so the next starts after it (keyset)."""
    return base64.urlsafe_b64encode(f"{CURSOR_PREFIX}{after}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    """The VM name a cursor from ``encode_cursor`` carries ("" for none); anything else is refused."""
    if not cursor:
        return ""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        name = text.removeprefix(CURSOR_PREFIX)
        if not text.startswith(CURSOR_PREFIX):
            raise ValueError(text)
        check_name(name, what="VM name")
    except (ValueError, InvalidInput):
        raise ValueError("not a cursor this API gave") from None
    return name


class ListQuery(Query):
    limit: Annotated[int, Field(ge=1, le=MAX_LIST_LIMIT, description="How many VMs a page holds at most.")] = 100
    cursor: Annotated[str, AfterValidator(_decode_cursor), Field(
        description="The `next_cursor` of the page before; none for the first page.")] = ""


class VmQuery(Query):
    live: Annotated[bool, BeforeValidator(_flag), Field(description="Also ask GCP for the instance's live state.")] = False


# ---- responses: read straight from the store's rows ---------------------------------------------------------

Time = Annotated[datetime | None, PlainSerializer(lambda when: when and when.isoformat(), return_type=str | None),
                 Field(json_schema_extra={"format": "date-time"})]


class Answer(BaseModel):
    model_config = ConfigDict(from_attributes=True, validate_by_name=True)


class Busy(Answer):
    operation_id: int = Field(validation_alias="id")
    verb: Verb


class Vm(Answer):
    name: str
    state: VmState
    busy: Busy | None = Field(validation_alias="active_operation")
    zone: str
    machine_type: str
    owner: str = Field(description="Slack user id, or API token name")
    external_ip: str | None
    newest_image: str | None = None
    created_at: Time
    updated_at: Time

    @classmethod
    def of(cls, vm: VmRow, newest_image: ImageRow | str | None) -> Vm:
        model = cls.model_validate(vm)
        model.newest_image = getattr(newest_image, "name", newest_image)
        return model


class Image(Answer):
    name: str
    family: str
    state: ImageState
    disk_size_gb: int | None
    archive_size_bytes: int | None
    created_at: Time
    dirty_since: Time


class Step(Answer):
    name: str
    state: OperationState
    gcp_operation: str | None
    error: str | None
    started_at: Time
    finished_at: Time


class SlackThread(BaseModel):
    channel: str
    thread_ts: str | None


class Operation(Answer):
    id: int
    verb: Verb
    vm: str = Field(validation_alias="vm_name")
    state: OperationState
    step: str | None
    requested_by: str
    params: Annotated[dict[str, Any], BeforeValidator(lambda params: params or {})] = Field(
        description="The verb's options, e.g. a park's image and family")
    channel: str | None = Field(exclude=True)
    thread_ts: str | None = Field(exclude=True)
    result: str | None
    error: str | None
    created_at: Time
    started_at: Time
    finished_at: Time

    @computed_field  # type: ignore[prop-decorator]
    @property
    def url(self) -> str:
        return f"{PREFIX}/operations/{self.id}"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def done(self) -> bool:
        return self.state in FINISHED_STATES

    @computed_field  # type: ignore[prop-decorator]
    @property
    def slack(self) -> SlackThread | None:
        return SlackThread(channel=self.channel, thread_ts=self.thread_ts) if self.channel else None


class OperationDetail(Operation):
    """An operation read by Store.operation, the one read that loads its steps."""

    steps: list[Step]


class LiveState(BaseModel):
    exists: bool
    status: str | None = None
    external_ip: str | None = None
    machine_type: str | None = None


class VmDetail(Vm):
    family: str | None = Field(description="The image family its parks use; null: the VM's name")
    shape: dict[str, Any] | None = Field(description="The VM's whole shape as GCP showed it before its last park or "
                                                     "at adopt (machine, disks, network, ...); null: not read yet")
    costs: Costs
    images: list[Image]
    operations: list[Operation]
    gcp: LiveState | None = Field(None, description="Only with ?live=true")

    @classmethod
    def of(cls, store: Store, vm: VmRow, costs: Costs) -> VmDetail:
        images = store.images(vm.name)
        return cls.model_validate({
            **dict(Vm.of(vm, store.newest_image(vm.name))),
            "family": vm.family,
            "shape": vm.shape,
            "costs": costs,
            "images": images,
            "operations": store.operations_for(vm.name),
        })


class Costs(BaseModel):
    running_per_day: float | None = Field(description="USD, machine and disks; null: machine type not in the price table")
    parked_per_month: float = Field(description="USD, its images")
    label: str = Field(examples=["list price, before discounts"])


class VmList(BaseModel):
    vms: list[Vm]
    next_cursor: str | None = Field(
        default=None, description="Give it as `?cursor=` for the next page; absent on the last page.")


class NextRun(BaseModel):
    action: str
    at: Time
    local: str = Field(description="When, in the schedule's zone", examples=["Mon 8 Dec 19:00 CET"])


class VmSchedule(BaseModel):
    vm: str
    schedule: dict[str, str] = Field(description="The options that set it, e.g. park_at, restore_at, days, tz, skip")
    description: str
    next: NextRun | None
    channel: str | None
    set_by: str


class VmTtl(BaseModel):
    vm: str
    park_at: Time
    local: str = Field(description="When, in VMBOT_TIMEZONE")
    channel: str | None
    set_by: str


class ScheduleList(BaseModel):
    schedules: list[VmSchedule]
    ttls: list[VmTtl]


class VmSaving(BaseModel):
    vm: str
    parked_hours: float
    stopped_hours: float = Field(description="Stopped or suspended")
    saved: float | None = Field(description="USD to date; null: machine type not in the price table")


class Savings(BaseModel):
    vms: list[VmSaving]
    total: float
    unpriced: int
    label: str
    as_of: str


class OneVm(BaseModel):
    vm: VmDetail


class OneOperation(BaseModel):
    operation: OperationDetail


class ErrorDetail(BaseModel):
    code: str = Field(json_schema_extra={"enum": sorted(ERROR_CODES)})
    message: str
    operation_id: int | None = Field(None, description="operation_in_progress: the one holding the VM")
    state: str | None = Field(None, description="state_conflict: the VM's state")
    reason: str | None = Field(None, description="adopt and park refusals: why, e.g. already_managed")
    option: str | None = Field(None, description="invalid_schedule: the offending field, e.g. park_at")


class Error(BaseModel):
    error: ErrorDetail


def dump(model: BaseModel) -> dict[str, Any]:
    """A response as JSON; ``gcp`` only when asked for."""
    return model.model_dump(mode="json", exclude_unset=True)
