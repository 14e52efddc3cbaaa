"""The HTTP API's contract: its prefix, its stable error codes, and the OpenAPI 3 description of it
(served at ``/api/v1/openapi.json`` by handlers.api).

Written by hand next to the code it describes; tests/test_api.py checks that every
route in ``handlers.api.ROUTES`` is here and that nothing here is unimplemented.
"""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]

PREFIX = "/api/v1"
MAX_WAIT_SECONDS = 600

# The stable error codes a script may branch on, with their HTTP status.
ERROR_CODES: dict[str, int] = {
    "invalid_json": 400,  # the body is not a JSON object
    "invalid_field": 400,  # a field is missing, unknown, or of the wrong type
    "invalid_name": 400,  # the VM name breaks GCP's naming rule
    "invalid_option": 400,  # zone, machine_type, image, family, notify_channel or a query parameter is not valid
    "unauthorized": 401,  # no bearer token, or not one of VMBOT_API_TOKENS
    "forbidden": 403,  # park/restore of a VM this token neither owns nor may act on as an admin
    "not_found": 404,  # no such route
    "api_disabled": 404,  # VMBOT_API_TOKENS is not set
    "vm_not_found": 404,
    "operation_not_found": 404,
    "method_not_allowed": 405,
    "vm_exists": 409,  # create of a name the store already holds
    "state_conflict": 409,  # e.g. park of a parked VM, restore of a running one
    "operation_in_progress": 409,  # another operation holds the VM
    "image_exists": 409,  # park with an image name already recorded
    "payload_too_large": 413,
    "gcp_error": 502,  # ?live=true and GCP could not be asked
    "internal_error": 500,
}

NAME_PATTERN = "^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"


def _ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Json, description: str) -> Json:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Json]:
    """The error responses a route may give, each listing its codes."""
    answers: dict[str, Json] = {}
    for status in (401, *statuses):
        codes = sorted(code for code, code_status in ERROR_CODES.items() if code_status == status)
        answers[str(status)] = _json(_ref("Error"), "Refused, nothing changed. Codes: " + ", ".join(codes))
    return answers


NAME_PARAMETER: Json = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "The VM's name (GCP's rule: lowercase letters, digits and hyphens, at most 63 characters).",
    "schema": {"type": "string", "pattern": NAME_PATTERN},
}
WAIT_PARAMETER: Json = {
    "name": "wait",
    "in": "query",
    "required": False,
    "description": (
        f"Hold the answer up to this many seconds (0 to {MAX_WAIT_SECONDS}) until the operation ends. "
        "The answer is 200 if it ended by then, else 202 as without wait."
    ),
    "schema": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_SECONDS},
}
NOTIFY_CHANNEL: Json = {
    "type": "string",
    "nullable": True,
    "pattern": "^[CG][A-Z0-9]{2,31}$",
    "description": (
        "A Slack channel id: the operation's thread is posted there as for a slash command. "
        "Absent: VMBOT_API_NOTIFY_CHANNEL (if set). null: no Slack thread."
    ),
}
STRING_OR_NULL: Json = {"type": "string", "nullable": True}
TIME: Json = {"type": "string", "format": "date-time", "nullable": True}


def _mutation(summary: str, description: str, body: Json | None, *errors: int) -> Json:
    operation: Json = {
        "summary": summary,
        "description": description,
        "parameters": [WAIT_PARAMETER],
        "responses": {
            "202": {
                **_json({"type": "object", "properties": {"operation": _ref("Operation")}}, "Accepted: poll Location."),
                "headers": {"Location": {"description": "The operation to poll", "schema": {"type": "string"}}},
            },
            "200": _json({"type": "object", "properties": {"operation": _ref("Operation")}}, "Ended within ?wait."),
            **_errors(400, 409, *errors),
        },
    }
    if body is not None:
        operation["requestBody"] = {"required": False, "content": {"application/json": {"schema": body}}}
    return operation


def _vm_verb(summary: str, description: str) -> Json:
    """A verb on a known VM that takes no options (restore, delete): POST with an optional notify_channel."""
    body = {"type": "object", "additionalProperties": False, "properties": {"notify_channel": NOTIFY_CHANNEL}}
    return {"post": {**_mutation(summary, description, body, 403, 404), "parameters": [NAME_PARAMETER, WAIT_PARAMETER]}}


