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
from dataclasses import dataclass, field, replace
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
    Started,
    Steps,
    new_request_id,
    run_to_end,
)
from bot.core.shapes import check_parkable, create_shape, not_kept
from bot.gcp.shape import VmShape
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
        self.what, self.gcp, self.status, self.permanent = what, error.message, error.status, error.permanent


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
        """Run a recorded operation to its end on this thread, waiting on GCP here (``steps`` says the rest).

        Submitted to the job runner, it is recognised (bot.app.operation_job) and driven as ``steps(op_id)``
        instead, holding no thread while it waits on GCP."""
        run_to_end(self.steps(op_id))

    def steps(self, op_id: int) -> Steps[None]:
        """Run a recorded operation to its end, or on from where a dead run left it; never raises.

        A generator: it yields each GCP operation it waits on (bot.gcp.compute.Started) and is sent
        what that operation returned, or has its GceError thrown in where it waited. ``run`` drives it
        on one thread; the job runner drives it with bot.gcp.watcher, holding no thread while it waits.

        The lease in the store (``claim_operation``) makes sure one process runs it;
        ``_in_flight`` makes sure one generator of this process does. Whoever waits for
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
                            yield from self._run(op)
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

    def _run(self, op: Operation) -> Steps[None]:
        op_id = op.id
        resumed = op.state is OperationState.RUNNING
        progress: Progress = _Resumed(self.progress_for(op), op) if resumed else self.progress_for(op)
        if resumed:
            log.info("resuming operation %s (%s %s) at step %s", op_id, op.verb.value, op.vm_name, op.step or "-")
        self.store.mark_running(op_id)
        began = time.monotonic() - _elapsed_since(op.started_at if resumed else None)
        workflows = {Verb.CREATE: self.create, Verb.PARK: self.park, Verb.RESTORE: self.restore,
                     Verb.DELETE: self.delete, Verb.STOP: self.stop, Verb.START: self.start,
                     Verb.SUSPEND: self.suspend, Verb.RESUME: self.resume, Verb.ADOPT: self.adopt}  # fmt: skip
        workflow = workflows[op.verb]
        try:
            outcome = yield from workflow(op, progress)
        except LeaseLost:
            raise  # another process has it: this one says and writes nothing more
        except GceTimeout as timeout:
            self._outcome_unknown(op, progress, timeout)
            return
        except Refused as refusal:
            vm_values = {"state": VmState.DELETED} if op.verb in (Verb.CREATE, Verb.ADOPT) else {}
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

    def create(self, op: Operation, progress: Progress) -> Steps[Outcome]:
        vm = self.store.vm(op.vm_name)
        assert vm is not None, "a create is recorded with its VM"
        name, zone, machine_type = vm.name, vm.zone, vm.machine_type
        if not _began(op, "create") and self.compute.get_instance(zone, name) is not None:
            raise Refused(Reason.VM_EXISTS_IN_GCP, name, verb=op.verb.value, zone=zone, project=self.compute.project)
        # Options of /vm create (and the create form's image family): a shape; images come from the configured
        # image project unless image-project= names another.
        shape = create_shape(zone, machine_type, op.params, default_image=self.settings.source_image,
                             project=self.settings.image_project)  # fmt: skip
        image = shape.source_image if shape is not None else self.settings.source_image
        progress.started(f"{machine_type} in {zone}")
        try:
            with self._step(op, progress, "create", f"Creating `{name}` from `{image}`…") as step:
                if shape is None:
                    instance = yield from self._insert(step, self._spec(name, zone, machine_type, image))
                else:
                    instance = yield from self._insert_shape(step, name, shape, boot_image=str(image), data_images={})
        except StepFailed as failure:
            return (yield from self._creation_failed(op, failure, zone, leaves_vm="does not exist", vm_state=VmState.DELETED))
        return self._running(name, instance, "created")

    def park(self, op: Operation, progress: Progress) -> Steps[Outcome]:
        """Stop the VM, image every disk it has, and only once every image is READY delete the VM and its disks.

        Its shape is read from GCP first and refused (before anything is touched) if a disk cannot be imaged
        or deletion protection is on. Each image and each disk delete is its own recorded step."""
        name = op.vm_name
        vm = self.store.vm(name)
        assert vm is not None, "a park is only recorded for a known VM"
        recorded = self.store.images_of_operation(op.id)  # set when a run that died got as far as the images
        instance = self.compute.get_instance(vm.zone, name)
        if not recorded and not op.params.get("image"):
            recorded = self._images_of_failed_park(op, instance)  # a retry keeps the images its failed park made
        shape = None
        if instance is not None and not recorded:  # read, and refused if need be, before anything is said or done
            try:
                shape = self.compute.shape_of(instance)
            except GceNotFound as gone:  # an attached disk goes only with its VM
                raise GceError(f"the instance `{name}` vanished while I read it") from gone
            check_parkable(name, shape)
        # This run checks the image names free in GCP before the stop, and no run before it began: no image of
        # those names can exist but one this run makes, so it need not look for one first.
        fresh = not recorded and op.state is not OperationState.RUNNING
        progress.started(f"{vm.machine_type} in {vm.zone}")
        if instance is None and not recorded:
            return Outcome(
                False,
                f"`{name}` could not be parked: it is not in GCP",
                f"I found no instance `{name}` in {vm.zone}: it was deleted outside vmbot, so there was nothing to "
                "image. Its record is unchanged; `/vm status " + name + "` shows what I know.",
            )
        if not recorded:
            assert shape is not None
            plan = self._image_plan(op, vm.family, shape)
            for image_name, _family, _device, _disk in plan:
                self._check_image_name_free(image_name)
            self.store.set_shape(name, shape.to_json())
        else:
            shape = VmShape.from_json(vm.shape) if vm.shape else None
            plan = [(image.name, image.family, image.device_name, image.disk_name) for image in recorded]
        try:
            # Past the stop once the images are recorded: a resumed park must not stop a VM it is deleting.
            if instance is not None and instance.status != "TERMINATED" and not recorded:
                with self._step(op, progress, "stop", f"Stopping `{name}`…") as step:
                    yield from self._mutate(step, vm.zone, lambda rid, cb: self.compute.stop_instance(
                        vm.zone, name, request_id=rid, on_started=cb))  # fmt: skip
            else:
                self._settle(op, "stop")
        except StepFailed as failure:
            return self._park_failed(name, failure, "is still running; nothing was changed", VmState.RUNNING)
        self.store.update_vm(name, state=VmState.STOPPED, external_ip=None)

        if not recorded:
            assert instance is not None and shape is not None
            shape = self._note_static_ip(name, shape, instance)
            for image_name, family, device, disk in plan:
                self.store.add_image(name, image_name, family, op_id=op.id, device_name=device, disk_name=disk)
        sources = self._image_sources(shape, instance)
        ready: list[ImageInfo] = []
        for image_name, family, device, _disk in plan:
            try:
                image = yield from self._image(op, progress, name, image_name, family, device, sources.get(device),
                                               fresh=fresh)  # fmt: skip
            except StepFailed as failure:
                yield from self._drop_park_images(op.id)
                if instance is None:  # the VM vanished mid-park (deleted outside vmbot) and left no image
                    gone = "no longer exists in GCP and no image was kept"
                    return self._park_failed(name, failure, gone, VmState.DELETED)
                return self._park_failed(name, failure, "is stopped and still exists; no image was kept", VmState.STOPPED)
            self.store.image_ready(image_name, disk_size_gb=image.disk_size_gb,
                                   archive_size_bytes=image.archive_size_bytes, supersede=False)  # fmt: skip
            ready.append(image)
        dirty = self.store.supersede_images(op.id)
        names = ", ".join(f"`{image.name}`" for image in ready)

        try:
            text = f"{'Images' if len(ready) > 1 else 'Image'} ready. Deleting the VM `{name}`…"
            yield from self._delete_instance(op, progress, vm.zone, name, text, exists=instance is not None)
        except StepFailed as failure:
            return self._park_failed(
                name, failure, f"is stopped and still exists; its images {names} are safe", VmState.STOPPED
            )
        kept = yield from self._delete_disks(op, progress, vm.zone, shape, plan, fresh=fresh)
        # Say "only" only when it is true: a previous image is dirty, but there until the sweeper deletes it.
        several = len(dirty) != 1
        older = (f" The previous image{'s' if several else ''} {', '.join(f'`{d}`' for d in dirty)} "
                 f"{'are' if several else 'is'} now dirty and will be swept." if dirty else "")  # fmt: skip
        boot_name, family = plan[0][0], plan[0][1]
        if kept is not None:
            return Outcome(
                False,
                f"`{name}` is parked, but a disk was left behind",
                f"`{name}` is parked (images {names}), but {kept}.{older}",
                {"state": VmState.PARKED, "external_ip": None},
            )
        data = [f"`{image_name}` (disk `{device}`)" for image_name, _f, device, _d in plan if device]
        only = "" if dirty else "only "
        remains = (f"{only}image `{boot_name}` (family `{family}`) {'holds its disk' if dirty else 'remains'}" if not data
                   else f"{only}its images remain: `{boot_name}` (boot disk, family `{family}`) and {', '.join(data)}")  # fmt: skip
        return Outcome(
            True,
            f"`{name}` is parked as image `{boot_name}`" + (f" (+{len(data)} data disk{'s' if len(data) > 1 else ''})" if data else ""),
            f"`{name}` is parked: {remains}.{older} Bring it back with `/vm restore {name}`.",
            {"state": VmState.PARKED, "external_ip": None},
        )

    def restore(self, op: Operation, progress: Progress) -> Steps[Outcome]:
        name = op.vm_name
        vm = self.store.vm(name)
        assert vm is not None, "a restore is only recorded for a known VM"
        image = self.store.newest_image(name)
        if image is None:
            raise Refused(Reason.NO_READY_IMAGE, name)
        shape = VmShape.from_json(vm.shape) if vm.shape else None
        data_images = self._data_images(name, image.created_by_operation_id, shape)
        if not _began(op, "create") and self.compute.get_instance(vm.zone, name) is not None:
            raise Refused(Reason.VM_EXISTS_IN_GCP, name, verb=op.verb.value, zone=vm.zone, project=self.compute.project)
        machine_type = op.params.get("machine_type") or vm.machine_type
        progress.started(f"from image `{image.name}` · {machine_type} in {vm.zone}")
        source = self._image_url(image.name)
        try:
            with self._step(op, progress, "create", f"Creating `{name}` from image `{image.name}`…") as step:
                if shape is None:  # parked before vmbot kept shapes: what it kept then, zone and machine type
                    instance = yield from self._insert(step, self._spec(name, vm.zone, machine_type, source))
                else:
                    shape = shape.with_machine_type(machine_type)
                    instance = yield from self._insert_shape(step, name, shape, boot_image=source, data_images=data_images)
        except StepFailed as failure:
            return (yield from self._creation_failed(op, failure, vm.zone, leaves_vm="is still parked", vm_state=VmState.PARKED))
        outcome = self._running(name, instance, "restored")
        outcome.vm_values["machine_type"] = machine_type
        if image.disk_name or data_images:  # images that hold a known disk: each made that disk again
            data = [i.name for i in self.store.images_of_operation(image.created_by_operation_id or -1) if i.device_name]
            self.store.disks_restored([image.name, *(data if data_images else [])])
        if shape is not None:
            outcome.detail += not_kept(shape, instance)
            outcome.vm_values["shape"] = replace(shape, external_ip=instance.external_ip).to_json()
        return outcome

    def adopt(self, op: Operation, progress: Progress) -> Steps[Outcome]:
        """Take an instance vmbot did not make under management: label it (keeping its labels) and record its shape.

        Refused, with nothing changed, if GCP has no such instance, if it carries vmbot's label already, if a
        managed instance group owns it, or if GCP answers 403."""
        name = op.vm_name
        vm = self.store.vm(name)
        assert vm is not None, "an adopt is recorded with its VM"
        zone = vm.zone
        try:
            instance = self.compute.get_instance(zone, name)
            shape = self.compute.shape_of(instance) if instance is not None else None
        except GceError as error:
            if error.status == 403:
                raise Refused(Reason.NO_PERMISSION, name, zone=zone, gcp=error.message) from error
            raise
        if instance is None or shape is None:
            raise Refused(Reason.NOT_IN_GCP, name, zone=zone, project=self.compute.project)
        labels, fingerprint = instance.labels, self.compute.label_fingerprint(instance)
        ours = labels_for(name)
        done = _began(op, "label") and all(labels.get(key) == value for key, value in ours.items())
        if not done:
            if labels.get("managed-by") == MANAGED_LABEL["managed-by"]:
                raise Refused(Reason.ALREADY_MANAGED, name, zone=zone)
            if group := shape.metadata.get("created-by"):
                raise Refused(Reason.IN_MANAGED_GROUP, name, group=group)
        progress.started(f"in {zone}")
        if not done:
            try:
                with self._step(op, progress, "label", f"Labelling `{name}` `managed-by=vmbot`, `vmbot-vm={name}`…") as step:
                    yield from self._mutate(step, zone, lambda rid, cb: self.compute.set_labels(
                        zone, name, {**labels, **ours}, fingerprint=fingerprint, request_id=rid, on_started=cb))  # fmt: skip
            except StepFailed as failure:
                if failure.status == 403:
                    raise Refused(Reason.NO_PERMISSION, name, zone=zone, gcp=failure.gcp) from failure
                return Outcome(
                    False,
                    f"Adopting `{name}` failed while {failure.what}",
                    f"Adopting `{name}` failed while {failure.what}. GCP said: _{failure.gcp}_. Its labels are unchanged; "
                    f"`/vm adopt {name}` tries again.",
                    {"state": VmState.DELETED},
                )
        else:
            self._settle(op, "label")
        info = self.compute.get_instance(zone, name)
        running = info is not None and info.status == "RUNNING"
        family = op.params.get("family")
        return Outcome(
            True,
            f"`{name}` is adopted",
            f"`{name}` is mine to manage now ({shape.summary()}). Park it with `/vm park {name}`; its images go into "
            f"family `{family or name}`.",
            {"state": VmState.RUNNING if running else VmState.STOPPED, "external_ip": info.external_ip if info else None,
             "machine_type": shape.machine_type, "shape": shape.to_json(), "family": family,
             "owner": op.params.get("owner") or op.requested_by},  # fmt: skip
        )

    def delete(self, op: Operation, progress: Progress) -> Steps[Outcome]:
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
        kept_disks = self._disks_outliving(instance) if instance is not None else []
        try:
            text = f"Deleting the VM `{name}` and its boot disk…"
            yield from self._delete_instance(op, progress, vm.zone, name, text, exists=instance is not None)
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
        if kept_disks:
            many = len(kept_disks) > 1
            images += (f" Its disk{'s' if many else ''} {', '.join(f'`{d}`' for d in kept_disks)} "
                       f"{'outlive' if many else 'outlives'} the VM in GCP (auto-delete is off): delete "
                       f"{'them' if many else 'it'} there once nobody needs {'them' if many else 'it'}.")  # fmt: skip
        return Outcome(
            True,
            f"`{name}` is deleted",
            f"`{name}` {gone}.{images} The name `{name}` is free for `/vm create` again.",
            {"state": VmState.DELETED, "external_ip": None},
        )

    # ---- the lighter pauses: stop/start and suspend/resume ------------------------------------

    def stop(self, op: Operation, progress: Progress) -> Steps[Outcome]:
        """Stop the VM, keeping its disk (still paid for); ``/vm start`` brings it back."""
        return (yield from self._pause(op, progress, PAUSES[Verb.STOP]))

    def start(self, op: Operation, progress: Progress) -> Steps[Outcome]:
        return (yield from self._pause(op, progress, PAUSES[Verb.START]))

    def suspend(self, op: Operation, progress: Progress) -> Steps[Outcome]:
        """Suspend the VM (memory kept). GCP refuses some machines (GPUs attached): the VM stays running."""
        return (yield from self._pause(op, progress, PAUSES[Verb.SUSPEND]))

    def resume(self, op: Operation, progress: Progress) -> Steps[Outcome]:
        return (yield from self._pause(op, progress, PAUSES[Verb.RESUME]))

    def _pause(self, op: Operation, progress: Progress, pause: Pause) -> Steps[Outcome]:
        """One GCP call and its wait, resumable: a VM GCP already shows in the end status is done."""
        name = op.vm_name
        vm = self.store.vm(name)
        assert vm is not None, f"a {op.verb.value} is only recorded for a known VM"
        progress.started(f"{vm.machine_type} in {vm.zone}")
        instance = self.compute.get_instance(vm.zone, name)
        if instance is None:
            return Outcome(
                False,
                f"`{name}` could not be {pause.past}: it is not in GCP",
                f"I found no instance `{name}` in {vm.zone}: it was deleted outside vmbot. Its record is unchanged; "
                f"`/vm status {name}` shows what I know.",
            )
        if instance.status in pause.done:
            self._settle(op, pause.step)
        else:
            call = getattr(self.compute, f"{pause.step}_instance")
            try:
                with self._step(op, progress, pause.step, f"{pause.doing} `{name}`…") as step:
                    yield from self._mutate(step, vm.zone, lambda rid, cb: call(vm.zone, name, request_id=rid, on_started=cb))
            except StepFailed as failure:
                return Outcome(
                    False,
                    f"{op.verb.value.capitalize()} of `{name}` failed while {failure.what}",
                    f"{op.verb.value.capitalize()} of `{name}` failed while {failure.what}. GCP said: "
                    f"_{failure.gcp}_. `{name}` {pause.unchanged}.",
                    {"state": vm.state},
                )
        if pause.end is VmState.RUNNING:
            live = self.compute.get_instance(vm.zone, name)
            if live is not None:
                return self._running(name, live, pause.past)
        keeps_ip = pause.end is VmState.SUSPENDED
        return Outcome(
            True,
            f"`{name}` is {pause.past}",
            f"`{name}` is {pause.past}: {pause.note} `/vm {pause.back} {name}` brings it back.",
            {"state": pause.end, "external_ip": vm.external_ip if keeps_ip else None},
        )

    def _disks_outliving(self, instance: InstanceInfo) -> list[str]:
        """The persistent disks GCP keeps when the VM is deleted (auto-delete off), so the thread can name them."""
        try:
            shape = self.compute.shape_of(instance)
        except GceNotFound:
            return []  # the VM went since it was read, and its disks with it
        except GceError as error:
            log.warning("could not read the disks of %s before deleting it: %s", instance.name, error.message)
            return []
        disks = (shape.boot_disk, *shape.data_disks)
        return [d.name for d in disks if d is not None and d.kind == "PERSISTENT" and not d.auto_delete]

    # ---- resumable steps -------------------------------------------------------------------

    def _check_image_name_free(self, image_name: str) -> None:
        """Refuse, before the VM is touched, an image name already taken in the store or in GCP."""
        check_image_name_free(self.store, image_name)
        if self.compute.get_image(image_name) is not None:
            raise Refused(Reason.IMAGE_EXISTS, image=image_name, project=self.compute.project)

    def _images_of_failed_park(self, op: Operation, instance: InstanceInfo | None) -> list[Image]:
        """The READY images of the park just before this one, if that park failed only at deleting the VM
        and the VM has stayed stopped since: a retry deletes the VM and keeps those images rather than
        making second ones (and marking the first dirty)."""
        if instance is None or instance.status != "TERMINATED":
            return []
        earlier = [prior for prior in self.store.operations_for(op.vm_name, limit=5) if prior.id < op.id]
        if not earlier or earlier[0].verb is not Verb.PARK or earlier[0].state is not OperationState.FAILED:
            return []
        images = self.store.images_of_operation(earlier[0].id)
        return images if images and all(image.state is ImageState.READY for image in images) else []

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
            raise StepFailed(step_words(name), error) from error
        self.store.step_finished(step_id)

    def _settle(self, op: Operation, name: str) -> None:
        """A step found done in GCP (by a run that died before recording it) is recorded as done."""
        earlier = _unfinished(op, name)
        if earlier is not None:
            self.store.step_finished(earlier.id)

    def _mutate(
        self, step: StepRun, zone: str | None, start: Callable[[str, OperationStarted], Started[_T]]
    ) -> Steps[_T | None]:
        """Re-attach to the GCP operation a dead run started, else start it with the step's requestId;
        either way, wait on it (yield it).

        Returns what the started operation returned, or None after re-attaching.
        """
        if step.gcp_operation:
            try:
                yield self.compute.attach(step.gcp_operation, zone=zone)
                return None
            except GceNotFound:  # GCP has forgotten the operation; the same requestId is still safe to send
                log.info("GCP operation %s is gone; repeating its request %s", step.gcp_operation, step.request_id)
        return (yield start(step.request_id, step.on_started))

    def _delete_instance(
        self, op: Operation, progress: Progress, zone: str, name: str, text: str, *, exists: bool
    ) -> Steps[None]:
        """The delete step of a park or a delete. An instance GCP no longer has (parked, or deleted by a
        run that died) is a finished delete; StepFailed if GCP refuses."""
        if not exists:
            self._settle(op, "delete")
            return
        with self._step(op, progress, "delete", text) as step:
            try:
                yield from self._mutate(step, zone, lambda rid, cb: self.compute.delete_instance(
                    zone, name, request_id=rid, on_started=cb))  # fmt: skip
            except GceNotFound:
                pass  # already gone: the delete a dead run started has finished

    def _insert(self, step: StepRun, spec: InstanceSpec) -> Steps[InstanceInfo]:
        """The create step of a create or restore: insert (or re-attach), then read the instance back."""
        return (yield from self._inserted(step, spec.zone, spec.name, lambda rid, cb: self.compute.create_instance(
            spec, request_id=rid, on_started=cb)))  # fmt: skip

    def _insert_shape(
        self, step: StepRun, name: str, shape: VmShape, *, boot_image: str, data_images: dict[str, str]
    ) -> Steps[InstanceInfo]:
        """The create step when the VM has a shape: the same VM as before, each data disk from its image."""
        startup = {"startup-script": self.startup_script, "vmbot-web-port": str(self.settings.web_port)}
        return (yield from self._inserted(step, shape.zone, name, lambda rid, cb: self.compute.create_instance_from_shape(
            name, shape, labels=labels_for(name), boot_image=boot_image, data_images=data_images,
            startup_metadata=startup if shape.vmbot_startup_script else {}, request_id=rid, on_started=cb)))  # fmt: skip

    def _inserted(
        self, step: StepRun, zone: str, name: str, insert: Callable[[str, OperationStarted], Started[InstanceInfo]]
    ) -> Steps[InstanceInfo]:
        conflict: GceAlreadyExists | None = None
        try:
            instance = yield from self._mutate(step, zone, insert)
        except GceAlreadyExists as exists:
            instance, conflict = None, exists  # ours, made by the dead run (its requestId had expired in GCP)?
        if instance is None:
            instance = self.compute.get_instance(zone, name)
            if instance is None and conflict is not None:
                raise conflict  # not the instance: something it needs is taken (a disk of the same name), as GCP says
            if instance is None or instance.labels.get("vmbot-vm") != name:
                raise GceError(f"GCP reported {name} created, but it is not there")
        return instance

    def _image(
        self, op: Operation, progress: Progress, name: str, image_name: str, family: str, device: str | None,
        source_disk: str | None, *, fresh: bool,
    ) -> Steps[ImageInfo]:  # fmt: skip
        """One image step (the boot disk's is ``image``, a data disk's ``image:DEVICE``): record an image GCP
        already has READY, else make it (or re-attach) and wait. GCP is asked first unless the park is ``fresh``
        (see ``park``) and the step unbegun: a run that died, or a failed park, may have made it or begun it."""
        step_name = image_step(device)
        image = None
        if not fresh or _unfinished(op, step_name) is not None:
            try:
                image = self.compute.get_image(image_name)
            except GceError as error:
                raise StepFailed(step_words(step_name), error) from error
        if image is not None and image.status == "READY":
            self._settle(op, step_name)
            return image
        what = "its boot disk" if device is None else f"its disk `{device}`"
        text = f"Imaging {what} into `{image_name}` (family `{family}`)…"
        with self._step(op, progress, step_name, text) as step:
            if image is None and not source_disk:
                raise GceError(f"the instance `{name}` is gone, so there is no disk to image")
            try:
                made = yield from self._mutate(
                    step,
                    None,
                    lambda rid, cb: self.compute.create_image(
                        image_name,
                        family=family,
                        source_disk=source_disk or "",
                        labels=labels_for(name),
                        request_id=rid,
                        on_started=cb,
                    ),
                )
            except GceAlreadyExists:
                if fresh:  # made by someone else since this park found the name free: not this park's to delete
                    self.store.image_failed(image_name)  # (the failed park drops only the images still PENDING)
                raise
            image = made or self.compute.get_image(image_name)
            if image is None or image.status != "READY":
                status = image.status if image else "missing"
                raise GceError(f"image {image_name} did not become READY (status {status})")
        return image

    def _image_plan(self, op: Operation, family: str | None, shape: VmShape) -> list[tuple[str, str, str | None, str | None]]:
        """(image, family, device, disk) for each disk, the boot disk first: names chosen once, before the stop.
        A data disk's images go into family ``FAMILY-DEVICE`` and are named ``NAME-DEVICE-YYYYMMDD-HHMM-OPID``."""
        name, when = op.vm_name, datetime.now(timezone.utc)
        family = op.params.get("family") or family or name
        boot = shape.boot_disk.name if shape.boot_disk else None
        plan: list[tuple[str, str, str | None, str | None]] = [
            (op.params.get("image") or image_name_for(name, when, op.id), family, None, boot)
        ]
        for disk in shape.data_disks:
            data_family = f"{family}-{disk.device_name}"[:63].rstrip("-")
            plan.append((image_name_for(f"{name}-{disk.device_name}", when, op.id), data_family, disk.device_name, disk.name))
        return plan

    def _note_static_ip(self, name: str, shape: VmShape, read: InstanceInfo) -> VmShape:
        """A stopped VM keeps only a reserved (static) external address: if it still has its address, a restore asks
        for it again. ``read`` (the instance as the shape was read) answers if it was stopped already."""
        if not shape.external_ip:
            return shape
        stopped = read if read.status == "TERMINATED" else self.compute.get_instance(shape.zone, name)
        if stopped is not None and stopped.external_ip == shape.external_ip:
            shape = replace(shape, external_access="static")
            self.store.set_shape(name, shape.to_json())
        return shape

    @staticmethod
    def _image_sources(shape: VmShape | None, instance: InstanceInfo | None) -> dict[str | None, str]:
        """Each disk's URL by device (None: the boot disk), from the shape, or the live boot disk for a park begun
        before vmbot kept shapes."""
        if shape is None:
            return {None: instance.boot_disk} if instance is not None and instance.boot_disk else {}
        sources: dict[str | None, str] = {disk.device_name: disk.source for disk in shape.data_disks}
        if shape.boot_disk:
            sources[None] = shape.boot_disk.source
        return sources

    def _drop_park_images(self, op_id: int) -> Steps[None]:
        """A park that could not image every disk keeps none of its images: a set with a disk missing restores nothing."""
        for image in self.store.images_of_operation(op_id):
            if image.state is ImageState.READY:
                self.store.set_image_state(image.name, ImageState.DIRTY, expected=ImageState.READY)
            elif image.state is ImageState.PENDING:
                yield from self._drop_failed_image(image.name)

    def _delete_disks(
        self, op: Operation, progress: Progress, zone: str, shape: VmShape | None,
        plan: list[tuple[str, str, str | None, str | None]], *, fresh: bool,
    ) -> Steps[str | None]:  # fmt: skip
        """After the VM: its data disks that do not go with it (autoDelete off), each its own step, each noted on its
        image's record. The disks that went with the VM are noted too. Returns what was left behind, if anything.
        A ``fresh`` park read each disk in its shape; otherwise a run before it may have deleted it, so GCP is asked."""
        disks = {disk.device_name: disk for disk in shape.data_disks} if shape else {}
        for image_name, _family, device, _disk in plan:
            disk = disks.get(device) if device else (shape.boot_disk if shape else None)
            if disk is None or disk.auto_delete:
                self.store.disk_deleted(image_name)  # deleted with the VM
                continue
            device = disk.device_name
            step_name = f"delete-disk:{device}"[:32]
            if not fresh and not self.compute.disk_exists(zone, disk.name):
                self._settle(op, step_name)
                self.store.disk_deleted(image_name)
                continue
            try:
                with self._step(op, progress, step_name, f"Deleting its disk `{disk.name}` (device `{device}`)…") as step:
                    try:
                        yield from self._mutate(step, zone, lambda rid, cb, disk=disk: self.compute.delete_disk(
                            zone, disk.name, request_id=rid, on_started=cb))  # fmt: skip
                    except GceNotFound:
                        pass  # already gone: the delete a dead run started has finished
            except StepFailed as failure:
                return (f"its disk `{disk.name}` could not be deleted (GCP said: _{failure.gcp}_). Its image "
                        f"`{image_name}` is safe; delete the disk in GCP once you no longer need it")  # fmt: skip
            self.store.disk_deleted(image_name)
        return None

    def _data_images(self, name: str, op_id: int | None, shape: VmShape | None) -> dict[str, str]:
        """The data disks' images made with the boot image, by device; refused if the shape has a disk without one."""
        if shape is None or not shape.data_disks:
            return {}
        images = self.store.images_of_operation(op_id) if op_id is not None else []
        found = {i.device_name: self._image_url(i.name) for i in images if i.device_name and i.state is ImageState.READY}
        missing = [disk.device_name for disk in shape.data_disks if disk.device_name not in found]
        if missing:
            raise Refused(Reason.NO_READY_IMAGE, name, missing=missing)
        return found

    def _image_url(self, image_name: str) -> str:
        return f"projects/{self.compute.project}/global/images/{image_name}"

    def _drop_failed_image(self, image_name: str) -> Steps[None]:
        """A failed image must not linger in GCP unrecorded: mark it failed, and delete what GCP kept."""
        self.store.image_failed(image_name)
        try:
            if self.compute.get_image(image_name) is not None:
                yield self.compute.delete_image(image_name)
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

    def _creation_failed(
        self, op: Operation, failure: StepFailed, zone: str, *, leaves_vm: str, vm_state: VmState
    ) -> Steps[Outcome]:
        """Remove whatever a failed insert left behind, so no half-created VM lingers."""
        name = op.vm_name
        try:
            if self.compute.get_instance(zone, name) is not None:
                yield self.compute.delete_instance(zone, name)
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
        elif op.verb is Verb.ADOPT and not _began(op, "label"):
            leaves, values = "was not adopted (nothing was changed)", {"state": VmState.DELETED}
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
    "label": "labelling the VM",
    "start": "starting the VM",
    "suspend": "suspending the VM",
    "resume": "resuming the VM",
}


