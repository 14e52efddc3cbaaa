"""The GCP adapter: the only module that talks to Compute Engine.

Every mutating call returns a long-running operation; ``_wait`` owns waiting
for it. It uses our own Zone/GlobalOperationsClient ``wait`` (the endpoint
returns when the operation is DONE or after about two minutes, so we loop),
because ``ExtendedOperation.result()`` in google-cloud-compute 1.x polls through
an operations client built without our ``client_options`` and would ignore a
custom endpoint.

Transient failures (HTTP 429/500/502/503/504, rateLimitExceeded, backendError,
a dropped connection) are retried here and nowhere else (``is_transient``), on
every call including the operation waits, with exponential backoff and jitter
and within ``retry_deadline`` seconds; every single call has its own timeout,
so nothing here can hang. Mutations carry a ``requestId`` so a retried insert
cannot act twice, and a caller resuming after a crash passes the ``requestId``
it recorded before the crash to get the original operation back instead of a
second one. Anything else (quota, permission, not found, invalid) is permanent
and raised at once as a GceError with GCP's message.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

import requests
from google.api_core import exceptions as api_exceptions
from google.api_core.client_options import ClientOptions
from google.api_core.extended_operation import ExtendedOperation
from google.api_core.retry import Retry
from google.auth.credentials import AnonymousCredentials, Credentials

from bot.gcp.lean_compute import compute_v1
from bot.observability.metrics import Metrics

from bot.redaction import redact

log = logging.getLogger(__name__)

MANAGED_LABEL = {"managed-by": "vmbot"}
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
TRANSIENT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "backendError", "internalError"})
PERMANENT_STATUSES = frozenset({400, 404})  # invalid, not found: the same request fails the same way
# Client errors (4xx) that may pass by themselves: a quota or a zone's capacity can free up.
PASSING_REASONS = frozenset({
    "quotaExceeded", "QUOTA_EXCEEDED", "RESOURCE_EXHAUSTED", "resourceExhausted", "ZONE_RESOURCE_POOL_EXHAUSTED",
    "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", "RESOURCE_OPERATION_RATE_EXCEEDED", "rateLimitExceeded",
    "userRateLimitExceeded", "resourceNotReady", "RESOURCE_NOT_READY",
})  # fmt: skip
DONE = compute_v1.Operation.Status.DONE


class GceError(Exception):
    """A Compute Engine failure, carrying GCP's own message.

    The message is shown to users and stored, so anything in it that looks like a
    credential is redacted here, where every GCP error passes.
    """

    def __init__(self, message: str, *, status: int | None = None, reason: str | None = None) -> None:
        message = redact(message)
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason

    @property
    def transient(self) -> bool:
        return self.status in TRANSIENT_STATUSES or self.reason in TRANSIENT_REASONS

    @property
    def permanent(self) -> bool:
        """Whether the same request can only fail again: GCP refused it as invalid (400) or not found
        (404). A quota, a zone's capacity, a rate or a permission can change, and a 5xx or no answer
        passes: those are worth retrying."""
        reason = (self.reason or "").lower()
        passing = self.reason in PASSING_REASONS or "quota" in reason or "exhausted" in reason
        return self.status in PERMANENT_STATUSES and not passing


class GceNotFound(GceError):
    pass


class GceAlreadyExists(GceError):
    pass


class GceTimeout(GceError):
    """A GCP operation did not finish within ``operation_timeout``: its outcome is unknown, not failed.
    ``operation`` names it, so whoever carries on can wait for it again and read what GCP says."""

    def __init__(self, message: str, *, operation: str) -> None:
        super().__init__(message)
        self.operation = operation


# The REST transport's own failures: no answer at all, or an answer cut short.
NETWORK_ERRORS = (
    ConnectionError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


def is_transient(exc: BaseException) -> bool:
    """Whether a failed API call is worth retrying (rate limits, server-side errors, the network)."""
    if isinstance(exc, api_exceptions.GoogleAPICallError):
        return exc.code in TRANSIENT_STATUSES or _reason(exc) in TRANSIENT_REASONS
    return isinstance(exc, NETWORK_ERRORS) and not isinstance(exc, GceError)


def _reason(exc: api_exceptions.GoogleAPICallError) -> str | None:
    for error in exc.errors or ():
        if isinstance(error, dict) and error.get("reason"):
            return str(error["reason"])
    return exc.reason


def _gcp_message(exc: api_exceptions.GoogleAPICallError) -> str:
    """GCP's own words: the error body's message, not the transport's "POST https://...: " prefix."""
    for error in exc.errors or ():
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    message = exc.message or str(exc)
    method, _, rest = message.partition(" ")
    if method.isupper() and rest.startswith(("http://", "https://")) and ": " in rest:
        return rest.split(": ", 1)[1]
    return message


