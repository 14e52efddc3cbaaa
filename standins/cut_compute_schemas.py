"""Cut ``standins/compute_v1_schemas.json`` out of Google's Compute Engine v1 discovery document.

The discovery document ships inside the google-api-python-client wheel::

    pip download --no-deps -d /tmp/gapic google-api-python-client
    unzip -o /tmp/gapic/google_api_python_client-*.whl \\
        'googleapiclient/discovery_cache/documents/compute.v1.json' -d /tmp/gapic
    python -m standins.cut_compute_schemas /tmp/gapic/googleapiclient/discovery_cache/documents/compute.v1.json

It keeps the methods the stand-in serves (their request schema and query parameters) and the schemas
their request bodies use, with everything they reference; descriptions are dropped, every type, format,
enum, ``$ref`` and ``annotations.required`` is kept as Google wrote it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).with_name("compute_v1_schemas.json")
METHODS = (
    "instances.insert", "instances.get", "instances.list", "instances.aggregatedList", "instances.delete",
    "instances.start", "instances.stop", "instances.suspend", "instances.resume", "instances.setLabels",
    "instances.attachDisk", "instances.detachDisk",
    "disks.insert", "disks.get", "disks.list", "disks.delete",
    "images.insert", "images.get", "images.getFromFamily", "images.list", "images.delete",
    "zoneOperations.list", "globalOperations.list",
)  # fmt: skip
ROOTS = (
    "Instance", "AttachedDisk", "AttachedDiskInitializeParams", "NetworkInterface", "AccessConfig", "Metadata",
    "Tags", "Scheduling", "ServiceAccount", "AcceleratorConfig", "ShieldedInstanceConfig", "Image", "Disk",
    "InstancesSetLabelsRequest",
)  # fmt: skip
def _references(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_references(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_references(v) for v in node))
    return set()


def _trim_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Keep what validation needs; property ``properties`` maps are kept whole (their keys are field names)."""

    def prop(node: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in node.items() if k in ("type", "format", "$ref", "enum", "annotations")}
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                out[key] = prop(node[key])
        if "properties" in node:
            out["properties"] = {name: prop(p) for name, p in node["properties"].items()}
        return out

    return prop(schema)


def cut(document: dict[str, Any]) -> dict[str, Any]:
    schemas, methods = document["schemas"], {}
    wanted = set(ROOTS)
    for method_id in METHODS:
        resource, verb = method_id.split(".")
        method = document["resources"][resource]["methods"][verb]
        methods[method_id] = {
            "httpMethod": method["httpMethod"], "path": method["path"],
            "request": method.get("request", {}).get("$ref"),
            "parameters": {n: {k: v for k, v in p.items() if k in ("type", "format", "required", "location", "enum")}
                           for n, p in method.get("parameters", {}).items()},
        }  # fmt: skip
        if methods[method_id]["request"]:
            wanted.add(methods[method_id]["request"])
    done: dict[str, Any] = {}
    while wanted:
        name = wanted.pop()
        if name not in done:
            done[name] = _trim_schema(schemas[name])
            wanted |= _references(schemas[name]) - done.keys()
    return {
        "source": "googleapiclient/discovery_cache/documents/compute.v1.json (google-api-python-client wheel)",
        "revision": document["revision"], "version": document["version"],
        "methods": methods, "schemas": dict(sorted(done.items())),
    }  # fmt: skip


def main(argv: list[str]) -> None:
    document = json.loads(Path(argv[1]).read_text())
    cut_doc = cut(document)
    if len(argv) > 2:
        cut_doc["source"] += f" {argv[2]}"
    OUTPUT.write_text(json.dumps(cut_doc, indent=1, sort_keys=False) + "\n")
    print(f"{OUTPUT}: {len(cut_doc['schemas'])} schemas, {len(cut_doc['methods'])} methods, revision {cut_doc['revision']}")


if __name__ == "__main__":
    main(sys.argv)