@dataclass(frozen=True)
class Pause:
    """One lighter pause verb: its one GCP step, the statuses that mean it is done, and its words."""

    step: str  # the Compute method is ``{step}_instance``
    done: frozenset[str]
    end: VmState
    doing: str
    past: str
    back: str  # the verb that undoes it (for stop/suspend)
    note: str
    unchanged: str


PAUSES = {
    Verb.STOP: Pause("stop", frozenset({"TERMINATED", "STOPPED"}), VmState.STOPPED, "Stopping", "stopped", "start",
                     "its disk is kept (and still paid for); the machine is not.",
                     "is still running; nothing was changed"),
    Verb.START: Pause("start", frozenset({"RUNNING"}), VmState.RUNNING, "Starting", "started", "stop",
                      "", "is still stopped"),
    Verb.SUSPEND: Pause("suspend", frozenset({"SUSPENDED"}), VmState.SUSPENDED, "Suspending", "suspended", "resume",
                        "its memory and disk are kept (and paid for); the machine is not.",
                        "is still running; nothing was changed"),
    Verb.RESUME: Pause("resume", frozenset({"RUNNING"}), VmState.RUNNING, "Resuming", "resumed", "suspend",
                       "", "is still suspended"),
}


def image_step(device: str | None) -> str:
    """The step name of a disk's image: ``image`` for the boot disk, ``image:DEVICE`` for a data disk."""
    return "image" if device is None else f"image:{device}"[:32]


def step_words(name: str) -> str:
    """A step in words; per-disk steps (``image:DEVICE``, ``delete-disk:DEVICE``) name their disk."""
    kind, _, device = name.partition(":")
    if device:
        return {"image": f"imaging its disk `{device}`", "delete-disk": f"deleting its disk `{device}`"}.get(kind, name)
    return STEP_WORDS.get(name, name)


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
        where = step_words(self.op.step) if self.op.step else "the beginning"
        self.progress.step(f":arrows_counterclockwise: Resumed after restart: carrying on from {where}.")

    def step(self, text: str) -> None:
        self.progress.step(text)

    def finished(self, *, ok: bool, headline: str, detail: str, took: float, retry: bool = True) -> None:
        self.progress.finished(ok=ok, headline=headline, detail=detail, took=took, retry=retry)

    def refused(self, refusal: UserError) -> None:
        self.progress.refused(refusal)
