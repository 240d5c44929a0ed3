"""fp16 and int8 ONNX artifacts: ``export --precision`` and ``optimize``, with parity against the fp32 eager model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.cli_helpers import run_cli
from tvdeploy.errors import UserInputError
from tvdeploy.export.options import CalibrationOptions
from tvdeploy.export.precision import calibration_set
from tvdeploy.export.producers import criteria_for, criteria_of
from tvdeploy.runtime import load
from tvdeploy.runtime.manifest import PreprocessSpec
from tvdeploy.runtime.precisions import INT8_CRITERIA

SPEC = PreprocessSpec((256,), (224,), "bilinear", True, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@pytest.fixture(scope="module")
def derived(resnet18_artifacts, calibration_dir, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """int8 (calibrated on real images other than the parity photos) and fp16 artifacts derived from the fp32
    resnet18 ONNX artifact."""
    from tvdeploy.cli import main

    root = tmp_path_factory.mktemp("derived")
    out = {}
    for precision, extra in (("int8", ["--calibration", str(calibration_dir)]), ("fp16", [])):
        out[precision] = root / precision
        argv = ["optimize", str(resnet18_artifacts["onnx"]), "--precision", precision, "--output", str(out[precision])]
        assert main([*argv, *extra]) == 0
    return out


def test_int8_artifact_records_its_calibration_and_passes_int8_parity(
    derived, resnet18_artifacts, calibration_dir
) -> None:
    manifest = json.loads((derived["int8"] / "tvdeploy.json").read_text())
    fp32 = json.loads((resnet18_artifacts["onnx"] / "tvdeploy.json").read_text())
    assert manifest["precision"] == "int8" and manifest["format"] == "onnx"
    assert manifest["parity"]["passed"] and manifest["parity"]["precision"] == "int8"
    assert manifest["parity"]["criteria"]["min_cosine"] == INT8_CRITERIA.min_cosine
    calibration = manifest["export_info"]["calibration"]
    assert calibration["method"] == "minmax" and calibration["images"] == len(list(calibration_dir.iterdir())) == 16
    assert len(calibration["images_sha256"]) == 64 and calibration["source"] == str(calibration_dir.resolve())
    assert manifest["export_info"]["quantization"] == {
        "format": "QDQ",
        "per_channel": True,
        "weights": "int8",
        "activations": "uint8",
    }
    assert manifest["export_info"]["derived_from"]["sha256"] == fp32["files"][0]["sha256"]
    # about a quarter of the fp32 file: int8 weights
    assert manifest["files"][0]["bytes"] < 0.3 * fp32["files"][0]["bytes"]
    photos = next(s for s in manifest["parity"]["sets"] if s["name"] == "photos")
    assert photos["min_cosine"] > 0.99 and photos["mean_abs_diff"] > 0  # really quantized


def test_int8_model_holds_quantized_operators(derived) -> None:
    import onnx

    ops = {node.op_type for node in onnx.load(str(derived["int8"] / "model.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_fp16_keeps_fp32_inputs_and_outputs_and_halves_the_file(derived, resnet18_artifacts) -> None:
    import onnx

    model = onnx.load(str(derived["fp16"] / "model.onnx"))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in model.graph.initializer)
    fp32_bytes = (resnet18_artifacts["onnx"] / "model.onnx").stat().st_size
    assert (derived["fp16"] / "model.onnx").stat().st_size < 0.55 * fp32_bytes
    manifest = json.loads((derived["fp16"] / "tvdeploy.json").read_text())
    assert manifest["precision"] == "fp16" and manifest["parity"]["passed"]


def test_derived_artifacts_predict_like_fp32(derived, resnet18_artifacts, photo_files, capsys) -> None:
    fp32 = [row[0].index for row in load(resnet18_artifacts["onnx"]).predict(photo_files, top_k=1)]
    assert [row[0].index for row in load(derived["fp16"]).predict(photo_files, top_k=1)] == fp32
    int8 = [row[0].index for row in load(derived["int8"]).predict(photo_files, top_k=1)]
    assert np.mean(np.array(int8) == np.array(fp32)) >= INT8_CRITERIA.min_top1
    code, _, _ = run_cli(capsys, "validate", derived["int8"], derived["fp16"])
    assert code == 0


def test_bench_shows_precisions_side_by_side_with_file_sizes(derived, resnet18_artifacts, tmp_path, capsys) -> None:
    code, _, _ = run_cli(
        capsys,
        "bench",
        resnet18_artifacts["onnx"],
        derived["int8"],
        derived["fp16"],
        "--iterations",
        "2",
        "--warmup",
        "1",
        "--no-cold-start",
        "--save-json",
        tmp_path / "b.json",
    )
    assert code == 0
    rows = {r["name"]: r for r in json.loads((tmp_path / "b.json").read_text())["results"]}
    fp32 = resnet18_artifacts["onnx"].name
    assert set(rows) == {fp32, "int8", "fp16"}  # artifacts are named by their directories
    assert rows["int8"]["file_mb"] < rows["fp16"]["file_mb"] < rows[fp32]["file_mb"]
    # without eager, the first artifact is the baseline of the speedup column
    assert {r["baseline"] for r in rows.values()} == {fp32} and rows[fp32]["speedup"] == 1.0
    assert rows["int8"]["speedup"] == pytest.approx(
        rows[fp32]["latency_ms"]["mean"] / rows["int8"]["latency_ms"]["mean"], rel=1e-2
    )


def test_int8_without_calibration_is_a_clear_error(resnet18_artifacts, tmp_path: Path, capsys) -> None:
    code, _, err = run_cli(
        capsys, "optimize", resnet18_artifacts["onnx"], "--precision", "int8", "--output", tmp_path / "x"
    )
    assert code == 2 and "int8 needs calibration images" in err and "--calibration" in err
    code, _, err = run_cli(capsys, "export", "--model", "resnet18", "--weights", "none", "--precision", "int8")
    assert code == 2 and "int8 needs calibration images" in err
    code, _, err = run_cli(
        capsys, "optimize", resnet18_artifacts["onnx"], "--precision", "int8", "--calibration", tmp_path / "missing"
    )
    assert code == 2 and "does not exist" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    code, _, err = run_cli(
        capsys,
        "optimize",
        resnet18_artifacts["onnx"],
        "--precision",
        "int8",
        "--calibration",
        empty,
        "--output",
        tmp_path / "y",
    )
    assert code == 2 and "no images in the calibration directory" in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_only_fp32_onnx_artifacts_are_optimized(derived, resnet18_artifacts, capsys, tmp_path) -> None:
    code, _, err = run_cli(
        capsys, "optimize", resnet18_artifacts["torchscript"], "--precision", "fp16", "--output", tmp_path / "a"
    )
    assert code == 2 and "cannot make a fp16 artifact from a torchscript artifact" in err
    code, _, err = run_cli(
        capsys,
        "optimize",
        derived["fp16"],
        "--precision",
        "int8",
        "--calibration",
        "random",
        "--output",
        tmp_path / "b",
    )
    assert code == 2 and "already derived (fp16)" in err
    assert set(criteria_of("onnx")) == {"fp32", "fp16", "int8"}
    with pytest.raises(UserInputError, match="does not support precision 'int8'"):
        criteria_for("torchscript", "int8")


def test_calibration_takes_sorted_images_skips_bad_ones_and_hashes_them(photo_files, tmp_path: Path) -> None:
    root = tmp_path / "calib"
    root.mkdir()
    for i, path in enumerate(photo_files[:3]):
        (root / f"{2 - i}.jpg").write_bytes(path.read_bytes())
    (root / "3-broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    first = calibration_set(CalibrationOptions(str(root), max_images=2), SPEC)
    assert len(first.batches) == 2 and first.info["images"] == 2 and first.batches[0].shape == (1, 3, 224, 224)
    again = calibration_set(CalibrationOptions(str(root), max_images=2), SPEC)
    assert again.info["images_sha256"] == first.info["images_sha256"]  # deterministic order and hash
    everything = calibration_set(CalibrationOptions(str(root)), SPEC)
    assert everything.info["images"] == 3  # the broken file fails alone
    assert everything.info["images_sha256"] != first.info["images_sha256"]
    noise = calibration_set(CalibrationOptions("random", max_images=4, seed=3), SPEC)
    assert noise.info == {"method": "minmax", "source": "random", "images": 4, "seed": 3}
    with pytest.raises(UserInputError, match="unknown calibration method"):
        CalibrationOptions("random", method="kl")
