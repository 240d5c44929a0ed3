"""Model-only inference per model x backend x batch size, plus the end-to-end predict paths.

Run: ``pytest benchmarks`` (see README, "Benchmarks" for the regression gate).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from benchmarks.conftest import BATCH_SIZES, MODELS, random_batch
from tvdeploy.bench.targets import BACKENDS
from tvdeploy.runtime.classifier import Classifier


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("model", MODELS)
def test_model_inference(benchmark, bench_targets, model: str, backend: str, batch_size: int) -> None:
    target = bench_targets[model][backend]
    benchmark.group = f"{model} batch {batch_size}"
    with target.runner("cpu", None) as runner:
        feeds = {runner.inputs[0].name: random_batch(target, batch_size)}
        benchmark.pedantic(runner.infer, args=(feeds,), rounds=10 if batch_size == 1 else 5, warmup_rounds=2)


@pytest.mark.parametrize("backend", ["onnx", "eager"])
@pytest.mark.parametrize("model", MODELS)
def test_end_to_end_predict(benchmark, bench_targets, photo_bytes, model: str, backend: str) -> None:
    """File bytes to top-5 at batch 1: tvdeploy's runtime (onnx) and the seeds' eager pipeline."""
    target = bench_targets[model][backend]
    benchmark.group = f"{model} end to end batch 1"
    with target.runner("cpu", None) as runner:
        pipeline = target.end_to_end(runner)
        files = iter(photo_bytes * 100)
        benchmark.pedantic(lambda: pipeline([next(files)]), rounds=12, warmup_rounds=2)


def test_folder_stream(benchmark, bench_targets, photo_bytes) -> None:
    """tvdeploy predict's streaming path (threads decode ahead of the model), 48 images, batch 8."""
    target = bench_targets["resnet50" if "resnet50" in MODELS else MODELS[0]]["onnx"]
    benchmark.group = "folder stream"
    with target.runner("cpu", None) as runner:
        classifier = Classifier(target.artifact, target.manifest, runner, batch_size=8)
        benchmark.pedantic(lambda: list(classifier.predict_stream(photo_bytes * 8)), rounds=3, warmup_rounds=1)


def test_runtime_import_and_load(benchmark, bench_targets) -> None:
    """A fresh interpreter imports the runtime and loads an ONNX artifact (no torch)."""
    target = bench_targets["resnet50" if "resnet50" in MODELS else MODELS[0]]["onnx"]
    code = f"from tvdeploy.runtime import load; load({str(target.artifact)!r})"
    benchmark.group = "startup"
    benchmark.pedantic(lambda: subprocess.run([sys.executable, "-c", code], check=True), rounds=3, warmup_rounds=1)
