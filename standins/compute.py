"""A local stand-in for the Compute Engine v1 REST API.

The real ``google-cloud-compute`` client (REST transport) talks to it unmodified::

    with ComputeStandin(operation_seconds=0.5) as standin:
        opts = ClientOptions(api_endpoint=standin.url)
        client = compute_v1.InstancesClient(credentials=AnonymousCredentials(), client_options=opts)

It implements the handful of routes vmbot uses (instances, disks, images, machine
types, and zone and global operations: get, wait and list) following Google's public
REST reference, and answers with the same JSON shapes and error bodies that Compute
Engine does.
Quirks of the real API that it reproduces on purpose:

* Mutations answer at once with an Operation; the change lands when the operation
  is DONE.  ``operations/{op}/wait`` returns when the op is DONE *or* after about two
  minutes (``wait_timeout_seconds``), so callers have to loop.  Many operations are
  watched at once with one ``operations`` list per zone (and one global), their names
  OR-ed in the ``filter``: ``(name = "operation-1") OR (name = "operation-2")``.
* int64 fields (``id``, ``sizeGb``, ``diskSizeGb``, ``archiveSizeBytes``, ``targetId``)
  are JSON *strings*; empty lists are left out of responses.
* Lists are sorted by name and paged with ``maxResults`` (at most 500) and an
  opaque ``pageToken``; aggregated lists carry a ``NO_RESULTS_ON_PAGE`` warning for
  every zone with nothing on the page.
* Every request body and query string is checked against Google's discovery document
  (``compute_v1_schemas.json``, see ``compute_schema.py``): unknown fields, wrong JSON types and enum
  values outside the schema are 400 INVALID_ARGUMENT, before Compute Engine's own field checks.
* Request validation errors are HTTP 400 ``invalid`` with Google's own wording
  ("Invalid value for field 'zone': 'x'. Unknown zone."), including an unknown
  machine type on insert; a missing resource is 404 ``notFound``; a taken name is
  409 ``alreadyExists``.  ``requestId`` must be a UUID.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from standins.compute_schema import SchemaViolation, check_query, validate_body
from standins.compute_schema import method as discovery_method

try:  # Compute Engine stamps times in US Pacific time.
    from zoneinfo import ZoneInfo

    _TZ: Any = ZoneInfo("America/Los_Angeles")
except Exception:  # pragma: no cover - no tz database installed
    _TZ = timezone(timedelta(hours=-8))

API_ROOT = "https://www.googleapis.com/compute/v1/"
ZONES = (
    "us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f",
    "us-east1-b", "us-east1-c", "us-east1-d", "us-west1-a", "us-west1-b",
    "europe-west1-b", "europe-west1-c", "europe-west1-d", "europe-west4-a", "europe-west4-b",
    "asia-east1-a", "asia-east1-b",
)  # fmt: skip
MACHINE_TYPES: dict[str, dict[str, Any]] = {
    "e2-micro": {"guestCpus": 2, "memoryMb": 1024, "isSharedCpu": True},
    "e2-small": {"guestCpus": 2, "memoryMb": 2048, "isSharedCpu": True},
    "e2-medium": {"guestCpus": 2, "memoryMb": 4096, "isSharedCpu": True},
    "e2-standard-2": {"guestCpus": 2, "memoryMb": 8192, "isSharedCpu": False},
    "e2-standard-4": {"guestCpus": 4, "memoryMb": 16384, "isSharedCpu": False},
    "n1-standard-1": {"guestCpus": 1, "memoryMb": 3840, "isSharedCpu": False},
    "n2-standard-2": {"guestCpus": 2, "memoryMb": 8192, "isSharedCpu": False},
}
# project -> family -> image names, oldest first; all but the newest are DEPRECATED.
PUBLIC_IMAGE_FAMILIES: dict[str, dict[str, tuple[str, ...]]] = {
    "ubuntu-os-cloud": {
        "ubuntu-2404-lts-amd64": ("ubuntu-2404-noble-amd64-v20240701", "ubuntu-2404-noble-amd64-v20241004"),
        "ubuntu-2204-lts": ("ubuntu-2204-jammy-v20240701", "ubuntu-2204-jammy-v20241002"),
    },
    "debian-cloud": {"debian-12": ("debian-12-bookworm-v20240709", "debian-12-bookworm-v20241009")},
}

# Disk types every zone offers here (local-ssd only as a SCRATCH disk of an instance).
DISK_TYPES = ("pd-standard", "pd-balanced", "pd-ssd", "pd-extreme", "hyperdisk-balanced", "local-ssd")
ACCELERATOR_TYPES = ("nvidia-tesla-t4", "nvidia-l4", "nvidia-tesla-v100", "nvidia-tesla-p4", "nvidia-tesla-a100")
CPU_PLATFORMS = (
    "Automatic", "Intel Broadwell", "Intel Skylake", "Intel Cascade Lake", "Intel Ice Lake", "Intel Sapphire Rapids",
    "AMD Rome", "AMD Milan", "AMD Genoa",
)  # fmt: skip
PROJECT_NUMBER = "123456789012"  # what the stand-in answers for every project's number (created-by, service accounts)

NAME_PATTERN = "[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?"
_NAME = re.compile(f"^{NAME_PATTERN}$")
_NAME_OR_ID_PATTERN = NAME_PATTERN + "|[1-9][0-9]{0,19}"  # path parameters may also be numeric ids
_NAME_OR_ID = re.compile(f"^(?:{_NAME_OR_ID_PATTERN})$")
_URL_PREFIX = r"^(?:https?://[^/]+/compute/(?:v1|beta|alpha)/)?"
_IMAGE_REF = re.compile(_URL_PREFIX + r"(?:projects/(?P<project>[^/]+)/)?global/images/(?P<family>family/)?(?P<name>[^/]+)$")
_MACHINE_TYPE_REF = re.compile(_URL_PREFIX + r"(?:projects/[^/]+/)?zones/(?P<zone>[^/]+)/machineTypes/(?P<name>[^/]+)$")
_DISK_REF = re.compile(_URL_PREFIX + r"(?:projects/(?P<project>[^/]+)/)?zones/(?P<zone>[^/]+)/disks/(?P<name>[^/]+)$")
_DISK_TYPE_REF = re.compile(_URL_PREFIX + r"(?:projects/[^/]+/)?zones/(?P<zone>[^/]+)/diskTypes/(?P<name>[^/]+)$")
_ACCELERATOR_REF = re.compile(_URL_PREFIX + r"(?:projects/[^/]+/)?zones/(?P<zone>[^/]+)/acceleratorTypes/(?P<name>[^/]+)$")
_NETWORK_REF = re.compile(_URL_PREFIX + r"(?:projects/[^/]+/)?global/networks/(?P<name>[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)$")
_SUBNETWORK_REF = re.compile(
    _URL_PREFIX + r"(?:projects/[^/]+/)?regions/(?P<region>[^/]+)/subnetworks/(?P<name>[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)$"
)
_METADATA_KEY = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_BUSY_STATUSES = frozenset({"PROVISIONING", "STAGING", "RUNNING", "STOPPING", "SUSPENDING", "REPAIRING"})
_OP_ERROR_HTTP = {
    "QUOTA_EXCEEDED": (403, "FORBIDDEN"),
    "PERMISSION_DENIED": (403, "FORBIDDEN"),
    "ZONE_RESOURCE_POOL_EXHAUSTED": (503, "SERVICE UNAVAILABLE"),
    "RESOURCE_NOT_FOUND": (404, "NOT FOUND"),
    "RESOURCE_ALREADY_EXISTS": (409, "CONFLICT"),
}
_DEFAULT_MESSAGES = {
    400: "Bad Request", 403: "Forbidden", 404: "Not Found", 409: "Conflict", 429: "Rate Limit Exceeded",
    500: "Internal Error", 502: "Bad Gateway", 503: "The service is currently unavailable.", 504: "Deadline exceeded",
}  # fmt: skip
MAX_RESULTS = 500


# ---- small helpers ------------------------------------------------------------------


def _timestamp(moment: float | None = None) -> str:
    """RFC 3339 with milliseconds and a Pacific offset, as GCP writes it ("2024-10-09T03:14:07.123-07:00")."""
    stamp = datetime.fromtimestamp(time.time() if moment is None else moment, _TZ)
    return stamp.isoformat(timespec="milliseconds")


def _fingerprint(value: Any) -> str:
    """An opaque 8-byte base64 fingerprint that changes whenever ``value`` does."""
    digest = hashlib.sha256(json.dumps(value, sort_keys=True).encode()).digest()
    return base64.b64encode(digest[:8]).decode()


def _link(*parts: str) -> str:
    return API_ROOT + "/".join(parts)


def _compact(resource: dict[str, Any]) -> dict[str, Any]:
    """GCP leaves empty strings, lists and maps out of its JSON."""
    return {k: v for k, v in resource.items() if v not in ("", [], {}, None)}


def _region(zone: str) -> str:
    return zone.rsplit("-", 1)[0]


def _int(value: Any, field_name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiError.invalid(field_name, value, "Must be an integer.") from None


def _label_part_ok(text: str, *, key: bool) -> bool:
    """GCP label rule: lowercase letters (international allowed), digits, '_' and '-'; keys start with a letter."""
    if len(text) > 63 or (key and (not text or not text[0].isalpha() or text[0].isupper())):
        return False
    return all((c.isalnum() and not c.isupper()) or c in "_-" for c in text)


def _check_labels(labels: Any, field_name: str) -> dict[str, str]:
    if not isinstance(labels, dict) or len(labels) > 64:
        raise ApiError.invalid(field_name, labels, "Labels must be a map of at most 64 entries.")
    for key, value in labels.items():
        if not _label_part_ok(str(key), key=True) or not _label_part_ok(str(value), key=False):
            raise ApiError.invalid(
                field_name, "", f"Label '{key}: {value}' violates format constraints. Keys must start with a "
                "lowercase letter; keys and values can only contain lowercase letters, numeric characters, "
                "underscores and dashes, and can be at most 63 characters long.",
            )  # fmt: skip
    return {str(k): str(v) for k, v in labels.items()}


def _parse_body(raw: bytes) -> dict[str, Any] | None:
    if not raw.strip():
        return None
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ApiError(400, "parseError", "Invalid JSON payload received.")
    return body


def _is_ipv4(text: str) -> bool:
    parts = text.split(".")
    return len(parts) == 4 and all(p.isdigit() and int(p) < 256 and str(int(p)) == p for p in parts)


def _check_name(name: Any, field_name: str = "resource.name") -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ApiError.invalid(field_name, name or "", f"Must be a match of regex '(?:{NAME_PATTERN})'")
    return name


# ---- errors -----------------------------------------------------------------------


class ApiError(Exception):
    """An error answered with GCP's JSON error body."""

    def __init__(self, status: int, reason: str, message: str, rpc_status: str | None = None) -> None:
        super().__init__(message)
        self.status, self.reason, self.message, self.rpc_status = status, reason, message, rpc_status

    def body(self) -> dict[str, Any]:
        error = {"message": self.message, "domain": "global", "reason": self.reason}
        body: dict[str, Any] = {"code": self.status, "message": self.message, "errors": [error]}
        if self.rpc_status:  # the front end's parse errors and Compute's field checks carry it
            body["status"] = self.rpc_status
        return {"error": body}

    @classmethod
    def bad_field(cls, field_name: str, value: Any, why: str) -> ApiError:
        """A field GCP refuses: 400 invalid, INVALID_ARGUMENT."""
        return cls(400, "invalid", f"Invalid value for field '{field_name}': '{value}'. {why}", "INVALID_ARGUMENT")

    @classmethod
    def from_violation(cls, violation: SchemaViolation) -> ApiError:
        return cls(400, violation.reason, violation.message, "INVALID_ARGUMENT")

    @classmethod
    def not_found(cls, resource: str) -> ApiError:
        return cls(404, "notFound", f"The resource '{resource}' was not found")

    @classmethod
    def exists(cls, resource: str) -> ApiError:
        return cls(409, "alreadyExists", f"The resource '{resource}' already exists")

    @classmethod
    def invalid(cls, field_name: str, value: Any, why: str) -> ApiError:
        return cls(400, "invalid", f"Invalid value for field '{field_name}': '{value}'. {why}")

    @classmethod
    def in_use(cls, disk: str, user: str) -> ApiError:
        return cls(
            400, "resourceInUseByAnotherResource", f"The disk resource '{disk}' is already being used by '{user}'"
        )