def _translate(exc: api_exceptions.GoogleAPICallError, *, gave_up: bool = False) -> GceError:
    kind = {404: GceNotFound, 409: GceAlreadyExists}.get(int(exc.code or 0), GceError)
    message = _gcp_message(exc)
    if gave_up:  # a transient error that outlasted the retry deadline
        message = f"{message} (still failing after retrying; GCP may be overloaded, try again later)"
    return kind(message, status=int(exc.code) if exc.code else None, reason=_reason(exc))


@dataclass(frozen=True)
class InstanceSpec:
    """What a create or restore asks of GCP."""

    name: str
    zone: str
    machine_type: str
    source_image: str
    startup_script: str
    labels: dict[str, str]
    metadata: dict[str, str] = field(default_factory=dict)
    network_tags: tuple[str, ...] = ("vmbot-web",)


@dataclass(frozen=True)
class InstanceInfo:
    name: str
    zone: str
    status: str  # PROVISIONING, STAGING, RUNNING, STOPPING, TERMINATED, ...
    machine_type: str
    external_ip: str | None
    boot_disk: str | None  # the disk's URL, as an image's sourceDisk wants it
    labels: dict[str, str]


@dataclass(frozen=True)
class ImageInfo:
    name: str
    family: str | None
    status: str  # PENDING, READY, FAILED
    disk_size_gb: int | None
    archive_size_bytes: int | None
    labels: dict[str, str]
    created: datetime | None


OperationStarted = Callable[[str], None]


