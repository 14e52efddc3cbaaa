"""The GCP adapter: the only module that talks to Compute Engine.

Every mutating call returns the long-running operation GCP started, as ``Started`` (as
the client's own ``ExtendedOperation`` is): ``Started.wait()`` blocks on our own
Zone/GlobalOperationsClient ``wait`` (the endpoint returns when the operation is DONE
or after about two minutes, so we loop), because ``ExtendedOperation.result()`` in
google-cloud-compute 1.x polls through an operations client built without our
``client_options`` and would ignore a custom endpoint. A workflow does not block:
it yields the ``Started`` and bot.gcp.watcher watches it with many others
(``list_operations``: one list call per zone), so a waiting workflow holds no thread.

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
import os
import re
import time
import uuid
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

import requests
from google.api_core import exceptions as api_exceptions
from google.api_core.client_options import ClientOptions
from google.api_core.extended_operation import ExtendedOperation
from google.api_core.retry import Retry
from google.auth.credentials import AnonymousCredentials, Credentials

from bot.gcp.lean_compute import compute_v1
from bot.gcp.shape import VMBOT_LABELS, VMBOT_METADATA, DiskShape, VmShape
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
    # What GCP answered, so ``Compute.shape_of`` reads the shape from the same answer, not another instances.get.
    resource: compute_v1.Instance | None = field(default=None, repr=False, compare=False)


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
_T = TypeVar("_T")


@dataclass(frozen=True, eq=False)
class Started(Generic[_T]):
    """A GCP operation vmbot started (or re-attached to), not yet seen to end: what every mutation returns,
    as the client's own ``ExtendedOperation`` is.

    ``wait()`` holds the calling thread until GCP says DONE (the sweeper, tests, ``run_to_end``). A workflow
    instead yields it: the job runner hands it to bot.gcp.watcher, which watches every operation in flight
    with one list call per zone, and carries the workflow on with ``result(operation)`` once GCP says DONE,
    so a waiting workflow holds no thread.
    """

    name: str
    zone: str | None
    _wait_until_done: Callable[[str, str | None], compute_v1.Operation] = field(repr=False)
    _result: Callable[[compute_v1.Operation], _T] = field(repr=False)

    def wait(self) -> _T:
        """Block until the operation is DONE; its result, or GceError/GceTimeout as the operation ended."""
        return self._result(self._wait_until_done(self.name, self.zone))

    def result(self, done: compute_v1.Operation) -> _T:
        """What the operation, DONE as ``done`` says, means: the call's result, or GceError with GCP's message."""
        return self._result(done)


Steps = Generator[Started[Any], Any, _T]  # a workflow: yields each GCP operation it waits on, is sent its result


def run_to_end(steps: Steps[_T]) -> _T:
    """Drive ``steps`` on this thread, waiting on each operation it yields; what it returns.

    The blocking way to run a workflow (tests, a surface that runs one inline); the job runner drives
    the same generator holding no thread while it waits (bot.jobs.runner)."""
    outcome: Callable[[], Any] = lambda: None  # noqa: E731 - the first send is None, as for any generator
    while True:
        try:
            started = step_on(steps, outcome)
        except StopIteration as end:
            return end.value  # type: ignore[no-any-return]
        outcome = started.wait


def step_on(steps: Steps[Any], outcome: Callable[[], Any]) -> Started[Any]:
    """Carry ``steps`` on to the next operation it waits on: send it what ``outcome()`` returns, or throw
    in what it raises, where it waited. Raises StopIteration when the workflow ends."""
    try:
        value = outcome()
    except Exception as error:  # noqa: BLE001 - raised inside the workflow, where it waited
        return steps.throw(error)
    return steps.send(value)


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
        connections: int = 10,
    ) -> None:
        """``connections``: HTTP connections each client keeps for reuse, as many as operations wait at
        once (create_app passes VMBOT_MAX_IN_FLIGHT); past it urllib3 opens and discards one per call."""
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
        self.disks = compute_v1.DisksClient(**kwargs)
        self.zone_operations = compute_v1.ZoneOperationsClient(**kwargs)
        self.global_operations = compute_v1.GlobalOperationsClient(**kwargs)
        for client in (self.instances, self.images, self.disks, self.zone_operations, self.global_operations):
            _tune_session(client, connections, endpoint or "https://compute.googleapis.com")
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
        return _instance_info(instance, keep=True)

    def create_instance(
        self, spec: InstanceSpec, *, request_id: str | None = None, on_started: OperationStarted | None = None
    ) -> Started[InstanceInfo]:
        """Insert an instance and wait until it is RUNNING; raise GceError with GCP's message."""
        request = compute_v1.InsertInstanceRequest(
            project=self.project,
            zone=spec.zone,
            instance_resource=instance_resource(spec),
            request_id=request_id or new_request_id(),
        )
        return self._started(self._call(self.instances.insert, request=request), spec.zone, on_started,
                             then=lambda: self._created(spec.zone, spec.name))

    def stop_instance(
        self, zone: str, name: str, *, request_id: str | None = None, on_started: OperationStarted | None = None
    ) -> Started[None]:
        request = compute_v1.StopInstanceRequest(
            project=self.project, zone=zone, instance=name, request_id=request_id or new_request_id()
        )
        return self._started(self._call(self.instances.stop, request=request), zone, on_started)

    def start_instance(
        self, zone: str, name: str, *, request_id: str | None = None, on_started: OperationStarted | None = None
    ) -> Started[None]:
        """Start a stopped (TERMINATED) instance and wait until GCP says the start is done."""
        request = compute_v1.StartInstanceRequest(
            project=self.project, zone=zone, instance=name, request_id=request_id or new_request_id()
        )
        return self._started(self._call(self.instances.start, request=request), zone, on_started)

    def suspend_instance(
        self, zone: str, name: str, *, request_id: str | None = None, on_started: OperationStarted | None = None
    ) -> Started[None]:
        """Suspend a running instance (GCP keeps its memory). GCP refuses some machines at once, e.g.
        with GPUs attached: that refusal is raised as a GceError carrying GCP's message."""
        request = compute_v1.SuspendInstanceRequest(
            project=self.project, zone=zone, instance=name, request_id=request_id or new_request_id()
        )
        return self._started(self._call(self.instances.suspend, request=request), zone, on_started)

    def resume_instance(
        self, zone: str, name: str, *, request_id: str | None = None, on_started: OperationStarted | None = None
    ) -> Started[None]:
        """Resume a suspended instance and wait until GCP says it is done."""
        request = compute_v1.ResumeInstanceRequest(
            project=self.project, zone=zone, instance=name, request_id=request_id or new_request_id()
        )
        return self._started(self._call(self.instances.resume, request=request), zone, on_started)

    def delete_instance(
        self, zone: str, name: str, *, request_id: str | None = None, on_started: OperationStarted | None = None
    ) -> Started[None]:
        request = compute_v1.DeleteInstanceRequest(
            project=self.project, zone=zone, instance=name, request_id=request_id or new_request_id()
        )
        return self._started(self._call(self.instances.delete, request=request), zone, on_started)

    def read_shape(self, zone: str, name: str) -> VmShape | None:
        """The VM's whole shape (instances.get, then disks.get for each persistent disk); None if it is gone."""
        instance = self.get_instance(zone, name)
        return self.shape_of(instance) if instance is not None else None

    def shape_of(self, instance: InstanceInfo) -> VmShape:
        """The whole shape of an instance ``get_instance`` read: disks.get for each persistent disk, and no
        second instances.get. GceNotFound if a disk is gone (GCP deletes an attached disk only with its VM)."""
        assert instance.resource is not None, "an InstanceInfo from get_instance"
        disks = [self._disk_shape(attached) for attached in instance.resource.disks]
        return _shape(instance.resource, disks)

    def managing_group(self, zone: str, name: str) -> str | None:
        """The managed instance group an instance belongs to (GCP's ``created-by`` metadata), if any."""
        instance = self._call(self.instances.get, project=self.project, zone=zone, instance=name)
        return next((item.value for item in instance.metadata.items if item.key == "created-by"), None)

    @staticmethod
    def label_fingerprint(instance: InstanceInfo) -> str:
        """The fingerprint of the labels ``get_instance`` read, for ``set_labels``."""
        assert instance.resource is not None, "an InstanceInfo from get_instance"
        return instance.resource.label_fingerprint

    def set_labels(
        self, zone: str, name: str, labels: dict[str, str], *, fingerprint: str,
        request_id: str | None = None, on_started: OperationStarted | None = None,
    ) -> Started[None]:  # fmt: skip
        """Replace the instance's labels; ``fingerprint`` is the one read with them, so a change made
        meanwhile by someone else fails (412) instead of being overwritten."""
        body = compute_v1.InstancesSetLabelsRequest(labels=labels, label_fingerprint=fingerprint)
        request = compute_v1.SetLabelsInstanceRequest(
            project=self.project, zone=zone, instance=name, instances_set_labels_request_resource=body,
            request_id=request_id or new_request_id(),
        )  # fmt: skip
        return self._started(self._call(self.instances.set_labels, request=request), zone, on_started)

    def create_instance_from_shape(
        self, name: str, shape: VmShape, *, labels: dict[str, str], boot_image: str,
        data_images: dict[str, str] | None = None, startup_metadata: dict[str, str] | None = None,
        request_id: str | None = None, on_started: OperationStarted | None = None,
    ) -> Started[InstanceInfo]:  # fmt: skip
        """Insert an instance of ``shape`` (its data disks made from ``data_images``, by device name) and
        wait until it is RUNNING."""
        resource = shape_resource(name, shape, labels=labels, boot_image=boot_image, data_images=data_images or {},
                                  startup_metadata=startup_metadata or {})  # fmt: skip
        request = compute_v1.InsertInstanceRequest(
            project=self.project, zone=shape.zone, instance_resource=resource, request_id=request_id or new_request_id()
        )
        return self._started(self._call(self.instances.insert, request=request), shape.zone, on_started,
                             then=lambda: self._created(shape.zone, name))

    def _created(self, zone: str, name: str) -> InstanceInfo:
        info = self.get_instance(zone, name)
        if info is None:
            raise GceError(f"GCP reported {name} created, but it is not there")
        return info

    # ---- disks -------------------------------------------------------------------

    def disk_exists(self, zone: str, name: str) -> bool:
        try:
            self._call(self.disks.get, project=self.project, zone=zone, disk=name)
        except GceNotFound:
            return False
        return True

    def delete_disk(
        self, zone: str, name: str, *, request_id: str | None = None, on_started: OperationStarted | None = None
    ) -> Started[None]:
        request = compute_v1.DeleteDiskRequest(
            project=self.project, zone=zone, disk=name, request_id=request_id or new_request_id()
        )
        return self._started(self._call(self.disks.delete, request=request), zone, on_started)

    def _disk_shape(self, attached: compute_v1.AttachedDisk) -> DiskShape:
        common = {"device_name": attached.device_name, "mode": attached.mode or "READ_WRITE", "boot": attached.boot,
                  "auto_delete": attached.auto_delete, "interface": attached.interface or "SCSI"}  # fmt: skip
        if attached.type_ == "SCRATCH" or not attached.source:
            return DiskShape(name=attached.device_name, kind="SCRATCH", disk_type="local-ssd",
                             size_gb=attached.disk_size_gb or 375, users=1, **common)  # fmt: skip
        zone, disk_name = _zone_of(attached.source), _short(attached.source)
        disk = self._call(self.disks.get, project=self.project, zone=zone, disk=disk_name)
        return DiskShape(name=disk.name, disk_type=_short(disk.type_), size_gb=disk.size_gb or None,
                         source=attached.source, users=max(1, len(disk.users)), **common)  # fmt: skip

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
    ) -> Started[ImageInfo]:
        """Image a (stopped) VM's boot disk into ``family`` and wait until the image is READY."""
        image = compute_v1.Image(name=name, family=family, source_disk=source_disk, labels=labels)
        request = compute_v1.InsertImageRequest(
            project=self.project, image_resource=image, request_id=request_id or new_request_id()
        )
        return self._started(self._call(self.images.insert, request=request), None, on_started,
                             then=lambda: self._ready_image(name))

    def _ready_image(self, name: str) -> ImageInfo:
        info = self.get_image(name)
        if info is None or info.status != "READY":
            raise GceError(f"image {name} did not become READY (status {info.status if info else 'missing'})")
        return info

    def delete_image(self, name: str, *, on_started: OperationStarted | None = None) -> Started[None]:
        request = compute_v1.DeleteImageRequest(project=self.project, image=name, request_id=new_request_id())
        return self._started(self._call(self.images.delete, request=request), None, on_started)

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

    def attach(self, operation_name: str, *, zone: str | None) -> Started[None]:
        """A GCP operation started earlier (e.g. before a restart), by its name, to wait on again.

        Waiting raises GceNotFound when GCP no longer knows the operation, and GceError
        when the operation ended with an error, exactly as the original call would have.
        """
        return Started(operation_name, zone, self._wait_until_done, self._ended)

    def list_operations(self, zone: str | None, names: Sequence[str]) -> dict[str, compute_v1.Operation]:
        """The named operations of one zone (or the global ones) as GCP has them now, by name: one list
        call with a filter on their names (how bot.gcp.watcher watches many at once). A name GCP does
        not know is left out."""
        expression = " OR ".join(f'(name = "{name}")' for name in names)
        if zone:
            request = compute_v1.ListZoneOperationsRequest(project=self.project, zone=zone, filter=expression)
            pager = self._call(self.zone_operations.list, request=request)
        else:
            request = compute_v1.ListGlobalOperationsRequest(project=self.project, filter=expression)
            pager = self._call(self.global_operations.list, request=request)
        try:
            return {operation.name: operation for operation in pager}
        except api_exceptions.GoogleAPICallError as exc:  # a later page
            raise _translate(exc) from exc

    def _started(
        self, operation: ExtendedOperation, zone: str | None, on_started: OperationStarted | None,
        then: Callable[[], _T] = lambda: None,  # type: ignore[assignment, return-value]
    ) -> Started[_T]:  # fmt: skip
        """A mutation GCP accepted: its operation's name goes to ``on_started`` (the step's record) first."""
        if on_started:
            on_started(operation.name)
        return Started(operation.name, zone, self._wait_until_done, lambda done: self._ended(done, then))

    @staticmethod
    def _ended(operation: compute_v1.Operation, then: Callable[[], _T] = lambda: None) -> _T:  # type: ignore[assignment, return-value]
        """What a DONE operation means: GceError with GCP's message if it failed, else ``then()``."""
        errors = list(operation.error.errors) if operation.error else []
        if errors:
            message = "; ".join(error.message or error.code for error in errors)
            raise GceError(message, status=operation.http_error_status_code or None, reason=errors[0].code)
        return then()

    def _wait_until_done(self, name: str, zone: str | None) -> compute_v1.Operation:
        """Block this thread on GCP's ``wait`` (it returns when DONE or after about two minutes) until DONE."""
        deadline = time.monotonic() + self.operation_timeout
        operation = self._poll(name, zone, wait=True)
        while operation.status != DONE:
            if time.monotonic() > deadline:
                raise GceTimeout(f"GCP operation {name} did not finish within {self.operation_timeout:g} s", operation=name)
            operation = self._poll(name, zone, wait=True)
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