SPEC: Json = {
    "openapi": "3.0.3",
    "info": {
        "title": "vmbot HTTP API",
        "version": "1",
        "description": (
            "Create, park, restore and delete Compute Engine VMs from scripts, through the same workflows, store and "
            "audit as the Slack /vm command. Mutations answer 202 at once with an operation to poll. "
            "Errors are {\"error\": {\"code\", \"message\"}} with a stable code and change nothing."
        ),
    },
    "servers": [{"url": "/"}],
    "security": [{"bearer": []}],
    "paths": {
        f"{PREFIX}/vms": {
            "get": {
                "summary": "The VMs vmbot manages",
                "responses": {
                    "200": _json({"type": "object", "properties": {"vms": {"type": "array", "items": _ref("Vm")}}}, "The VMs"),
                    **_errors(400),
                },
            },
            "post": _mutation(
                "Create a VM",
                "Creates the VM (startup script, labels) in the zone and machine type given or the defaults.",
                {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string", "pattern": NAME_PATTERN, "example": "test-vm-22"},
                        "zone": {"type": "string", "example": "us-central1-a"},
                        "machine_type": {"type": "string", "example": "e2-small"},
                        "notify_channel": NOTIFY_CHANNEL,
                    },
                },
            ),
        },
        f"{PREFIX}/vms/{{name}}": {
            "get": {
                "summary": "One VM, its images and its last operations",
                "parameters": [
                    NAME_PARAMETER,
                    {
                        "name": "live",
                        "in": "query",
                        "required": False,
                        "description": "Also ask GCP for the instance's live state.",
                        "schema": {"type": "boolean"},
                    },
                ],
                "responses": {
                    "200": _json({"type": "object", "properties": {"vm": _ref("VmDetail")}}, "The VM"),
                    **_errors(400, 404, 502),
                },
            },
        },
        f"{PREFIX}/vms/{{name}}/park": {
            "post": {
                **_mutation(
                    "Park a VM",
                    "Stops the VM, images its boot disk (named `image`, in `family`; defaults: NAME-DATE-OPID in "
                    "family NAME), marks its previous image dirty and deletes the VM. An image name already in "
                    "vmbot's records is refused with 409 image_exists; one that exists only in GCP ends the "
                    "operation as rejected before the VM is touched.",
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "image": {"type": "string", "pattern": NAME_PATTERN, "example": "image-224"},
                            "family": {"type": "string", "pattern": NAME_PATTERN, "example": "segmind-fam"},
                            "notify_channel": NOTIFY_CHANNEL,
                        },
                    },
                    403,
                    404,
                ),
                "parameters": [NAME_PARAMETER, WAIT_PARAMETER],
            },
        },
        f"{PREFIX}/vms/{{name}}/restore": _vm_verb(
            "Restore a parked VM", "Recreates the VM from its newest image, with its zone and machine type."
        ),
        f"{PREFIX}/vms/{{name}}/delete": _vm_verb(
            "Delete a VM for good",
            "Deletes the instance and its boot disk (a parked VM has none) and marks every image of the VM "
            "dirty: the sweeper deletes them after the grace period. The VM cannot be restored afterwards; "
            "its name is free for a create.",
        ),
        f"{PREFIX}/operations/{{id}}": {
            "get": {
                "summary": "One operation: its state, current step, result or error",
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}},
                    WAIT_PARAMETER,
                ],
                "responses": {
                    "200": _json({"type": "object", "properties": {"operation": _ref("Operation")}}, "The operation"),
                    **_errors(400, 404),
                },
            },
        },
        f"{PREFIX}/openapi.json": {
            "get": {
                "summary": "This description (no token needed)",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3 document")},
            },
        },
    },
    "components": {
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "A token from VMBOT_API_TOKENS (NAME=TOKEN pairs); NAME is recorded as the requester.",
            },
        },
        "schemas": {
            "Error": {
                "type": "object",
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {
                            "code": {"type": "string", "enum": sorted(ERROR_CODES)},
                            "message": {"type": "string"},
                            "operation_id": {"type": "integer", "description": "operation_in_progress: the one holding the VM"},
                            "state": {"type": "string", "description": "state_conflict: the VM's state"},
                        },
                    }
                },
            },
            "Vm": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "state": {"type": "string", "enum": ["creating", "running", "stopped", "parked", "deleted"]},
                    "busy": {
                        "type": "object",
                        "nullable": True,
                        "properties": {"operation_id": {"type": "integer"}, "verb": {"type": "string"}},
                    },
                    "zone": {"type": "string"},
                    "machine_type": {"type": "string"},
                    "owner": {"type": "string", "description": "Slack user id, or API token name"},
                    "external_ip": STRING_OR_NULL,
                    "newest_image": STRING_OR_NULL,
                    "created_at": TIME,
                    "updated_at": TIME,
                },
            },
            "VmDetail": {
                "allOf": [
                    _ref("Vm"),
                    {
                        "type": "object",
                        "properties": {
                            "images": {"type": "array", "items": _ref("Image")},
                            "operations": {"type": "array", "items": _ref("Operation")},
                            "gcp": {
                                "type": "object",
                                "description": "Only with ?live=true",
                                "properties": {
                                    "exists": {"type": "boolean"},
                                    "status": {"type": "string"},
                                    "external_ip": STRING_OR_NULL,
                                    "machine_type": {"type": "string"},
                                },
                            },
                        },
                    },
                ]
            },
            "Image": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "family": {"type": "string"},
                    "state": {"type": "string", "enum": ["pending", "ready", "dirty", "deleted", "failed"]},
                    "disk_size_gb": {"type": "integer", "nullable": True},
                    "archive_size_bytes": {"type": "integer", "nullable": True},
                    "created_at": TIME,
                    "dirty_since": TIME,
                },
            },
            "Operation": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "url": {"type": "string"},
                    "verb": {"type": "string", "enum": ["create", "park", "restore", "delete"]},
                    "vm": {"type": "string"},
                    "state": {"type": "string", "enum": ["queued", "running", "succeeded", "failed", "rejected"]},
                    "done": {"type": "boolean"},
                    "step": STRING_OR_NULL,
                    "requested_by": {"type": "string"},
                    "params": {"type": "object", "additionalProperties": {"type": "string"}},
                    "slack": {
                        "type": "object",
                        "nullable": True,
                        "properties": {"channel": {"type": "string"}, "thread_ts": STRING_OR_NULL},
                    },
                    "result": STRING_OR_NULL,
                    "error": STRING_OR_NULL,
                    "created_at": TIME,
                    "started_at": TIME,
                    "finished_at": TIME,
                    "steps": {
                        "type": "array",
                        "description": "Only on GET /operations/{id} and mutation answers",
                        "items": {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string"},
                                "state": {"type": "string"},
                                "gcp_operation": STRING_OR_NULL,
                                "error": STRING_OR_NULL,
                                "started_at": TIME,
                                "finished_at": TIME,
                            },
                        },
                    },
                },
            },
        },
    },
}
