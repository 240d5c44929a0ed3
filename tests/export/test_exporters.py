"""Exporter mechanics: external data for big models, fallbacks when an exporter raises."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tvdeploy.errors import ExportError
from tvdeploy.export import onnx_exporter, torchscript_exporter
from tvdeploy.export.options import ExportOptions
from tvdeploy.export.pipeline import ExportRequest, export_model
from tvdeploy.runtime import load


def _export(tmp_path: Path, fmt: str) -> Path:
    (outcome,) = export_model(
        ExportRequest("squeezenet1_1", [fmt], weights="none", output=tmp_path / fmt, progress=False)
    )
    assert outcome.passed, outcome.parity.failures
    return outcome.artifact_dir


@pytest.mark.slow  # exports a model or runs subprocesses (seconds)
def test_big_models_get_external_data_and_it_is_hashed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, photo_files
) -> None:
    monkeypatch.setattr(onnx_exporter, "EXTERNAL_DATA_THRESHOLD", 0)  # pretend squeezenet is over 2 GB
    artifact = _export(tmp_path, "onnx")
    manifest = json.loads((artifact / "tvdeploy.json").read_text())
    paths = [f["path"] for f in manifest["files"]]
    assert paths[0] == "model.onnx" and "model.onnx.data" in paths
    data = next(f for f in manifest["files"] if f["path"] == "model.onnx.data")
    assert data["bytes"] > (artifact / "model.onnx").stat().st_size
    assert load(artifact).predict(photo_files[0])
    (artifact / "model.onnx.data").write_bytes(b"\0" * data["bytes"])
    with pytest.raises(Exception, match="does not match the sha256"):
        load(artifact)


def _fail_strategy(monkeypatch: pytest.MonkeyPatch, exporter_class: type, failing: str) -> None:
    original = exporter_class.produce

    def produce(self, job, out_dir, strategy):
        if strategy == failing:
            raise RuntimeError(f"simulated {failing} failure")
        return original(self, job, out_dir, strategy)

    monkeypatch.setattr(exporter_class, "produce", produce)


def test_dynamo_failure_falls_back_to_the_torchscript_exporter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fail_strategy(monkeypatch, onnx_exporter.OnnxExporter, "dynamo")
    manifest = json.loads((_export(tmp_path, "onnx") / "tvdeploy.json").read_text())
    assert manifest["exporter"] == "torch.onnx.export(dynamo=False)"
    first, second = manifest["export_info"]["attempts"]
    assert first == {"strategy": "dynamo", "exported": False, "error": "RuntimeError: simulated dynamo failure"}
    assert second["strategy"] == "torchscript" and second["parity_passed"]


def test_trace_failure_falls_back_to_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fail_strategy(monkeypatch, torchscript_exporter.TorchScriptExporter, "trace")
    manifest = json.loads((_export(tmp_path, "torchscript") / "tvdeploy.json").read_text())
    assert manifest["exporter"] == "torch.jit.script"


def test_every_exporter_failing_is_an_export_error_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def always_fails(self, job, out_dir, strategy):
        raise RuntimeError(f"{strategy} broke")

    monkeypatch.setattr(onnx_exporter.OnnxExporter, "produce", always_fails)
    with pytest.raises(
        ExportError, match="dynamo: RuntimeError: dynamo broke; torchscript: RuntimeError: torchscript broke"
    ):
        export_model(ExportRequest("squeezenet1_1", ["onnx"], weights="none", output=tmp_path / "x", progress=False))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # exports a model or runs subprocesses (seconds)
def test_a_program_that_does_not_run_falls_back_to_a_fixed_batch(tmp_path: Path, monkeypatch, photo_files) -> None:
    """ExecuTorch: when the dynamic-batch program fails at run time, the static one (batch 1) is written."""
    from tvdeploy.export import executorch_exporter

    original = executorch_exporter.ExecuTorchExporter.produce

    def produce(self, job, out_dir, strategy):
        result = original(self, job, out_dir, strategy)
        if strategy == "xnnpack":  # as shufflenet's program does: it loads, then fails in the delegate
            (out_dir / job.model_path).write_bytes(b"not a program")
        return result

    monkeypatch.setattr(executorch_exporter.ExecuTorchExporter, "produce", produce)
    artifact = _export(tmp_path, "executorch")
    manifest = json.loads((artifact / "tvdeploy.json").read_text())
    first, second = manifest["export_info"]["attempts"]
    assert first["strategy"] == "xnnpack" and first["exported"] and "error" in first
    assert second["strategy"] == "xnnpack-static" and second["parity_passed"]
    assert manifest["input"]["shape"] == [1, 3, 224, 224] and manifest["output"]["shape"] == [1, 1000]
    # the runtime feeds it one image at a time
    assert len(load(artifact, batch_size=8).predict(photo_files, top_k=1)) == len(photo_files)


@pytest.mark.slow  # exports a model or runs subprocesses (seconds)
def test_one_format_failing_keeps_the_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tvdeploy.export.pipeline import PartialExportError

    def always_fails(self, job, out_dir, strategy):
        raise RuntimeError(f"{strategy} broke")

    monkeypatch.setattr(torchscript_exporter.TorchScriptExporter, "produce", always_fails)
    with pytest.raises(PartialExportError, match="every torchscript exporter failed") as caught:
        export_model(
            ExportRequest("squeezenet1_1", ["torchscript", "pt2"], weights="none", output=tmp_path, progress=False)
        )
    assert [o.format for o in caught.value.outcomes] == ["pt2"] and set(caught.value.failed) == {"torchscript"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["squeezenet1_1-pt2"]


@pytest.mark.slow  # exports a model or runs subprocesses (seconds)
def test_openvino_fp16_is_converted_from_an_fp32_onnx_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Requested together, the fp16 ONNX artifact is written and OpenVINO still converts an fp32 ONNX file."""
    from tvdeploy.export import openvino_converter
    from tvdeploy.runtime.manifest import read_manifest

    sources = []
    original = openvino_converter.OpenVinoConverter.produce

    def produce(self, job, out_dir, strategy):
        sources.append(read_manifest(job.source_dir).precision)
        return original(self, job, out_dir, strategy)

    monkeypatch.setattr(openvino_converter.OpenVinoConverter, "produce", produce)
    request = ExportRequest(
        "squeezenet1_1", ["onnx", "openvino"], weights="none", output=tmp_path, progress=False,
        options=ExportOptions(precision="fp16"),
    )  # fmt: skip
    onnx_out, openvino_out = export_model(request)
    assert sources == ["fp32"]
    assert onnx_out.manifest.precision == openvino_out.manifest.precision == "fp16"
    assert onnx_out.passed and openvino_out.passed
    assert 'element_type="f16"' in (openvino_out.artifact_dir / "model.xml").read_text()  # compressed weights
    fp32_size = sum(f.bytes for f in onnx_out.manifest.files) * 2  # the fp16 ONNX is about half of fp32
    assert (openvino_out.artifact_dir / "model.bin").stat().st_size < 0.6 * fp32_size
