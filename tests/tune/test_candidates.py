"""What tune plans to try on a host: the CPU configurations, and the GPU ones (CUDA, TensorRT) only where an NVIDIA
GPU and onnxruntime-gpu's providers are both there; the precision options TensorRT needs; a GPU record applied."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from tvdeploy.runtime import providers
from tvdeploy.runtime.deployment import apply_deployment
from tvdeploy.runtime.host import cpu_signature
from tvdeploy.runtime.manifest import Deployment, Manifest, read_manifest
from tvdeploy.runtime.providers import SessionConfig
from tvdeploy.runtime.runners.onnx import OnnxRunner
from tvdeploy.tune import candidates
from tvdeploy.tune.candidates import Candidate, plan


def _host(monkeypatch: pytest.MonkeyPatch, gpus: tuple[str, ...], compiled: list[str], starts: bool = True) -> None:
    """A host with these NVIDIA GPUs and an onnxruntime build compiled with these providers, whose sessions start
    (with TensorRT's libraries) or not (the most common GPU install lacks them)."""
    monkeypatch.setattr(providers, "nvidia_gpus", lambda: gpus)
    monkeypatch.setattr(providers, "_compiled_providers", lambda: compiled)
    monkeypatch.setattr(providers, "_loads", lambda library: starts)
    providers.start_problem.cache_clear()  # the probe sees this host, not the one before
    if starts:
        monkeypatch.setattr(providers, "_session_problem", lambda spec: None)


def test_without_a_gpu_no_gpu_configuration_is_tried_or_listed(monkeypatch) -> None:
    _host(monkeypatch, (), ["cpu", "cuda", "tensorrt"])  # onnxruntime-gpu lists CUDA with no GPU in the machine
    planned, skipped = plan(has_calibration=True, cores=2)
    assert all(c.provider == "cpu" for c in planned)
    assert ("onnx", "fp32") in {c.artifact_key for c in planned}
    assert all(s.provider == "cpu" for s in skipped)  # a CPU host's report does not list TensorRT candidates


def test_a_gpu_whose_providers_cannot_start_names_each_configuration_with_its_reason(monkeypatch) -> None:
    _host(monkeypatch, ("NVIDIA H200",), ["cpu", "cuda", "tensorrt"], starts=False)
    planned, skipped = plan(has_calibration=True, cores=2)
    assert all(c.provider == "cpu" for c in planned)
    gpu = {(s.precision, s.provider): s.reason for s in skipped if s.provider != "cpu"}
    assert set(gpu) == {("fp32", "cuda"), ("fp16", "cuda"), ("fp16", "tensorrt"), ("int8", "tensorrt")}
    assert gpu[("fp16", "tensorrt")].startswith("TensorRT libraries not found (libnvinfer.so.10); pip install tensorrt")
    assert "could not start a cuda session" in gpu[("fp32", "cuda")]
    assert next(s for s in skipped if s.provider == "tensorrt").describe().startswith("onnx fp16 on tensorrt: ")


def test_with_a_gpu_and_onnxruntime_gpu_cuda_and_tensorrt_are_candidates(monkeypatch) -> None:
    _host(monkeypatch, ("NVIDIA H200",), ["cpu", "cuda", "tensorrt"])
    planned, skipped = plan(has_calibration=True, cores=2)
    gpu = [c for c in planned if c.provider != "cpu"]
    assert [c.name for c in gpu] == [
        "onnx-fp32-cuda", "onnx-fp32-cuda-notf32", "onnx-fp16-cuda", "onnx-fp16-cuda-nhwc", "onnx-fp16-cuda-nhwc-graph",
        "onnx-fp16-tensorrt", "onnx-int8-tensorrt",
    ]  # fmt: skip
    named = {c.name: c for c in gpu}
    assert dict(named["onnx-fp16-cuda-nhwc-graph"].options) == {"prefer_nhwc": 1, "enable_cuda_graph": 1}
    throughput = {c.name: c for c in plan(has_calibration=True, cores=2, objective="throughput")[0]}
    assert throughput["onnx-fp16-cuda-nhwc-s2"].streams == 2  # copies of one call overlap another's compute
    assert dict(named["onnx-fp16-cuda-nhwc"].options) == {"prefer_nhwc": 1}  # NHWC convolutions, fp16
    assert dict(named["onnx-fp32-cuda-notf32"].options) == {"use_tf32": 0}  # fp32 without TF32: parity decides
    assert named["onnx-fp16-cuda-nhwc"].artifact_key == named["onnx-fp16-cuda"].artifact_key  # one derivation
    # the int8 TensorRT candidate runs the same QDQ artifact as ONNX Runtime's CPU int8: one derivation
    assert Candidate("onnx", "int8", 2, "tensorrt").artifact_key == Candidate("onnx", "int8", 2).artifact_key

    planned, skipped = plan(has_calibration=False, cores=2)
    assert "onnx-int8-tensorrt" not in {c.name for c in planned}
    assert any((s.precision, s.provider) == ("int8", "tensorrt") and "calibration" in s.reason for s in skipped)


def test_a_build_without_tensorrt_says_how_to_get_it(monkeypatch) -> None:
    _host(monkeypatch, ("NVIDIA H200",), ["cpu", "cuda"])
    planned, skipped = plan(has_calibration=True, cores=2)
    assert {c.provider for c in planned} == {"cpu", "cuda"}
    reasons = {(s.precision, s.provider): s.reason for s in skipped}
    assert "no tensorrt provider" in reasons[("fp16", "tensorrt")]
    assert "pip install tensorrt" in reasons[("fp16", "tensorrt")]


def test_tensorrt_gets_the_precision_options_under_the_callers(resnet18_artifacts) -> None:
    artifact = resnet18_artifacts["onnx"]
    fp16 = dataclasses.replace(read_manifest(artifact), precision="fp16")
    runner = OnnxRunner.for_artifact(artifact, fp16, "tensorrt")  # cheap: no session until activated
    assert runner.config.provider_options == {"trt_fp16_enable": True}
    int8 = dataclasses.replace(fp16, precision="int8")
    mine = SessionConfig(provider_options={"trt_fp16_enable": False, "device_id": 1})
    runner = OnnxRunner.for_artifact(artifact, int8, "tensorrt", mine)
    assert runner.config.provider_options == {"trt_int8_enable": True, "trt_fp16_enable": False, "device_id": 1}
    assert OnnxRunner.for_artifact(artifact, int8, "cpu").config.provider_options == {}


def _tuned_on(artifact: Path, provider: str) -> Manifest:
    record = Deployment(format="onnx", precision="fp16", provider=provider, threads=2, batch_size=8,
                        objective="throughput", host_cpu="x", host_signature=cpu_signature())  # fmt: skip
    return dataclasses.replace(read_manifest(artifact), deployment=record)


def test_a_gpu_record_runs_on_its_provider_where_offered_and_says_so_where_not(
    resnet18_artifacts, monkeypatch, caplog
) -> None:
    manifest = _tuned_on(resnet18_artifacts["onnx"], "tensorrt")
    _host(monkeypatch, (), ["cpu", "cuda", "tensorrt"])
    with caplog.at_level(logging.WARNING, logger="tvdeploy"):
        assert apply_deployment(manifest, None, None).provider == "cpu"
    assert "tuned on tensorrt, which this host does not offer" in caplog.text
    assert apply_deployment(manifest, None, None, "cpu").provider == "cpu"  # the caller's

    _host(monkeypatch, ("NVIDIA H200",), ["cpu", "cuda", "tensorrt"])
    applied = apply_deployment(manifest, None, None)
    assert (applied.provider, applied.batch_size, applied.session_config.intra_op_threads) == ("tensorrt", 8, 2)


def test_an_avx2_only_host_does_not_try_bf16_and_the_report_says_why(monkeypatch) -> None:
    from tvdeploy.tune import tuner

    avx2 = frozenset({"avx", "avx2", "fma", "f16c", "sse4_1"})  # the AMD EPYC of other days
    monkeypatch.setattr(candidates, "cpu_flags", lambda: avx2)
    monkeypatch.setattr(tuner, "cpu_flags", lambda: avx2)
    _host(monkeypatch, (), ["cpu"])
    planned, skipped = plan(has_calibration=True, cores=2)
    assert ("openvino", "bf16") not in {c.artifact_key for c in planned}
    assert any(s.precision == "bf16" and "no avx512_bf16 or amx_bf16" in s.reason for s in skipped)
    assert {"onnx-fp32-t2", "onnx-int8-t2", "openvino-int8-t2"} <= {c.name for c in planned}
    assert "neither VNNI nor AMX" in tuner._host_note(tried_int8=True)
    assert "int8" not in tuner._host_note(tried_int8=False)  # int8 is explained only where it was tried


def test_throughput_tries_openvino_on_parallel_streams_and_latency_says_why_not(monkeypatch) -> None:
    _host(monkeypatch, (), ["cpu"])
    planned, _ = plan(has_calibration=True, cores=2, objective="throughput")
    streamed = {c.name: c for c in planned if c.streams > 1}
    assert set(streamed) == {f"openvino-{p}-t1-s2" for p in ("fp32", "bf16", "int8") if ("openvino", p) in
                             {c.artifact_key for c in planned}}  # fmt: skip
    assert streamed and all(c.threads == 1 and c.format == "openvino" for c in streamed.values())  # 2 x 1 thread
    assert not any(c.streams > 1 for c in planned if c.format == "onnx")  # its runner has no streams

    planned, skipped = plan(has_calibration=True, cores=2, objective="latency")
    assert all(c.streams == 1 for c in planned)
    assert [s.reason for s in skipped if "streams" in s.precision] == [candidates.STREAMS_FOR_THROUGHPUT]
    assert [candidates.stream_count(n) for n in (1, 2, 4, 8, 16)] == [0, 2, 2, 2, 4]
