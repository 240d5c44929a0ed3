"""Accuracy on a trained model: what export, int8, fp16, embedded processing and fast decoding cost on held-out
images.

Random weights say nothing about quantization loss, so these tests train a resnet18 on real labelled images
(scikit-learn's digits, see ``tests/trained_model.py``), save it as the tutorials do, export it with tvdeploy
and compare held-out accuracy. The default run trains a small version (2 epochs); the full table (5 epochs,
every precision and calibration method, fast decoding) is behind ``-m accuracy`` and lands in
``$TVDEPLOY_ACCURACY_RESULTS`` (default ``docs/bench/accuracy.json``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.trained_model import CROP, RESIZE, TrainedDigits, artifact_accuracy, eager_accuracy, trained_digits
from tvdeploy.cli import main
from tvdeploy.runtime.host import cpu_flags, cpu_model, cpu_signature
from tvdeploy.runtime.manifest import read_manifest
from tvdeploy.runtime.precisions import BF16_FLAGS

RESULTS = Path(
    os.environ.get("TVDEPLOY_ACCURACY_RESULTS", Path(__file__).parents[2] / "docs" / "bench" / "accuracy.json")
)


#: An artifact that needs only onnxruntime and an image decoder: everything embedded, ORT's graph saved.
EMBEDDED = ("--embed-preprocess", "--embed-postprocess", "--optimize")


def _export(data: TrainedDigits, out: Path) -> Path:
    code = main(["export", "--model", "resnet18", "--weights", str(data.checkpoint), "--labels", str(data.labels),
                 "--resize-size", str(RESIZE), "--crop-size", str(CROP), "--output", str(out), "--json"])  # fmt: skip
    assert code == 0
    return out


def _optimize(source: Path, out: Path, precision: str, *extra: str) -> Path:
    assert main(["optimize", str(source), "--precision", precision, "--output", str(out), *extra, "--json"]) == 0
    return out


@pytest.mark.slow  # exports a model or runs subprocesses (seconds)
def test_a_trained_model_keeps_its_accuracy_through_export_and_int8(tmp_path: Path, capsys) -> None:
    data = trained_digits(epochs=2)
    eager, eager_predicted = eager_accuracy(data)
    assert eager > 0.85  # it learned something: the figures below mean something
    fp32_dir = _export(data, tmp_path / "fp32")
    fp32, fp32_predicted = artifact_accuracy(fp32_dir, data)
    # the runtime's preprocessing is torchvision's to 1e-5: the same answers, image for image
    assert np.mean(np.array(fp32_predicted) == np.array(eager_predicted)) >= 359 / 360
    int8_dir = _optimize(fp32_dir, tmp_path / "int8", "int8", "--calibration", str(data.train_dir))
    int8, _ = artifact_accuracy(int8_dir, data)
    assert abs(int8 - fp32) <= 0.01, f"int8 {int8:.3f} vs fp32 {fp32:.3f}"
    # preprocessing, softmax and top-k inside the graph (ONNX Runtime's uint8 resize rounds like Pillow's)
    embedded_dir = _optimize(fp32_dir, tmp_path / "embedded", "fp32", *EMBEDDED)
    embedded, embedded_predicted = artifact_accuracy(embedded_dir, data)
    assert np.mean(np.array(embedded_predicted) == np.array(fp32_predicted)) >= 359 / 360, (embedded, fp32)
    capsys.readouterr()


@pytest.mark.accuracy
def test_accuracy_table(tmp_path: Path, capsys) -> None:
    data = trained_digits(epochs=5)
    eager, eager_predicted = eager_accuracy(data)
    rows: dict[str, dict[str, float]] = {"eager (torchvision tutorial pipeline)": {"accuracy": eager, "agreement": 1.0}}

    def record(name: str, artifact: Path, decode: str = "exact") -> None:
        accuracy, predicted = artifact_accuracy(artifact, data, decode=decode)
        agreement = float(np.mean(np.array(predicted) == np.array(eager_predicted)))
        rows[name] = {"accuracy": accuracy, "agreement": agreement}

    fp32_dir = _export(data, tmp_path / "fp32")
    record("fp32 ONNX", fp32_dir)
    record("fp32 ONNX, --decode fast", fp32_dir, decode="fast")
    record("fp16 ONNX", _optimize(fp32_dir, tmp_path / "fp16", "fp16"))
    for method in ("minmax", "entropy", "percentile"):
        int8_dir = _optimize(fp32_dir, tmp_path / f"int8-{method}", "int8", "--calibration", str(data.train_dir),
                             "--calibration-method", method)  # fmt: skip
        record(f"int8 ONNX ({method}, 64 calibration images)", int8_dir)
    record(
        "fp32 ONNX, embedded pre/post-processing, --optimize", _optimize(fp32_dir, tmp_path / "emb", "fp32", *EMBEDDED)
    )
    embedded_int8 = _optimize(fp32_dir, tmp_path / "emb-int8", "int8", "--calibration", str(data.train_dir), *EMBEDDED)
    record("int8 ONNX (minmax), embedded pre/post-processing, --optimize", embedded_int8)
    calibration = ("--calibration", str(data.train_dir))
    for precision in ("fp32", "bf16", "int8"):  # every configuration tune can choose
        if precision == "bf16" and not cpu_flags().intersection(BF16_FLAGS):
            continue  # not computed on this CPU: refused, never emulated
        extra = calibration if precision == "int8" else ()
        ov_dir = _optimize(fp32_dir, tmp_path / f"ov-{precision}", precision, "--format", "openvino", *extra)
        record(f"OpenVINO {precision}" + (" (minmax, 64 calibration images)" if extra else ""), ov_dir)
    tuned = tmp_path / "tuned"
    assert main(["tune", str(fp32_dir), *calibration, "--output", str(tuned), "--budget-s", "3"]) == 0
    record(f"tune's choice on this host ({read_manifest(tuned).format} {read_manifest(tuned).precision})", tuned)
    capsys.readouterr()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"model": "resnet18 on sklearn digits, 5 epochs, 32x32", "held_out": 360,
                                   "cpu": cpu_model(), "cpu_signature": cpu_signature(),
                                   "results": rows}, indent=2) + "\n")  # fmt: skip
    for name, row in rows.items():  # every precision and runtime within one point of fp32 ONNX
        assert abs(row["accuracy"] - rows["fp32 ONNX"]["accuracy"]) <= 0.01, name