def _tune_session(client: object, connections: int, url: str) -> None:
    """Set the REST transport's session (an AuthorizedSession, a requests.Session) up once, not on every call.

    * Its pool keeps ``connections`` connections (requests keeps 10; past them urllib3 opens and discards
      one per call).
    * The environment's proxies (``HTTPS_PROXY``, ``NO_PROXY``) and CA bundle (``REQUESTS_CA_BUNDLE``,
      ``CURL_CA_BUNDLE``) are read here, once: with ``trust_env`` requests reads them on every request,
      scanning the whole environment twice per call, which was about a twentieth of a park's CPU.

    The transport offers no option for either, hence the private attribute; a transport without a
    session is left as it is."""
    session = getattr(getattr(client, "_transport", None), "_session", None)
    if not isinstance(session, requests.Session):
        return
    if connections > 10:
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=connections)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
    session.proxies.update(requests.utils.get_environ_proxies(url))
    session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or session.verify
    session.trust_env = False


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


def shape_resource(
    name: str, shape: VmShape, *, labels: dict[str, str], boot_image: str, data_images: dict[str, str],
    startup_metadata: dict[str, str],
) -> compute_v1.Instance:  # fmt: skip
    """The insert body that recreates ``shape``: each disk from its image under its own name and device
    name; its own labels and metadata with vmbot's added; a static external IP asked for again by address."""
    zone = shape.zone
    boot = shape.boot_disk
    disks = [_attached(zone, boot, boot_image, labels, boot=True)]
    disks += [_attached(zone, disk, data_images[disk.device_name], labels) for disk in shape.data_disks]
    items = [compute_v1.Items(key=key, value=value) for key, value in startup_metadata.items()]
    items += [compute_v1.Items(key=key, value=value) for key, value in shape.metadata.items()]
    access = []
    if shape.external_access != "none":
        access = [compute_v1.AccessConfig(
            name="External NAT", type_="ONE_TO_ONE_NAT",
            **({"nat_i_p": shape.external_ip} if shape.external_access == "static" and shape.external_ip else {}),
            **({"network_tier": shape.network_tier} if shape.network_tier else {}),
        )]  # fmt: skip
    nic = compute_v1.NetworkInterface(network=f"global/networks/{shape.network}", access_configs=access)
    if shape.subnetwork:
        nic.subnetwork = f"regions/{zone.rsplit('-', 1)[0]}/subnetworks/{shape.subnetwork}"
    instance = compute_v1.Instance(
        name=name,
        machine_type=f"zones/{zone}/machineTypes/{shape.machine_type}",
        labels={**shape.labels, **labels},
        metadata=compute_v1.Metadata(items=items),
        disks=disks,
        network_interfaces=[nic],
    )
    if shape.network_tags:
        instance.tags = compute_v1.Tags(items=list(shape.network_tags))
    if shape.service_account:
        instance.service_accounts = [compute_v1.ServiceAccount(email=shape.service_account, scopes=list(shape.scopes))]
    scheduling = _scheduling(shape)
    if scheduling is not None:
        instance.scheduling = scheduling
    if shape.accelerators:
        instance.guest_accelerators = [
            compute_v1.AcceleratorConfig(accelerator_type=f"zones/{zone}/acceleratorTypes/{kind}", accelerator_count=count)
            for kind, count in shape.accelerators
        ]
    if shape.min_cpu_platform:
        instance.min_cpu_platform = shape.min_cpu_platform
    shielded = {key: value for key, value in (("enable_secure_boot", shape.secure_boot), ("enable_vtpm", shape.vtpm),
                ("enable_integrity_monitoring", shape.integrity_monitoring)) if value is not None}  # fmt: skip
    if shielded:
        instance.shielded_instance_config = compute_v1.ShieldedInstanceConfig(**shielded)
    if shape.deletion_protection:
        instance.deletion_protection = True
    if shape.can_ip_forward:
        instance.can_ip_forward = True
    return instance


