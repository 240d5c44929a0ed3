"""`tvdeploy tune` end to end on resnet18, the OpenVINO precisions it derives, and the deployment record it writes
being applied where the artifact is loaded."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli
from tvdeploy.errors import ProviderError
from tvdeploy.runtime import load
from tvdeploy.runtime.host import cpu_flags
from tvdeploy.runtime.manifest import read_manifest
from tvdeploy.runtime.precisions import BF16_FLAGS

pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def tuned(resnet18_artifacts, calibration_dir, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("tune")
    code = __import__("tvdeploy.cli", fromlist=["main"]).main(
        ["tune", str(resnet18_artifacts["onnx"]), "--calibration", str(calibration_dir), "--output", str(out / "best"),
         "--batch-sizes", "1,2", "--budget-s", "0.5", "--save-json", str(out / "tune.json"),
         "--markdown", str(out / "tune.md"), "--plot", str(out / "tune.png")]
    )  # fmt: skip
    assert code == 0
    return out / "best", json.loads((out / "tune.json").read_text())


def test_tune_picks_the_fastest_candidate_that_passes_parity(tuned) -> None:
    best, report = tuned
    candidates = {c["name"]: c for c in report["candidates"]}
    assert "onnx-fp32-t" + str(candidates[report["winner"]]["threads"]) in candidates  # the baseline is always tried
    assert {"onnx-int8", "openvino-fp32", "openvino-int8"} <= {n.rsplit("-t", 1)[0] for n in candidates}
    if cpu_flags().intersection(BF16_FLAGS):
        assert any(n.startswith("openvino-bf16") for n in candidates)
    else:
        assert any(s["precision"] == "bf16" and "no" in s["reason"] for s in report["skipped"])
    timed = [c for c in candidates.values() if c["parity_passed"]]
    fastest = min(timed, key=lambda c: c["figures"]["1"]["p50_ms"])
    assert report["winner"] == fastest["name"]  # objective latency: the lowest p50 at batch 1, measured in one run
    assert report["macs_per_image"] == pytest.approx(1.814e9, rel=0.01)  # resnet18's 1.8 GMACs, from the graph
    assert "won on latency at batch 1" in report["why"]

    manifest = read_manifest(best)
    record = manifest.deployment
    assert record is not None and manifest.schema_version == 3
    assert (record.format, record.precision) == (manifest.format, manifest.precision)
    assert record.batch_size == 1 and record.objective == "latency" and len(record.candidates) == len(candidates)
    assert manifest.parity is not None and manifest.parity.passed
    assert (best.parent / "tune.md").read_text().count("|") > 20 and (best.parent / "tune.png").stat().st_size > 1000


def test_a_tuned_artifact_loads_with_its_record_and_portably_elsewhere(tuned, monkeypatch, caplog) -> None:
    best, _ = tuned
    record = read_manifest(best).deployment
    assert record is not None
    with load(best) as classifier:  # on the host it was tuned on: the record's batch size and threads
        assert classifier.batch_size == record.batch_size
    monkeypatch.setattr("tvdeploy.runtime.deployment.cpu_signature", lambda: "x86_64:avx,avx2,fma")
    with caplog.at_level(logging.WARNING, logger="tvdeploy"), load(best) as classifier:
        assert classifier.batch_size == 8  # portable settings
    assert "tuned on another CPU" in caplog.text


def test_openvino_precisions_derive_from_the_onnx_artifact(resnet18_artifacts, calibration_dir, tmp_path, capsys):
    out = tmp_path / "ov-int8"
    code, _, err = run_cli(capsys, "optimize", resnet18_artifacts["onnx"], "--format", "openvino", "--precision",
                           "int8", "--calibration", calibration_dir, "--output", out)  # fmt: skip
    assert code == 0, err
    manifest = read_manifest(out)
    assert (
        (manifest.format, manifest.precision) == ("openvino", "int8")
        and manifest.parity is not None
        and manifest.parity.passed
    )
    assert manifest.export_info.details["quantization"]["format"] == "QDQ"  # ONNX Runtime's quantization, converted
    code, _, err = run_cli(capsys, "optimize", resnet18_artifacts["onnx"], "--format", "openvino", "--precision",
                           "int8", "--output", tmp_path / "x")  # fmt: skip
    assert code == 2 and "needs calibration images" in err


def test_bf16_is_refused_where_the_cpu_cannot_compute_it(resnet18_artifacts, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr("tvdeploy.runtime.runners.openvino.cpu_flags", lambda: frozenset({"avx2", "fma"}))
    code, _, err = run_cli(capsys, "optimize", resnet18_artifacts["onnx"], "--format", "openvino", "--precision",
                           "bf16", "--output", tmp_path / "bf16")  # fmt: skip
    assert code == 2 and "computes bf16 only on CPUs with avx512_bf16 or amx_bf16" in err
    with pytest.raises(ProviderError, match="which this host lacks"):
        from tvdeploy.runtime.runners.openvino import OpenVinoRunner

        OpenVinoRunner(tmp_path / "model.xml", precision="bf16").activate()


def test_the_objective_decides_the_batch_size_and_the_ranking(tmp_path) -> None:
    from tvdeploy.errors import UserInputError
    from tvdeploy.tune.candidates import Candidate, thread_counts
    from tvdeploy.tune.tuner import CandidateResult, TuneRequest, _ranked

    latency = TuneRequest(tmp_path, tmp_path / "out", batch_sizes=(1, 8))
    throughput = TuneRequest(tmp_path, tmp_path / "out", batch_sizes=(1, 8), objective="throughput")
    assert (latency.deciding_batch, throughput.deciding_batch) == (1, 8)
    with pytest.raises(UserInputError, match="unknown objective"):
        TuneRequest(tmp_path, tmp_path / "out", objective="cost")
    quick = CandidateResult(Candidate("onnx", "int8", 2), figures={1: {"p50_ms": 5.0}, 8: {"throughput_ips": 90.0}})
    wide = CandidateResult(Candidate("openvino", "int8", 2), figures={1: {"p50_ms": 7.0}, 8: {"throughput_ips": 150.0}})
    assert _ranked([wide, quick], 1, "latency")[0] is quick  # the lowest p50 at batch 1 ...
    assert _ranked([quick, wide], 8, "throughput")[0] is wide  # ... or the most images per second at batch 8
    assert thread_counts(2) == [2] and thread_counts(8) == [8, 4]


def test_a_gpu_throughput_tune_times_the_large_batches_a_gpu_needs(tmp_path) -> None:
    from tvdeploy.tune.candidates import Candidate
    from tvdeploy.tune.tuner import TuneRequest

    cpu, gpu = [Candidate("onnx", "fp32", 2)], [Candidate("onnx", "fp32", 2), Candidate("onnx", "fp16", 2, "cuda")]
    throughput = TuneRequest(tmp_path, tmp_path / "out", objective="throughput")
    assert throughput.with_batch_sizes_for(gpu).batch_sizes == (1, 64, 256)
    assert throughput.with_batch_sizes_for(gpu).deciding_batch == 256
    assert throughput.with_batch_sizes_for(cpu).batch_sizes == (1, 8)
    assert TuneRequest(tmp_path, tmp_path / "out").with_batch_sizes_for(gpu).batch_sizes == (1, 8)  # latency
    given = TuneRequest(tmp_path, tmp_path / "out", batch_sizes=(1, 32), objective="throughput")
    assert given.with_batch_sizes_for(gpu).batch_sizes == (1, 32)  # the user's own
