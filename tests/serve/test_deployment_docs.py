"""docs/serving.md's KServe InferenceService, checked against KServe's own API types (there is no cluster here to
apply it to): every field it sets is one the InferenceService schema has, with the right kind of value."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")
kserve = pytest.importorskip("kserve")
kubernetes_models = pytest.importorskip("kubernetes.client")

DOCS = Path(__file__).resolve().parents[2] / "docs" / "serving.md"
PRIMITIVES = {"str", "int", "bool", "float", "object", "datetime"}


def _model_class(name: str) -> type:
    for namespace in (kserve, kubernetes_models):
        if hasattr(namespace, name):
            return getattr(namespace, name)
    raise AssertionError(f"no API type {name}")


def _unknown_fields(value: Any, type_name: str, path: str) -> list[str]:
    """Paths in ``value`` that the OpenAPI type ``type_name`` (as the SDKs spell types) does not have."""
    if type_name in PRIMITIVES or value is None:
        return []
    if match := re.fullmatch(r"[lL]ist\[(.+)\]", type_name):
        assert isinstance(value, list), f"{path} should be a list"
        return [bad for i, item in enumerate(value) for bad in _unknown_fields(item, match.group(1), f"{path}[{i}]")]
    if match := re.fullmatch(r"(?:dict\((\w+), (.+)\)|Dict\[(\w+), (.+)\])", type_name):
        item_type = match.group(2) or match.group(4)
        assert isinstance(value, dict), f"{path} should be a mapping"
        return [bad for key, item in value.items() for bad in _unknown_fields(item, item_type, f"{path}.{key}")]
    model = _model_class(type_name)
    assert isinstance(value, dict), f"{path} should be a mapping ({type_name})"
    by_json_name = {json: attr for attr, json in model.attribute_map.items()}
    problems = []
    for key, item in value.items():
        if key not in by_json_name:
            problems.append(f"{path}.{key}")
            continue
        problems += _unknown_fields(item, model.openapi_types[by_json_name[key]], f"{path}.{key}")
    return problems


def _inference_service() -> dict[str, Any]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), flags=re.S)
    services = [doc for doc in map(yaml.safe_load, blocks) if doc.get("kind") == "InferenceService"]
    assert len(services) == 1, "docs/serving.md shows one InferenceService"
    return services[0]


def test_the_documented_inference_service_uses_only_kserves_fields() -> None:
    service = _inference_service()
    assert service["apiVersion"] == f"{kserve.constants.KSERVE_GROUP}/{kserve.constants.KSERVE_V1BETA1_VERSION}"
    assert _unknown_fields(service, "V1beta1InferenceService", "InferenceService") == []
    predictor = service["spec"]["predictor"]
    container = predictor["containers"][0]
    port = container["ports"][0]["containerPort"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": port}
    assert predictor["minReplicas"] <= predictor["maxReplicas"]


def test_the_checker_finds_a_misspelled_field() -> None:
    service = _inference_service()
    service["spec"]["predictor"]["maxReplica"] = 3
    assert _unknown_fields(service, "V1beta1InferenceService", "InferenceService") == [
        "InferenceService.spec.predictor.maxReplica"
    ]
