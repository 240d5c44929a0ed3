"""`tvdeploy predict` on a folder of real-world files, good and bad."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli, run_cli_process
from tests.image_zoo import write_bad_images, write_good_images


@pytest.fixture(scope="module")
def folder(tmp_path_factory, photos) -> tuple[Path, dict[str, Path], dict[str, Path]]:
    root = tmp_path_factory.mktemp("inbox")
    good = write_good_images(root / "good", photos["astronaut"])
    bad = write_bad_images(root / "nested" / "bad", photos["china"])
    (root / "notes.txt").write_text("not an image, not named like one: skipped\n")
    (root / ".hidden.jpg").write_bytes(b"")
    return root, good, bad


def test_folder_gives_a_prediction_per_good_file_and_an_error_per_bad_one(resnet18_artifacts, folder) -> None:
    root, good, bad = folder
    proc = run_cli_process("predict", resnet18_artifacts["onnx"], root, "--json", "--batch-size", "4")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    by_path = {line["path"]: line for line in lines}
    assert set(by_path) == {str(p) for p in [*good.values(), *bad.values()]}
    for path in good.values():
        assert len(by_path[str(path)]["predictions"]) == 5, by_path[str(path)]
    for name, path in bad.items():
        assert str(path) in by_path[str(path)]["error"], name
    assert f"{len(bad)} of {len(good) + len(bad)} input(s) failed" in proc.stderr
    assert "skipped 1 file(s) that are not images" in proc.stderr


def test_human_output_shows_labels_and_percentages(resnet18_artifacts, folder, capsys) -> None:
    _, good, _ = folder
    code, out, _ = run_cli(capsys, "predict", resnet18_artifacts["onnx"], good["rgb.jpg"], "--top-k", "3")
    lines = out.splitlines()
    assert code == 0 and lines[0] == str(good["rgb.jpg"]) and len(lines) == 4
    assert all(line.startswith("  ") and line.endswith("%") for line in lines[1:])


def test_predict_errors(resnet18_artifacts, tmp_path: Path, capsys) -> None:
    (tmp_path / "a.txt").write_text("x")
    code, _, err = run_cli(capsys, "predict", resnet18_artifacts["onnx"], tmp_path)
    assert code == 2 and "no images found" in err
    image = Path(__file__).parents[2] / "src" / "tvdeploy" / "export" / "photos" / "coffee.jpg"
    code, _, err = run_cli(capsys, "predict", resnet18_artifacts["onnx"], image, "--top-k", "1001")
    assert code == 2 and "out of range for a model with 1000 classes" in err
    code, _, err = run_cli(capsys, "predict", resnet18_artifacts["onnx"], image, "--provider", "cuda")
    assert code == 2 and "available: cpu" in err