class Compute:
    """Compute Engine for one project, through google-cloud-compute's REST clients."""

    def __init__(
        self,
        project: str,
        *,
        endpoint: str | None = None,
        credentials: Credentials | None = None,
        operation_timeout: float = 900.0,
        retry_deadline: float = 120.0,
        retry_initial: float = 1.0,
        call_timeout: float = 60.0,
    ) -> None:
        self.project = project
        self.metrics = Metrics()  # create_app gives it the app's (bot.observability.wiring)
        self.operation_timeout = operation_timeout
        self.call_timeout = call_timeout
        options = ClientOptions(api_endpoint=endpoint) if endpoint else None
        if endpoint and endpoint.startswith("http://") and credentials is None:
            credentials = AnonymousCredentials()  # a local stand-in: no Google credentials involved
        kwargs = {"credentials": credentials, "client_options": options}
        self.instances = compute_v1.InstancesClient(**kwargs)
        self.images = compute_v1.ImagesClient(**kwargs)
        self.zone_operations = compute_v1.ZoneOperationsClient(**kwargs)
        self.global_operations = compute_v1.GlobalOperationsClient(**kwargs)
        # api_core's Retry sleeps a random time up to the exponential delay (full jitter).
        self.retry = Retry(
            predicate=is_transient, initial=retry_initial, maximum=30.0, multiplier=2.0, timeout=retry_deadline
        )

    # ---- instances -----------------------------------------------------------

    def get_instance(self, zone: str, name: str) -> InstanceInfo | None:
        try:
            instance = self._call(self.instances.get, project=self.project, zone=zone, instance=name)
        except GceNotFound:
            return None
        return _instance_info(instance)

    def create_instance(
        self, spec: InstanceSpec, *, request_id: str | None = None, on_started: OperationStarted | None = None
    ) -> InstanceInfo:
        """Insert an instance and wait until it is RUNNING; raise GceError with GCP's message."""
        request = compute_v1.InsertInstanceRequest(
            project=self.project,
            zone=spec.zone,
            instance_resource=instance_resource(spec),
            request_id=request_id or new_request_id(),
        )
        self._wait(self._call(self.instances.insert, request=request), zone=spec.zone, on_started=on_started)
        info = self.get_instance(spec.zone, spec.name)
        if info is None:
            raise GceError(f"GCP reported {spec.name} created, but it is not there")
        return info

    def stop_instance(
        self, zone: str, name: str, *, request_id: str | None = None, on_started: OperationStarted | None = None
    ) -> None:
        request = compute_v1.StopInstanceRequest(
            project=self.project, zone=zone, instance=name, request_id=request_id or new_request_id()
        )
        self._wait(self._call(self.instances.stop, request=request), zone=zone, on_started=on_started)

    def delete_instance(
        self, zone: str, name: str, *, request_id: str | None = None, on_started: OperationStarted | None = None
    ) -> None:
        request = compute_v1.DeleteInstanceRequest(
            project=self.project, zone=zone, instance=name, request_id=request_id or new_request_id()
        )
        self._wait(self._call(self.instances.delete, request=request), zone=zone, on_started=on_started)

    # ---- images ------------------------------------------------------------------

    def get_image(self, name: str) -> ImageInfo | None:
        try:
            return _image_info(self._call(self.images.get, project=self.project, image=name))
        except GceNotFound:
            return None

    def create_image(
        self,
        name: str,
        *,
        family: str,
        source_disk: str,
        labels: dict[str, str],
        request_id: str | None = None,
        on_started: OperationStarted | None = None,
    ) -> ImageInfo:
        """Image a (stopped) VM's boot disk into ``family`` and wait until the image is READY."""
        image = compute_v1.Image(name=name, family=family, source_disk=source_disk, labels=labels)
        request = compute_v1.InsertImageRequest(
            project=self.project, image_resource=image, request_id=request_id or new_request_id()
        )
        self._wait(self._call(self.images.insert, request=request), zone=None, on_started=on_started)
        info = self.get_image(name)
        if info is None or info.status != "READY":
            raise GceError(f"image {name} did not become READY (status {info.status if info else 'missing'})")
        return info

    def delete_image(self, name: str, *, on_started: OperationStarted | None = None) -> None:
        request = compute_v1.DeleteImageRequest(project=self.project, image=name, request_id=new_request_id())
        self._wait(self._call(self.images.delete, request=request), zone=None, on_started=on_started)

    def list_images(self, labels: dict[str, str]) -> Iterator[ImageInfo]:
        """The project's images carrying all ``labels`` (pages are fetched as the iterator goes)."""
        request = compute_v1.ListImagesRequest(project=self.project, filter=_label_filter(labels))
        pager = self._call(self.images.list, request=request)
        try:
            for image in pager:  # later pages are fetched here, outside _call
                yield _image_info(image)
        except api_exceptions.GoogleAPICallError as exc:
            raise _translate(exc) from exc

    def list_instances(self, labels: dict[str, str]) -> Iterator[InstanceInfo]:
        """The project's instances in every zone carrying all ``labels`` (aggregated list, paged)."""
        request = compute_v1.AggregatedListInstancesRequest(project=self.project, filter=_label_filter(labels))
        pager = self._call(self.instances.aggregated_list, request=request)
        try:
            for _scope, scoped in pager:  # later pages are fetched here, outside _call
                for instance in scoped.instances:
                    yield _instance_info(instance)
        except api_exceptions.GoogleAPICallError as exc:
            raise _translate(exc) from exc

    def check_reachable(self, zone: str, *, timeout: float = 5.0) -> None:
        """One cheap call (a page of at most one instance in ``zone``), not retried: for ``/readyz``.

        Raises GceError with GCP's message when GCP does not answer or refuses (credentials, permission).
        """
        request = compute_v1.ListInstancesRequest(project=self.project, zone=zone, max_results=1)
        self._call(self.instances.list, request=request, retry=None, timeout=timeout)

    # ---- operations ----------------------------------------------------------------

    def wait_for(self, operation_name: str, *, zone: str | None) -> None:
        """Wait for a GCP operation we started earlier (e.g. before a restart), by its name.

        Raises GceNotFound when GCP no longer knows the operation, and GceError
        when the operation ended with an error, exactly as the original call would have.
        """
        operation = self._poll(operation_name, zone)
        self._wait(operation, zone=zone, on_started=None)

    def _wait(
        self,
        operation: ExtendedOperation | compute_v1.Operation,
        *,
        zone: str | None,
        on_started: OperationStarted | None,
    ) -> compute_v1.Operation:
        name = operation.name
        if on_started:
            on_started(name)
        deadline = time.monotonic() + self.operation_timeout
        while operation.status != DONE:
            if time.monotonic() > deadline:
                raise GceTimeout(f"GCP operation {name} did not finish within {self.operation_timeout:g} s", operation=name)
            operation = self._poll(name, zone, wait=True)
        errors = list(operation.error.errors) if operation.error else []
        if errors:
            message = "; ".join(error.message or error.code for error in errors)
            raise GceError(message, status=operation.http_error_status_code or None, reason=errors[0].code)
        return operation

    def _poll(self, name: str, zone: str | None, *, wait: bool = False) -> compute_v1.Operation:
        if zone:
            method = self.zone_operations.wait if wait else self.zone_operations.get
            return self._call(method, project=self.project, zone=zone, operation=name, timeout=180)
        method = self.global_operations.wait if wait else self.global_operations.get
        return self._call(method, project=self.project, operation=name, timeout=180)

    def _call(self, method, **kwargs):  # type: ignore[no-untyped-def]
        """Call a client method with our retry policy (or ``retry=``), turning every failure into a GceError."""
        kwargs.setdefault("timeout", self.call_timeout)
        kwargs.setdefault("retry", self.retry)
        with self.metrics.gcp_call(_call_name(method)):
            try:
                return method(**kwargs)
            except api_exceptions.RetryError as exc:
                cause = exc.cause
                if isinstance(cause, api_exceptions.GoogleAPICallError):
                    raise _translate(cause, gave_up=True) from exc
                raise GceError(f"GCP did not answer in time ({cause or exc}); I gave up after retrying.") from exc
            except api_exceptions.GoogleAPICallError as exc:
                raise _translate(exc) from exc
            except NETWORK_ERRORS as exc:  # only when the retry deadline is 0, or retry=None
                raise GceError(f"I could not reach GCP: {exc}") from exc


