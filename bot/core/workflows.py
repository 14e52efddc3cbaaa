"""Create, park, restore and delete: the plain-Python heart of vmbot.

Each workflow walks its steps over the GCP adapter (bot.gcp.compute) and the store, and
tells a Progress what happens. It knows nothing of Slack, so a test can drive
it directly. Every step is recorded before its GCP call starts, with the
``requestId`` it will send and then the name of the GCP operation that carries
it, and every failure leaves a record that says what state the VM is in.

The workflows are resumable: ``run`` on an operation that a dead process left
half-done looks at what GCP has now and what the steps recorded, skips what is
done (a TERMINATED VM is not stopped again, a READY image is recorded rather
than made again, a VM already gone is a finished delete), re-attaches to a GCP
operation still running by its name, and otherwise repeats the call with the
recorded ``requestId`` so GCP acts at most once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TypeVar

from bot import logs
from bot.core.errors import Reason, Refused, UserError
from bot.gcp.compute import (
    MANAGED_LABEL,
    Compute,
    GceAlreadyExists,
    GceError,
    GceNotFound,
    GceTimeout,
    ImageInfo,
    InstanceInfo,
    InstanceSpec,
    OperationStarted,
    new_request_id,
)
from bot.core.lifecycle import check_image_name_free
from bot.core.progress import Progress, duration
from bot.observability.metrics import Metrics
from bot.settings import Settings
from storage.models import Image, ImageState, Operation, OperationState, OperationStep, Verb, VmState
from storage.store import Lease, LeaseLost, Store

log = logging.getLogger(__name__)
_T = TypeVar("_T")


class StepFailed(Exception):
    """A step's GCP call failed; ``what`` names the step in words, ``gcp`` is GCP's message."""

    def __init__(self, what: str, error: GceError) -> None:
        super().__init__(f"{what}: {error.message}")
        self.what, self.gcp, self.permanent = what, error.message, error.permanent


@dataclass(frozen=True)
class StepRun:
    """A step as this run carries it: new, or begun by a run that died (``gcp_operation`` then
    names the GCP operation to re-attach to, if GCP had accepted the call)."""

    id: int
    request_id: str
    gcp_operation: str | None
    on_started: OperationStarted


@dataclass
class Outcome:
    ok: bool
    headline: str  # the thread root's final line
    detail: str  # the thread's last reply
    vm_values: dict[str, Any] = field(default_factory=dict)
    retry: bool = True  # whether trying again may help (False: GCP refused the request as invalid)


def labels_for(vm_name: str) -> dict[str, str]:
    return {**MANAGED_LABEL, "vmbot-vm": vm_name}


def image_name_for(vm_name: str, when: datetime, op_id: int) -> str:
    """``NAME-YYYYMMDD-HHMM-OPID``: readable, unique by the operation id, within GCP's 63 characters."""
    suffix = when.strftime("-%Y%m%d-%H%M") + f"-{op_id}"
    return vm_name[: 63 - len(suffix)].rstrip("-") + suffix


def web_url(ip: str | None, port: int) -> str:
    return f"http://{ip}:{port}/" if ip else "(no external IP)"


