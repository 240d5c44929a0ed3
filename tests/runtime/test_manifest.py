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
    Source,
    SourceKind,
    TensorSpec,
    read_manifest,
    write_manifest,
)
from tvdeploy.runtime.precisions import FP32_CRITERIA
from tvdeploy.runtime.records import (
    Derivation,
    ExportAttempt,
    ExportInfo,
    FailureReason,
    ParityFailure,
    ParityReport,
    SetReport,
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


def _parity() -> ParityReport:
    photos = SetReport("photos", [1, 5], 6, 1e-5, 1e-6, 1e-3, 0.99999, 1.0, 1.0, 0, 9.5, 0.01, 1e-6, True)
    noise = SetReport("random", [1], 1, 0.5, 0.1, 0.2, 0.9, 0.0, 0.0, 0, 9.5, 0.01, 0.05, False,
                      [ParityFailure(FailureReason.MAX_ABS_DIFF, "max |diff| 0.5 > 0.01")])  # fmt: skip
    return ParityReport("eager", "onnx", "fp32", FP32_CRITERIA, [photos, noise])


def test_round_trip(tmp_path: Path) -> None:
    attempts = [ExportAttempt("dynamo", exported=False, error="E: x"), ExportAttempt("torchscript", True, "ts", True)]
    info = ExportInfo(seconds=1.5, attempts=attempts, derived_from=Derivation("/a", "fp32", "0" * 64),
                      details={"converter": "c", "quantization": {"format": "QDQ"}})  # fmt: skip
    manifest = make_manifest(parity=_parity(), export_info=info)
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
    assert data["parity"]["sets"][1]["failures"] == [{"reason": "max_abs_diff", "detail": "max |diff| 0.5 > 0.01"}]
    assert data["export_info"]["converter"] == "c" and data["export_info"]["attempts"][0] == {
        "strategy": "dynamo", "exported": False, "error": "E: x"
    }  # fmt: skip
    read = read_manifest(tmp_path)
    assert read == manifest and not read.parity.passed and read.parity.failures[0].reason == FailureReason.MAX_ABS_DIFF


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
    with pytest.raises(ArtifactError, match="is not valid JSON"):
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


def _write_raw(directory: Path, text: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tvdeploy.json").write_bytes(text)
    return directory


def _manifest_dict(**changes) -> dict:
    data = make_manifest().to_dict()
    data.update(changes)
    return data


HOSTILE_MANIFESTS = {
    "deep nesting": (b"[" * 100_000 + b"]" * 100_000, "nests JSON too deeply"),
    "not UTF-8": (b'{"name": "\xff\xfe"}', "not UTF-8"),
    "not JSON": (b"{", "not valid JSON"),
    "files empty": (json.dumps(_manifest_dict(files=[])).encode(), "lists no model file"),
    "name an object": (json.dumps(_manifest_dict(name={"a": 1})).encode(), "name must be a string"),
    "labels not strings": (json.dumps(_manifest_dict(labels=[1, 2])).encode(), "labels"),
    "input not an object": (json.dumps(_manifest_dict(input=[1])).encode(), "input must be an object"),
    "unknown input key": (
        json.dumps(_manifest_dict(input={"name": "input", "shape": [1], "evil": 1})).encode(),
        "malformed input block",
    ),
    "file outside": (
        json.dumps(_manifest_dict(files=[{"path": "../../etc/passwd", "sha256": "0" * 64, "bytes": 1}])).encode(),
        "points outside the artifact directory",
    ),
    "absolute file": (
        json.dumps(_manifest_dict(files=[{"path": "/etc/passwd", "sha256": "0" * 64, "bytes": 1}])).encode(),
        "points outside the artifact directory",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_MANIFESTS))
def test_hostile_manifests_are_artifact_errors_naming_the_problem(tmp_path: Path, case: str) -> None:
    text, message = HOSTILE_MANIFESTS[case]
    with pytest.raises(ArtifactError, match=message):
        read_manifest(_write_raw(tmp_path / "a", text))


@pytest.mark.parametrize("name", ["../x", "/abs", "a/b", "", ".", "..", "-rf", "a..b", "x" * 129, "a\nb"])
def test_model_names_stay_one_plain_path_component(tmp_path: Path, name: str) -> None:
    with pytest.raises(ArtifactError, match="is not a valid model name"):
        read_manifest(_write_raw(tmp_path / "a", json.dumps(_manifest_dict(name=name)).encode()))


def test_valid_model_names_are_read(tmp_path: Path) -> None:
    for name in ("resnet50", "ResNet-50.v2_int8", "0model"):
        assert read_manifest(_write_raw(tmp_path / name, json.dumps(_manifest_dict(name=name)).encode())).name == name


def test_a_file_entry_that_is_a_symlink_out_of_the_artifact_is_refused(tmp_path: Path) -> None:
    from tvdeploy.runtime.manifest import check_artifact_files

    outside = tmp_path / "outside.onnx"
    outside.write_bytes(b"not yours")
    artifact = _write_raw(tmp_path / "a", json.dumps(_manifest_dict()).encode())
    (artifact / "model.onnx").symlink_to(outside)
    with pytest.raises(ArtifactError, match="leads outside the artifact directory"):
        check_artifact_files(artifact, read_manifest(artifact))


def test_the_cli_reports_a_hostile_manifest_as_exit_2(tmp_path: Path) -> None:
    from tests.cli_helpers import run_cli_process

    for case in ("deep nesting", "name an object", "files empty"):
        artifact = _write_raw(tmp_path / case.replace(" ", "_"), HOSTILE_MANIFESTS[case][0])
        proc = run_cli_process("inspect", artifact, timeout=60)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, (case, proc.stderr)
        assert HOSTILE_MANIFESTS[case][1] in proc.stderr, (case, proc.stderr)


def test_an_older_manifests_text_failures_and_a_malformed_parity_block(tmp_path: Path) -> None:
    manifest = make_manifest(parity=_parity())
    write_manifest(manifest, tmp_path)
    path = tmp_path / "tvdeploy.json"
    data = json.loads(path.read_text())
    data["parity"]["sets"][1]["failures"] = ["max |diff| 0.5 > 0.01"]  # as tvdeploy wrote them before
    path.write_text(json.dumps(data))
    failure = read_manifest(tmp_path).parity.failures[0]
    assert (failure.reason, failure.detail) == (FailureReason.UNSPECIFIED, "random: max |diff| 0.5 > 0.01")
    data["parity"]["sets"][1]["failures"] = [{"reason": "bogus", "detail": "x"}]
    path.write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="malformed parity failure"):
        read_manifest(tmp_path)
    data["parity"] = {"passed": True}
    path.write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="parity"):
        read_manifest(tmp_path)
    for block, key, value in (("set", "min_cosine", "0.9"), ("set", "batch_sizes", [True]), ("set", "passed", 1),
                              ("criteria", "atol_scale", None)):  # fmt: skip
        data = json.loads(json.dumps(manifest.to_dict()))
        target = data["parity"]["sets"][0] if block == "set" else data["parity"]["criteria"]
        target[key] = value
        path.write_text(json.dumps(data))
        with pytest.raises(ArtifactError, match=rf"\.{key} is .*not of the type"):
            read_manifest(tmp_path)  # a reader that formats or compares the figures would crash on it


def test_an_unknown_source_kind_is_refused_by_name_whether_read_or_built() -> None:
    with pytest.raises(ArtifactError, match="unknown model source kind 'evil'"):
        Source.from_dict({"kind": "evil"})
    with pytest.raises(ArtifactError, match="unknown model source kind 'evil'"):
        Source("evil")  # type: ignore[arg-type]
    assert Source.from_dict({"kind": "random"}).kind is SourceKind.RANDOM
