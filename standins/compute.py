"""A local stand-in for the Compute Engine v1 REST API.

The real ``google-cloud-compute`` client (REST transport) talks to it unmodified::

    with ComputeStandin(operation_seconds=0.5) as standin:
        opts = ClientOptions(api_endpoint=standin.url)
        client = compute_v1.InstancesClient(credentials=AnonymousCredentials(), client_options=opts)

It implements the handful of routes vmbot uses (instances, disks, images, machine
types, zone and global operations) following Google's public REST reference, and
answers with the same JSON shapes and error bodies that Compute Engine does.
Quirks of the real API that it reproduces on purpose:

* Mutations answer at once with an Operation; the change lands when the operation
  is DONE.  ``operations/{op}/wait`` returns when the op is DONE *or* after about two
  minutes (``wait_timeout_seconds``), so callers have to loop.
* int64 fields (``id``, ``sizeGb``, ``diskSizeGb``, ``archiveSizeBytes``, ``targetId``)
  are JSON *strings*; empty lists are left out of responses.
* Lists are sorted by name and paged with ``maxResults`` (at most 500) and an
  opaque ``pageToken``; aggregated lists carry a ``NO_RESULTS_ON_PAGE`` warning for
  every zone with nothing on the page.
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
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

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

NAME_PATTERN = "[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?"
_NAME = re.compile(f"^{NAME_PATTERN}$")
_NAME_OR_ID_PATTERN = NAME_PATTERN + "|[1-9][0-9]{0,19}"  # path parameters may also be numeric ids
_NAME_OR_ID = re.compile(f"^(?:{_NAME_OR_ID_PATTERN})$")
_URL_PREFIX = r"^(?:https?://[^/]+/compute/(?:v1|beta|alpha)/)?"
_IMAGE_REF = re.compile(_URL_PREFIX + r"(?:projects/(?P<project>[^/]+)/)?global/images/(?P<family>family/)?(?P<name>[^/]+)$")
_MACHINE_TYPE_REF = re.compile(_URL_PREFIX + r"(?:projects/[^/]+/)?zones/(?P<zone>[^/]+)/machineTypes/(?P<name>[^/]+)$")
_DISK_REF = re.compile(_URL_PREFIX + r"(?:projects/(?P<project>[^/]+)/)?zones/(?P<zone>[^/]+)/disks/(?P<name>[^/]+)$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_BUSY_STATUSES = frozenset({"PROVISIONING", "STAGING", "RUNNING", "STOPPING", "SUSPENDING", "REPAIRING"})
_OP_ERROR_HTTP = {
    "QUOTA_EXCEEDED": (403, "FORBIDDEN"),
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


def _check_name(name: Any, field_name: str = "resource.name") -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ApiError.invalid(field_name, name or "", f"Must be a match of regex '(?:{NAME_PATTERN})'")
    return name


# ---- errors -----------------------------------------------------------------------


class ApiError(Exception):
    """An error answered with GCP's JSON error body."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message

    def body(self) -> dict[str, Any]:
        error = {"message": self.message, "domain": "global", "reason": self.reason}
        return {"error": {"code": self.status, "message": self.message, "errors": [error]}}

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
        status: str = "RUNNING", machine_type: str = "e2-small",
    ) -> dict[str, Any]:  # fmt: skip
        """An instance made outside the bot, with its debian-12 boot disk, already in ``status``."""
        if zone not in ZONES or machine_type not in MACHINE_TYPES or not _NAME.match(name):
            raise ValueError(f"cannot seed {name!r} in {zone!r} as {machine_type!r}")
        body = {
            "name": name,
            "machineType": f"zones/{zone}/machineTypes/{machine_type}",
            "labels": labels or {},
            "disks": [{"boot": True, "autoDelete": True, "initializeParams": {"sourceImage": "projects/debian-cloud/global/images/family/debian-12"}}],
            "networkInterfaces": [{"accessConfigs": [{"type": "ONE_TO_ONE_NAT", "name": "External NAT"}]}],
        }  # fmt: skip
        with self._cond:
            if (project, zone, name) in self._instances:
                raise ValueError(f"instance {name!r} already exists")
            try:
                instance = self._build_instance(project, zone, body)
            except ApiError as error:
                raise ValueError(error.message) from None
            self._set_status(instance, status)
            for disk in self._attached_disks(instance):
                disk["status"] = "READY"
            return copy.deepcopy(instance)

    def seed_image(
        self, project: str, name: str, *, family: str | None = None, labels: dict[str, str] | None = None,
        disk_size_gb: int = 10,
    ) -> dict[str, Any]:  # fmt: skip
        """A READY image made outside the bot (no source disk)."""
        with self._cond:
            if (project, name) in self._images or not _NAME.match(name):
                raise ValueError(f"cannot seed image {name!r} in {project!r}")
            image = self._new_image(project, name, family, labels or {}, disk_size_gb)
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
                if route.mutation and (replay := self._replayed(req, params["project"])) is not None:
                    return replay
                return route.handler(self, req, **params)
        raise ApiError(404, "notFound", f"The requested URL {req.path} was not found on this server.")

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
        self._cond.notify_all()
        self._cond.wait_for(lambda: op.done or self._stopped, timeout=self.wait_timeout_seconds)
        return copy.deepcopy(op.body)

    # ---- route handlers: operations and machine types ----

    def _get_zone_operation(self, req: _Request, project: str, zone: str, operation: str) -> dict[str, Any]:
        return copy.deepcopy(self._operation(project, zone, operation).body)

    def _wait_zone_operation(self, req: _Request, project: str, zone: str, operation: str) -> dict[str, Any]:
        return self._wait(project, zone, operation)

    def _get_global_operation(self, req: _Request, project: str, operation: str) -> dict[str, Any]:
        return copy.deepcopy(self._operation(project, None, operation).body)

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
        return self._start_operation(
            req, project=project, zone=zone, op_type="start", target=vm,
            begin=lambda: vm.update(status="PROVISIONING"),
            midway=lambda: self._boot_step(project, zone, instance, "STAGING"),
            finish=lambda: self._boot_step(project, zone, instance, "RUNNING"),
        )  # fmt: skip

    def _delete_instance(self, req: _Request, project: str, zone: str, instance: str) -> dict[str, Any]:
        vm = self._find_instance(project, zone, instance)

        def finish() -> None:
            if self._instances.get((project, zone, instance)) is not vm:
                return
            del self._instances[(project, zone, instance)]
            for attached in vm["disks"]:
                key = self._disk_key(attached["source"])
                disk = self._disks.get(key)
                if disk is None:
                    continue
                users = [u for u in disk.get("users", []) if u != vm["selfLink"]]
                disk.pop("users", None)
                disk.update({"users": users} if users else {}, lastDetachTimestamp=_timestamp())
                if attached.get("autoDelete"):
                    del self._disks[key]

        return self._start_operation(
            req, project=project, zone=zone, op_type="delete", target=vm,
            begin=lambda: vm.update(status="STOPPING"), finish=finish,
        )  # fmt: skip

    def _find_instance(self, project: str, zone: str, name: str) -> dict[str, Any]:
        vm = self._instances.get((project, zone, name))
        if vm is None:
            raise ApiError.not_found(f"projects/{project}/zones/{zone}/instances/{name}")
        return vm

    def _plan_instance(self, project: str, zone: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        """Validate an insert body (machine type, labels, disks); return the boot/data disks to create or attach."""
        machine_type = body.get("machineType") or ""
        match = _MACHINE_TYPE_REF.match(machine_type)
        if not match:
            raise ApiError.invalid("resource.machineType", machine_type, "The URL is malformed.")
        if match["zone"] != zone or match["name"] not in MACHINE_TYPES:
            raise ApiError.invalid("resource.machineType", machine_type,
                                   f"Machine type with name '{match['name']}' does not exist in zone '{zone}'.")  # fmt: skip
        _check_labels(body.get("labels", {}), "resource.labels")
        disks = body.get("disks") or []
        if not disks:
            raise ApiError.invalid("resource.disks", "", "At least one disk should be specified.")
        plans, taken = [], set()
        for index, attached in enumerate(disks):
            plan = self._plan_disk(project, zone, body["name"], index, attached)
            if plan["name"] in taken:
                raise ApiError.invalid(f"resource.disks[{index}]", plan["name"], "Disk names must be unique.")
            taken.add(plan["name"])
            plans.append(plan)
        return plans

    def _plan_disk(self, project: str, zone: str, vm_name: str, index: int, attached: dict[str, Any]) -> dict[str, Any]:
        field_prefix = f"resource.disks[{index}]"
        params = attached.get("initializeParams") or {}
        image_ref = params.get("sourceImage")
        if not image_ref:  # attaching existing disks (``source``) is not implemented
            raise ApiError(400, "badRequest", f"{field_prefix}.initializeParams.sourceImage is required by this stand-in.")
        image = self._resolve_image(project, image_ref, f"{field_prefix}.initializeParams.sourceImage")
        size = _int(params.get("diskSizeGb") or image["diskSizeGb"], f"{field_prefix}.initializeParams.diskSizeGb")
        if size < int(image["diskSizeGb"]):
            raise ApiError.invalid(f"{field_prefix}.initializeParams.diskSizeGb", size,
                                   f"Requested disk size cannot be smaller than the image size ({image['diskSizeGb']} GB)")  # fmt: skip
        disk_type = (params.get("diskType") or "pd-standard").rsplit("/", 1)[-1]  # the API's default type
        name = _check_name(params.get("diskName") or (vm_name if index == 0 else f"{vm_name}-{index}"),
                           f"{field_prefix}.initializeParams.diskName")  # fmt: skip
        if (project, zone, name) in self._disks:
            raise ApiError.exists(f"projects/{project}/zones/{zone}/disks/{name}")
        labels = _check_labels(params.get("labels", {}), f"{field_prefix}.initializeParams.labels")
        return {"name": name, "image": image, "sizeGb": size, "type": disk_type, "labels": labels}

    def _resolve_image(self, project: str, ref: str, field_name: str) -> dict[str, Any]:
        """Resolve ``projects/X/global/images/[family/]NAME``, ``global/images/NAME`` or a full URL."""
        match = _IMAGE_REF.match(ref)
        if not match:
            raise ApiError.invalid(field_name, ref, "The URL is malformed.")
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

    def _build_instance(
        self, project: str, zone: str, body: dict[str, Any], *, plan: list[dict[str, Any]] | None = None,
        instance_id: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Create the instance (PROVISIONING) and its disks from a validated insert body."""
        plan = plan if plan is not None else self._plan_instance(project, zone, body)
        name = body["name"]
        self_link = _link("projects", project, "zones", zone, "instances", name)
        attached = []
        for index, (disk_plan, request) in enumerate(zip(plan, body["disks"])):
            disk = self._new_disk(project, zone, disk_plan)
            disk.update(users=[self_link], lastAttachTimestamp=_timestamp())
            attached.append({
                "kind": "compute#attachedDisk", "type": "PERSISTENT", "mode": request.get("mode", "READ_WRITE"),
                "source": disk["selfLink"], "deviceName": request.get("deviceName") or disk["name"], "index": index,
                "boot": bool(request.get("boot", index == 0)), "autoDelete": bool(request.get("autoDelete", False)),
                "interface": request.get("interface", "SCSI"), "diskSizeGb": disk["sizeGb"],
                "architecture": "X86_64", "guestOsFeatures": [{"type": "VIRTIO_SCSI_MULTIQUEUE"}, {"type": "UEFI_COMPATIBLE"}],
            })  # fmt: skip
        machine = _MACHINE_TYPE_REF.match(body["machineType"])["name"]  # type: ignore[index]
        labels = dict(body.get("labels") or {})
        items = [{"key": i["key"], "value": i.get("value", "")} for i in (body.get("metadata") or {}).get("items", [])]
        tags = list((body.get("tags") or {}).get("items", []))
        instance = {
            "kind": "compute#instance", "id": instance_id or self._new_id(), "creationTimestamp": _timestamp(),
            "name": name, "description": body.get("description", ""),
            "tags": {"items": tags, "fingerprint": _fingerprint(tags)} if tags else {"fingerprint": _fingerprint([])},
            "machineType": _link("projects", project, "zones", zone, "machineTypes", machine), "status": "PROVISIONING",
            "zone": _link("projects", project, "zones", zone), "canIpForward": bool(body.get("canIpForward", False)),
            "networkInterfaces": self._network_interfaces(project, zone, body.get("networkInterfaces", [])),
            "disks": attached,
            "metadata": {"kind": "compute#metadata", "fingerprint": _fingerprint(items), **({"items": items} if items else {})},
            "serviceAccounts": body.get("serviceAccounts", []),
            "selfLink": self_link,
            "scheduling": {"onHostMaintenance": "MIGRATE", "automaticRestart": True, "preemptible": False,
                           "provisioningModel": "STANDARD", **(body.get("scheduling") or {})},
            "cpuPlatform": "Unknown CPU Platform", "labels": labels, "labelFingerprint": _fingerprint(labels),
            "startRestricted": False, "deletionProtection": False,
            "fingerprint": _fingerprint([name, machine, self._rng.random()]),
        }  # fmt: skip
        self._instances[(project, zone, name)] = _compact(instance)
        return self._instances[(project, zone, name)]

    def _network_interfaces(self, project: str, zone: str, requested: list[dict[str, Any]]) -> list[dict[str, Any]]:
        used = {nic.get("networkIP") for (p, _, _), vm in self._instances.items() if p == project
                for nic in vm.get("networkInterfaces", [])}  # fmt: skip
        free_ips = (f"10.128.{n // 256}.{n % 256}" for n in range(2, 4094) if f"10.128.{n // 256}.{n % 256}" not in used)
        nics = []
        for index, nic in enumerate(requested):
            self._static_ips.update(c["natIP"] for c in nic.get("accessConfigs", []) if c.get("natIP"))
            network = nic.get("network") or "global/networks/default"
            network_name = network.rstrip("/").rsplit("/", 1)[-1]
            configs = [{"kind": "compute#accessConfig", "type": c.get("type", "ONE_TO_ONE_NAT"),
                        "name": c.get("name", "External NAT"), "networkTier": c.get("networkTier", "PREMIUM"),
                        **({"natIP": c["natIP"]} if c.get("natIP") else {})}
                       for c in nic.get("accessConfigs", [])]  # fmt: skip
            nics.append({
                "kind": "compute#networkInterface", "name": f"nic{index}",
                "network": _link("projects", project, "global", "networks", network_name),
                "subnetwork": _link("projects", project, "regions", _region(zone), "subnetworks", network_name),
                "networkIP": nic.get("networkIP") or next(free_ips), "stackType": "IPV4_ONLY",
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
            "sourceImage": image["selfLink"], "sourceImageId": image["id"],
            "type": _link("projects", project, "zones", zone, "diskTypes", plan["type"]),
            "licenses": image.get("licenses", []), "guestOsFeatures": image.get("guestOsFeatures", []),
            "labels": labels, "labelFingerprint": _fingerprint(labels), "physicalBlockSizeBytes": "4096",
            "architecture": "X86_64",
        }  # fmt: skip
        self._disks[(project, zone, plan["name"])] = _compact(disk)
        return self._disks[(project, zone, plan["name"])]

    @staticmethod
    def _disk_key(url: str) -> tuple[str, str, str]:
        match = _DISK_REF.match(url)
        return (match["project"], match["zone"], match["name"])  # type: ignore[index]

    def _attached_disks(self, vm: dict[str, Any]) -> list[dict[str, Any]]:
        keys = [self._disk_key(attached["source"]) for attached in vm["disks"]]
        return [self._disks[key] for key in keys if key in self._disks]

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


def _route(method: str, template: str, handler: Callable[..., dict[str, Any]], mutation: bool = False) -> _Route:
    pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
    return _Route(method, re.compile(pattern), handler, mutation)


S = ComputeStandin
_ROUTES: tuple[_Route, ...] = (
    _route("GET", "projects/{project}/zones/{zone}/instances", S._list_instances),
    _route("POST", "projects/{project}/zones/{zone}/instances", S._insert_instance, mutation=True),
    _route("GET", "projects/{project}/zones/{zone}/instances/{instance}", S._get_instance),
    _route("DELETE", "projects/{project}/zones/{zone}/instances/{instance}", S._delete_instance, mutation=True),
    _route("POST", "projects/{project}/zones/{zone}/instances/{instance}/stop", S._stop_instance, mutation=True),
    _route("POST", "projects/{project}/zones/{zone}/instances/{instance}/start", S._start_instance, mutation=True),
    _route("GET", "projects/{project}/aggregated/instances", S._aggregated_instances),
    _route("GET", "projects/{project}/zones/{zone}/disks", S._list_disks),
    _route("GET", "projects/{project}/zones/{zone}/disks/{disk}", S._get_disk),
    _route("GET", "projects/{project}/global/images", S._list_images),
    _route("POST", "projects/{project}/global/images", S._insert_image, mutation=True),
    _route("GET", "projects/{project}/global/images/family/{family}", S._get_image_family),
    _route("GET", "projects/{project}/global/images/{image}", S._get_image),
    _route("DELETE", "projects/{project}/global/images/{image}", S._delete_image, mutation=True),
    _route("GET", "projects/{project}/zones/{zone}/machineTypes/{machine_type}", S._get_machine_type),
    _route("GET", "projects/{project}/zones/{zone}/operations/{operation}", S._get_zone_operation),
    _route("POST", "projects/{project}/zones/{zone}/operations/{operation}/wait", S._wait_zone_operation),
    _route("GET", "projects/{project}/global/operations/{operation}", S._get_global_operation),
    _route("POST", "projects/{project}/global/operations/{operation}/wait", S._wait_global_operation),
)
del S