class Completions:
    """Wakes whoever waits for an operation when its workflow has ended, so waiting never polls the store.

    ``watch`` hands out the operation's Event *before* the waiter reads the store,
    and ``finished`` fires after the outcome is written: a waiter either reads the
    final state or is woken, never neither.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[int, threading.Event] = {}
        self._watchers: dict[int, int] = {}

    @contextmanager
    def watch(self, op_id: int) -> Iterator[threading.Event]:
        with self._lock:
            event = self._events.setdefault(op_id, threading.Event())
            self._watchers[op_id] = self._watchers.get(op_id, 0) + 1
        try:
            yield event
        finally:
            with self._lock:
                self._watchers[op_id] -= 1
                if not self._watchers[op_id]:
                    del self._watchers[op_id]
                    if self._events.get(op_id) is event:
                        del self._events[op_id]

    def finished(self, op_id: int) -> None:
        with self._lock:
            event = self._events.pop(op_id, None)
        if event is not None:
            event.set()


class Workflows:
    def __init__(
        self,
        store: Store,
        compute: Compute,
        settings: Settings,
        progress_for: Callable[[Operation], Progress],
        words: Callable[[UserError], str] = str,
    ) -> None:
        """``words`` says a refusal the way the operation's record keeps it (the app passes Slack's renderer)."""
        self.store, self.compute, self.settings = store, compute, settings
        self.progress_for, self.words = progress_for, words
        self.startup_script = settings.startup_script.read_text()
        self.completions = Completions()
        self.metrics = Metrics()  # create_app gives it the app's (bot.observability.wiring)
        self._in_flight: set[int] = set()  # operations this process is running now
        self._lock = threading.Lock()

    def in_flight(self) -> set[int]:
        with self._lock:
            return set(self._in_flight)

    def run(self, op_id: int) -> None:
        """Run a recorded operation to its end, or on from where a dead run left it; never raises.

        The lease in the store (``claim_operation``) makes sure one process runs it;
        ``_in_flight`` makes sure one thread of this process does. Whoever waits for
        it (the HTTP API's ``?wait=``) is woken once the store holds the outcome.
        """
        with self._lock:
            if op_id in self._in_flight:
                return
            self._in_flight.add(op_id)
        try:
            op = self.store.claim_operation(op_id)
            if op is None:
                log.info("operation %s is finished or held by another bot process; not running it here", op_id)
                return
            try:
                with logs.context(operation_id=op.id, vm=op.vm_name, slack_user=op.requested_by):
                    self.metrics.operation_started(op.verb.value)
                    how = "resumed" if op.state is OperationState.RUNNING else "started"
                    log.info("%s of %s %s", op.verb.value, op.vm_name, how)
                    try:
                        with self.store.fenced_by(Lease(op.id, self.store.owner, op.lease_token)):
                            self._run(op)
                    except LeaseLost:
                        log.warning("%s of %s was taken over by another bot process (or handed over); "
                                    "stopping here", op.verb.value, op.vm_name)  # fmt: skip
                        return
                    ended = self.store.operation(op_id)
                    state = ended.state if ended else None
                    level = logging.INFO if state is OperationState.SUCCEEDED else logging.WARNING
                    log.log(level, "%s of %s ended: %s", op.verb.value, op.vm_name, state.value if state else "unknown")
                    self.metrics.operation_ended(op.verb.value, state.value if state else "unknown", _took(ended))
            finally:
                self.completions.finished(op_id)
        finally:
            with self._lock:
                self._in_flight.discard(op_id)

    def _run(self, op: Operation) -> None:
        op_id = op.id
        resumed = op.state is OperationState.RUNNING
        progress: Progress = _Resumed(self.progress_for(op), op) if resumed else self.progress_for(op)
        if resumed:
            log.info("resuming operation %s (%s %s) at step %s", op_id, op.verb.value, op.vm_name, op.step or "-")
        self.store.mark_running(op_id)
        began = time.monotonic() - _elapsed_since(op.started_at if resumed else None)
        workflows = {Verb.CREATE: self.create, Verb.PARK: self.park, Verb.RESTORE: self.restore, Verb.DELETE: self.delete}
        workflow = workflows[op.verb]
        try:
            outcome = workflow(op, progress)
        except LeaseLost:
            raise  # another process has it: this one says and writes nothing more
        except GceTimeout as timeout:
            self._outcome_unknown(op, progress, timeout)
            return
        except Refused as refusal:
            vm_values = {"state": VmState.DELETED} if op.verb is Verb.CREATE else {}
            self.store.finish(op_id, OperationState.REJECTED, error=self.words(refusal), vm_values=vm_values)
            progress.refused(refusal)
            return
        except GceError as error:  # a check of GCP outside any step (before the first, or between two)
            outcome = self._check_failed(op, error)
            progress.started("stopped before its first step")  # so the failure has a thread to go in (once)
            self._end(op_id, progress, outcome, began)
            return
        except Exception:
            log.exception("operation %s (%s %s) failed unexpectedly", op_id, op.verb.value, op.vm_name)
            message = f"Something went wrong on my side (operation #{op_id}); the details are in the bot's log."
            progress.started("stopped by an error")
            self._end(op_id, progress, Outcome(False, message, message), began, error="internal error; see the bot's log")
            return
        self._end(op_id, progress, outcome, began)

    def _end(self, op_id: int, progress: Progress, outcome: Outcome, began: float, *, error: str | None = None) -> None:
        """Record the outcome with what the thread's end will say, then say it.

        The Progress records that it was said (``store.reported``) once it was:
        a result Slack has not taken yet (an outage, a process that stops first)
        is left for ``report_again``, so no thread misses its result.
        """
        self.store.finish(
            op_id,
            OperationState.SUCCEEDED if outcome.ok else OperationState.FAILED,
            result=outcome.headline if outcome.ok else None,
            error=None if outcome.ok else (error or outcome.detail),
            vm_values=outcome.vm_values,
            report={"ok": outcome.ok, "headline": outcome.headline, "detail": outcome.detail, "retry": outcome.retry},
        )
        progress.finished(ok=outcome.ok, headline=outcome.headline, detail=outcome.detail,
                          took=time.monotonic() - began, retry=outcome.retry)  # fmt: skip

    def _outcome_unknown(self, op: Operation, progress: Progress, timeout: GceTimeout) -> None:
        """A GCP operation outlasted ``operation_timeout``: nothing is known yet, so nothing is recorded as
        done or failed. The step stays unfinished with the GCP operation's name, and the operation is let go
        (``Store.let_go``): the resumer runs it again, which waits for that GCP operation by its name and
        goes on from what GCP says."""
        log.warning("operation %s: %s; its outcome is unknown, it will be checked again", op.id, timeout.message)
        self.store.let_go(op.id)
        progress.step(
            f":hourglass: GCP has not finished `{timeout.operation}` yet, so its outcome is unknown for now; "
            "I will keep checking GCP and say here how it ends."
        )

    def report_again(self, op_id: int) -> None:
        """Post the result of an ended operation whose thread does not have it yet (its process
        stopped before Slack took it), starting the thread if Slack never took its root.

        The Resumer calls it; ``claim_report`` leases the report to this process,
        so one process posts it; it is recorded as posted once it is.
        """
        op = self.store.claim_report(op_id)
        if op is None or not op.report:
            return
        log.info("posting the result of operation %s, which ended before a restart", op_id)
        progress = self.progress_for(op)
        vm = self.store.vm(op.vm_name)
        progress.started(f"{vm.machine_type} in {vm.zone}" if vm else "")
        progress.step(":arrows_counterclockwise: Resumed after restart: the work had ended. Its result:")
        took = (op.finished_at - op.started_at).total_seconds() if op.started_at and op.finished_at else 0.0
        report = op.report
        progress.finished(ok=bool(report.get("ok")), headline=str(report.get("headline", "")),
                          detail=str(report.get("detail", "")), took=took, retry=report.get("retry", True) is not False)  # fmt: skip

    # ---- the workflows ---------------------------------------------------------------

    def create(self, op: Operation, progress: Progress) -> Outcome:
        vm = self.store.vm(op.vm_name)
        assert vm is not None, "a create is recorded with its VM"
        name, zone, machine_type = vm.name, vm.zone, vm.machine_type
        if not _began(op, "create") and self.compute.get_instance(zone, name) is not None:
            raise Refused(Reason.VM_EXISTS_IN_GCP, name, verb=op.verb.value, zone=zone, project=self.compute.project)
        image = self.settings.source_image
        if op.params.get("image_family"):  # the create form's optional image family, in the same image project
            image = f"projects/{self.settings.image_project}/global/images/family/{op.params['image_family']}"
        progress.started(f"{machine_type} in {zone}")
        try:
            with self._step(op, progress, "create", f"Creating `{name}` from `{image}`…") as step:
                instance = self._insert(step, self._spec(name, zone, machine_type, image))
        except StepFailed as failure:
            return self._creation_failed(op, failure, zone, leaves_vm="does not exist", vm_state=VmState.DELETED)
        return self._running(name, instance, "created")

    def park(self, op: Operation, progress: Progress) -> Outcome:
        name = op.vm_name
        vm = self.store.vm(name)
        assert vm is not None, "a park is only recorded for a known VM"
        recorded = self.store.image_of_operation(op.id)  # set when a run that died got as far as the image
        instance = self.compute.get_instance(vm.zone, name)
        if recorded is None and not op.params.get("image"):
            recorded = self._image_of_failed_park(op, instance)
        if recorded is None:
            image_name = op.params.get("image") or image_name_for(name, datetime.now(timezone.utc), op.id)
            family = op.params.get("family") or name
            self._check_image_name_free(image_name)
        else:
            image_name, family = recorded.name, recorded.family
        progress.started(f"{vm.machine_type} in {vm.zone}")
        if instance is None and recorded is None:
            return Outcome(
                False,
                f"`{name}` could not be parked: it is not in GCP",
                f"I found no instance `{name}` in {vm.zone}: it was deleted outside vmbot, so there was nothing to "
                "image. Its record is unchanged; `/vm status " + name + "` shows what I know.",
            )
        try:
            # Past the stop once the image is recorded: a resumed park must not stop a VM it is deleting.
            if instance is not None and instance.status != "TERMINATED" and recorded is None:
                with self._step(op, progress, "stop", f"Stopping `{name}`…") as step:
                    self._mutate(step, vm.zone, lambda rid, cb: self.compute.stop_instance(
                        vm.zone, name, request_id=rid, on_started=cb))  # fmt: skip
            else:
                self._settle(op, "stop")
        except StepFailed as failure:
            return self._park_failed(name, failure, "is still running; nothing was changed", VmState.RUNNING)
        self.store.update_vm(name, state=VmState.STOPPED, external_ip=None)

        if recorded is None:
            self.store.add_image(name, image_name, family, op_id=op.id)
        try:
            image = self._image(op, progress, name, image_name, family, instance)
        except StepFailed as failure:
            self._drop_failed_image(image_name)
            if instance is None:  # the VM vanished mid-park (deleted outside vmbot) and left no image
                gone = "no longer exists in GCP and no image was kept"
                return self._park_failed(name, failure, gone, VmState.DELETED)
            return self._park_failed(name, failure, "is stopped and still exists; no image was kept", VmState.STOPPED)
        dirty = self.store.image_ready(
            image_name, disk_size_gb=image.disk_size_gb, archive_size_bytes=image.archive_size_bytes
        )

        try:
            text = f"Image ready. Deleting the VM `{name}`…"
            self._delete_instance(op, progress, vm.zone, name, text, exists=instance is not None)
        except StepFailed as failure:
            return self._park_failed(
                name, failure, f"is stopped and still exists; its image `{image_name}` is safe", VmState.STOPPED
            )
        # Say "only" only when it is true: a previous image is dirty, but there until the sweeper deletes it.
        several = len(dirty) != 1
        kept = (
            f"image `{image_name}` (family `{family}`) holds its disk. The previous image{'s' if several else ''} "
            f"{', '.join(f'`{d}`' for d in dirty)} {'are' if several else 'is'} now dirty and will be swept."
            if dirty else f"only image `{image_name}` (family `{family}`) remains."
        )
        return Outcome(
            True,
            f"`{name}` is parked as image `{image_name}`",
            f"`{name}` is parked: {kept} Bring it back with `/vm restore {name}`.",
            {"state": VmState.PARKED, "external_ip": None},
        )

    def restore(self, op: Operation, progress: Progress) -> Outcome:
        name = op.vm_name
        vm = self.store.vm(name)
        assert vm is not None, "a restore is only recorded for a known VM"
        image = self.store.newest_image(name)
        if image is None:
            raise Refused(Reason.NO_READY_IMAGE, name)
        if not _began(op, "create") and self.compute.get_instance(vm.zone, name) is not None:
            raise Refused(Reason.VM_EXISTS_IN_GCP, name, verb=op.verb.value, zone=vm.zone, project=self.compute.project)
        progress.started(f"from image `{image.name}` · {vm.machine_type} in {vm.zone}")
        source = f"projects/{self.compute.project}/global/images/{image.name}"
        try:
            with self._step(op, progress, "create", f"Creating `{name}` from image `{image.name}`…") as step:
                instance = self._insert(step, self._spec(name, vm.zone, vm.machine_type, source))
        except StepFailed as failure:
            return self._creation_failed(op, failure, vm.zone, leaves_vm="is still parked", vm_state=VmState.PARKED)
        return self._running(name, instance, "restored")

    def delete(self, op: Operation, progress: Progress) -> Outcome:
        """Delete the instance (its boot disk goes with it), then mark the VM's images dirty for the sweeper.

        A parked VM has no instance: only its images are let go. The images are
        not deleted here: the sweeper deletes them after the grace period, as it
        does every image nobody needs, with all its checks.
        """
        name = op.vm_name
        vm = self.store.vm(name)
        assert vm is not None, "a delete is only recorded for a known VM"
        parked = vm.state is VmState.PARKED
        progress.started("parked: only its images remain" if parked else f"{vm.machine_type} in {vm.zone}")
        instance = None if parked else self.compute.get_instance(vm.zone, name)
        try:
            text = f"Deleting the VM `{name}` and its boot disk…"
            self._delete_instance(op, progress, vm.zone, name, text, exists=instance is not None)
        except StepFailed as failure:
            return Outcome(
                False,
                f"Deleting `{name}` failed while {failure.what}",
                f"Deleting `{name}` failed while {failure.what}. GCP said: _{failure.gcp}_. `{name}` still exists "
                f"and nothing else was changed." + ("" if failure.permanent else f" `/vm delete {name}` tries again."),
                retry=not failure.permanent,
            )
        dirty = self.store.mark_images_dirty(name)
        grace = self.settings.sweep_grace
        several = len(dirty) != 1
        when = f"after {'their' if several else 'its'} grace period ({duration(grace)})" if grace else "at the next sweep"
        images = (
            f" Its image{'s' if several else ''} {', '.join(f'`{d}`' for d in dirty)} "
            f"{'are' if several else 'is'} dirty now: the sweeper deletes {'them' if several else 'it'} {when}."
            if dirty else ""
        )
        gone = "was parked; I no longer keep it" if parked else "and its boot disk are deleted"
        return Outcome(
            True,
            f"`{name}` is deleted",
            f"`{name}` {gone}.{images} The name `{name}` is free for `/vm create` again.",
            {"state": VmState.DELETED, "external_ip": None},
        )

    # ---- resumable steps -------------------------------------------------------------------

    def _check_image_name_free(self, image_name: str) -> None:
        """Refuse, before the VM is touched, an image name already taken in the store or in GCP."""
        check_image_name_free(self.store, image_name)
        if self.compute.get_image(image_name) is not None:
            raise Refused(Reason.IMAGE_EXISTS, image=image_name, project=self.compute.project)

    def _image_of_failed_park(self, op: Operation, instance: InstanceInfo | None) -> Image | None:
        """The READY image of the park just before this one, if that park failed only at deleting the VM
        and the VM has stayed stopped since: a retry deletes the VM and keeps that image rather than
        making a second one (and marking the first dirty)."""
        if instance is None or instance.status != "TERMINATED":
            return None
        earlier = [prior for prior in self.store.operations_for(op.vm_name, limit=5) if prior.id < op.id]
        if not earlier or earlier[0].verb is not Verb.PARK or earlier[0].state is not OperationState.FAILED:
            return None
        image = self.store.image_of_operation(earlier[0].id)
        return image if image is not None and image.state is ImageState.READY else None

    @contextmanager
    def _step(self, op: Operation, progress: Progress, name: str, text: str) -> Iterator[StepRun]:
        """Record a step (or pick up the one a dead run began) and report it; turn a GCP
        failure into StepFailed naming the step."""
        earlier = _unfinished(op, name)
        if earlier is not None:
            step_id, request_id = earlier.id, earlier.request_id or new_request_id()
            self.store.step_resumed(step_id)
        else:
            request_id = new_request_id()
            step_id = self.store.step_started(op.id, name, request_id=request_id)
        progress.step(text)
        step = StepRun(
            step_id,
            request_id,
            earlier.gcp_operation if earlier is not None else None,
            lambda gcp_operation: self.store.step_gcp_operation(step_id, gcp_operation),
        )
        try:
            yield step
        except GceTimeout:
            raise  # not a failure: the step stays unfinished, with its GCP operation, for the next run
        except GceError as error:
            self.store.step_finished(step_id, error=error.message)
            raise StepFailed(STEP_WORDS[name], error) from error
        self.store.step_finished(step_id)

    def _settle(self, op: Operation, name: str) -> None:
        """A step found done in GCP (by a run that died before recording it) is recorded as done."""
        earlier = _unfinished(op, name)
        if earlier is not None:
            self.store.step_finished(earlier.id)

    def _mutate(self, step: StepRun, zone: str | None, start: Callable[[str, OperationStarted], _T]) -> _T | None:
        """Re-attach to the GCP operation a dead run started, else start it with the step's requestId.

        Returns what ``start`` returned, or None after re-attaching.
        """
        if step.gcp_operation:
            try:
                self.compute.wait_for(step.gcp_operation, zone=zone)
                return None
            except GceNotFound:  # GCP has forgotten the operation; the same requestId is still safe to send
                log.info("GCP operation %s is gone; repeating its request %s", step.gcp_operation, step.request_id)
        return start(step.request_id, step.on_started)

    def _delete_instance(self, op: Operation, progress: Progress, zone: str, name: str, text: str, *, exists: bool) -> None:
        """The delete step of a park or a delete. An instance GCP no longer has (parked, or deleted by a
        run that died) is a finished delete; StepFailed if GCP refuses."""
        if not exists:
            self._settle(op, "delete")
            return
        with self._step(op, progress, "delete", text) as step:
            try:
                self._mutate(step, zone, lambda rid, cb: self.compute.delete_instance(
                    zone, name, request_id=rid, on_started=cb))  # fmt: skip
            except GceNotFound:
                pass  # already gone: the delete a dead run started has finished

    def _insert(self, step: StepRun, spec: InstanceSpec) -> InstanceInfo:
        """The create step of a create or restore: insert (or re-attach), then read the instance back."""
        try:
            instance = self._mutate(
                step, spec.zone, lambda rid, cb: self.compute.create_instance(spec, request_id=rid, on_started=cb)
            )
        except GceAlreadyExists:
            instance = None  # ours, made by the dead run (its requestId had expired in GCP); checked below
        if instance is None:
            instance = self.compute.get_instance(spec.zone, spec.name)
            if instance is None or instance.labels.get("vmbot-vm") != spec.name:
                raise GceError(f"GCP reported {spec.name} created, but it is not there")
        return instance

    def _image(
        self, op: Operation, progress: Progress, name: str, image_name: str, family: str, instance: InstanceInfo | None
    ) -> ImageInfo:
        """The image step: record an image GCP already has READY, else make it (or re-attach) and wait."""
        try:
            image = self.compute.get_image(image_name)
        except GceError as error:
            raise StepFailed(STEP_WORDS["image"], error) from error
        if image is not None and image.status == "READY":
            self._settle(op, "image")
            return image
        text = f"Imaging its boot disk into `{image_name}` (family `{family}`)…"
        with self._step(op, progress, "image", text) as step:
            if image is None and instance is None:
                raise GceError(f"the instance `{name}` is gone, so there is no boot disk to image")
            made = self._mutate(
                step,
                None,
                lambda rid, cb: self.compute.create_image(
                    image_name,
                    family=family,
                    source_disk=(instance.boot_disk if instance else None) or "",
                    labels=labels_for(name),
                    request_id=rid,
                    on_started=cb,
                ),
            )
            image = made or self.compute.get_image(image_name)
            if image is None or image.status != "READY":
                status = image.status if image else "missing"
                raise GceError(f"image {image_name} did not become READY (status {status})")
        return image

    def _drop_failed_image(self, image_name: str) -> None:
        """A failed image must not linger in GCP unrecorded: mark it failed, and delete what GCP kept."""
        self.store.image_failed(image_name)
        try:
            if self.compute.get_image(image_name) is not None:
                self.compute.delete_image(image_name)
        except GceError as error:
            log.error("could not delete the failed image %s: %s (reconcile will report it)", image_name, error.message)

    # ---- shared pieces -------------------------------------------------------------------

    def _spec(self, name: str, zone: str, machine_type: str, source_image: str) -> InstanceSpec:
        return InstanceSpec(
            name=name,
            zone=zone,
            machine_type=machine_type,
            source_image=source_image,
            startup_script=self.startup_script,
            labels=labels_for(name),
            metadata={"vmbot-web-port": str(self.settings.web_port)},
        )

    def _running(self, name: str, instance: InstanceInfo, verb: str) -> Outcome:
        url = web_url(instance.external_ip, self.settings.web_port)
        return Outcome(
            True,
            f"`{name}` is {instance.status} at {instance.external_ip or 'no external IP'}",
            f"`{name}` is {verb}: {instance.status}, external IP {instance.external_ip or 'none'}. "
            f"Its startup script serves {url} once the VM has booted.",
            {"state": VmState.RUNNING, "external_ip": instance.external_ip},
        )

    def _creation_failed(self, op: Operation, failure: StepFailed, zone: str, *, leaves_vm: str, vm_state: VmState) -> Outcome:
        """Remove whatever a failed insert left behind, so no half-created VM lingers."""
        name = op.vm_name
        try:
            if self.compute.get_instance(zone, name) is not None:
                self.compute.delete_instance(zone, name)
        except GceError as error:
            log.error("could not clean up %s after a failed %s: %s", name, op.verb.value, error.message)
            leaves_vm = f"may exist half-made in GCP (cleaning it up failed: {error.message})"
            vm_state = VmState.STOPPED
        return Outcome(
            False,
            f"{op.verb.value.capitalize()} of `{name}` failed while {failure.what}",
            f"{op.verb.value.capitalize()} of `{name}` failed while {failure.what}. GCP said: _{failure.gcp}_. "
            f"`{name}` {leaves_vm}.",
            {"state": vm_state, "external_ip": None},
            retry=not failure.permanent,
        )

    def _check_failed(self, op: Operation, error: GceError) -> Outcome:
        """GCP failed a read the workflow needed; the record keeps the state the last step left."""
        name, verb = op.vm_name, op.verb.value
        vm = self.store.vm(name)
        if op.verb is Verb.CREATE and not _began(op, "create"):
            leaves, values = "was not created", {"state": VmState.DELETED}
        else:
            leaves, values = f"is {vm.state.value if vm else 'unknown'}", {}
        return Outcome(
            False,
            f"{verb.capitalize()} of `{name}` failed while checking GCP",
            f"{verb.capitalize()} of `{name}` failed while checking GCP. "
            f"GCP said: _{error.message}_. `{name}` {leaves}.",
            values,
            retry=not error.permanent,
        )

    @staticmethod
    def _park_failed(name: str, failure: StepFailed, leaves: str, vm_state: VmState) -> Outcome:
        return Outcome(
            False,
            f"Parking `{name}` failed while {failure.what}",
            f"Parking `{name}` failed while {failure.what}. GCP said: _{failure.gcp}_. `{name}` {leaves}."
            + ("" if failure.permanent else f" `/vm park {name}` tries again."),
            {"state": vm_state},
            retry=not failure.permanent,
        )


STEP_WORDS = {
    "create": "creating the instance",
    "stop": "stopping the VM",
    "image": "imaging its boot disk",
    "delete": "deleting the VM",
}


def _unfinished(op: Operation, name: str) -> OperationStep | None:
    """The step called ``name`` that a dead run began and never finished, if any."""
    steps = [step for step in op.steps if step.name == name]
    if steps and steps[-1].state is OperationState.RUNNING:
        return steps[-1]
    return None


def _began(op: Operation, name: str) -> bool:
    return any(step.name == name for step in op.steps)


def _took(op: Operation | None) -> float | None:
    """An ended operation's recorded duration (None when it has no start or end time)."""
    if op is None or op.started_at is None or op.finished_at is None:
        return None
    return (op.finished_at - op.started_at).total_seconds()


def _elapsed_since(when: datetime | None) -> float:
    if when is None:
        return 0.0
    return max(0.0, (datetime.now(timezone.utc) - when).total_seconds())


class _Resumed:
    """Progress for a run that carries on a dead run's operation: the thread (if the dead run had
    started one) is not started again, and it says first that the work resumed after a restart."""

    def __init__(self, progress: Progress, op: Operation) -> None:
        self.progress, self.op = progress, op
        self.said = False

    def started(self, detail: str) -> None:
        self.progress.started(detail)  # posts the thread root only if the dead run had not
        if self.said:
            return
        self.said = True
        where = STEP_WORDS.get(self.op.step or "", "the beginning")
        self.progress.step(f":arrows_counterclockwise: Resumed after restart: carrying on from {where}.")

    def step(self, text: str) -> None:
        self.progress.step(text)

    def finished(self, *, ok: bool, headline: str, detail: str, took: float, retry: bool = True) -> None:
        self.progress.finished(ok=ok, headline=headline, detail=detail, took=took, retry=retry)

    def refused(self, refusal: UserError) -> None:
        self.progress.refused(refusal)
