"""Model-only inference per model x backend x batch size, plus the end-to-end predict paths.

Run: ``pytest benchmarks`` (see README, "Benchmarks" for the regression gate).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from benchmarks.conftest import BACKENDS, BATCH_SIZES, MODELS, random_batch
from tvdeploy.bench.run import BenchConfig, interleaved_samples
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
    """File bytes to top-5 at batch 1: tvdeploy's runtime (onnx) and the torchvision tutorial pipeline."""
    target = bench_targets[model][backend]
    benchmark.group = f"{model} end to end batch 1"
    with target.runner("cpu", None) as runner:
        pipeline = target.end_to_end(runner)
        files = iter(photo_bytes * 100)
        benchmark.pedantic(lambda: pipeline([next(files)]), rounds=12, warmup_rounds=2)


def test_folder_stream(benchmark, bench_targets, photo_bytes) -> None:
    """tvdeploy predict's streaming path (threads decode ahead of the model), 48 images, batch 8.

    Also records, in ``extra_info``, the stream's throughput as a fraction of the
    model's own batch-8 throughput on the same 48 images, timed interleaved in
    this test the way ``tvdeploy bench`` interleaves backends, so drift hits both alike.
    """
    target = bench_targets["resnet50" if "resnet50" in MODELS else MODELS[0]]["onnx"]
    benchmark.group = "folder stream"
    images = photo_bytes * 8
    with target.runner("cpu", None) as runner:
        classifier = Classifier(target.artifact, target.manifest, runner, batch_size=8)
        batch = np.stack([classifier.preprocess(data) for data in images[:8]])

        def stream() -> None:
            list(classifier.predict_stream(images))

        def model_only() -> None:
            for _ in range(len(images) // 8):
                classifier.infer(batch)

        stream_times, model_times = interleaved_samples([stream, model_only], BenchConfig(iterations=3, warmup=0))
        stream_s, model_s = float(np.median(stream_times)), float(np.median(model_times))
        benchmark.extra_info.update(
            images=len(images), model_only_s=model_s, stream_s=stream_s, throughput_vs_model=model_s / stream_s
        )
        benchmark.pedantic(stream, rounds=3, warmup_rounds=1)
        classifier.close()


def test_runtime_import_and_load(benchmark, bench_targets) -> None:
    """A fresh interpreter imports the runtime and loads an ONNX artifact (no torch)."""
    target = bench_targets["resnet50" if "resnet50" in MODELS else MODELS[0]]["onnx"]
    code = f"from tvdeploy.runtime import load; load({str(target.artifact)!r})"
    benchmark.group = "startup"
    benchmark.pedantic(lambda: subprocess.run([sys.executable, "-c", code], check=True), rounds=3, warmup_rounds=1)
