"""The docs generators in tools/."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(model: str, fmt: str, passed: bool = True, attempts: list | None = None) -> dict:
    return {
        "model": model,
        "format": fmt,
        "exporter": "torch.jit.trace",
        "passed": passed,
        "export_seconds": 3.0,
        "photos_max_abs_diff": 1e-5,
        "photos_atol_limit": 1e-2,
        "photos_top1": 1.0,
        "photos_top5": 1.0,
        "photos_min_cosine": 1.0,
        "random_max_abs_diff": 2e-5,
        "attempts": attempts or [],
        "failures": [],
    }


def test_coverage_table_counts_passes_lists_missing_and_explains_fallbacks(tmp_path: Path) -> None:
    render = _load("render_coverage")
    fallback = [
        {"strategy": "dynamo", "exported": False, "error": "RuntimeError: boom"},
        {"strategy": "torchscript", "exported": True, "parity_passed": True},
    ]
    rows = [
        _row("alexnet", "onnx", attempts=fallback),
        _row("alexnet", "torchscript"),
        _row("alexnet", "pt2", passed=False),
        {"model": "vgg11", "format": "all", "passed": False, "error": "MemoryError: too big"},
    ]
    source = tmp_path / "rows.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    text = render.render(render._load(source), expected=["alexnet", "vgg11", "vit_h_14"])
    assert "**2 of 4 model x format results pass** (2 of 3 models run)" in text
    assert "| alexnet | pt2 | `torch.jit.trace` |" in text and "| NO |" in text
    assert "| vgg11 | all |" in text and "MemoryError: too big" in text
    assert "| vit_h_14 | - | not run" in text
    assert "**alexnet / onnx**: dynamo: RuntimeError: boom; torchscript: parity passed" in text


def test_a_later_run_of_a_model_replaces_its_failure_and_the_rows_of_the_formats_it_ran(tmp_path: Path) -> None:
    render = _load("render_coverage")
    rows = [
        {"model": "vit_h_14", "format": "all", "passed": False, "error": "AssertionError: wrong height"},
        _row("alexnet", "onnx", passed=False),
        _row("vit_h_14", "onnx"),
        _row("vit_h_14", "torchscript"),
        _row("vit_h_14", "pt2"),
        _row("alexnet", "onnx"),
    ]
    source = tmp_path / "rows.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    loaded = render._load(source)
    assert sorted(loaded) == [
        ("alexnet", "onnx"),
        ("vit_h_14", "onnx"),
        ("vit_h_14", "pt2"),
        ("vit_h_14", "torchscript"),
    ]
    assert all(row["passed"] for row in loaded.values())
    assert "wrong height" not in render.render(loaded)

    # a sweep of one more format adds its row and keeps the others
    rows.append(_row("vit_h_14", "openvino"))
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    loaded = render._load(source)
    assert {fmt for model, fmt in loaded if model == "vit_h_14"} == {"onnx", "torchscript", "pt2", "openvino"}
    # a whole-model failure replaces everything the model had
    rows += [_row("alexnet", "pt2"), {"model": "vit_h_14", "format": "all", "passed": False, "error": "MemoryError"}]
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert [fmt for model, fmt in render._load(source) if model == "vit_h_14"] == ["all"]
    # ... unless it says which formats its sweep tried: then only those are replaced
    rows[-1]["formats"] = ["openvino"]
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    kept = {fmt for model, fmt in render._load(source) if model == "vit_h_14"}
    assert kept == {"onnx", "torchscript", "pt2", "all"}


def test_coverage_columns_are_the_registry_formats(tmp_path: Path) -> None:
    from tvdeploy.runtime.formats import FORMATS

    render = _load("render_coverage")
    text = render.render({("alexnet", "onnx"): _row("alexnet", "onnx")})
    for fmt in FORMATS:
        assert f"| alexnet | {fmt} |" in text
    assert "| alexnet | executorch | not run |" in text
    failed = {"model": "alexnet", "format": "executorch", "passed": False, "error": "every executorch exporter failed"}
    text = render.render({("alexnet", "onnx"): _row("alexnet", "onnx"), ("alexnet", "executorch"): failed})
    assert "| alexnet | executorch | - |" in text and "FAIL: every executorch exporter failed" in text
    assert "**1 of 2 model x format results pass**" in text
    assert "onnx 1 of 1 models run, 1 pass" in text and "executorch 1 of 1 models run, 0 pass" in text
    assert "openvino 0 of 1 models run, 0 pass" in text


def _bench_result(backend: str, mode: str, p50: float) -> dict:
    return {"name": backend, "backend": backend, "mode": mode, "batch_size": 1, "latency_ms": {"p50": p50}}


def test_benchmark_runs_section_gives_each_runs_ratios_and_their_medians() -> None:
    render = _load("render_benchmarks")
    runs = {
        "a": {
            "results": [
                _bench_result("eager", "model", 100),
                _bench_result("onnx", "model", 50),
                _bench_result("onnx", "e2e", 55),
                _bench_result("eager", "e2e", 110),
            ]
        },
        "b": {"results": [_bench_result("eager", "model", 100), _bench_result("onnx", "model", 70)]},
        "c": {"results": [_bench_result("eager", "model", 100), _bench_result("onnx", "model", 60)]},
    }
    text = "\n".join(render._runs_section(runs))
    assert "| a | 0.500 | 1.100 | 0.500 | - |" in text
    assert "| b | 0.700 | - | - | - |" in text
    assert "| median | **0.600** (3 runs) | **1.100** (1 runs) | **0.500** (1 runs) | - |" in text


def test_deployment_runtime_section_gives_ratios_to_eager_and_onnx_runtime() -> None:
    render = _load("render_benchmarks")

    def row(backend: str, p50: float) -> dict:
        return {
            "name": backend,
            "backend": backend,
            "mode": "model",
            "batch_size": 1,
            "iterations": 3,
            "latency_ms": {k: p50 for k in ("p50", "mean", "p90", "p99", "min", "max")},
            "throughput_ips": 1000 / p50,
            "cold_start_ms": 100.0,
            "peak_rss_mb": 200.0,
            "file_mb": 4.0,
            "speedup_vs_eager": None,
        }

    edge = {"resnet50": {"results": [row("eager", 100), row("onnx", 50), row("openvino", 60), row("executorch", 75)]}}
    text = "\n".join(render._edge_section(edge))
    assert "| resnet50 | 1 | openvino | 60.0 | 0.60 | 1.20 | 100.0 | 200.0 | 4.0 |" in text
    assert "| resnet50 | 1 | executorch | 75.0 | 0.75 | 1.50 |" in text


def test_the_declared_python_floor_is_the_one_checked_and_run() -> None:
    """pyproject's requires-python, ruff's target and mypy's python_version name one floor, and this interpreter (CI
    runs the suite on the floor) meets it: serve needs asyncio.Runner, new in 3.11."""
    import asyncio
    import re
    import sys
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    floor = re.fullmatch(r">=(\d+)\.(\d+)", project["project"]["requires-python"].strip())
    assert floor, project["project"]["requires-python"]
    major, minor = int(floor.group(1)), int(floor.group(2))
    assert project["tool"]["ruff"]["target-version"] == f"py{major}{minor}"
    assert project["tool"]["mypy"]["python_version"] == f"{major}.{minor}"
    assert sys.version_info[:2] >= (major, minor) and hasattr(asyncio, "Runner")
