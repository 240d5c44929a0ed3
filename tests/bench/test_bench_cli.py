"""`tvdeploy bench` on a tiny model: the JSON contract, artifacts by name, outputs, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli
from tvdeploy.bench.stats import LatencyStats
from tvdeploy.bench.targets import parse_backends
from tvdeploy.errors import UserInputError


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("bench")
    from tvdeploy.cli import main

    code = main(
        [
            "bench",
            "--model",
            "mobilenet_v3_small",
            "--weights",
            "none",
            "--backends",
            "eager,onnx",
            "--batch-sizes",
            "1,2",
            "--iterations",
            "3",
            "--warmup",
            "1",
            "--e2e",
            "--bare-ort",
            "--cache-dir",
            str(root / "cache"),
            "--save-json",
            str(root / "out.json"),
            "--markdown",
            str(root / "out.md"),
            "--plot",
            str(root / "out.png"),
        ]
    )
    assert code == 0
    return root, json.loads((root / "out.json").read_text())


def test_json_report_has_the_documented_fields(bench_run) -> None:
    _, report = bench_run
    assert set(report) >= {"results", "machine", "versions", "config"}
    assert report["machine"]["usable_cores"] >= 1 and report["machine"]["cpu_model"]
    assert {"onnxruntime", "torch", "tvdeploy"} <= set(report["versions"])
    rows = report["results"]
    assert {(r["backend"], r["mode"], r["batch_size"]) for r in rows} == {
        (b, m, n) for b in ("eager", "onnx") for m in ("model", "e2e") for n in (1, 2)
    } | {("onnx", "bare", 1), ("onnx", "bare", 2)}
    for row in rows:
        assert set(row["latency_ms"]) == {"mean", "min", "max", "p50", "p90", "p99"}
        lat = row["latency_ms"]
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert row["iterations"] == 3
        assert row["throughput_ips"] == pytest.approx(row["batch_size"] / (lat["mean"] / 1000), rel=1e-3)
        assert row["cold_start_ms"] > 0 and row["peak_rss_mb"] > 0
    onnx = next(r for r in rows if r["backend"] == "onnx" and r["mode"] == "model" and r["batch_size"] == 1)
    eager = next(r for r in rows if r["backend"] == "eager" and r["mode"] == "model" and r["batch_size"] == 1)
    assert onnx["file_mb"] > 1 and onnx["artifact"].endswith("-onnx")
    assert onnx["speedup_vs_eager"] == pytest.approx(eager["latency_ms"]["mean"] / onnx["latency_ms"]["mean"], rel=1e-2)
    assert eager["speedup_vs_eager"] == 1.0
    assert onnx["baseline"] == "eager" and onnx["speedup"] == onnx["speedup_vs_eager"]
    # the torch-free runtime needs far less memory than eager torch
    assert onnx["peak_rss_mb"] < eager["peak_rss_mb"]
    # MACs counted from the graph (the catalog's model), against this host's fp32 peak
    assert onnx["macs_per_s"] == pytest.approx(
        report["macs_per_image"] * 1 / (onnx["latency_ms"]["mean"] / 1000), rel=1e-3
    )
    assert 0 < onnx["peak_share"] < 2 and eager["macs_per_s"] > 0


def test_markdown_and_plot_are_written(bench_run) -> None:
    root, _ = bench_run
    markdown = (root / "out.md").read_text()
    assert markdown.startswith("| name | backend | mode | batch |") and "Machine:" in markdown
    assert (root / "out.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_two_artifacts_are_compared_by_name(bench_run, tmp_path: Path, capsys) -> None:
    root, _ = bench_run
    source = next((root / "cache").glob("*-onnx"))
    shutil.copytree(source, tmp_path / "fp32-a")
    shutil.copytree(source, tmp_path / "fp32-b")
    code, out, _ = run_cli(
        capsys,
        "bench",
        tmp_path / "fp32-a",
        tmp_path / "fp32-b",
        "--iterations",
        "2",
        "--no-cold-start",
        "--save-json",
        tmp_path / "two.json",
    )
    assert code == 0 and "fp32-a" in out and "fp32-b" in out
    rows = json.loads((tmp_path / "two.json").read_text())["results"]
    assert [(r["name"], r["artifact"]) for r in rows] == [
        ("fp32-a", str(tmp_path / "fp32-a")),
        ("fp32-b", str(tmp_path / "fp32-b")),
    ]


def test_asking_for_a_backend_no_artifact_has(bench_run, capsys) -> None:
    root, _ = bench_run
    artifact = next((root / "cache").glob("*-onnx"))
    code, _, err = run_cli(capsys, "bench", artifact, "--backends", "pt2", "--iterations", "1")
    assert code == 2 and "none of the artifacts is of the backends pt2" in err and f"{artifact.name} (onnx)" in err


def test_bench_argument_errors(capsys, tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "bench")
    assert code == 2 and "either --model NAME or one or more ARTIFACT" in err
    with pytest.raises(UserInputError, match="unknown backend"):
        parse_backends("onnx,tflite")
    assert parse_backends("ONNX, eager,onnx") == ["onnx", "eager"]


def test_latency_stats() -> None:
    stats = LatencyStats.from_seconds([0.010, 0.020, 0.030, 0.040])
    assert stats.mean == pytest.approx(25.0) and stats.min == 10.0 and stats.max == 40.0
    assert stats.p50 == pytest.approx(25.0) and stats.samples == 4
    with pytest.raises(ValueError):
        LatencyStats.from_seconds([])


@pytest.mark.slow  # exports a model or runs subprocesses (seconds)
def test_bench_model_loads_the_eager_model_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tvdeploy.bench.targets import model_targets
    from tvdeploy.export import pipeline
    from tvdeploy.models import loader

    calls = []
    original = loader.load_model

    def counting(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(loader, "load_model", counting)
    monkeypatch.setattr(pipeline, "load_model", counting)
    targets = model_targets("squeezenet1_1", "none", ["eager", "pt2"], tmp_path)
    assert [t.backend for t in targets] == ["eager", "pt2"] and calls == ["squeezenet1_1"]
    # the eager target is the very module the artifact was exported (and parity-checked) from
    assert targets[0].module is not None and (tmp_path / "squeezenet1_1-none-seed0-pt2").is_dir()
