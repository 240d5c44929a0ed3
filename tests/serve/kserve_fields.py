"""Fields of a Kubernetes object that KServe's API types do not have. Run as a module (the YAML on stdin, the
type name as the argument; prints a JSON list): KServe's protobuf descriptors clash with tritonclient.grpc's in
one process (both define package ``inference``), so the tests ask a separate process."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

PRIMITIVES = {"str", "int", "bool", "float", "object", "datetime"}


def _model_class(name: str) -> type:
    import kserve
    import kubernetes.client

    for namespace in (kserve, kubernetes.client):
        if hasattr(namespace, name):
            return getattr(namespace, name)
    raise LookupError(f"no API type {name}")


def unknown_fields(value: Any, type_name: str, path: str) -> list[str]:
    """Paths in ``value`` that the OpenAPI type ``type_name`` (as the SDKs spell types) does not have."""
    if type_name in PRIMITIVES or value is None:
        return []
    if match := re.fullmatch(r"[lL]ist\[(.+)\]", type_name):
        if not isinstance(value, list):
            return [f"{path} (not a list)"]
        return [bad for i, item in enumerate(value) for bad in unknown_fields(item, match.group(1), f"{path}[{i}]")]
    if match := re.fullmatch(r"(?:dict\((\w+), (.+)\)|Dict\[(\w+), (.+)\])", type_name):
        item_type = match.group(2) or match.group(4)
        if not isinstance(value, dict):
            return [f"{path} (not a mapping)"]
        return [bad for key, item in value.items() for bad in unknown_fields(item, item_type, f"{path}.{key}")]
    model = _model_class(type_name)
    if not isinstance(value, dict):
        return [f"{path} (not a {type_name})"]
    by_json_name = {json_name: attr for attr, json_name in model.attribute_map.items()}
    problems = []
    for key, item in value.items():
        if key not in by_json_name:
            problems.append(f"{path}.{key}")
            continue
        problems += unknown_fields(item, model.openapi_types[by_json_name[key]], f"{path}.{key}")
    return problems


if __name__ == "__main__":
    import yaml

    document = yaml.safe_load(sys.stdin.read())
    print(json.dumps(unknown_fields(document, sys.argv[1], document.get("kind", sys.argv[1]))))
