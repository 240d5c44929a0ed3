from __future__ import annotations

from pathlib import Path

import pytest

from tvdeploy.errors import OutputExistsError
from tvdeploy.export.artifact import staged_directory


def test_success_renames_the_staging_directory_into_place(tmp_path: Path) -> None:
    out = tmp_path / "art"
    with staged_directory(out, force=False) as staging:
        (staging / "model.onnx").write_text("x")
        assert not out.exists()
    assert (out / "model.onnx").read_text() == "x"
    assert [p.name for p in tmp_path.iterdir()] == ["art"]


def test_failure_leaves_nothing_behind(tmp_path: Path) -> None:
    out = tmp_path / "art"
    with pytest.raises(RuntimeError), staged_directory(out, force=False) as staging:
        (staging / "model.onnx").write_text("half")
        raise RuntimeError("exporter crashed")
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_force_and_is_kept_on_failure(tmp_path: Path) -> None:
    out = tmp_path / "art"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(OutputExistsError, match="--force"), staged_directory(out, force=False):
        pass
    with pytest.raises(RuntimeError), staged_directory(out, force=True):
        raise RuntimeError("boom")
    assert (out / "old.txt").read_text() == "old"
    with staged_directory(out, force=True) as staging:
        (staging / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["art"]


def test_default_and_explicit_artifact_directories() -> None:
    from tvdeploy.export.pipeline import ExportRequest, artifact_dir_for

    assert artifact_dir_for(ExportRequest("resnet50", ["onnx"]), "onnx") == Path("artifacts/resnet50-onnx")
    assert artifact_dir_for(ExportRequest("resnet50", ["onnx"], output=Path("out")), "onnx") == Path("out")
    every = ExportRequest("resnet50", ["onnx", "pt2"], output=Path("out"), name="r50")
    assert artifact_dir_for(every, "pt2") == Path("out/r50-pt2")
    parent = ExportRequest("resnet50", ["onnx"], output=Path("cache"), output_is_parent=True)
    assert artifact_dir_for(parent, "onnx") == Path("cache/resnet50-onnx")
