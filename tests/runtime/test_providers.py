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


def test_gpu_providers_are_available_only_where_a_session_can_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(providers, "_compiled_providers", lambda: ["cpu", "cuda", "tensorrt"])  # onnxruntime-gpu
    monkeypatch.setattr(providers, "nvidia_gpus", lambda: ())
    assert providers.available_providers() == ["cpu"]  # so auto never picks a CUDA session that cannot start
    assert providers.unavailable_reason("cuda") == "no NVIDIA GPU on this host"
    # a GPU the driver lists, and this (CPU) onnxruntime, whose sessions fall back: compiled in is not "can start"
    providers.start_problem.cache_clear()
    monkeypatch.setattr(providers, "nvidia_gpus", lambda: ("NVIDIA H200",))
    assert providers.available_providers() == ["cpu"]
    assert "could not start a cuda session" in (providers.unavailable_reason("cuda") or "")
    trt = providers.unavailable_reason("tensorrt") or ""
    assert trt.startswith("TensorRT libraries not found (libnvinfer.so.10)") and "pip install tensorrt" in trt
    # sessions that start, and TensorRT's libraries found
    providers.start_problem.cache_clear()
    monkeypatch.setattr(providers, "_session_problem", lambda spec: None)
    monkeypatch.setattr(providers, "_loads", lambda library: True)
    assert providers.available_providers() == ["cpu", "cuda", "tensorrt"]
    assert providers.unavailable_reason("tensorrt") is None
    monkeypatch.setattr(providers, "_compiled_providers", lambda: ["cpu"])
    assert "pip install onnxruntime-gpu" in (providers.unavailable_reason("cuda") or "")


def test_the_probe_is_made_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(providers, "nvidia_gpus", lambda: ("NVIDIA H200",))
    monkeypatch.setattr(providers, "_session_problem", lambda spec: calls.append(spec.name))
    for _ in range(3):
        assert providers.start_problem("cuda") is None
    assert calls == ["cuda"]


def test_the_registry_is_the_one_place_providers_are_described() -> None:
    from tvdeploy.runtime.formats import FORMATS, providers_of

    assert providers.auto_order() == ["cuda", "openvino", "cpu"]  # TensorRT only by name: its builds take minutes
    assert providers.TORCH_PROVIDERS == ("cpu", "cuda") == providers_of("eager")
    assert FORMATS["onnx"].providers == providers.PROVIDER_NAMES
    assert [name for name, spec in providers.PROVIDERS.items() if spec.on_gpu] == ["cuda", "tensorrt"]
    assert providers.ort_provider_list("tensorrt", {"device_id": 0}) == [
        ("TensorrtExecutionProvider", {"device_id": 0}),
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    assert str(providers.Device.parse("cuda:1")) == "cuda:1" and str(providers.Device.parse("CPU")) == "cpu"
    for bad in ("tpu", "cuda:-1", "cpu:1", "cuda:x"):
        with pytest.raises(ProviderError, match="unknown device"):
            providers.Device.parse(bad)
    cuda = providers.get_provider("cuda")
    assert cuda.check_options({"device_id": 0, "prefer_nhwc": 1}) == {"device_id": 0, "prefer_nhwc": 1}
    with pytest.raises(ProviderError, match="takes no option 'INFERENCE_PRECISION_HINT'"):
        cuda.check_options({"INFERENCE_PRECISION_HINT": "f16"})
    with pytest.raises(ProviderError, match="'device_id' must be int, got True"):
        cuda.check_options({"device_id": True})


def test_a_runner_refuses_options_its_provider_does_not_take(tmp_path) -> None:
    from tests.runtime.test_manifest import make_manifest
    from tvdeploy.runtime.runners.onnx import OnnxRunner

    config = providers.SessionConfig(provider_options={"trt_fp16_enable": True})
    with pytest.raises(ProviderError, match="cuda provider options: cuda takes no option 'trt_fp16_enable'"):
        OnnxRunner.for_artifact(tmp_path, make_manifest(), "cuda", config)
    config = providers.SessionConfig(provider_options={"prefer_nhwc": 1, "device_id": 0})
    assert OnnxRunner.for_artifact(tmp_path, make_manifest(), "cuda", config).config.provider_options == {
        "prefer_nhwc": 1,
        "device_id": 0,
    }
