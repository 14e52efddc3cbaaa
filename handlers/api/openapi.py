"""The OpenAPI 3.1 document, generated: schemas from handlers.api.models, paths from ROUTES.

ROUTES says per route what the Flask views cannot: a summary, its models and the error
statuses it may give. tests/test_api.py checks that it lists exactly the app's routes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from flask import Blueprint
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from handlers.api.errors import ERROR_CODES, PREFIX
from handlers.api.models import (
    NAME_PATTERN,
    AdoptVm,
    CreateVm,
    Error,
    ListQuery,
    NoQuery,
    OneOperation,
    OneVm,
    ParkVm,
    RestoreVm,
    Savings,
    ScheduleList,
    SetSchedule,
    SetTtl,
    VerbOnVm,
    VmList,
    VmQuery,
    VmSchedule,
    VmTtl,
    WaitQuery,
)

Json = dict[str, Any]


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    summary: str
    response: type[BaseModel] | None  # the 200 answer's body (None: a free-form object)
    query: type[BaseModel] = NoQuery
    body: type[BaseModel] | None = None
    errors: tuple[int, ...] = (400,)  # besides 401
    description: str = ""
    public: bool = False  # no token needed

    @property
    def mutation(self) -> bool:
        """A POST starts an operation: 202 and a Location (PUT and DELETE answer at once)."""
        return self.method == "POST"

    @property
    def no_content(self) -> bool:
        return self.method == "DELETE"


def _verb(name: str, summary: str, description: str, takes: type[BaseModel] = VerbOnVm) -> Route:
    return Route("POST", f"{PREFIX}/vms/{{name}}/{name}", summary, OneOperation, WaitQuery, takes,
                 (400, 403, 404, 409), description)


ROUTES: tuple[Route, ...] = (
    Route("GET", f"{PREFIX}/openapi.json", "This description (no token needed)", None, errors=(), public=True),
    Route("GET", f"{PREFIX}/vms", "The VMs vmbot manages, a page at a time", VmList, ListQuery),
    Route("POST", f"{PREFIX}/vms", "Create a VM", OneOperation, WaitQuery, CreateVm, (400, 409),
          "Creates the VM (startup script, labels) in the zone and machine type given or the defaults."),
    Route("GET", f"{PREFIX}/vms/{{name}}", "One VM, its images and its last operations", OneVm, VmQuery, None, (400, 404, 502)),
    Route("POST", f"{PREFIX}/vms/{{name}}/park", "Park a VM", OneOperation, WaitQuery, ParkVm, (400, 403, 404, 409),
          "Stops the VM, images its boot disk (named `image`, in `family`; defaults: NAME-DATE-OPID in family NAME), "
          "marks its previous image dirty and deletes the VM. An image name already in vmbot's records is refused "
          "with 409 image_exists; one that exists only in GCP ends the operation as rejected before the VM is touched."),
    _verb("restore", "Restore a parked VM", "Recreates the VM from its newest image, with its whole recorded shape "
          "(machine_type: another machine type, the rest unchanged).", RestoreVm),
    _verb("stop", "Stop a VM, keeping its disks", "Stops the instance (TERMINATED in GCP): cheap to come back with "
          "start; its disks are still paid. No question asked (Slack asks first)."),
    _verb("start", "Start a stopped VM", "Starts the stopped instance again."),
    _verb("suspend", "Suspend a VM, keeping its memory", "Suspends the instance (GCE suspend). GCP refuses it for "
          "some machines (e.g. with GPUs): the operation then fails and the VM keeps running."),
    _verb("resume", "Resume a suspended VM", "Resumes the suspended instance."),
    _verb("adopt", "Take an existing instance under management", "Labels an instance vmbot did not create "
          "(managed-by=vmbot, keeping its labels), records its shape and makes the caller (or owner, admins only) its "
          "owner. 409 vm_exists (reason already_managed) when vmbot manages it already.", AdoptVm),
    Route("PUT", f"{PREFIX}/vms/{{name}}/schedule", "Set a VM's schedule", VmSchedule, NoQuery, SetSchedule,
          (400, 403, 404), "As /vm schedule: one off time (park_at, stop_at or suspend_at) and/or one on time "
          "(restore_at, start_at or resume_at), HH:MM in tz, on days; replaces any schedule the VM had. The owner is "
          "warned VMBOT_SCHEDULE_NOTICE before each off action. 400 invalid_schedule names the field in `option`."),
    Route("GET", f"{PREFIX}/vms/{{name}}/schedule", "A VM's schedule, with its next run", VmSchedule, NoQuery, None,
          (404,), "As PUT answered it. 404 schedule_not_found when the VM has none."),
    Route("DELETE", f"{PREFIX}/vms/{{name}}/schedule", "Remove a VM's schedule", None, NoQuery, None, (403, 404)),
    Route("PUT", f"{PREFIX}/vms/{{name}}/ttl", "Set a VM's time to live", VmTtl, NoQuery, SetTtl, (400, 403, 404),
          "The VM is parked when the duration is up (its owner warned first), as /vm ttl."),
    Route("GET", f"{PREFIX}/vms/{{name}}/ttl", "A VM's time to live", VmTtl, NoQuery, None, (404,),
          "As PUT answered it. 404 ttl_not_found when the VM has none."),
    Route("DELETE", f"{PREFIX}/vms/{{name}}/ttl", "Remove a VM's time to live", None, NoQuery, None, (403, 404)),
    Route("GET", f"{PREFIX}/schedules", "Every schedule and time to live, with the next run", ScheduleList),
    Route("GET", f"{PREFIX}/savings", "Savings to date by parking, stopping and suspending, per VM and in total",
          Savings, errors=()),
    _verb("delete", "Delete a VM for good",
          "Deletes the instance and its boot disk (a parked VM has none) and marks every image of the VM dirty: the "
          "sweeper deletes them after the grace period. The VM cannot be restored afterwards; its name is free for a create."),
    Route("GET", f"{PREFIX}/operations/{{id}}", "One operation: its state, current step, result or error", OneOperation,
          WaitQuery, None, (400, 404)),
)

PATH_PARAMETERS: dict[str, Json] = {
    "name": {"description": "The VM's name (GCP's rule: lowercase letters, digits and hyphens, at most 63 characters).",
             "schema": {"type": "string", "pattern": NAME_PATTERN}},
    "id": {"description": "The operation's id.", "schema": {"type": "integer"}},
}
_REF = "#/components/schemas/{model}"


def build_spec() -> Json:
    bodies = {route.body for route in ROUTES if route.body}
    answers = {Error, *(route.response for route in ROUTES if route.response)}
    refs, definitions = models_json_schema(
        [(model, "validation") for model in sorted(bodies, key=lambda m: m.__name__)]
        + [(model, "serialization") for model in sorted(answers, key=lambda m: m.__name__)],
        ref_template=_REF,
    )
    schema = {model: refs[(model, mode)] for (model, mode) in refs}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "vmbot HTTP API",
            "version": "1",
            "description": (
                "Create, park, restore, stop, start, suspend, resume, adopt, schedule and delete Compute Engine VMs from scripts, through the same workflows, store "
                "and audit as the Slack /vm command. Mutations answer 202 at once with an operation to poll. "
                "Errors are {\"error\": {\"code\", \"message\"}} with a stable code and change nothing."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": _paths(schema),
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token from VMBOT_API_TOKENS (NAME=TOKEN pairs); NAME is recorded as the requester.",
                },
            },
            "schemas": definitions["$defs"],
        },
    }


def _paths(schema: dict[type[BaseModel], Json]) -> Json:
    paths: Json = {}
    for route in ROUTES:
        operation: Json = {
            "summary": route.summary,
            "parameters": [
                {"name": name, "in": "path", "required": True, **PATH_PARAMETERS[name]}
                for name in re.findall(r"\{(\w+)\}", route.template)
            ] + _query_parameters(route.query),
            "responses": (
                {"204": {"description": "Removed."}} if route.no_content
                else {"200": _json(schema[route.response] if route.response else {"type": "object"}, "OK")}
            ),
        }
        if route.description:
            operation["description"] = route.description
        if route.public:
            operation["security"] = []
        if route.mutation:
            operation["responses"]["200"]["description"] = "Ended within ?wait."
            operation["responses"]["202"] = {
                **_json(schema[route.response], "Accepted: poll Location."),
                "headers": {"Location": {"description": "The operation to poll", "schema": {"type": "string"}}},
            }
        if route.body is not None:
            operation["requestBody"] = {"required": False, "content": {"application/json": {"schema": schema[route.body]}}}
        body_errors = (408, 413) if route.body is not None else ()  # a body that stops short, or is too long
        for status in (*route.errors, *body_errors) if route.public else (401, *route.errors, *body_errors):
            codes = sorted(code for code, code_status in ERROR_CODES.items() if code_status == status)
            operation["responses"][str(status)] = _json(schema[Error], "Refused, nothing changed. Codes: " + ", ".join(codes))
        paths.setdefault(route.template, {})[route.method.lower()] = operation
    return paths


def _query_parameters(model: type[BaseModel]) -> list[Json]:
    properties = model.model_json_schema()["properties"] if model.model_fields else {}
    return [
        {"name": name, "in": "query", "required": False, "description": field.pop("description", ""), "schema": field}
        for name, field in properties.items()
    ]


def _json(schema: Json, description: str) -> Json:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


SPEC: Json = build_spec()
openapi = Blueprint("openapi", __name__)


@openapi.get(f"{PREFIX}/openapi.json")
def describe() -> Json:
    return SPEC
