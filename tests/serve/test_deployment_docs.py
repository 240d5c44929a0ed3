"""docs/serving.md's KServe InferenceService, checked against KServe's own API types (there is no cluster here to
apply it to): every field it sets is one the InferenceService schema has, with the right kind of value."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")
if importlib.util.find_spec("kserve") is None:  # not imported here: see tests/serve/kserve_fields.py
    pytest.skip("kserve is not installed (the serve extra)", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "serving.md"


def _unknown_fields(document: dict[str, Any]) -> list[str]:
    answer = subprocess.run(
        [sys.executable, "-m", "tests.serve.kserve_fields", "V1beta1InferenceService"],
        input=yaml.safe_dump(document), capture_output=True, text=True, cwd=ROOT, check=True, timeout=120,
    )  # fmt: skip
    return json.loads(answer.stdout)


def _inference_service() -> dict[str, Any]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), flags=re.S)
    services = [doc for doc in map(yaml.safe_load, blocks) if doc.get("kind") == "InferenceService"]
    assert len(services) == 1, "docs/serving.md shows one InferenceService"
    return services[0]


@pytest.mark.slow  # seconds of work (see --durations)
def test_the_documented_inference_service_uses_only_kserves_fields() -> None:
    service = _inference_service()
    assert service["apiVersion"] == "serving.kserve.io/v1beta1"
    misspelled = copy.deepcopy(service)
    misspelled["spec"]["predictor"]["maxReplica"] = 3  # the checker finds what it should
    misspelled["spec"]["predictor"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/"
    assert _unknown_fields(service) == []
    assert _unknown_fields(misspelled) == [
        "InferenceService.spec.predictor.containers[0].readinessProbe.httpGet.paht",
        "InferenceService.spec.predictor.maxReplica",
    ]
    predictor = service["spec"]["predictor"]
    container = predictor["containers"][0]
    port = container["ports"][0]["containerPort"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": port}
    assert predictor["minReplicas"] <= predictor["maxReplicas"]