def _call_name(method) -> str:  # type: ignore[no-untyped-def]
    """``instances.get``, ``zone_operations.wait``: a client method as a metric label."""
    client = type(getattr(method, "__self__", None)).__name__.removesuffix("Client")
    return f"{re.sub(r'(?<!^)(?=[A-Z])', '_', client).lower()}.{getattr(method, '__name__', '?')}"


def instance_resource(spec: InstanceSpec) -> compute_v1.Instance:
    """The insert body for ``spec``: labels on the VM and its boot disk, the startup script, an external IP."""
    items = [compute_v1.Items(key="startup-script", value=spec.startup_script)]
    items += [compute_v1.Items(key=key, value=value) for key, value in spec.metadata.items()]
    return compute_v1.Instance(
        name=spec.name,
        machine_type=f"zones/{spec.zone}/machineTypes/{spec.machine_type}",
        labels=spec.labels,
        tags=compute_v1.Tags(items=list(spec.network_tags)),
        metadata=compute_v1.Metadata(items=items),
        disks=[
            compute_v1.AttachedDisk(
                boot=True,
                auto_delete=True,
                initialize_params=compute_v1.AttachedDiskInitializeParams(
                    source_image=spec.source_image, labels=spec.labels
                ),
            )
        ],
        network_interfaces=[
            compute_v1.NetworkInterface(
                network="global/networks/default",
                access_configs=[compute_v1.AccessConfig(name="External NAT", type_="ONE_TO_ONE_NAT")],
            )
        ],
    )


def new_request_id() -> str:
    """A fresh ``requestId``: GCP acts once per id, so a retried or resumed mutation never acts twice."""
    return str(uuid.uuid4())


def _label_filter(labels: dict[str, str]) -> str:
    return " AND ".join(f'labels.{key} = "{value}"' for key, value in labels.items())


def _short(url: str) -> str:
    """The last path segment of a resource URL ("zones/us-central1-a/machineTypes/e2-small" -> "e2-small")."""
    return url.rsplit("/", 1)[-1]


def _instance_info(instance: compute_v1.Instance) -> InstanceInfo:
    ip = None
    for interface in instance.network_interfaces:
        for access in interface.access_configs:
            if access.nat_i_p:
                ip = access.nat_i_p
    boot = next((disk.source for disk in instance.disks if disk.boot), None)
    return InstanceInfo(
        name=instance.name,
        zone=_short(instance.zone),
        status=instance.status,
        machine_type=_short(instance.machine_type),
        external_ip=ip,
        boot_disk=boot,
        labels=dict(instance.labels),
    )


def _image_info(image: compute_v1.Image) -> ImageInfo:
    created = datetime.fromisoformat(image.creation_timestamp) if image.creation_timestamp else None
    return ImageInfo(
        name=image.name,
        family=image.family or None,
        status=image.status,
        disk_size_gb=image.disk_size_gb or None,
        archive_size_bytes=image.archive_size_bytes or None,
        labels=dict(image.labels),
        created=created,
    )