def _attached(zone: str, disk: DiskShape | None, image: str, labels: dict[str, str], *, boot: bool = False) -> compute_v1.AttachedDisk:
    params = compute_v1.AttachedDiskInitializeParams(source_image=image, labels=labels)
    if disk is None:  # a create that asks nothing of its boot disk: GCP's defaults, as ever
        return compute_v1.AttachedDisk(boot=True, auto_delete=True, initialize_params=params)
    if disk.disk_type:
        params.disk_type = f"zones/{zone}/diskTypes/{disk.disk_type}"
    if disk.size_gb:
        params.disk_size_gb = disk.size_gb
    restoring = bool(disk.name and disk.device_name)
    if restoring:  # the same disk name as before (set before params is copied into the AttachedDisk)
        params.disk_name = disk.name
    attached = compute_v1.AttachedDisk(boot=boot, auto_delete=disk.auto_delete, initialize_params=params)
    if restoring:  # and the same device name, mode and interface
        attached.device_name = disk.device_name
        attached.mode = disk.mode
        attached.interface = disk.interface
    return attached


def _scheduling(shape: VmShape) -> compute_v1.Scheduling | None:
    values: dict[str, object] = {}
    if shape.preemptible:
        values["preemptible"] = True
    if shape.provisioning_model:
        values["provisioning_model"] = shape.provisioning_model
    if shape.on_host_maintenance:
        values["on_host_maintenance"] = shape.on_host_maintenance
    if shape.automatic_restart is not None:
        values["automatic_restart"] = shape.automatic_restart
    if shape.instance_termination_action:
        values["instance_termination_action"] = shape.instance_termination_action
    return compute_v1.Scheduling(**values) if values else None


