"""Create, park and restore: the plain-Python heart of vmbot.

Each workflow walks its steps over the GCP adapter (bot.gce) and the store, and
tells a Progress what happens. It knows nothing of Slack, so a test can drive
it directly. Every step is recorded before its GCP call starts, with the name of
the GCP operation that carries it, and every failure leaves a record that says
what state the VM is in.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from bot import logs
from bot.errors import Refused
from bot.gce import MANAGED_LABEL, Compute, GceError, InstanceInfo, InstanceSpec, OperationStarted
from bot.lifecycle import check_image_name_free
from bot.reporting import Progress
from bot.settings import Settings
from storage.models import Operation, OperationState, Verb, VmState
from storage.store import Store

log = logging.getLogger(__name__)


class StepFailed(Exception):
    """A step's GCP call failed; ``what`` names the step in words, ``gcp`` is GCP's message."""

    def __init__(self, what: str, error: GceError) -> None:
        super().__init__(f"{what}: {error.message}")
        self.what, self.gcp = what, error.message


@dataclass
class Outcome:
    ok: bool
    headline: str  # the thread root's final line
    detail: str  # the thread's last reply
    vm_values: dict[str, Any] = field(default_factory=dict)


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
    ) -> None:
        self.store, self.compute, self.settings = store, compute, settings
        self.progress_for = progress_for
        self.startup_script = settings.startup_script.read_text()
        self.completions = Completions()

    def run(self, op_id: int) -> None:
        """Run a recorded operation to its end; never raises (a bug is logged and recorded).

        Whoever waits for it (the HTTP API's ``?wait=``) is woken once the store holds the outcome.
        """
        try:
            op = self.store.operation(op_id)
            if op is None:
                log.error("operation %s vanished before it ran", op_id)
                return
            with logs.context(operation_id=op.id, vm=op.vm_name, slack_user=op.requested_by):
                log.info("%s of %s started", op.verb.value, op.vm_name)
                self._run(op)
                ended = self.store.operation(op_id)
                state = ended.state if ended else None
                level = logging.INFO if state is OperationState.SUCCEEDED else logging.WARNING
                log.log(level, "%s of %s ended: %s", op.verb.value, op.vm_name, state.value if state else "unknown")
        finally:
            self.completions.finished(op_id)

    def _run(self, op: Operation) -> None:
        op_id = op.id
        progress = self.progress_for(op)
        self.store.mark_running(op_id)
        began = time.monotonic()
        workflow = {Verb.CREATE: self.create, Verb.PARK: self.park, Verb.RESTORE: self.restore}[op.verb]
        try:
            outcome = workflow(op, progress)
        except Refused as refusal:
            vm_values = {"state": VmState.DELETED} if op.verb is Verb.CREATE else {}
            self.store.finish(op_id, OperationState.REJECTED, error=str(refusal), vm_values=vm_values)
            progress.refused(str(refusal))
            return
        except Exception:
            log.exception("operation %s (%s %s) failed unexpectedly", op_id, op.verb.value, op.vm_name)
            message = f"Something went wrong on my side (operation #{op_id}); the details are in the bot's log."
            self.store.finish(op_id, OperationState.FAILED, error="internal error; see the bot's log")
            progress.finished(ok=False, headline=message, detail=message, took=time.monotonic() - began)
            return
        state = OperationState.SUCCEEDED if outcome.ok else OperationState.FAILED
        self.store.finish(
            op_id,
            state,
            result=outcome.headline if outcome.ok else None,
            error=None if outcome.ok else outcome.detail,
            vm_values=outcome.vm_values,
        )
        progress.finished(ok=outcome.ok, headline=outcome.headline, detail=outcome.detail, took=time.monotonic() - began)

    # ---- the workflows ---------------------------------------------------------------

    def create(self, op: Operation, progress: Progress) -> Outcome:
        vm = self.store.vm(op.vm_name)
        assert vm is not None, "a create is recorded with its VM"
        name, zone, machine_type = vm.name, vm.zone, vm.machine_type
        if self.compute.get_instance(zone, name) is not None:
            raise Refused(
                f"A VM named `{name}` already exists in project `{self.compute.project}` ({zone}), and I did not "
                "create it. Pick another name."
            )
        image = self.settings.source_image
        progress.started(f"{machine_type} in {zone}")
        try:
            with self._step(op, progress, "create", f"Creating `{name}` from `{image}`…") as on_started:
                instance = self.compute.create_instance(self._spec(name, zone, machine_type, image), on_started=on_started)
        except StepFailed as failure:
            return self._creation_failed(op, failure, zone, leaves_vm="does not exist", vm_state=VmState.DELETED)
        return self._running(name, instance, "created")

    def park(self, op: Operation, progress: Progress) -> Outcome:
        name = op.vm_name
        vm = self.store.vm(name)
        assert vm is not None, "a park is only recorded for a known VM"
        image_name = op.params.get("image") or image_name_for(name, datetime.now(timezone.utc), op.id)
        self._check_image_name_free(image_name)
        progress.started(f"{vm.machine_type} in {vm.zone}")
        instance = self.compute.get_instance(vm.zone, name)
        if instance is None:
            return Outcome(
                False,
                f"`{name}` could not be parked: it is not in GCP",
                f"I found no instance `{name}` in {vm.zone}: it was deleted outside vmbot, so there was nothing to "
                "image. Its record is unchanged; `/vm status " + name + "` shows what I know.",
            )
        try:
            if instance.status != "TERMINATED":
                with self._step(op, progress, "stop", f"Stopping `{name}`…") as on_started:
                    self.compute.stop_instance(vm.zone, name, on_started=on_started)
        except StepFailed as failure:
            return self._park_failed(name, failure, "is still running; nothing was changed", VmState.RUNNING)
        self.store.update_vm(name, state=VmState.STOPPED, external_ip=None)

        family = op.params.get("family") or name
        self.store.add_image(name, image_name, family, op_id=op.id)
        try:
            with self._step(op, progress, "image", f"Imaging its boot disk into `{image_name}` (family `{family}`)…") as on_started:
                image = self.compute.create_image(
                    image_name, family=family, source_disk=instance.boot_disk or "", labels=labels_for(name), on_started=on_started
                )
        except StepFailed as failure:
            self.store.image_failed(image_name)
            return self._park_failed(name, failure, "is stopped and still exists; no image was kept", VmState.STOPPED)
        dirty = self.store.image_ready(
            image_name, disk_size_gb=image.disk_size_gb, archive_size_bytes=image.archive_size_bytes
        )

        try:
            with self._step(op, progress, "delete", f"Image ready. Deleting the VM `{name}`…") as on_started:
                self.compute.delete_instance(vm.zone, name, on_started=on_started)
        except StepFailed as failure:
            return self._park_failed(
                name, failure, f"is stopped and still exists; its image `{image_name}` is safe", VmState.STOPPED
            )
        older = f" The previous image {', '.join(f'`{d}`' for d in dirty)} is now dirty and will be swept." if dirty else ""
        return Outcome(
            True,
            f"`{name}` is parked as image `{image_name}`",
            f"`{name}` is parked: only image `{image_name}` (family `{family}`) remains.{older} "
            f"Bring it back with `/vm restore {name}`.",
            {"state": VmState.PARKED, "external_ip": None},
        )

    def restore(self, op: Operation, progress: Progress) -> Outcome:
        name = op.vm_name
        vm = self.store.vm(name)
        assert vm is not None, "a restore is only recorded for a known VM"
        image = self.store.newest_image(name)
        if image is None:
            raise Refused(f"`{name}` has no ready image to restore from. `/vm status {name}` shows its images.")
        if self.compute.get_instance(vm.zone, name) is not None:
            raise Refused(
                f"An instance named `{name}` already exists in {vm.zone} (made outside vmbot?), so I cannot restore "
                f"over it. Delete it in GCP first, or see `/vm status {name}`."
            )
        progress.started(f"from image `{image.name}` · {vm.machine_type} in {vm.zone}")
        source = f"projects/{self.compute.project}/global/images/{image.name}"
        try:
            with self._step(op, progress, "create", f"Creating `{name}` from image `{image.name}`…") as on_started:
                instance = self.compute.create_instance(
                    self._spec(name, vm.zone, vm.machine_type, source), on_started=on_started
                )
        except StepFailed as failure:
            return self._creation_failed(op, failure, vm.zone, leaves_vm="is still parked", vm_state=VmState.PARKED)
        return self._running(name, instance, "restored")

    # ---- shared pieces -------------------------------------------------------------------

    def _check_image_name_free(self, image_name: str) -> None:
        """Refuse, before the VM is touched, an image name already taken in the store or in GCP."""
        check_image_name_free(self.store, image_name)
        if self.compute.get_image(image_name) is not None:
            raise Refused(
                f"An image named `{image_name}` already exists in project `{self.compute.project}`, and I did not "
                "make it. Pick another image name; nothing was changed."
            )

    @contextmanager
    def _step(self, op: Operation, progress: Progress, name: str, text: str) -> Iterator[OperationStarted]:
        """Record a step and report it; turn a GCP failure into StepFailed naming the step."""
        step_id = self.store.step_started(op.id, name)
        progress.step(text)
        try:
            yield lambda gcp_operation: self.store.step_gcp_operation(step_id, gcp_operation)
        except GceError as error:
            self.store.step_finished(step_id, error=error.message)
            raise StepFailed(STEP_WORDS[name], error) from error
        self.store.step_finished(step_id)

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
        )

    @staticmethod
    def _park_failed(name: str, failure: StepFailed, leaves: str, vm_state: VmState) -> Outcome:
        return Outcome(
            False,
            f"Parking `{name}` failed while {failure.what}",
            f"Parking `{name}` failed while {failure.what}. GCP said: _{failure.gcp}_. `{name}` {leaves}. "
            f"`/vm park {name}` tries again.",
            {"state": vm_state},
        )


STEP_WORDS = {
    "create": "creating the instance",
    "stop": "stopping the VM",
    "image": "imaging its boot disk",
    "delete": "deleting the VM",
}