# ---- list filters -----------------------------------------------------------------

_FILTER_TOKEN = re.compile(
    r"""\s*(?:(?P<open>\()|(?P<close>\))|(?P<word>AND|OR|NOT)(?=[\s(])
    |(?P<field>[A-Za-z_][\w.-]*)(?:\s*(?P<op>!=|=|:)\s*|\s+(?P<rop>eq|ne)\s+)
     (?P<value>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s()]+))""",
    re.X,
)
Predicate = Callable[[dict[str, Any]], bool]
_NAMES_ONLY = re.compile(r'\(name = "[^"]+"\)(?: OR \(name = "[^"]+"\))*')  # ``(name = "a") OR (name = "b")``


def _field_values(resource: Any, path: list[str]) -> list[str]:
    """The string values at a dotted path ("labels.env", "networkInterfaces.networkIP"); lists fan out."""
    if isinstance(resource, list):
        return [v for item in resource for v in _field_values(item, path)]
    if not path:
        if isinstance(resource, bool):
            return ["true" if resource else "false"]
        return [] if isinstance(resource, dict) or resource is None else [str(resource)]
    return _field_values(resource.get(path[0]), path[1:]) if isinstance(resource, dict) else []


def _term(field_path: str, op: str, raw: str) -> Predicate:
    value = raw[1:-1].replace('\\"', '"').replace("\\'", "'") if raw[0] in "'\"" else raw
    path = field_path.split(".")
    if op in ("eq", "ne"):  # the older regular-expression syntax: the RE2 must match the whole value
        regex = re.compile(value)
        matches: Predicate = lambda r: any(regex.fullmatch(v) for v in _field_values(r, path) or [""])  # noqa: E731
        return matches if op == "eq" else (lambda r: not matches(r))
    if op == ":" and value == "*":
        return lambda r: bool(_field_values(r, path))
    if op == ":":
        return lambda r: any(value in v for v in _field_values(r, path))
    if op == "=":
        return lambda r: value in _field_values(r, path)
    return lambda r: value not in _field_values(r, path)


def compile_filter(expression: str) -> Predicate:
    """Compile a Compute Engine list ``filter``: AIP-160 terms (``=``, ``!=``, ``:``, ``:*``) joined by
    whitespace/AND/OR/NOT with parentheses, or the older ``field eq|ne 'regex'`` form."""
    tokens: list[tuple[str, Any]] = []
    pos, text = 0, expression.rstrip()
    while pos < len(text):
        match = _FILTER_TOKEN.match(text, pos)
        if not match:
            raise ApiError.invalid("filter", expression, "Invalid list filter expression.")
        pos = match.end()
        if match["field"]:
            try:
                tokens.append(("term", _term(match["field"], match["op"] or match["rop"], match["value"])))
            except re.error:
                raise ApiError.invalid("filter", expression, "Invalid regular expression.") from None
        else:
            tokens.append((match["word"] or match["open"] or match["close"], None))
    parser = _FilterParser(tokens, expression)
    predicate = parser.expression()
    if parser.pos != len(tokens):
        raise ApiError.invalid("filter", expression, "Invalid list filter expression.")
    return predicate


@dataclass
class _FilterParser:
    """Recursive descent: expression = conjunction (OR conjunction)*; conjunction = unary (AND? unary)*."""

    tokens: list[tuple[str, Any]]
    text: str
    pos: int = 0

    def _peek(self) -> str | None:
        return self.tokens[self.pos][0] if self.pos < len(self.tokens) else None

    def expression(self) -> Predicate:
        parts = [self._conjunction()]
        while self._peek() == "OR":
            self.pos += 1
            parts.append(self._conjunction())
        return lambda r: any(p(r) for p in parts)

    def _conjunction(self) -> Predicate:
        parts = [self._unary()]
        while self._peek() not in (None, "OR", ")"):
            if self._peek() == "AND":
                self.pos += 1
            parts.append(self._unary())
        return lambda r: all(p(r) for p in parts)

    def _unary(self) -> Predicate:
        kind = self._peek()
        self.pos += 1
        if kind == "term":
            return self.tokens[self.pos - 1][1]
        if kind == "NOT":
            inner = self._unary()
            return lambda r: not inner(r)
        if kind == "(":
            inner = self.expression()
            if self._peek() == ")":
                self.pos += 1
                return inner
        raise ApiError.invalid("filter", self.text, "Invalid list filter expression.")


# ---- records ------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    body: dict[str, Any] | None
    status: int


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, str]
    body: dict[str, Any]


@dataclass
class _Fault:
    method: str
    pattern: re.Pattern[str]
    remaining: int
    status: int = 503
    reason: str = "backendError"
    message: str | None = None
    code: str = ""  # operation faults only

    def matches(self, method: str, path: str) -> bool:
        return self.remaining > 0 and self.method in (method, "*") and bool(self.pattern.search(path))


@dataclass
class _Operation:
    """A long-running operation; ``begin`` ran when it was accepted, ``finish`` runs when it is DONE."""

    body: dict[str, Any]
    project: str
    zone: str | None
    started: float  # time.monotonic()
    duration: float
    finish: Callable[[], None]
    midway: Callable[[], None] | None = None  # e.g. PROVISIONING -> STAGING, half-way through
    fault: _Fault | None = None
    waits: int = 0  # ``wait`` calls begun on it (a held operation's waits are recorded only when they end)
    looks: list[float] = field(default_factory=list)  # time.monotonic() of each wait, get or list that showed it

    @property
    def done(self) -> bool:
        return self.body["status"] == "DONE"

    @property
    def due(self) -> float:
        return self.started + self.duration

    @property
    def midway_at(self) -> float:
        return self.started + self.duration / 2


@dataclass(frozen=True)
class _Route:
    method: str
    regex: re.Pattern[str]
    handler: Callable[..., dict[str, Any]]
    mutation: bool = False
    method_id: str = ""  # the discovery method, whose request schema and query parameters are checked
    proto_root: str = ""  # the request body's name in the front end's parse errors


# ---- the stand-in -----------------------------------------------------------------------


