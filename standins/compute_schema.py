"""Request-body validation for the Compute Engine stand-in, from Google's own discovery document.

``compute_v1_schemas.json`` is cut from the compute v1 discovery document (see ``cut_compute_schemas.py``).
A body is checked the way Google's front end parses JSON into the request proto, before Compute Engine
looks at the values:

* an unknown field is ``Invalid JSON payload received. Unknown name "x" at 'instance.disks[0]': Cannot find field.``
  (paths use the proto's snake_case field names, as the front end writes them);
* a value of the wrong JSON type is ``Invalid value at 'instance.can_ip_forward' (TYPE_BOOL), "yes"``.
  int64/uint64 fields are JSON strings in Google's encoding and numbers are accepted too, as proto3 JSON does;
  int32 fields accept numbers and numeric strings; booleans accept only ``true``/``false``;
* both names the proto knows are accepted (``machineType`` and ``machine_type``); the body handed back uses the
  camelCase ones, with ``null`` fields dropped and int32 strings turned into numbers.

Then Compute Engine's own checks, whose messages name the API field (``resource.networkInterfaces[0]...``):
an enum value outside the schema's ``enum`` list, and a field whose ``annotations.required`` names the method.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_FILE = Path(__file__).with_name("compute_v1_schemas.json")
_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "uint32": (0, 2**32 - 1),
               "int64": (-(2**63), 2**63 - 1), "uint64": (0, 2**64 - 1)}  # fmt: skip
_PROTO_TYPES = {"int32": "TYPE_INT32", "uint32": "TYPE_UINT32", "int64": "TYPE_INT64", "uint64": "TYPE_UINT64",
                "byte": "TYPE_BYTES", "double": "TYPE_DOUBLE", "float": "TYPE_FLOAT"}  # fmt: skip
_INTEGER_TEXT = re.compile(r"^-?[0-9]+$")


class SchemaViolation(Exception):
    """A request GCP refuses (HTTP 400, status INVALID_ARGUMENT); ``reason`` goes into ``errors[].reason``."""

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.message, self.reason = message, reason


@cache
def discovery() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text())


def method(method_id: str) -> dict[str, Any]:
    return discovery()["methods"][method_id]


def snake(name: str) -> str:
    """The proto field name of a JSON name: ``natIP`` -> ``nat_i_p``, ``diskSizeGb`` -> ``disk_size_gb``."""
    return re.sub(r"[A-Z]", lambda m: "_" + m.group().lower(), name)


def camel(name: str) -> str:
    return re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), name)


def validate_body(method_id: str, body: dict[str, Any], proto_root: str) -> dict[str, Any]:
    """Check ``body`` against the method's request schema; return it normalized (camelCase names, no nulls).

    Raises SchemaViolation with GCP's wording for the first problem found."""
    schema_name = method(method_id)["request"]
    checker = _Checker(method_id)
    return checker.message(body, schema_name, proto_root, "resource")


