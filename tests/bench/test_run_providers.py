"""Which provider each bench target runs on: the run's for all, else each target's own (tune's candidates, a
deployment record's), else the CPU."""

from __future__ import annotations

import dataclasses

import pytest

from tvdeploy.bench.run import _providers
from tvdeploy.bench.targets import artifact_target
from tvdeploy.errors import ProviderError
from tvdeploy.runtime import providers


def test_a_run_provider_applies_to_all_and_none_leaves_each_its_own(resnet18_artifacts, monkeypatch) -> None:
    plain = artifact_target(resnet18_artifacts["onnx"])
    assert plain.provider is None  # no deployment record
    gpu = dataclasses.replace(plain, name="gpu", provider="cuda")
    monkeypatch.setattr(providers, "_available_for", lambda backend: ["cpu", "cuda"])
    assert _providers([plain, gpu], None) == {plain.name: "cpu", "gpu": "cuda"}
    assert _providers([plain, gpu], "cpu") == {plain.name: "cpu", "gpu": "cpu"}
    monkeypatch.setattr(providers, "_available_for", lambda backend: ["cpu"])
    with pytest.raises(ProviderError, match="'cuda' is not available for onnx"):
        _providers([plain, gpu], None)  # a target's own provider is as explicit as the run's: never dropped