def _shape(instance: compute_v1.Instance, disks: list[DiskShape]) -> VmShape:
    nic = instance.network_interfaces[0] if instance.network_interfaces else None
    access = nic.access_configs[0] if nic is not None and nic.access_configs else None
    items = {item.key: item.value for item in instance.metadata.items}
    ours = "vmbot-web-port" in items  # vmbot puts it (and its startup script) on every VM it makes
    metadata = {key: value for key, value in items.items() if not (ours and key in VMBOT_METADATA)}
    account = instance.service_accounts[0] if instance.service_accounts else None
    scheduling = instance.scheduling
    shielded = instance.shielded_instance_config
    boot = next((disk for disk in disks if disk.boot), None)
    return VmShape(
        machine_type=_short(instance.machine_type),
        zone=_short(instance.zone),
        network=_short(nic.network) if nic is not None and nic.network else "default",
        subnetwork=_short(nic.subnetwork) if nic is not None and nic.subnetwork else None,
        network_tags=tuple(instance.tags.items),
        labels={key: value for key, value in instance.labels.items() if key not in VMBOT_LABELS},
        metadata=metadata,
        vmbot_startup_script=ours,
        service_account=account.email if account else None,
        scopes=tuple(account.scopes) if account else (),
        preemptible=scheduling.preemptible,
        provisioning_model=scheduling.provisioning_model or None,
        on_host_maintenance=scheduling.on_host_maintenance or None,
        automatic_restart=scheduling.automatic_restart if "automatic_restart" in scheduling else None,
        instance_termination_action=scheduling.instance_termination_action or None,
        accelerators=tuple((_short(a.accelerator_type), a.accelerator_count) for a in instance.guest_accelerators),
        min_cpu_platform=instance.min_cpu_platform or None,
        secure_boot=shielded.enable_secure_boot if "enable_secure_boot" in shielded else None,
        vtpm=shielded.enable_vtpm if "enable_vtpm" in shielded else None,
        integrity_monitoring=shielded.enable_integrity_monitoring if "enable_integrity_monitoring" in shielded else None,
        deletion_protection=instance.deletion_protection,
        can_ip_forward=instance.can_ip_forward,
        external_ip=(access.nat_i_p or None) if access is not None else None,
        external_access="ephemeral" if access is not None else "none",
        network_tier=(access.network_tier or None) if access is not None else None,
        boot_disk=boot,
        data_disks=tuple(disk for disk in disks if not disk.boot),
    )


def _zone_of(url: str) -> str:
    """"…/zones/us-central1-a/disks/d" -> "us-central1-a"."""
    parts = url.split("/")
    return parts[parts.index("zones") + 1]


def new_request_id() -> str:
    """A fresh ``requestId``: GCP acts once per id, so a retried or resumed mutation never acts twice."""
    return str(uuid.uuid4())


def _label_filter(labels: dict[str, str]) -> str:
    return " AND ".join(f'labels.{key} = "{value}"' for key, value in labels.items())


def _short(url: str) -> str:
    """The last path segment of a resource URL ("zones/us-central1-a/machineTypes/e2-small" -> "e2-small")."""
    return url.rsplit("/", 1)[-1]


def _instance_info(instance: compute_v1.Instance, *, keep: bool = False) -> InstanceInfo:
    """``keep``: hold on to GCP's answer for ``Compute.shape_of`` (not for a list's, which would keep its page)."""
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
        resource=instance if keep else None,
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
