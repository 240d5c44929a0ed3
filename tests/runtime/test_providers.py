"""One provider resolver for every backend: ``resolve_provider(requested, backends)``."""

from __future__ import annotations

import logging

import pytest

from tvdeploy.errors import ProviderError
from tvdeploy.runtime import providers
from tvdeploy.runtime.providers import resolve_provider


@pytest.fixture
def cuda_for_onnx_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine where onnxruntime-gpu sees a GPU but torch is a CPU build."""
    available = {
        "eager": ["cpu"],
        "pt2": ["cpu"],
        "torchscript": ["cpu"],
        "onnx": ["cpu", "cuda"],
        "openvino": ["cpu"],
        "executorch": ["cpu"],
    }
    monkeypatch.setattr(providers, "_available_for", lambda backend: available[backend])


def test_auto_puts_every_backend_of_a_run_on_the_same_provider(cuda_for_onnx_only, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="tvdeploy"):
        assert resolve_provider("auto", ["onnx"]) == "cuda"
        # eager cannot use CUDA here, so the run as a whole stays on the CPU instead of splitting
        assert resolve_provider("auto", ["eager", "onnx", "pt2"]) == "cpu"
    assert any("provider auto: chose cpu for eager, onnx, pt2" in r.getMessage() for r in caplog.records)


def test_an_explicit_provider_a_backend_cannot_use_is_an_error(cuda_for_onnx_only) -> None:
    with pytest.raises(ProviderError, match=r"does not apply to eager \(runs on cpu, cuda\)"):
        resolve_provider("tensorrt", ["eager", "onnx"])
    with pytest.raises(ProviderError, match="not available for eager here"):
        resolve_provider("cuda", ["eager", "onnx"])
    with pytest.raises(ProviderError, match=r"openvino \(runs on cpu\)"):
        resolve_provider("cuda", ["openvino"])
    assert resolve_provider("CUDA", ["onnx"]) == "cuda"


def test_cpu_never_asks_the_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(backend: str) -> list[str]:
        raise AssertionError("cpu needs no availability check (it would import torch for nothing)")

    monkeypatch.setattr(providers, "_available_for", boom)
    assert resolve_provider("cpu", ["eager", "onnx", "executorch"]) == "cpu"
    assert resolve_provider("auto", ["openvino"]) == "cpu"  # nothing but cpu to try
    with pytest.raises(ProviderError, match="unknown provider 'tpu'"):
        resolve_provider("tpu", ["onnx"])


def test_gpu_providers_are_available_only_where_a_gpu_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(providers, "_compiled_providers", lambda: ["cpu", "cuda", "tensorrt"])  # onnxruntime-gpu
    monkeypatch.setattr(providers, "nvidia_gpus", lambda: ())
    assert providers.available_providers() == ["cpu"]  # so auto never picks a CUDA session that cannot start
    assert providers.unavailable_reason("cuda") == "no NVIDIA GPU on this host"
    monkeypatch.setattr(providers, "nvidia_gpus", lambda: ("NVIDIA H200",))
    assert providers.available_providers() == ["cpu", "cuda", "tensorrt"]
    assert providers.unavailable_reason("tensorrt") is None
    monkeypatch.setattr(providers, "_compiled_providers", lambda: ["cpu"])
    assert "pip install onnxruntime-gpu" in (providers.unavailable_reason("cuda") or "")
