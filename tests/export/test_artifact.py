from __future__ import annotations

from pathlib import Path

import pytest

from tvdeploy.errors import OutputExistsError
from tvdeploy.export.artifact import check_output, staged_directory


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


def _artifact(directory: Path, *extra: str) -> Path:
    """A directory holding a manifest and the model file it lists (and ``extra`` files it does not list)."""
    from tests.runtime.test_manifest import make_manifest
    from tvdeploy.runtime.manifest import write_manifest

    directory.mkdir(parents=True)
    (directory / "model.onnx").write_text("old")
    write_manifest(make_manifest(), directory)
    for name in extra:
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text("keep me")
    return directory


def test_existing_output_needs_force_and_is_kept_on_failure(tmp_path: Path) -> None:
    out = _artifact(tmp_path / "art")
    with pytest.raises(OutputExistsError, match="--force"), staged_directory(out, force=False):
        pass
    with pytest.raises(RuntimeError), staged_directory(out, force=True):
        raise RuntimeError("boom")
    assert (out / "model.onnx").read_text() == "old"
    with staged_directory(out, force=True) as staging:
        (staging / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["art"]


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda d: (d / "photos").mkdir(parents=True) or (d / "photos" / "a.txt").write_text("x"), "no tvdeploy.json"),
        (lambda d: d.mkdir() or (d / "tvdeploy.json").write_text("{not json"), "is not a manifest"),
        (lambda d: _artifact(d, "photos/a.txt"), r"files its manifest does not list: photos/a.txt"),
    ],
    ids=["a folder of photos", "a broken manifest", "an artifact with a file of the user's"],
)
def test_force_replaces_only_artifacts(tmp_path: Path, make, reason: str) -> None:
    out = tmp_path / "v"
    make(out)
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    with pytest.raises(OutputExistsError, match=reason), staged_directory(out, force=True):
        pytest.fail("no work may start")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir()] == ["v"]  # no staging directory left


def test_force_replaces_an_empty_directory_and_never_the_input(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    check_output(empty, force=True)
    source = _artifact(tmp_path / "art")
    for output in (source, source / "sub", tmp_path / "x" / ".." / "art", tmp_path):
        with pytest.raises(OutputExistsError, match="is the input"):
            check_output(output, force=True, inputs=[source])


def test_outputs_that_cannot_be_written_are_refused_before_the_work(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "afile.txt").write_text("x")
    with pytest.raises(OutputExistsError, match=r"afile\.txt is not a directory"):
        check_output(tmp_path / "afile.txt" / "sub", force=False)
    monkeypatch.chdir(_artifact(tmp_path / "here"))
    with pytest.raises(OutputExistsError, match="already exists"):
        check_output(Path("."), force=False)
    # '.' and 'd/..' are the directory itself: its staging goes beside it and nothing is left behind
    with staged_directory(Path("d/.."), force=True) as staging:
        (staging / "model.onnx").write_text("new")
    assert sorted(p.name for p in (tmp_path / "here").iterdir()) == ["model.onnx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile.txt", "here"]


def test_default_and_explicit_artifact_directories() -> None:
    from tvdeploy.export.pipeline import ExportRequest, artifact_dir_for

    assert artifact_dir_for(ExportRequest("resnet50", ["onnx"]), "onnx") == Path("artifacts/resnet50-onnx")
    assert artifact_dir_for(ExportRequest("resnet50", ["onnx"], output=Path("out")), "onnx") == Path("out")
    every = ExportRequest("resnet50", ["onnx", "pt2"], output=Path("out"), name="r50")
    assert artifact_dir_for(every, "pt2") == Path("out/r50-pt2")
    parent = ExportRequest("resnet50", ["onnx"], output=Path("cache"), output_is_parent=True)
    assert artifact_dir_for(parent, "onnx") == Path("cache/resnet50-onnx")
