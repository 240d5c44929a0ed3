"""A GPU host simulated on the CPU: onnxruntime-gpu lists CUDA and TensorRT, the driver shows an H200, and nothing
GPU can start (this onnxruntime is the CPU build: its sessions fall back; TensorRT's libraries are absent). tune
finishes with a CPU winner and names each GPU configuration with its reason; a candidate that crashes or fails in
its trial run is a failed row; predict and bench with ``--provider auto`` run; GPU rows never get the CPU's peak."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli
from tvdeploy.runtime import providers


@pytest.fixture
def gpu_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """onnxruntime-gpu on a machine whose driver lists an H200, in this process."""
    monkeypatch.setattr(providers, "nvidia_gpus", lambda: ("NVIDIA H200",))
    monkeypatch.setattr(providers, "_compiled_providers", lambda: ["cpu", "cuda", "tensorrt"])


@pytest.mark.slow
def test_tune_on_a_gpu_host_whose_providers_cannot_start_picks_a_cpu_winner(
    gpu_host, resnet18_artifacts, tmp_path: Path, capsys
) -> None:
    code, out, err = run_cli(capsys, "tune", resnet18_artifacts["onnx"], "--output", tmp_path / "best",
                             "--batch-sizes", "1", "--budget-s", "0.3", "--save-json", tmp_path / "t.json")  # fmt: skip
    assert code == 0, err
    report = json.loads((tmp_path / "t.json").read_text())
    winner = next(c for c in report["candidates"] if c["name"] == report["winner"])
    assert winner["provider"] == "cpu"
    gpu = {(s["precision"], s["provider"]): s["reason"] for s in report["skipped"] if s["provider"] != "cpu"}
    assert set(gpu) == {("fp32", "cuda"), ("fp16", "cuda"), ("fp16", "tensorrt"), ("int8", "tensorrt")}
    assert gpu[("fp16", "tensorrt")].startswith("TensorRT libraries not found (libnvinfer.so.10)")
    assert "could not start a cuda session" in gpu[("fp16", "cuda")]
    assert "not tried: onnx fp16 on tensorrt: TensorRT libraries not found (libnvinfer.so.10)" in out


@pytest.mark.slow
def test_a_candidate_that_fails_its_trial_in_a_child_is_a_row_and_the_tune_goes_on(
    gpu_host, resnet18_artifacts, tmp_path: Path, capsys, monkeypatch
) -> None:
    # the parent believes CUDA starts; the child (a fresh process, on this CPU build) cannot start it
    monkeypatch.setattr(providers, "_session_problem", lambda spec: None)
    code, _, err = run_cli(capsys, "tune", resnet18_artifacts["onnx"], "--output", tmp_path / "best",
                           "--batch-sizes", "1", "--budget-s", "0.3", "--save-json", tmp_path / "t.json")  # fmt: skip
    assert code == 0, err
    report = json.loads((tmp_path / "t.json").read_text())
    rows = {c["name"]: c for c in report["candidates"]}
    assert {"onnx-fp32-cuda", "onnx-fp16-cuda"} <= set(rows)
    for name in ("onnx-fp32-cuda", "onnx-fp16-cuda"):
        assert rows[name]["refused"].startswith("its trial run failed (exit status 1)"), rows[name]
        assert "cuda" in rows[name]["refused"] and not rows[name]["figures"]
    assert rows[report["winner"]]["provider"] == "cpu" and rows[report["winner"]]["figures"]


def test_a_trial_that_kills_its_process_is_reported_with_the_signal(
    resnet18_artifacts, tmp_path: Path, monkeypatch
) -> None:
    from tvdeploy.tune import trial

    crasher = tmp_path / "crashing-python"
    crasher.write_text("#!/bin/sh\necho 'CUDA failure 700: an illegal memory access' >&2\nkill -ABRT $$\n")
    crasher.chmod(crasher.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(trial.sys, "executable", str(crasher))
    reason = trial.trial_in_child(resnet18_artifacts["onnx"], "cuda", [64])
    assert reason == "its trial run failed (killed by signal 6): CUDA failure 700: an illegal memory access"
    monkeypatch.undo()
    assert trial.trial_in_child(resnet18_artifacts["onnx"], "cpu", [1, 2]) is None  # a real child that runs


def test_predict_and_bench_with_auto_run_on_the_cpu_and_say_why(gpu_host, resnet18_artifacts, photo_files, capsys):
    code, out, err = run_cli(capsys, "predict", resnet18_artifacts["onnx"], photo_files[0], "--provider", "auto")
    assert code == 0 and photo_files[0].name in out
    assert "provider auto: chose cpu for onnx (not cuda: onnxruntime could not start a cuda session" in err
    code, out, _ = run_cli(capsys, "bench", resnet18_artifacts["onnx"], "--provider", "auto", "--iterations", "2",
                           "--batch-sizes", "1", "--no-cold-start")  # fmt: skip
    assert code == 0 and "provider cpu" in out
    code, _, err = run_cli(capsys, "predict", resnet18_artifacts["onnx"], photo_files[0], "--provider", "cuda")
    assert code == 2 and "could not start a cuda session" in err  # an explicit request stays an error with the reason


def test_gpu_rows_are_measured_against_the_gpus_datasheet_peak(monkeypatch) -> None:
    from tvdeploy.bench import peak as cpu_peak
    from tvdeploy.bench.gpu_peak import gpu_peak
    from tvdeploy.bench.peak import provider_peak

    monkeypatch.setattr("tvdeploy.runtime.host.nvidia_gpus", lambda: ("NVIDIA H200",))
    fp16, note = provider_peak("cuda", "fp16")
    assert note is None and fp16 == pytest.approx(989.5e12 / 2)  # dense fp16 tensor cores, in MACs
    assert provider_peak("tensorrt", "int8")[0] == pytest.approx(1979e12 / 2)
    assert provider_peak("cuda", "fp32")[0] == pytest.approx(494.5e12 / 2)  # the CUDA provider's TF32 default
    assert gpu_peak("NVIDIA H200", "fp32", tf32=False).macs_per_s == pytest.approx(67e12 / 2)  # type: ignore[union-attr]
    assert cpu_peak.peak("fp16") is None or provider_peak("cuda", "fp16")[0] != cpu_peak.peak("fp16").macs_per_s
    monkeypatch.setattr("tvdeploy.runtime.host.nvidia_gpus", lambda: ("NVIDIA GeForce RTX 9090",))
    top, note = provider_peak("cuda", "fp16")
    assert top is None and "not in tvdeploy's datasheet table" in (note or "")
    monkeypatch.setattr("tvdeploy.runtime.host.nvidia_gpus", lambda: ("Tesla T4",))
    top, note = provider_peak("cuda", "fp32")
    assert top is None and "no fp32 figure for Tesla T4" in (note or "")  # T4 has no TF32


def test_the_manifest_records_the_onnxruntime_that_was_imported(monkeypatch) -> None:
    from importlib import metadata

    from tvdeploy.runtime import versions

    versions.imported_version.cache_clear()
    real = metadata.version
    monkeypatch.setattr(metadata, "packages_distributions", lambda: {"onnxruntime": ["onnxruntime", "onnxruntime-gpu"]})
    installed = {"onnxruntime": "1.30.0", "onnxruntime-gpu": "9.9.9"}  # both distributions, one import name
    monkeypatch.setattr(metadata, "version", lambda name: installed[name] if name in installed else real(name))
    monkeypatch.setattr("onnxruntime.__version__", "9.9.9")  # the GPU build's files are what Python imported
    try:
        assert versions.imported_version("onnxruntime") == ("9.9.9", "onnxruntime-gpu")
        from tvdeploy.export.versions import tool_versions

        recorded = tool_versions()
        assert (recorded["onnxruntime"], recorded["onnxruntime_distribution"]) == ("9.9.9", "onnxruntime-gpu")
    finally:
        versions.imported_version.cache_clear()