class _Checker:
    def __init__(self, method_id: str) -> None:
        self.required_tag = f"compute.{method_id}"

    def message(self, value: Any, schema_name: str, proto: str, api: str) -> dict[str, Any]:
        schema = discovery()["schemas"][schema_name]
        return self._object(value, schema, schema_name, proto, api)

    def _object(self, value: Any, schema: dict[str, Any], type_name: str, proto: str, api: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise SchemaViolation(
                f"Invalid value at '{proto}' (type.googleapis.com/google.cloud.compute.v1.{type_name}), {_show(value)}"
            )
        properties = schema.get("properties", {})
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = key if key in properties else camel(key) if camel(key) in properties and snake(camel(key)) == key else None
            if name is None:
                raise SchemaViolation(f'Invalid JSON payload received. Unknown name "{key}" at \'{proto}\': Cannot find field.')
            if item is None:
                continue
            out[name] = self._value(item, properties[name], f"{proto}.{snake(name)}", f"{api}.{name}")
        for name, spec in properties.items():
            if self.required_tag in spec.get("annotations", {}).get("required", []) and out.get(name) in (None, ""):
                raise SchemaViolation(f"Required field '{api}.{name}' not specified")
        return out

    def _value(self, value: Any, spec: dict[str, Any], proto: str, api: str) -> Any:
        if "$ref" in spec:
            return self.message(value, spec["$ref"], proto, api)
        kind = spec.get("type")
        if kind == "array":
            items = value if isinstance(value, list) else None
            if items is None:
                raise SchemaViolation(f"Invalid value at '{proto}' ({_describe(spec['items'])}), {_show(value)}")
            return [self._value(v, spec["items"], f"{proto}[{i}]", f"{api}[{i}]") for i, v in enumerate(items)]
        if kind == "object":
            if "additionalProperties" in spec:  # a map<string, V>
                if not isinstance(value, dict):
                    raise SchemaViolation(f"Invalid value at '{proto}' (map), {_show(value)}")
                entry = spec["additionalProperties"]
                return {str(k): self._value(v, entry, f"{proto}[{k}]", f"{api}.{k}") for k, v in value.items()}
            return self._object(value, spec, "Object", proto, api)
        return self._scalar(value, spec, proto, api)

    def _scalar(self, value: Any, spec: dict[str, Any], proto: str, api: str) -> Any:
        kind, fmt = spec.get("type"), spec.get("format")
        proto_type = _describe(spec)
        bad = SchemaViolation(f"Invalid value at '{proto}' ({proto_type}), {_show(value)}")
        if kind == "boolean":
            if not isinstance(value, bool):
                raise bad
            return value
        if fmt in _INT_RANGES:
            number = _integer(value)
            low, high = _INT_RANGES[fmt]
            if number is None or not low <= number <= high:
                raise bad
            return str(number) if kind == "string" else number
        if kind == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise bad
            try:
                return float(value)
            except ValueError:
                raise bad from None
        if not isinstance(value, str):
            raise bad
        if fmt == "byte":
            try:
                base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_" if "-" in value or "_" in value else None, validate=True)
            except (binascii.Error, ValueError):
                raise bad from None
        if "enum" in spec and value not in spec["enum"]:
            allowed = ", ".join(spec["enum"])
            raise SchemaViolation(f"Invalid value for field '{api}': '{value}'. Value must be one of [{allowed}].")
        return value


def _integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INTEGER_TEXT.match(value):
        return int(value)
    return None


def _describe(spec: dict[str, Any]) -> str:
    if "$ref" in spec:
        return f"type.googleapis.com/google.cloud.compute.v1.{spec['$ref']}"
    if spec.get("type") == "boolean":
        return "TYPE_BOOL"
    return _PROTO_TYPES.get(spec.get("format", ""), "TYPE_STRING" if spec.get("type") == "string" else "TYPE_MESSAGE")


def _show(value: Any) -> str:
    """The offending value as the front end quotes it: strings in double quotes, the rest as JSON."""
    return json.dumps(value)[:200]


def check_query(method_id: str, query: dict[str, str]) -> None:
    """Query parameters: unknown names cannot be bound; booleans and integers must parse."""
    parameters = method(method_id)["parameters"]
    for name, text in query.items():
        if name in _SYSTEM_PARAMETERS:
            continue
        spec = parameters.get(name)
        if spec is None or spec.get("location") != "query":
            raise SchemaViolation(
                f'Invalid JSON payload received. Unknown name "{name}": Cannot bind query parameter. '
                f"Field '{name}' could not be found in request message."
            )
        if spec.get("type") == "boolean" and text not in ("true", "false"):
            raise SchemaViolation(f"Invalid value at '{snake(name)}' (TYPE_BOOL), \"{text}\"")
        if spec.get("type") == "integer" and not _INTEGER_TEXT.match(text):
            raise SchemaViolation(f"Invalid value at '{snake(name)}' ({_describe(spec)}), \"{text}\"")
    for name, spec in parameters.items():
        if spec.get("location") == "query" and spec.get("required") and not query.get(name):
            raise SchemaViolation(f"Required field '{name}' not specified")


# Parameters every Google API takes (https://cloud.google.com/apis/docs/system-parameters).
_SYSTEM_PARAMETERS = frozenset({
    "$alt", "alt", "$fields", "fields", "key", "prettyPrint", "$prettyPrint", "quotaUser", "$quotaUser", "userIp",
    "access_token", "callback", "upload_protocol", "uploadType", "$.xgafv", "$callback", "$userProject", "userProject",
})  # fmt: skip