class ComputeStandin:
    """In-memory Compute Engine behind a local HTTP server (see the module docstring)."""

    def __init__(self, *, operation_seconds: float = 0.0, wait_timeout_seconds: float = 120.0) -> None:
        self.operation_seconds = operation_seconds
        self.operation_durations: dict[str, float] = {}
        self.wait_timeout_seconds = wait_timeout_seconds
        self.url = ""
        self._cond = threading.Condition(threading.RLock())
        self._rng = random.Random()
        self._instances: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._disks: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._images: dict[tuple[str, str], dict[str, Any]] = {}
        self._ops: dict[str, _Operation] = {}
        self._unfinished: dict[str, _Operation] = {}  # the ops not DONE yet, so moving them along stays O(running)
        self._request_ids: dict[tuple[str, str], str] = {}
        self._requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._op_faults: list[_Fault] = []
        self._random_fault: tuple[float, random.Random, int, str, frozenset[str]] | None = None
        self._static_ips: set[str] = set()  # natIPs given in insert requests: reserved, they survive a stop
        self._last_nat: dict[str, str] = {}  # ephemeral natIP an interface had last, so a restart gets another
        self._held = False
        self._released: set[str] = set()  # operations let through while the hold stays on
        self._stopped = False
        self._server: _QuietServer | None = None
        self._threads: list[threading.Thread] = []
        self._seed_public_images()

    # ---- lifecycle ----

    def start(self) -> str:
        standin = self

        class Handler(_HttpHandler):
            owner = standin

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._stopped = False
        server = self._server
        for target in (lambda: server.serve_forever(poll_interval=0.05), self._run_scheduler):
            thread = threading.Thread(target=target, daemon=True, name="compute-standin")
            thread.start()
            self._threads.append(thread)
        return self.url

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()

    def __enter__(self) -> ComputeStandin:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---- inspection (deep copies) ----

    def instance(self, project: str, zone: str, name: str) -> dict[str, Any] | None:
        with self._cond:
            return copy.deepcopy(self._instances.get((project, zone, name)))

    def instances(self, project: str) -> list[dict[str, Any]]:
        with self._cond:
            return [copy.deepcopy(v) for k, v in sorted(self._instances.items()) if k[0] == project]

    def disk(self, project: str, zone: str, name: str) -> dict[str, Any] | None:
        with self._cond:
            return copy.deepcopy(self._disks.get((project, zone, name)))

    def disks(self, project: str) -> list[dict[str, Any]]:
        with self._cond:
            return [copy.deepcopy(v) for k, v in sorted(self._disks.items()) if k[0] == project]

    def image(self, project: str, name: str) -> dict[str, Any] | None:
        with self._cond:
            return copy.deepcopy(self._images.get((project, name)))

    def images(self, project: str) -> list[dict[str, Any]]:
        with self._cond:
            return [copy.deepcopy(v) for k, v in sorted(self._images.items()) if k[0] == project]

    def operations(self) -> list[dict[str, Any]]:
        with self._cond:
            return [copy.deepcopy(op.body) for op in self._ops.values()]

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._cond:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._cond:
            self._requests.clear()

    # ---- seeding ----

    def seed_instance(
        self, project: str, zone: str, name: str, *, labels: dict[str, str] | None = None,
        status: str = "RUNNING", machine_type: str = "e2-small", fields: dict[str, Any] | None = None,
        group: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """An instance made outside the bot, with its debian-12 boot disk, already in ``status``.

        ``fields`` adds or replaces insert-body fields in GCP's JSON (``tags``, ``metadata``, ``serviceAccounts``,
        ``scheduling``, ``guestAccelerators``, ``disks`` with data disks or existing ``source`` disks, ...); the
        body is checked exactly like an ``instances.insert`` (a ValueError says what GCP would refuse).
        ``group`` makes it a member of that managed instance group, which GCP marks with the metadata item
        ``created-by`` = the group manager's URL."""
        if zone not in ZONES or machine_type not in MACHINE_TYPES or not _NAME.match(name):
            raise ValueError(f"cannot seed {name!r} in {zone!r} as {machine_type!r}")
        body: dict[str, Any] = {
            "name": name,
            "machineType": f"zones/{zone}/machineTypes/{machine_type}",
            "labels": labels or {},
            "disks": [{"boot": True, "autoDelete": True, "initializeParams": {"sourceImage": "projects/debian-cloud/global/images/family/debian-12"}}],
            "networkInterfaces": [{"accessConfigs": [{"type": "ONE_TO_ONE_NAT", "name": "External NAT"}]}],
            **copy.deepcopy(fields or {}),
        }  # fmt: skip
        if group:
            manager = f"projects/{PROJECT_NUMBER}/zones/{zone}/instanceGroupManagers/{group}"
            metadata = body.setdefault("metadata", {})
            metadata["items"] = [*metadata.get("items", []), {"key": "created-by", "value": manager}]
        with self._cond:
            if (project, zone, name) in self._instances:
                raise ValueError(f"instance {name!r} already exists")
            try:
                body = validate_body("instances.insert", body, "instance")
                instance = self._build_instance(project, zone, body)
            except SchemaViolation as violation:
                raise ValueError(violation.message) from None
            except ApiError as error:
                raise ValueError(error.message) from None
            if status == "SUSPENDED":  # it ran (and got its addresses) before it was suspended
                self._set_status(instance, "RUNNING")
            self._set_status(instance, status)
            for disk in self._attached_disks(instance):
                disk["status"] = "READY"
            return copy.deepcopy(instance)

    def seed_disk(
        self, project: str, zone: str, name: str, *, size_gb: int = 10, disk_type: str = "pd-balanced",
        image: str | None = None, labels: dict[str, str] | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """A READY, unattached disk made outside the bot: blank, or from ``image`` (an image URL or family URL)."""
        with self._cond:
            if (project, zone, name) in self._disks or not _NAME.match(name) or disk_type not in DISK_TYPES[:-1]:
                raise ValueError(f"cannot seed disk {name!r} ({disk_type}) in {zone!r}")
            try:
                source = self._resolve_image(project, image, "sourceImage") if image else None
            except ApiError as error:
                raise ValueError(error.message) from None
            plan = {"name": name, "image": source, "sizeGb": size_gb, "type": disk_type, "labels": labels or {}}
            disk = self._new_disk(project, zone, plan)
            disk["status"] = "READY"
            return copy.deepcopy(disk)

    def seed_image(
        self, project: str, name: str, *, family: str | None = None, labels: dict[str, str] | None = None,
        disk_size_gb: int = 10, created: float | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """A READY image made outside the bot (no source disk); ``created``: when (epoch seconds), default now."""
        with self._cond:
            if (project, name) in self._images or not _NAME.match(name):
                raise ValueError(f"cannot seed image {name!r} in {project!r}")
            image = self._new_image(project, name, family, labels or {}, disk_size_gb, created=created)
            image.update(status="READY", archiveSizeBytes=str(disk_size_gb * 310_000_000))
            return copy.deepcopy(image)

    def _seed_public_images(self) -> None:
        base = datetime(2024, 7, 1, tzinfo=timezone.utc).timestamp()
        for project, families in PUBLIC_IMAGE_FAMILIES.items():
            for family, names in families.items():
                for age, name in enumerate(names):
                    license_url = _link("projects", project, "global", "licenses", family)
                    image = self._new_image(project, name, family, {}, 10, created=base + age * 90 * 86400, licenses=[license_url])
                    image.update(status="READY", archiveSizeBytes="1234567890")
                    if name != names[-1]:
                        image["deprecated"] = {"state": "DEPRECATED", "replacement": _link("projects", project, "global", "images", names[-1])}  # fmt: skip

    # ---- faults and holds ----

    def fail_request(
        self, method: str, path_regex: str, *, status: int = 503, reason: str = "backendError",
        message: str | None = None, times: int = 1,
    ) -> None:  # fmt: skip
        """The next ``times`` requests (``method`` or "*") whose path matches answer with an error, changing nothing."""
        with self._cond:
            self._faults.append(_Fault(method.upper(), re.compile(path_regex), times, status, reason, message))

    def fail_randomly(
        self, rate: float, *, status: int = 503, reason: str = "backendError", seed: int | None = None,
        methods: Iterable[str] = ("GET", "POST", "DELETE"),
    ) -> None:  # fmt: skip
        """Fail each request (of ``methods``) with probability ``rate``; ``rate=0`` turns it off."""
        with self._cond:
            chosen = frozenset(m.upper() for m in methods)
            self._random_fault = (rate, random.Random(seed), status, reason, chosen) if rate > 0 else None

    def fail_operation(
        self, method: str, path_regex: str, *, code: str = "QUOTA_EXCEEDED", message: str | None = None,
        times: int = 1,
    ) -> None:  # fmt: skip
        """Accept the next ``times`` matching mutations, but end their operations with an ``error``, unapplied."""
        with self._cond:
            text = message or f"Operation failed with {code} (injected by the stand-in)."
            self._op_faults.append(_Fault(method.upper(), re.compile(path_regex), times, message=text, code=code))

    def clear_faults(self) -> None:
        with self._cond:
            self._faults.clear()
            self._op_faults.clear()
            self._random_fault = None

    def hold_operations(self) -> None:
        """Freeze every running operation (and those accepted later) until released."""
        with self._cond:
            self._held = True

    def release_operations(self, *names: str) -> None:
        """Lift the hold; with ``names``, let only those operations finish and keep holding the rest."""
        with self._cond:
            if names:
                self._released.update(names)
            else:
                self._held = False
                self._released.clear()
            self._advance(time.monotonic())
            self._cond.notify_all()

    def waits(self, name: str) -> int:
        """How many ``wait`` calls on operation ``name`` have begun (the one still blocked included)."""
        with self._cond:
            op = self._ops.get(name)
            return op.waits if op else 0

    def looked_at_since(self, name: str, since: float) -> bool:
        """Whether a client waited on, read or listed operation ``name`` after ``since`` (time.monotonic())."""
        with self._cond:
            op = self._ops.get(name)
            return bool(op and op.looks and op.looks[-1] > since)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Wait until ``predicate()`` holds, re-checking after every request and every wait begun;
        False on timeout. The predicate runs under the stand-in's lock and may use its inspection methods."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout=timeout)

    def held_operations(self, op_type: str | None = None) -> list[dict[str, Any]]:
        """Operations frozen by the hold right now (of ``op_type``: insert, stop, delete ...)."""
        with self._cond:
            return [
                copy.deepcopy(op.body) for name, op in self._ops.items()
                if not op.done and self._held and name not in self._released
                and op_type in (None, op.body["operationType"])
            ]  # fmt: skip

    # ---- HTTP dispatch ----

    def handle(self, method: str, target: str, raw_body: bytes) -> tuple[int, dict[str, Any]]:
        """Serve one request: faults first, then the route; every request is recorded."""
        parts = urlsplit(target)
        path, query = parts.path, dict(parse_qsl(parts.query, keep_blank_values=True))
        with self._cond:
            body = None
            try:
                body = _parse_body(raw_body)
                self._injected_fault(method, path)
                status, payload = 200, self._route(_Request(method, path, query, body or {}))
            except ApiError as error:
                status, payload = error.status, error.body()
            except Exception as error:  # a stand-in bug: answer like GCP's internal error rather than hang
                status, payload = 500, ApiError(500, "internalError", f"Stand-in failure: {error!r}").body()
            self._requests.append(RecordedRequest(method, path, query, body, status))
            self._cond.notify_all()
            return status, payload

    def _injected_fault(self, method: str, path: str) -> None:
        for fault in self._faults:
            if fault.matches(method, path):
                fault.remaining -= 1
                raise ApiError(fault.status, fault.reason, fault.message or _DEFAULT_MESSAGES.get(fault.status, "Error"))
        if self._random_fault:
            rate, rng, status, reason, methods = self._random_fault
            if method in methods and rng.random() < rate:
                raise ApiError(status, reason, _DEFAULT_MESSAGES.get(status, "Error"))

    def _route(self, req: _Request) -> dict[str, Any]:
        suffix = req.path.removeprefix("/compute/v1/")
        for route in _ROUTES:
            match = route.regex.fullmatch(suffix) if req.path != suffix else None
            if match and route.method == req.method:
                params = match.groupdict()
                self._check_params(params)
                if route.method_id:
                    self._check_request(route, req)
                if route.mutation and (replay := self._replayed(req, params["project"])) is not None:
                    return replay
                return route.handler(self, req, **params)
        raise ApiError(404, "notFound", f"The requested URL {req.path} was not found on this server.")

    @staticmethod
    def _check_request(route: _Route, req: _Request) -> None:
        """Query parameters and body against the discovery document; the body is replaced by its normal form."""
        try:
            check_query(route.method_id, req.query)
            if discovery_method(route.method_id)["request"]:
                if not req.body:
                    raise ApiError(400, "required", "Required field 'resource' not specified", "INVALID_ARGUMENT")
                req.body = validate_body(route.method_id, req.body, route.proto_root)
        except SchemaViolation as violation:
            raise ApiError.from_violation(violation) from None

    def _check_params(self, params: dict[str, str]) -> None:
        if "zone" in params and params["zone"] not in ZONES:
            raise ApiError.invalid("zone", params["zone"], "Unknown zone.")
        for name in ("instance", "disk", "image"):
            if name in params and not _NAME_OR_ID.match(params[name]):
                raise ApiError.invalid(name, params[name], f"Must be a match of regex '{_NAME_OR_ID_PATTERN}'")

    def _replayed(self, req: _Request, project: str) -> dict[str, Any] | None:
        """A repeated ``requestId`` gets the original operation back and acts no second time."""
        request_id = req.query.get("requestId")
        if not request_id:
            return None
        if not _UUID.match(request_id) or request_id.strip("0-") == "":
            raise ApiError.invalid("requestId", request_id, "The request ID must be a valid non-zero UUID.")
        known = self._request_ids.get((project, request_id.lower()))
        return copy.deepcopy(self._ops[known].body) if known else None

    # ---- operations ----

    def _start_operation(
        self, req: _Request, *, project: str, zone: str | None, op_type: str, target: dict[str, Any],
        begin: Callable[[], None] | None = None, finish: Callable[[], None] = lambda: None,
        midway: Callable[[], None] | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Accept a mutation: run ``begin`` now (unless an injected fault dooms it) and schedule ``finish``."""
        fault = next((f for f in self._op_faults if f.matches(req.method, req.path)), None)
        if fault:
            fault.remaining -= 1
        elif begin:
            begin()
        now = time.time()
        name = f"operation-{int(now * 1000)}-{self._rng.getrandbits(52):013x}-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:8]}"
        scope = ("zones", zone) if zone else ("global",)
        body = {
            "kind": "compute#operation", "id": self._new_id(), "name": name, "operationType": op_type,
            "targetLink": target["selfLink"], "targetId": target["id"], "status": "RUNNING",
            "user": f"standin@{project}.iam.gserviceaccount.com", "progress": 0,
            "insertTime": _timestamp(now), "startTime": _timestamp(now),
            "selfLink": _link("projects", project, *scope, "operations", name),
        }  # fmt: skip
        if zone:
            body["zone"] = _link("projects", project, "zones", zone)
        duration = max(0.0, float(self.operation_durations.get(op_type, self.operation_seconds)))
        start = time.monotonic()
        op = _Operation(body, project, zone, start, duration, finish, midway, fault)
        self._ops[name] = op
        self._unfinished[name] = op
        if request_id := req.query.get("requestId"):
            self._request_ids[(project, request_id.lower())] = name
        self._advance(start)
        self._cond.notify_all()
        return copy.deepcopy(body)

    def _advance(self, now: float) -> float | None:
        """Move every unheld operation along; return the monotonic time of the next step, if any."""
        next_step = None
        for name, op in list(self._unfinished.items()):
            if op.done or (self._held and name not in self._released):
                continue
            if op.midway and now >= op.midway_at:
                if not op.fault:
                    op.midway()
                op.midway = None
            if now >= op.due:
                self._complete(op)
                continue
            op.body["progress"] = int(100 * (now - op.started) / op.duration)
            pending = op.midway_at if op.midway else op.due
            next_step = pending if next_step is None else min(next_step, pending)
        return next_step

    def _complete(self, op: _Operation) -> None:
        self._unfinished.pop(op.body["name"], None)
        op.body.update(status="DONE", progress=100, endTime=_timestamp())
        if op.fault:
            http_status, http_message = _OP_ERROR_HTTP.get(op.fault.code, (400, "BAD REQUEST"))
            op.body["error"] = {"errors": [{"code": op.fault.code, "message": op.fault.message}]}
            op.body.update(httpErrorStatusCode=http_status, httpErrorMessage=http_message)
        else:
            op.finish()
        self._cond.notify_all()

    def _run_scheduler(self) -> None:
        """One thread completes operations on time; it sleeps on the condition until the next step is due."""
        with self._cond:
            while not self._stopped:
                next_step = self._advance(time.monotonic())
                timeout = None if next_step is None else max(0.0, next_step - time.monotonic())
                self._cond.wait(timeout)

    def _operation(self, project: str, zone: str | None, name: str) -> _Operation:
        op = self._ops.get(name) or next((o for o in self._ops.values() if o.body["id"] == name), None)
        if op is None or op.project != project or op.zone != zone:
            scope = f"zones/{zone}" if zone else "global"
            raise ApiError.not_found(f"projects/{project}/{scope}/operations/{name}")
        return op

    def _wait(self, project: str, zone: str | None, name: str) -> dict[str, Any]:
        """Block on the condition (never poll) until DONE or ``wait_timeout_seconds``; return the op as it is."""
        op = self._operation(project, zone, name)
        op.waits += 1
        op.looks.append(time.monotonic())
        self._cond.notify_all()
        self._cond.wait_for(lambda: op.done or self._stopped, timeout=self.wait_timeout_seconds)
        return copy.deepcopy(op.body)

    # ---- route handlers: operations and machine types ----

    def _list_operations(self, req: _Request, project: str, zone: str | None) -> dict[str, Any]:
        """One scope's operations (a zone's, or the project's global ones), sorted by name, filtered and paged
        like any list: callers watch many operations with one call, OR-ing their names in the filter."""
        named = _NAMES_ONLY.fullmatch(req.query.get("filter", "").strip())
        if named:  # a watcher's filter: only those names can match, so only those are looked at (the filter still applies)
            candidates = (self._ops.get(name) for name in re.findall(r'"([^"]+)"', named.group(0)))
        else:
            candidates = (op for op in self._ops.values())
        found = sorted(
            (op.body for op in candidates if op is not None and op.project == project and op.zone == zone),
            key=lambda b: b["name"],
        )
        scope = ("zones", zone) if zone else ("global",)
        page = self._list_page(req, "compute#operationList", ("projects", project, *scope, "operations"), found)
        now = time.monotonic()
        for body in page.get("items", ()):
            self._ops[body["name"]].looks.append(now)
        return page

    def _list_zone_operations(self, req: _Request, project: str, zone: str) -> dict[str, Any]:
        return self._list_operations(req, project, zone)

    def _list_global_operations(self, req: _Request, project: str) -> dict[str, Any]:
        return self._list_operations(req, project, None)

    def _get_zone_operation(self, req: _Request, project: str, zone: str, operation: str) -> dict[str, Any]:
        op = self._operation(project, zone, operation)
        op.looks.append(time.monotonic())
        return copy.deepcopy(op.body)

    def _wait_zone_operation(self, req: _Request, project: str, zone: str, operation: str) -> dict[str, Any]:
        return self._wait(project, zone, operation)

    def _get_global_operation(self, req: _Request, project: str, operation: str) -> dict[str, Any]:
        op = self._operation(project, None, operation)
        op.looks.append(time.monotonic())
        return copy.deepcopy(op.body)

    def _wait_global_operation(self, req: _Request, project: str, operation: str) -> dict[str, Any]:
        return self._wait(project, None, operation)

    def _get_machine_type(self, req: _Request, project: str, zone: str, machine_type: str) -> dict[str, Any]:
        spec = MACHINE_TYPES.get(machine_type)
        if spec is None:
            raise ApiError.not_found(f"projects/{project}/zones/{zone}/machineTypes/{machine_type}")
        cpus, memory = spec["guestCpus"], spec["memoryMb"]
        return {
            "kind": "compute#machineType", "id": str(int(hashlib.sha1(machine_type.encode()).hexdigest()[:12], 16)),
            "creationTimestamp": "1969-12-31T16:00:00.000-08:00", "name": machine_type,
            "description": f"{cpus} vCPU{'s' if cpus > 1 else ''}, {memory / 1024:g} GB RAM", "guestCpus": cpus,
            "memoryMb": memory, "imageSpaceGb": 0, "maximumPersistentDisks": 128,
            "maximumPersistentDisksSizeGb": "263168", "zone": zone, "isSharedCpu": spec["isSharedCpu"],
            "selfLink": _link("projects", project, "zones", zone, "machineTypes", machine_type),
        }  # fmt: skip

    # ---- route handlers: instances ----

    def _list_instances(self, req: _Request, project: str, zone: str) -> dict[str, Any]:
        found = [v for (p, z, _), v in sorted(self._instances.items()) if (p, z) == (project, zone)]
        return self._list_page(req, "compute#instanceList", ("projects", project, "zones", zone, "instances"), found)

    def _aggregated_instances(self, req: _Request, project: str) -> dict[str, Any]:
        """Items keyed "zones/{zone}" for every zone; zones with nothing on this page carry a warning."""
        order = sorted(self._instances.items(), key=lambda kv: (ZONES.index(kv[0][1]), kv[0][2]))
        found = [vm for (p, _, _), vm in order if p == project]
        page = self._list_page(req, "compute#instanceAggregatedList", ("projects", project, "aggregated", "instances"), found)
        items: dict[str, Any] = {}
        for zone in ZONES:
            scoped = [i for i in page.get("items", []) if i["zone"].endswith(f"/zones/{zone}")]
            scope = f"zones/{zone}"
            items[scope] = {"instances": scoped} if scoped else {"warning": {
                "code": "NO_RESULTS_ON_PAGE", "message": f"There are no results for scope '{scope}' on this page.",
                "data": [{"key": "scope", "value": scope}]}}  # fmt: skip
        page["items"] = items
        return page

    def _get_instance(self, req: _Request, project: str, zone: str, instance: str) -> dict[str, Any]:
        return copy.deepcopy(self._find_instance(project, zone, instance))

    def _insert_instance(self, req: _Request, project: str, zone: str) -> dict[str, Any]:
        name = _check_name(req.body.get("name"))
        if (project, zone, name) in self._instances:
            raise ApiError.exists(f"projects/{project}/zones/{zone}/instances/{name}")
        plan = self._plan_instance(project, zone, req.body)
        target = {"selfLink": _link("projects", project, "zones", zone, "instances", name), "id": self._new_id()}

        def begin() -> None:
            self._build_instance(project, zone, req.body, plan=plan, instance_id=target["id"])

        return self._start_operation(
            req, project=project, zone=zone, op_type="insert", target=target, begin=begin,
            midway=lambda: self._boot_step(project, zone, name, "STAGING"),
            finish=lambda: self._boot_step(project, zone, name, "RUNNING"),
        )  # fmt: skip

    def _stop_instance(self, req: _Request, project: str, zone: str, instance: str) -> dict[str, Any]:
        vm = self._find_instance(project, zone, instance)
        if vm["status"] == "TERMINATED":  # already stopped: the operation succeeds and changes nothing
            return self._start_operation(req, project=project, zone=zone, op_type="stop", target=vm)

        def finish() -> None:
            if self._instances.get((project, zone, instance)) is vm and vm["status"] == "STOPPING":
                self._set_status(vm, "TERMINATED")

        return self._start_operation(
            req, project=project, zone=zone, op_type="stop", target=vm,
            begin=lambda: vm.update(status="STOPPING"), finish=finish,
        )  # fmt: skip

    def _start_instance(self, req: _Request, project: str, zone: str, instance: str) -> dict[str, Any]:
        vm = self._find_instance(project, zone, instance)
        if vm["status"] == "RUNNING":
            return self._start_operation(req, project=project, zone=zone, op_type="start", target=vm)
        if vm["status"] in ("SUSPENDED", "SUSPENDING"):  # a suspended VM comes back with resume, not start
            raise ApiError(400, "resourceNotReady", f"The resource '{vm['selfLink'].removeprefix(API_ROOT)}' is not ready")
        return self._start_operation(
            req, project=project, zone=zone, op_type="start", target=vm,
            begin=lambda: vm.update(status="PROVISIONING"),
            midway=lambda: self._boot_step(project, zone, instance, "STAGING"),
            finish=lambda: self._boot_step(project, zone, instance, "RUNNING"),
        )  # fmt: skip

    def _suspend_instance(self, req: _Request, project: str, zone: str, instance: str) -> dict[str, Any]:
        """RUNNING -> SUSPENDING -> SUSPENDED. Refused at once (400) for a VM with GPUs, and for one with local
        SSDs unless ``discardLocalSsd`` is given (the reference: "required if the instance has any attached
        Local SSD disks"); a VM that is not running is not ready; an already suspended one changes nothing."""
        vm = self._find_instance(project, zone, instance)
        link = vm["selfLink"].removeprefix(API_ROOT)
        if vm.get("guestAccelerators"):
            raise ApiError(400, "unsupportedOperation",
                           f"Instance '{link}' has guest accelerators (GPUs) attached and cannot be suspended.", "FAILED_PRECONDITION")  # fmt: skip
        if any(d["type"] == "SCRATCH" for d in vm["disks"]) and "discardLocalSsd" not in req.query:
            raise ApiError(400, "invalid", f"Instance '{link}' has Local SSD disks attached: discardLocalSsd must be "
                           "set to suspend it.", "INVALID_ARGUMENT")  # fmt: skip
        if vm["status"] == "SUSPENDED":
            return self._start_operation(req, project=project, zone=zone, op_type="suspend", target=vm)
        if vm["status"] != "RUNNING":
            raise ApiError(400, "resourceNotReady", f"The resource '{link}' is not ready")

        def finish() -> None:
            if self._instances.get((project, zone, instance)) is vm and vm["status"] == "SUSPENDING":
                self._set_status(vm, "SUSPENDED")

        return self._start_operation(
            req, project=project, zone=zone, op_type="suspend", target=vm,
            begin=lambda: vm.update(status="SUSPENDING"), finish=finish,
        )  # fmt: skip

    def _resume_instance(self, req: _Request, project: str, zone: str, instance: str) -> dict[str, Any]:
        """SUSPENDED -> PROVISIONING/STAGING -> RUNNING; a running VM changes nothing; any other state is not ready."""
        vm = self._find_instance(project, zone, instance)
        if vm["status"] == "RUNNING":
            return self._start_operation(req, project=project, zone=zone, op_type="resume", target=vm)
        if vm["status"] != "SUSPENDED":
            raise ApiError(400, "resourceNotReady", f"The resource '{vm['selfLink'].removeprefix(API_ROOT)}' is not ready")
        return self._start_operation(
            req, project=project, zone=zone, op_type="resume", target=vm,
            begin=lambda: vm.update(status="PROVISIONING"),
            midway=lambda: self._boot_step(project, zone, instance, "STAGING"),
            finish=lambda: self._boot_step(project, zone, instance, "RUNNING"),
        )  # fmt: skip

    def _set_instance_labels(self, req: _Request, project: str, zone: str, instance: str) -> dict[str, Any]:
        """Replace the labels; ``labelFingerprint`` must be the current one (else 412 conditionNotMet)."""
        vm = self._find_instance(project, zone, instance)
        labels = _check_labels(req.body.get("labels", {}), "resource.labels")
        fingerprint = req.body.get("labelFingerprint")
        if not fingerprint:
            raise ApiError(400, "required", "Required field 'resource.labelFingerprint' not specified", "INVALID_ARGUMENT")
        if fingerprint != vm["labelFingerprint"]:
            raise ApiError(412, "conditionNotMet",
                           "Labels fingerprint either invalid or resource labels have changed", "FAILED_PRECONDITION")  # fmt: skip

        def finish() -> None:
            vm.pop("labels", None)
            vm.update(_compact({"labels": labels}), labelFingerprint=_fingerprint(labels))

        return self._start_operation(req, project=project, zone=zone, op_type="setLabels", target=vm, finish=finish)

    def _attach_disk(self, req: _Request, project: str, zone: str, instance: str) -> dict[str, Any]:
        """Attach an existing disk (``source``) under a device name unique on the VM."""
        vm = self._find_instance(project, zone, instance)
        if req.body.get("initializeParams") or req.body.get("type") == "SCRATCH":
            raise ApiError.bad_field("resource.initializeParams", "", "attachDisk attaches an existing disk: create "
                                     "it with disks.insert, then attach its URL as 'source'.")  # fmt: skip
        if req.body.get("boot") and vm["status"] != "TERMINATED":
            raise ApiError.bad_field("resource.boot", "true", "A boot disk can only be attached to a stopped instance.")
        plan = self._plan_existing_disk(project, zone, "resource", req.body, vm_link=vm["selfLink"])
        device = plan["deviceName"]
        if any(d["deviceName"] == device for d in vm["disks"]):
            raise ApiError.bad_field("resource.deviceName", device, "The device name is already in use on the instance.")
        if any(d.get("source") == plan["disk"]["selfLink"] for d in vm["disks"]):
            raise ApiError.in_use(plan["disk"]["selfLink"].removeprefix(API_ROOT), vm["selfLink"].removeprefix(API_ROOT))

        def finish() -> None:
            if self._instances.get((project, zone, instance)) is vm and self._disks.get(self._disk_key(plan["disk"]["selfLink"])):
                vm["disks"].append(self._attach(vm, plan, index=len(vm["disks"])))

        return self._start_operation(req, project=project, zone=zone, op_type="attachDisk", target=vm, finish=finish)

    def _detach_disk(self, req: _Request, project: str, zone: str, instance: str) -> dict[str, Any]:
        """Detach the disk with ``deviceName``; never a local SSD, and the boot disk only while stopped."""
        vm = self._find_instance(project, zone, instance)
        device = req.query["deviceName"]
        attached = next((d for d in vm["disks"] if d["deviceName"] == device), None)
        if attached is None:
            raise ApiError.bad_field("deviceName", device, f"No attached disk found with device name '{device}'")
        if attached["type"] == "SCRATCH":
            raise ApiError.bad_field("deviceName", device, "Local SSD disks cannot be detached.")
        if attached.get("boot") and vm["status"] != "TERMINATED":
            raise ApiError.bad_field("deviceName", device, "The boot disk can only be detached from a stopped instance.")

        def finish() -> None:
            if attached in vm["disks"]:
                vm["disks"].remove(attached)
                self._release_disk(vm, attached, delete=False)

        return self._start_operation(req, project=project, zone=zone, op_type="detachDisk", target=vm, finish=finish)

    def _delete_instance(self, req: _Request, project: str, zone: str, instance: str) -> dict[str, Any]:
        vm = self._find_instance(project, zone, instance)
        if vm.get("deletionProtection"):
            raise ApiError(400, "invalidResourceUsage",
                           "Invalid resource usage: 'Resource cannot be deleted if it's protected against deletion.'.")  # fmt: skip

        def finish() -> None:
            if self._instances.get((project, zone, instance)) is not vm:
                return
            del self._instances[(project, zone, instance)]
            for attached in vm["disks"]:
                self._release_disk(vm, attached, delete=bool(attached.get("autoDelete")))

        return self._start_operation(
            req, project=project, zone=zone, op_type="delete", target=vm,
            begin=lambda: vm.update(status="STOPPING"), finish=finish,
        )  # fmt: skip

    def _release_disk(self, vm: dict[str, Any], attached: dict[str, Any], *, delete: bool) -> None:
        """Take ``vm`` off the disk's users (a local SSD has no disk resource); delete it if asked."""
        if not attached.get("source"):
            return
        key = self._disk_key(attached["source"])
        disk = self._disks.get(key)
        if disk is None:
            return
        users = [u for u in disk.get("users", []) if u != vm["selfLink"]]
        disk.pop("users", None)
        disk.update({"users": users} if users else {}, lastDetachTimestamp=_timestamp())
        if delete:
            del self._disks[key]

    def _find_instance(self, project: str, zone: str, name: str) -> dict[str, Any]:
        vm = self._instances.get((project, zone, name))
        if vm is None:
            raise ApiError.not_found(f"projects/{project}/zones/{zone}/instances/{name}")
        return vm

    # ---- instances.insert: Compute Engine's checks after the schema's ----

    def _plan_instance(self, project: str, zone: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        """Validate an insert body; return what to do for each disk (create, attach an existing one, local SSD)."""
        machine_type = body.get("machineType") or ""
        if not machine_type:
            raise ApiError(400, "required", "Required field 'resource.machineType' not specified", "INVALID_ARGUMENT")
        match = _MACHINE_TYPE_REF.match(machine_type)
        if not match:
            raise ApiError.bad_field("resource.machineType", machine_type, "The URL is malformed.")
        if match["zone"] != zone or match["name"] not in MACHINE_TYPES:
            raise ApiError.bad_field("resource.machineType", machine_type,
                                     f"Machine type with name '{match['name']}' does not exist in zone '{zone}'.")  # fmt: skip
        _check_labels(body.get("labels", {}), "resource.labels")
        self._check_instance_fields(zone, body)
        disks = body.get("disks") or []
        if not disks:
            raise ApiError.bad_field("resource.disks", "", "At least one disk should be specified.")
        boots = [index for index, disk in enumerate(disks) if disk.get("boot")]
        if not boots:
            raise ApiError.bad_field("resource.disks", "", "Boot disk must be specified.")
        if boots[0] != 0 or len(boots) > 1:
            wrong = boots[1] if boots[0] == 0 else boots[0]
            raise ApiError.bad_field(f"resource.disks[{wrong}].boot", "true", "Boot disk must be the first disk attached to the instance.")
        plans: list[dict[str, Any]] = []
        for index, attached in enumerate(disks):
            plan = self._plan_disk(project, zone, body["name"], index, attached)
            if plan.get("name") and any(p.get("name") == plan["name"] for p in plans):
                raise ApiError.bad_field(f"resource.disks[{index}]", plan["name"], "Disk names must be unique.")
            if any(p["deviceName"] == plan["deviceName"] for p in plans):
                raise ApiError.bad_field(f"resource.disks[{index}].deviceName", plan["deviceName"], "Device names must be unique.")
            plans.append(plan)
        return plans

    def _check_instance_fields(self, zone: str, body: dict[str, Any]) -> None:
        """Network interfaces, tags, metadata, service accounts, scheduling, accelerators, CPU platform."""
        nics = body.get("networkInterfaces") or []
        if not nics:
            raise ApiError.bad_field("resource.networkInterfaces", "", "At least one network interface must be specified.")
        for index, nic in enumerate(nics):
            field = f"resource.networkInterfaces[{index}]"
            if nic.get("network") and not _NETWORK_REF.match(nic["network"]):
                raise ApiError.bad_field(f"{field}.network", nic["network"], "The URL is malformed.")
            if subnet := nic.get("subnetwork"):
                found = _SUBNETWORK_REF.match(subnet)
                if not found:
                    raise ApiError.bad_field(f"{field}.subnetwork", subnet, "The URL is malformed.")
                if found["region"] != _region(zone):
                    raise ApiError.bad_field(f"{field}.subnetwork", subnet,
                                             f"The subnetwork must be in the instance's region '{_region(zone)}'.")  # fmt: skip
            configs = nic.get("accessConfigs") or []
            if len(configs) > 1:
                raise ApiError.bad_field(field, "", "Multiple access configs are not supported.")
            for c_index, config in enumerate(configs):
                if config.get("type", "ONE_TO_ONE_NAT") != "ONE_TO_ONE_NAT":
                    raise ApiError.bad_field(f"{field}.accessConfigs[{c_index}].type", config["type"],
                                             "Only ONE_TO_ONE_NAT is allowed on an IPv4 access config.")  # fmt: skip
                if config.get("natIP") and not _is_ipv4(config["natIP"]):
                    raise ApiError.bad_field(f"{field}.accessConfigs[{c_index}].natIP", config["natIP"], "Must be an IP address")
        for index, tag in enumerate((body.get("tags") or {}).get("items", [])):
            if not _NAME.match(tag):
                raise ApiError.bad_field(f"resource.tags.items[{index}]", tag, f"Must be a match of regex '(?:{NAME_PATTERN})'")
        keys = [item.get("key", "") for item in (body.get("metadata") or {}).get("items", [])]
        for index, key in enumerate(keys):
            if not _METADATA_KEY.match(key):
                raise ApiError.bad_field(f"resource.metadata.items[{index}].key", key, "Must be a match of regex '[a-zA-Z0-9-_]{1,128}'")
            if key in keys[:index]:
                raise ApiError.bad_field("resource.metadata", "", f"Duplicate metadata key '{key}'.")
        accounts = body.get("serviceAccounts") or []
        if len(accounts) > 1:
            raise ApiError.bad_field("resource.serviceAccounts", "", "At most one service account may be specified.")
        for index, account in enumerate(accounts):
            if account.get("email") and account["email"] != "default" and "@" not in account["email"]:
                raise ApiError.bad_field(f"resource.serviceAccounts[{index}].email", account["email"], "Must be an email address.")
        for index, accelerator in enumerate(body.get("guestAccelerators") or []):
            field = f"resource.guestAccelerators[{index}]"
            found = _ACCELERATOR_REF.match(accelerator.get("acceleratorType", ""))
            if not found:
                raise ApiError.bad_field(f"{field}.acceleratorType", accelerator.get("acceleratorType", ""), "The URL is malformed.")
            if found["zone"] != zone or found["name"] not in ACCELERATOR_TYPES:
                raise ApiError.bad_field(f"{field}.acceleratorType", accelerator["acceleratorType"],
                                         f"Accelerator type '{found['name']}' does not exist in zone '{zone}'.")  # fmt: skip
            if int(accelerator.get("acceleratorCount", 0)) < 1:
                raise ApiError.bad_field(f"{field}.acceleratorCount", accelerator.get("acceleratorCount", 0), "Must be at least 1.")
        scheduling = body.get("scheduling") or {}
        spot = scheduling.get("preemptible") or scheduling.get("provisioningModel") == "SPOT"
        if spot and scheduling.get("onHostMaintenance") == "MIGRATE":
            raise ApiError.bad_field("resource.scheduling.onHostMaintenance", "MIGRATE",
                                     "Scheduling must have preemptible be false when OnHostMaintenance isn't TERMINATE.")  # fmt: skip
        if spot and scheduling.get("automaticRestart"):
            raise ApiError.bad_field("resource.scheduling.automaticRestart", "true",
                                     "Preemptible and Spot instances cannot be automatically restarted.")  # fmt: skip
        if body.get("guestAccelerators") and scheduling.get("onHostMaintenance", "MIGRATE") != "TERMINATE":
            raise ApiError.bad_field("resource.scheduling.onHostMaintenance", scheduling.get("onHostMaintenance", "MIGRATE"),
                                     "Instances with guest accelerators do not support live migration.")  # fmt: skip
        if (platform := body.get("minCpuPlatform")) and platform not in CPU_PLATFORMS:
            raise ApiError.bad_field("resource.minCpuPlatform", platform, "Unknown CPU platform.")

    def _plan_disk(self, project: str, zone: str, vm_name: str, index: int, attached: dict[str, Any]) -> dict[str, Any]:
        field_prefix = f"resource.disks[{index}]"
        params = attached.get("initializeParams") or {}
        if attached.get("type") == "SCRATCH":
            return self._plan_local_ssd(zone, field_prefix, index, attached)
        if attached.get("source"):
            if params:
                raise ApiError.bad_field(f"{field_prefix}.initializeParams", "", "Cannot specify both source and initializeParams.")
            return self._plan_existing_disk(project, zone, field_prefix, attached)
        if not params:
            raise ApiError.bad_field(field_prefix, "", "Either source or initializeParams must be specified.")
        image = None
        if image_ref := params.get("sourceImage"):
            image = self._resolve_image(project, image_ref, f"{field_prefix}.initializeParams.sourceImage")
        elif attached.get("boot"):
            raise ApiError.bad_field(f"{field_prefix}.initializeParams.sourceImage", "", "A new boot disk needs a source image.")
        disk_type = self._disk_type(zone, params.get("diskType"), f"{field_prefix}.initializeParams.diskType")
        if disk_type == "local-ssd":
            raise ApiError.bad_field(f"{field_prefix}.initializeParams.diskType", params["diskType"],
                                     "A local SSD must be attached with type SCRATCH.")  # fmt: skip
        size = self._disk_size(image, params.get("diskSizeGb") or attached.get("diskSizeGb"), f"{field_prefix}.initializeParams.diskSizeGb")
        name = _check_name(params.get("diskName") or (vm_name if index == 0 else f"{vm_name}-{index}"),
                           f"{field_prefix}.initializeParams.diskName")  # fmt: skip
        if (project, zone, name) in self._disks:
            raise ApiError.exists(f"projects/{project}/zones/{zone}/disks/{name}")
        labels = _check_labels(params.get("labels", {}), f"{field_prefix}.initializeParams.labels")
        device = self._device_name(attached, name, f"{field_prefix}.deviceName")
        return {"kind": "new", "name": name, "image": image, "sizeGb": size, "type": disk_type, "labels": labels,
                "deviceName": device, "request": attached}  # fmt: skip

    def _plan_existing_disk(
        self, project: str, zone: str, field_prefix: str, attached: dict[str, Any], vm_link: str | None = None
    ) -> dict[str, Any]:
        """An existing disk in the instance's zone, free unless both sides attach it READ_ONLY."""
        source = attached["source"] if attached.get("source") else ""
        match = _DISK_REF.match(source)
        if not match:
            raise ApiError.bad_field(f"{field_prefix}.source", source, "The URL is malformed.")
        key = (match["project"] or project, match["zone"], match["name"])
        if key[1] != zone:
            raise ApiError.bad_field(f"{field_prefix}.source", source, f"Disk must be in zone '{zone}'.")
        disk = self._disks.get(key)
        if disk is None:
            raise ApiError.not_found(f"projects/{key[0]}/zones/{key[1]}/disks/{key[2]}")
        mode = attached.get("mode", "READ_WRITE")
        for user in disk.get("users", []):
            other = self._instances.get(self._instance_key(user))
            shared = other is not None and mode == "READ_ONLY" and all(
                d.get("mode") == "READ_ONLY" for d in other["disks"] if d.get("source") == disk["selfLink"])
            if user != vm_link and not shared:
                raise ApiError.in_use(disk["selfLink"].removeprefix(API_ROOT), user.removeprefix(API_ROOT))
        device = self._device_name(attached, disk["name"], f"{field_prefix}.deviceName")
        return {"kind": "existing", "disk": disk, "deviceName": device, "request": attached}

    def _plan_local_ssd(self, zone: str, field_prefix: str, index: int, attached: dict[str, Any]) -> dict[str, Any]:
        params = attached.get("initializeParams") or {}
        disk_type = self._disk_type(zone, params.get("diskType"), f"{field_prefix}.initializeParams.diskType")
        if disk_type != "local-ssd" or attached.get("source") or attached.get("boot"):
            raise ApiError.bad_field(f"{field_prefix}.type", "SCRATCH",
                                     "A SCRATCH disk must be a local-ssd disk type, not a boot disk, and have no source.")  # fmt: skip
        if not attached.get("autoDelete"):
            raise ApiError.bad_field(f"{field_prefix}.autoDelete", "false", "Local SSDs must be auto-deleted with the instance.")
        size = int(params.get("diskSizeGb") or attached.get("diskSizeGb") or 375)
        if size != 375:
            raise ApiError.bad_field(f"{field_prefix}.initializeParams.diskSizeGb", size, "A local SSD partition is 375 GB.")
        device = self._device_name(attached, f"local-ssd-{index}", f"{field_prefix}.deviceName")
        return {"kind": "scratch", "sizeGb": size, "deviceName": device, "request": attached}

    @staticmethod
    def _device_name(attached: dict[str, Any], default: str, field_name: str) -> str:
        device = attached.get("deviceName") or default
        if not _NAME.match(device):
            raise ApiError.bad_field(field_name, device, f"Must be a match of regex '(?:{NAME_PATTERN})'")
        return device

    @staticmethod
    def _disk_type(zone: str, ref: str | None, field_name: str) -> str:
        """The disk type named by a URL (``zones/ZONE/diskTypes/TYPE``); pd-standard when left out, as GCP does."""
        if not ref:
            return "pd-standard"
        match = _DISK_TYPE_REF.match(ref)
        if not match:
            raise ApiError.bad_field(field_name, ref, "The URL is malformed.")
        if match["zone"] != zone or match["name"] not in DISK_TYPES:
            raise ApiError.bad_field(field_name, ref, "The referenced diskType resource cannot be found.")
        return match["name"]

    @staticmethod
    def _disk_size(image: dict[str, Any] | None, requested: Any, field_name: str) -> int:
        """Size in GB: at least the image's; a blank disk needs one (GCP's blank default is 500 GB)."""
        size = _int(requested, field_name) if requested not in (None, "") else int(image["diskSizeGb"]) if image else 500
        if size < 1 or size > 65536:
            raise ApiError.bad_field(field_name, size, "Disk size must be between 1 and 65536 GB.")
        if image and size < int(image["diskSizeGb"]):
            raise ApiError.bad_field(field_name, size, f"Requested disk size cannot be smaller than the image size ({image['diskSizeGb']} GB)")
        return size

    @staticmethod
    def _instance_key(link: str) -> tuple[str, str, str]:
        parts = link.removeprefix(API_ROOT + "projects/").split("/")
        return (parts[0], parts[2], parts[4]) if len(parts) >= 5 else ("", "", "")

    def _resolve_image(self, project: str, ref: str, field_name: str) -> dict[str, Any]:
        """Resolve ``projects/X/global/images/[family/]NAME``, ``global/images/NAME`` or a full URL."""
        match = _IMAGE_REF.match(ref)
        if not match:
            raise ApiError.bad_field(field_name, ref, "The URL is malformed.")
        image_project = match["project"] or project
        if match["family"]:
            image = self._family_image(image_project, match["name"])
        else:
            image = self._images.get((image_project, match["name"]))
        if image is None:
            family = "family/" if match["family"] else ""
            raise ApiError.not_found(f"projects/{image_project}/global/images/{family}{match['name']}")
        if image["status"] != "READY":
            raise ApiError(400, "resourceNotReady", f"The resource '{image['selfLink'].removeprefix(API_ROOT)}' is not ready")
        return image

    def _attach(self, vm: dict[str, Any], plan: dict[str, Any], index: int) -> dict[str, Any]:
        """The attachedDisk entry for a planned disk; the disk records the VM among its users."""
        request = plan["request"]
        common = {"kind": "compute#attachedDisk", "index": index, "deviceName": plan["deviceName"],
                  "boot": bool(request.get("boot", False)), "autoDelete": bool(request.get("autoDelete", False)),
                  "interface": request.get("interface", "SCSI"), "mode": request.get("mode", "READ_WRITE")}  # fmt: skip
        if plan["kind"] == "scratch":
            return {**common, "type": "SCRATCH", "diskSizeGb": str(plan["sizeGb"])}
        disk = plan["disk"]
        disk["users"] = [*disk.get("users", []), vm["selfLink"]]
        disk["lastAttachTimestamp"] = _timestamp()
        return {
            **common, "type": "PERSISTENT", "source": disk["selfLink"], "diskSizeGb": disk["sizeGb"],
            "architecture": "X86_64", **{k: disk[k] for k in ("licenses", "guestOsFeatures") if k in disk},
        }  # fmt: skip

    def _build_instance(
        self, project: str, zone: str, body: dict[str, Any], *, plan: list[dict[str, Any]] | None = None,
        instance_id: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Create the instance (PROVISIONING) and its new disks from a validated insert body."""
        plan = plan if plan is not None else self._plan_instance(project, zone, body)
        name = body["name"]
        self_link = _link("projects", project, "zones", zone, "instances", name)
        machine = _MACHINE_TYPE_REF.match(body["machineType"])["name"]  # type: ignore[index]
        labels = dict(body.get("labels") or {})
        items = [{"key": i["key"], "value": i.get("value", "")} for i in (body.get("metadata") or {}).get("items", [])]
        tags = list((body.get("tags") or {}).get("items", []))
        requested = body.get("scheduling") or {}
        spot = requested.get("preemptible") or requested.get("provisioningModel") == "SPOT"
        scheduling = {"onHostMaintenance": "TERMINATE" if spot or body.get("guestAccelerators") else "MIGRATE",
                      "automaticRestart": not spot, "preemptible": bool(requested.get("preemptible", False)),
                      "provisioningModel": "STANDARD", **requested}  # fmt: skip
        accelerators = [{"acceleratorType": _link("projects", project, "zones", zone, "acceleratorTypes",
                                                  a["acceleratorType"].rsplit("/", 1)[-1]),
                         "acceleratorCount": int(a["acceleratorCount"])} for a in body.get("guestAccelerators", [])]  # fmt: skip
        accounts = [{"email": a.get("email") if a.get("email") not in (None, "default")
                     else f"{PROJECT_NUMBER}-compute@developer.gserviceaccount.com", "scopes": list(a.get("scopes", []))}
                    for a in body.get("serviceAccounts", [])]  # fmt: skip
        instance = {
            "kind": "compute#instance", "id": instance_id or self._new_id(), "creationTimestamp": _timestamp(),
            "name": name, "description": body.get("description", ""),
            "tags": {"items": tags, "fingerprint": _fingerprint(tags)} if tags else {"fingerprint": _fingerprint([])},
            "machineType": _link("projects", project, "zones", zone, "machineTypes", machine), "status": "PROVISIONING",
            "zone": _link("projects", project, "zones", zone), "canIpForward": bool(body.get("canIpForward", False)),
            "networkInterfaces": self._network_interfaces(project, zone, body.get("networkInterfaces", [])),
            "disks": [],
            "metadata": {"kind": "compute#metadata", "fingerprint": _fingerprint(items), **({"items": items} if items else {})},
            "serviceAccounts": accounts, "guestAccelerators": accelerators,
            "minCpuPlatform": body.get("minCpuPlatform", ""),
            "shieldedInstanceConfig": {"enableSecureBoot": False, "enableVtpm": True, "enableIntegrityMonitoring": True,
                                       **(body.get("shieldedInstanceConfig") or {})},
            "selfLink": self_link, "scheduling": scheduling,
            "cpuPlatform": "Unknown CPU Platform", "labels": labels, "labelFingerprint": _fingerprint(labels),
            "startRestricted": False, "deletionProtection": bool(body.get("deletionProtection", False)),
            "fingerprint": _fingerprint([name, machine, self._rng.random()]),
        }  # fmt: skip
        instance = _compact(instance)
        instance.update(canIpForward=instance.get("canIpForward", False), disks=[])
        self._instances[(project, zone, name)] = instance
        for index, disk_plan in enumerate(plan):
            if disk_plan["kind"] == "new":
                disk_plan = {**disk_plan, "disk": self._new_disk(project, zone, disk_plan)}
            instance["disks"].append(self._attach(instance, disk_plan, index))
        return instance

    def _network_interfaces(self, project: str, zone: str, requested: list[dict[str, Any]]) -> list[dict[str, Any]]:
        used = {nic.get("networkIP") for (p, _, _), vm in self._instances.items() if p == project
                for nic in vm.get("networkInterfaces", [])}  # fmt: skip
        free_ips = (f"10.128.{n // 256}.{n % 256}" for n in range(2, 4094) if f"10.128.{n // 256}.{n % 256}" not in used)
        nics = []
        for index, nic in enumerate(requested):
            self._static_ips.update(c["natIP"] for c in nic.get("accessConfigs", []) if c.get("natIP"))
            network_name = (nic.get("network") or "global/networks/default").rstrip("/").rsplit("/", 1)[-1]
            subnet = _SUBNETWORK_REF.match(nic.get("subnetwork") or "")
            subnet_name = subnet["name"] if subnet else network_name
            configs = [{"kind": "compute#accessConfig", "type": c.get("type", "ONE_TO_ONE_NAT"),
                        "name": c.get("name", "External NAT"), "networkTier": c.get("networkTier", "PREMIUM"),
                        **({"natIP": c["natIP"]} if c.get("natIP") else {})}
                       for c in nic.get("accessConfigs", [])]  # fmt: skip
            nics.append({
                "kind": "compute#networkInterface", "name": f"nic{index}",
                "network": _link("projects", project, "global", "networks", network_name),
                "subnetwork": _link("projects", project, "regions", _region(zone), "subnetworks", subnet_name),
                "networkIP": nic.get("networkIP") or next(free_ips), "stackType": nic.get("stackType", "IPV4_ONLY"),
                "fingerprint": _fingerprint([index, self._rng.random()]), **({"accessConfigs": configs} if configs else {}),
            })  # fmt: skip
        return nics

    def _boot_step(self, project: str, zone: str, name: str, status: str) -> None:
        """Advance a booting instance (PROVISIONING -> STAGING -> RUNNING) unless something else took it over."""
        vm = self._instances.get((project, zone, name))
        if vm is not None and vm["status"] in ("PROVISIONING", "STAGING"):
            self._set_status(vm, status)
            for disk in self._attached_disks(vm):
                disk["status"] = "READY"

    def _set_status(self, vm: dict[str, Any], status: str) -> None:
        """Set status; RUNNING gets fresh ephemeral external IPs (203.0.113.0/24), TERMINATED loses them."""
        vm["status"] = status
        if status == "RUNNING":
            vm["lastStartTimestamp"] = _timestamp()
            vm["cpuPlatform"] = "Intel Cascade Lake" if "/n2-" in vm["machineType"] else "Intel Broadwell"
        elif status == "TERMINATED":
            vm["lastStopTimestamp"] = _timestamp()
            vm["cpuPlatform"] = "Unknown CPU Platform"
        elif status == "SUSPENDED":  # a suspended VM keeps its addresses (and its memory) until resumed
            vm["lastSuspendedTimestamp"] = _timestamp()
            return
        for nic in vm.get("networkInterfaces", []):
            for config in nic.get("accessConfigs", []):
                if config["type"] != "ONE_TO_ONE_NAT" or config.get("natIP") in self._static_ips:
                    continue
                slot = f"{vm['selfLink']}#{nic['name']}"
                self._last_nat[slot] = config.pop("natIP", None) or self._last_nat.get(slot, "")
                if status == "RUNNING":
                    config["natIP"] = self._free_nat_ip(avoid=self._last_nat[slot])

    def _free_nat_ip(self, avoid: str) -> str:
        used = {c.get("natIP") for vm in self._instances.values() for nic in vm.get("networkInterfaces", [])
                for c in nic.get("accessConfigs", [])} | {avoid}  # fmt: skip
        free = [f"203.0.113.{n}" for n in range(1, 255) if f"203.0.113.{n}" not in used]
        return self._rng.choice(free) if free else f"203.0.113.{self._rng.randrange(1, 255)}"

    # ---- route handlers: disks ----

    def _new_disk(self, project: str, zone: str, plan: dict[str, Any]) -> dict[str, Any]:
        image, labels = plan["image"], plan["labels"]
        disk = {
            "kind": "compute#disk", "id": self._new_id(), "creationTimestamp": _timestamp(), "name": plan["name"],
            "sizeGb": str(plan["sizeGb"]), "zone": _link("projects", project, "zones", zone), "status": "CREATING",
            "selfLink": _link("projects", project, "zones", zone, "disks", plan["name"]),
            "type": _link("projects", project, "zones", zone, "diskTypes", plan["type"]),
            "labels": labels, "labelFingerprint": _fingerprint(labels), "physicalBlockSizeBytes": "4096",
            "architecture": "X86_64", "description": plan.get("description", ""),
        }  # fmt: skip
        if image is not None:
            disk.update(sourceImage=image["selfLink"], sourceImageId=image["id"], licenses=image.get("licenses", []),
                        guestOsFeatures=image.get("guestOsFeatures", []))  # fmt: skip
        self._disks[(project, zone, plan["name"])] = _compact(disk)
        return self._disks[(project, zone, plan["name"])]

    @staticmethod
    def _disk_key(url: str) -> tuple[str, str, str]:
        match = _DISK_REF.match(url)
        return (match["project"], match["zone"], match["name"])  # type: ignore[index]

    def _attached_disks(self, vm: dict[str, Any]) -> list[dict[str, Any]]:
        keys = [self._disk_key(attached["source"]) for attached in vm["disks"] if attached.get("source")]
        return [self._disks[key] for key in keys if key in self._disks]

    def _insert_disk(self, req: _Request, project: str, zone: str) -> dict[str, Any]:
        """A blank disk (``sizeGb``) or one from ``sourceImage`` (in the body or the query), CREATING -> READY."""
        body = req.body
        name = _check_name(body.get("name"))
        if (project, zone, name) in self._disks:
            raise ApiError.exists(f"projects/{project}/zones/{zone}/disks/{name}")
        image_ref = body.get("sourceImage") or req.query.get("sourceImage")
        image = self._resolve_image(project, image_ref, "resource.sourceImage") if image_ref else None
        disk_type = self._disk_type(zone, body.get("type"), "resource.type")
        if disk_type == "local-ssd":
            raise ApiError.bad_field("resource.type", body["type"], "Local SSDs are created with an instance, not as disks.")
        size = self._disk_size(image, body.get("sizeGb"), "resource.sizeGb")
        labels = _check_labels(body.get("labels", {}), "resource.labels")
        plan = {"name": name, "image": image, "sizeGb": size, "type": disk_type, "labels": labels,
                "description": body.get("description", "")}  # fmt: skip
        target = {"selfLink": _link("projects", project, "zones", zone, "disks", name), "id": self._new_id()}

        def begin() -> None:
            self._new_disk(project, zone, plan)["id"] = target["id"]

        def finish() -> None:
            if disk := self._disks.get((project, zone, name)):
                disk["status"] = "READY"

        return self._start_operation(req, project=project, zone=zone, op_type="insert", target=target, begin=begin, finish=finish)

    def _delete_disk(self, req: _Request, project: str, zone: str, disk: str) -> dict[str, Any]:
        """Refused (400 resourceInUseByAnotherResource) while any instance uses the disk."""
        found = self._disks.get((project, zone, disk))
        if found is None:
            raise ApiError.not_found(f"projects/{project}/zones/{zone}/disks/{disk}")
        if found.get("users"):
            raise ApiError.in_use(found["selfLink"].removeprefix(API_ROOT), found["users"][0].removeprefix(API_ROOT))

        def finish() -> None:
            if self._disks.get((project, zone, disk)) is found and not found.get("users"):
                del self._disks[(project, zone, disk)]

        return self._start_operation(
            req, project=project, zone=zone, op_type="delete", target=found,
            begin=lambda: found.update(status="DELETING"), finish=finish,
        )  # fmt: skip

    def _list_disks(self, req: _Request, project: str, zone: str) -> dict[str, Any]:
        found = [v for (p, z, _), v in sorted(self._disks.items()) if (p, z) == (project, zone)]
        return self._list_page(req, "compute#diskList", ("projects", project, "zones", zone, "disks"), found)

    def _get_disk(self, req: _Request, project: str, zone: str, disk: str) -> dict[str, Any]:
        found = self._disks.get((project, zone, disk))
        if found is None:
            raise ApiError.not_found(f"projects/{project}/zones/{zone}/disks/{disk}")
        return copy.deepcopy(found)

    # ---- route handlers: images ----

    def _new_image(
        self, project: str, name: str, family: str | None, labels: dict[str, str], size_gb: int,
        created: float | None = None, image_id: str | None = None, **fields: Any,
    ) -> dict[str, Any]:  # fmt: skip
        image = _compact({
            "kind": "compute#image", "id": image_id or self._new_id(), "creationTimestamp": _timestamp(created), "name": name,
            "sourceType": "RAW", "status": "PENDING", "diskSizeGb": str(size_gb),
            "selfLink": _link("projects", project, "global", "images", name), "labels": labels,
            "labelFingerprint": _fingerprint(labels), "architecture": "X86_64",
            "guestOsFeatures": [{"type": "VIRTIO_SCSI_MULTIQUEUE"}, {"type": "UEFI_COMPATIBLE"}],
            "family": family, **fields,
        })  # fmt: skip
        self._images[(project, name)] = image
        return image

    def _list_images(self, req: _Request, project: str) -> dict[str, Any]:
        found = [v for (p, _), v in sorted(self._images.items()) if p == project]
        return self._list_page(req, "compute#imageList", ("projects", project, "global", "images"), found)

    def _get_image(self, req: _Request, project: str, image: str) -> dict[str, Any]:
        found = self._images.get((project, image))
        if found is None:
            raise ApiError.not_found(f"projects/{project}/global/images/{image}")
        return copy.deepcopy(found)

    def _get_image_family(self, req: _Request, project: str, family: str) -> dict[str, Any]:
        image = self._family_image(project, family)
        if image is None:
            raise ApiError.not_found(f"projects/{project}/global/images/family/{family}")
        return copy.deepcopy(image)

    def _family_image(self, project: str, family: str) -> dict[str, Any] | None:
        """The newest READY, non-deprecated image of the family (images are kept in creation order)."""
        candidates = [
            image for (p, _), image in self._images.items()
            if p == project and image.get("family") == family and image["status"] == "READY"
            and image.get("deprecated", {}).get("state", "ACTIVE") == "ACTIVE"
        ]  # fmt: skip
        return candidates[-1] if candidates else None

    def _insert_image(self, req: _Request, project: str) -> dict[str, Any]:
        name = _check_name(req.body.get("name"))
        if (project, name) in self._images:
            raise ApiError.exists(f"projects/{project}/global/images/{name}")
        family = req.body.get("family")
        if family is not None:
            _check_name(family, "resource.family")
        labels = _check_labels(req.body.get("labels", {}), "resource.labels")
        source_ref = req.body.get("sourceDisk")
        if not source_ref:
            raise ApiError(400, "badRequest", "This stand-in creates images from a sourceDisk only.")
        disk = self._source_disk(project, source_ref, force=req.query.get("forceCreate") == "true")
        zone = disk["zone"].rsplit("/", 1)[-1]
        fields = {  # storageLocations defaults to the multi-region nearest the source disk
            "description": req.body.get("description"), "sourceDisk": disk["selfLink"], "sourceDiskId": disk["id"],
            "storageLocations": req.body.get("storageLocations") or [{"eu": "eu", "as": "asia"}.get(zone[:2], "us")],
            **{k: disk[k] for k in ("licenses", "guestOsFeatures") if k in disk},
        }  # fmt: skip
        target = {"selfLink": _link("projects", project, "global", "images", name), "id": self._new_id()}

        def begin() -> None:
            self._new_image(project, name, family, labels, int(disk["sizeGb"]), image_id=target["id"], **fields)

        def finish() -> None:
            image = self._images.get((project, name))
            if image is not None:
                image.update(status="READY", archiveSizeBytes=str(int(image["diskSizeGb"]) * 310_000_000))

        return self._start_operation(
            req, project=project, zone=None, op_type="insert", target=target, begin=begin, finish=finish
        )

    def _source_disk(self, project: str, ref: str, *, force: bool) -> dict[str, Any]:
        """The image's source disk; refused (400) while attached to a running instance unless forceCreate."""
        match = _DISK_REF.match(ref)
        if not match:
            raise ApiError.invalid("resource.sourceDisk", ref, "The URL is malformed.")
        key = (match["project"] or project, match["zone"], match["name"])
        disk = self._disks.get(key)
        if disk is None:
            raise ApiError.not_found(f"projects/{key[0]}/zones/{key[1]}/disks/{key[2]}")
        if not force:
            for user in disk.get("users", []):
                vm_key = tuple(user.removeprefix(API_ROOT + "projects/").split("/")[i] for i in (0, 2, 4))
                vm = self._instances.get(vm_key)  # type: ignore[arg-type]
                if vm is not None and vm["status"] in _BUSY_STATUSES:
                    raise ApiError.in_use(disk["selfLink"].removeprefix(API_ROOT), user.removeprefix(API_ROOT))
        return disk

    def _delete_image(self, req: _Request, project: str, image: str) -> dict[str, Any]:
        found = self._images.get((project, image))
        if found is None:
            raise ApiError.not_found(f"projects/{project}/global/images/{image}")

        def finish() -> None:
            if self._images.get((project, image)) is found:
                del self._images[(project, image)]

        return self._start_operation(
            req, project=project, zone=None, op_type="delete", target=found,
            begin=lambda: found.update(status="DELETING"), finish=finish,
        )  # fmt: skip

    # ---- shared ----

    def _new_id(self) -> str:
        return str(self._rng.randrange(10**18, 2**63))

    def _list_page(
        self, req: _Request, kind: str, path: tuple[str, ...], resources: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """Filter, then page: ``maxResults`` (0-500, default 500) and an opaque ``pageToken``."""
        if req.query.get("filter", "").strip():
            predicate = compile_filter(req.query["filter"])
            resources = [r for r in resources if predicate(r)]
        size = _int(req.query.get("maxResults", MAX_RESULTS), "maxResults") or MAX_RESULTS
        if not 0 < size <= MAX_RESULTS:
            raise ApiError.invalid("maxResults", size, f"Must be less than or equal to {MAX_RESULTS}")
        offset = 0
        if token := req.query.get("pageToken"):
            try:
                offset = int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("offset:"))
            except ValueError:
                raise ApiError.invalid("pageToken", token, "Invalid page token.") from None
        page: dict[str, Any] = {"kind": kind, "id": "/".join(path), "selfLink": _link(*path)}
        if chunk := resources[offset : offset + size]:
            page["items"] = copy.deepcopy(chunk)
        if offset + size < len(resources):
            page["nextPageToken"] = base64.urlsafe_b64encode(f"offset:{offset + size}".encode()).decode()
        return page


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # e.g. a client hanging up mid-request: nothing to report


class _HttpHandler(BaseHTTPRequestHandler):
    """Hands every request to ``owner.handle``; JSON out, no logging."""

    owner: ComputeStandin
    protocol_version = "HTTP/1.1"  # keep-alive, as the client's requests.Session expects
    disable_nagle_algorithm = True  # headers and body go out in two writes; don't let Nagle delay the second

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        status, payload = self.owner.handle(self.command, self.path, self.rfile.read(length) if length else b"")
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass


def _route(
    method: str, template: str, handler: Callable[..., dict[str, Any]], mutation: bool = False,
    method_id: str = "", proto_root: str = "",
) -> _Route:  # fmt: skip
    pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
    return _Route(method, re.compile(pattern), handler, mutation, method_id, proto_root)


S = ComputeStandin
_ROUTES: tuple[_Route, ...] = (
    _route("GET", "projects/{project}/zones/{zone}/instances", S._list_instances, method_id="instances.list"),
    _route("POST", "projects/{project}/zones/{zone}/instances", S._insert_instance, True, "instances.insert", "instance"),
    _route("GET", "projects/{project}/zones/{zone}/instances/{instance}", S._get_instance, method_id="instances.get"),
    _route("DELETE", "projects/{project}/zones/{zone}/instances/{instance}", S._delete_instance, True, "instances.delete"),
    _route("POST", "projects/{project}/zones/{zone}/instances/{instance}/stop", S._stop_instance, True, "instances.stop"),
    _route("POST", "projects/{project}/zones/{zone}/instances/{instance}/start", S._start_instance, True, "instances.start"),
    _route("POST", "projects/{project}/zones/{zone}/instances/{instance}/suspend", S._suspend_instance, True, "instances.suspend"),
    _route("POST", "projects/{project}/zones/{zone}/instances/{instance}/resume", S._resume_instance, True, "instances.resume"),
    _route("POST", "projects/{project}/zones/{zone}/instances/{instance}/setLabels", S._set_instance_labels, True,
           "instances.setLabels", "instances_set_labels_request"),
    _route("POST", "projects/{project}/zones/{zone}/instances/{instance}/attachDisk", S._attach_disk, True,
           "instances.attachDisk", "attached_disk"),
    _route("POST", "projects/{project}/zones/{zone}/instances/{instance}/detachDisk", S._detach_disk, True, "instances.detachDisk"),
    _route("GET", "projects/{project}/aggregated/instances", S._aggregated_instances, method_id="instances.aggregatedList"),
    _route("GET", "projects/{project}/zones/{zone}/disks", S._list_disks, method_id="disks.list"),
    _route("POST", "projects/{project}/zones/{zone}/disks", S._insert_disk, True, "disks.insert", "disk"),
    _route("GET", "projects/{project}/zones/{zone}/disks/{disk}", S._get_disk, method_id="disks.get"),
    _route("DELETE", "projects/{project}/zones/{zone}/disks/{disk}", S._delete_disk, True, "disks.delete"),
    _route("GET", "projects/{project}/global/images", S._list_images, method_id="images.list"),
    _route("POST", "projects/{project}/global/images", S._insert_image, True, "images.insert", "image"),
    _route("GET", "projects/{project}/global/images/family/{family}", S._get_image_family, method_id="images.getFromFamily"),
    _route("GET", "projects/{project}/global/images/{image}", S._get_image, method_id="images.get"),
    _route("DELETE", "projects/{project}/global/images/{image}", S._delete_image, True, "images.delete"),
    _route("GET", "projects/{project}/zones/{zone}/machineTypes/{machine_type}", S._get_machine_type),
    _route("GET", "projects/{project}/zones/{zone}/operations", S._list_zone_operations, method_id="zoneOperations.list"),
    _route("GET", "projects/{project}/zones/{zone}/operations/{operation}", S._get_zone_operation),
    _route("POST", "projects/{project}/zones/{zone}/operations/{operation}/wait", S._wait_zone_operation),
    _route("GET", "projects/{project}/global/operations", S._list_global_operations, method_id="globalOperations.list"),
    _route("GET", "projects/{project}/global/operations/{operation}", S._get_global_operation),
    _route("POST", "projects/{project}/global/operations/{operation}/wait", S._wait_global_operation),
)  # fmt: skip
del S
