from __future__ import annotations

import json
from pathlib import Path

import pytest

from tvdeploy.errors import ArtifactError
from tvdeploy.runtime.manifest import (
    SCHEMA_VERSION,
    FileEntry,
    Manifest,
    OptimizedGraph,
    OutputSpec,
    PreprocessSpec,
    TensorSpec,
    read_manifest,
    write_manifest,
)


def make_manifest(**changes) -> Manifest:
    fields = dict(
        name="m",
        architecture="resnet18",
        weights="none",
        pretrained=False,
        format="onnx",
        precision="fp32",
        opset=18,
        exporter="x",
        input=TensorSpec("input", ["batch", 3, 224, 224]),
        output=OutputSpec("logits", "logits", ["batch", 2]),
        preprocess=PreprocessSpec((256,), (224,), "bilinear", True, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        labels=["a", "b"],
        files=[FileEntry("model.onnx", "0" * 64, 1)],
        versions={"tvdeploy": "0"},
    )
    fields.update(changes)
    return Manifest(**fields)


def test_round_trip(tmp_path: Path) -> None:
    manifest = make_manifest(parity={"passed": True})
    write_manifest(manifest, tmp_path)
    data = json.loads((tmp_path / "tvdeploy.json").read_text())
    # a plain artifact is written at schema 1, which releases that know only version 1 still read
    assert data["schema_version"] == 1 < SCHEMA_VERSION and next(iter(data)) == "schema_version"
    assert data["preprocess"] == {
        "resize_size": [256],
        "crop_size": [224],
        "interpolation": "bilinear",
        "antialias": True,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
    }
    assert read_manifest(tmp_path) == manifest


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    data = make_manifest().to_dict()
    data["schema_version"] = SCHEMA_VERSION + 1
    (tmp_path / "tvdeploy.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="newer than this tvdeploy"):
        read_manifest(tmp_path)


@pytest.mark.parametrize("key", ["labels", "preprocess", "format"])
def test_missing_keys_are_named(tmp_path: Path, key: str) -> None:
    data = make_manifest().to_dict()
    del data[key]
    (tmp_path / "tvdeploy.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match=key):
        read_manifest(tmp_path)


def test_not_an_artifact_directory(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"no tvdeploy\.json"):
        read_manifest(tmp_path)
    (tmp_path / "tvdeploy.json").write_text("{broken")
    with pytest.raises(ArtifactError, match="cannot read"):
        read_manifest(tmp_path)


def test_preprocess_accepts_square_and_rectangular_crops() -> None:
    base = {"resize_size": 256, "interpolation": "BICUBIC", "mean": [0, 0, 0], "std": [1, 1, 1]}
    assert PreprocessSpec.from_dict({**base, "crop_size": [224]}).crop_hw == (224, 224)
    assert PreprocessSpec.from_dict({**base, "crop_size": [224, 320]}).crop_hw == (224, 320)
    with pytest.raises(ArtifactError, match="interpolation"):
        PreprocessSpec.from_dict({**base, "crop_size": [224], "interpolation": "lanczos9"})


def test_new_interfaces_are_written_at_schema_2_and_read_back(tmp_path: Path) -> None:
    manifest = make_manifest(
        input=TensorSpec("images", ["batch", "height", "width", 3], dtype="uint8", layout="NHWC"),
        output=OutputSpec("probabilities", meaning="top_k", shape=["batch", 5], indices="indices"),
        optimized_graph=OptimizedGraph("all", "1.32.0", "x86_64:avx2"),
    )
    write_manifest(manifest, tmp_path)
    data = json.loads((tmp_path / "tvdeploy.json").read_text())
    assert data["schema_version"] == 2 and data["output"]["indices"] == "indices"
    back = read_manifest(tmp_path)
    assert back.input.takes_images and back.output.top_k == 5 and back.output.names == ("probabilities", "indices")
    assert back.optimized_graph == OptimizedGraph("all", "1.32.0", "x86_64:avx2")
    assert back.network_input.shape == ["batch", 3, 224, 224] and back.network_output.name == "logits"
    with pytest.raises(ArtifactError, match="needs the name of its indices output"):
        OutputSpec("probabilities", meaning="top_k", shape=["batch", 5])
