"""The CLI as a user drives it: list, export, validate, inspect, and the error paths."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli, run_cli_process
from tvdeploy.export.producers import exportable_formats
from tvdeploy.runtime.formats import FORMATS


@pytest.fixture(scope="module")
def resnet50_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's main command: resnet50 to ONNX with random weights."""
    out = tmp_path_factory.mktemp("cli") / "resnet50-onnx"
    proc = run_cli_process("export", "--model", "resnet50", "--format", "onnx", "--weights", "none", "--output", out)
    assert proc.returncode == 0, proc.stderr
    assert "parity onnx vs eager (fp32): PASS" in proc.stdout
    assert "export onnx (dynamo)" in proc.stderr  # progress of the long steps
    return out


def test_list_json_covers_the_catalog(capsys) -> None:
    code, out, _ = run_cli(capsys, "list", "--json")
    data = json.loads(out)
    assert code == 0 and len(data) == 80 and sum(len(m["weights"]) for m in data) == 115
    resnet50 = next(m for m in data if m["name"] == "resnet50")
    assert resnet50["default_weights"] == "ResNet50_Weights.IMAGENET1K_V2"
    assert resnet50["weights"][1]["preprocess"]["resize_size"] == [232]


def test_list_table(capsys) -> None:
    code, out, _ = run_cli(capsys, "list", "resnet*", "--all-weights")
    assert code == 0 and "IMAGENET1K_V2*" in out and "5 models, 8 weights" in out


def test_resnet50_export_then_validate_passes(resnet50_onnx: Path, capsys) -> None:
    code, out, _ = run_cli(capsys, "validate", resnet50_onnx, "--json")
    report = json.loads(out)
    assert code == 0 and report["passed"] and report["format"] == "onnx"
    photos = next(s for s in report["parity"]["sets"] if s["name"] == "photos")
    assert photos["top1_agreement"] == 1.0 and photos["batch_sizes"] == [1, 1, 1, 1, 1, 1, 6]


def test_inspect_checks_the_files(resnet50_onnx: Path, capsys) -> None:
    code, out, _ = run_cli(capsys, "inspect", resnet50_onnx)
    assert code == 0 and "architecture  resnet50" in out and "model.onnx" in out and " ok" in out
    code, out, _ = run_cli(capsys, "inspect", resnet50_onnx, "--json")
    assert code == 0 and json.loads(out)["file_checks"] == {"model.onnx": "ok"}


def test_existing_output_is_not_overwritten_without_force(resnet50_onnx: Path, capsys) -> None:
    before = (resnet50_onnx / "tvdeploy.json").read_text()
    code, _, err = run_cli(capsys, "export", "--model", "resnet50", "--weights", "none", "--output", resnet50_onnx)
    assert code == 2 and "already exists" in err and "--force" in err
    assert (resnet50_onnx / "tvdeploy.json").read_text() == before


@pytest.mark.slow  # exports a model or runs subprocesses (seconds)
def test_tampered_artifact_fails_validation(tmp_path: Path, capsys) -> None:
    out = tmp_path / "m"
    assert run_cli(capsys, "export", "--model", "squeezenet1_1", "--weights", "none", "--output", out)[0] == 0
    with open(out / "model.onnx", "r+b") as handle:
        handle.seek(-8, 2)
        handle.write(b"\x00" * 8)
    code, _, err = run_cli(capsys, "validate", out)
    assert code == 2 and "does not match the sha256" in err
    code, out_text, _ = run_cli(capsys, "inspect", out)
    assert code == 1 and "MODIFIED" in out_text


@pytest.mark.slow  # exports a model or runs subprocesses (seconds)
def test_export_all_formats_json_output_is_pure_json(tmp_path: Path, capsys) -> None:
    code, out, _ = run_cli(
        capsys,
        "export",
        "--model",
        "squeezenet1_1",
        "--format",
        "all",
        "--weights",
        "none",
        "--output",
        tmp_path,
        "--json",
    )
    data = json.loads(out)  # torch's own progress prints must not leak into stdout
    assert code == 0 and data["passed"]
    expected = exportable_formats()  # every format whose extra is installed; CI installs them all
    assert set(expected) >= {"onnx", "torchscript", "pt2"}
    assert [a["format"] for a in data["artifacts"]] == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"squeezenet1_1-{f}" for f in expected)


@pytest.mark.slow  # exports a model or runs subprocesses (seconds)
def test_parity_failure_is_recorded_and_exits_3(tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from tvdeploy.runtime.precisions import PRECISION_SPECS, ParityCriteria

    impossible = ParityCriteria(atol_scale=-1.0)  # nothing can pass
    monkeypatch.setitem(PRECISION_SPECS, "fp32", dataclasses.replace(PRECISION_SPECS["fp32"], criteria=impossible))
    code, out, _ = run_cli(
        capsys, "export", "--model", "squeezenet1_1", "--weights", "none", "--output", tmp_path / "m", "--json"
    )
    data = json.loads(out)
    assert code == 3 and not data["passed"]
    manifest = json.loads((tmp_path / "m" / "tvdeploy.json").read_text())
    assert manifest["parity"]["passed"] is False
    # the failed dynamo export was retried with the TorchScript-based exporter, and both are recorded
    assert [a["strategy"] for a in manifest["export_info"]["attempts"]] == ["dynamo", "torchscript"]
    assert manifest["exporter"] == "torch.onnx.export(dynamo=False)"


@pytest.mark.slow  # exports a model or runs subprocesses (seconds)
def test_pretrained_export_works_offline_from_the_cache(tmp_path: Path, capsys) -> None:
    import torch
    from torchvision import models

    from tvdeploy.models.catalog import get_model_info
    from tvdeploy.models.download import cache_path

    cached = cache_path(get_model_info("mobilenet_v3_small").default_weights.url)
    cached.parent.mkdir(parents=True)
    torch.save(models.mobilenet_v3_small().state_dict(), cached)
    code, out, _ = run_cli(capsys, "export", "--model", "mobilenet_v3_small", "--output", tmp_path / "m", "--json")
    assert code == 0, out
    manifest = json.loads((tmp_path / "m" / "tvdeploy.json").read_text())
    assert manifest["pretrained"] and manifest["weights"] == "MobileNet_V3_Small_Weights.IMAGENET1K_V1"
    assert manifest["labels"][0] == "tench" and manifest["source"]["kind"] == "pretrained"
    code, _, _ = run_cli(capsys, "validate", tmp_path / "m")
    assert code == 0


@pytest.mark.slow  # exports a model or runs subprocesses (seconds)
def test_uncached_pretrained_weights_fail_fast_without_traceback(tmp_path: Path) -> None:
    start = time.monotonic()
    proc = run_cli_process(
        "export", "--model", "resnet18", "--output", tmp_path / "x", env={"TORCH_HOME": str(tmp_path)}
    )
    assert proc.returncode == 2 and time.monotonic() - start < 60
    assert "resnet18-f37072fd.pth" in proc.stderr and "--weights none" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["export", "--model", "resnet5"], "did you mean resnet50"),
        (["export", "--model", "resnet18", "--format", "tflite"], "choose one of " + ", ".join((*FORMATS, "all"))),
        (["export", "--model", "resnet18", "--weights", "IMAGENET1K_V7"], "IMAGENET1K_V1"),
        (["export", "--model", "resnet18", "--weights", "missing/ckpt.pt"], "does not exist"),
        (["validate", "/no/such/artifact"], "is not a directory"),
        (["inspect", "."], "no tvdeploy.json"),
    ],
)
def test_user_errors_give_one_message_and_exit_2(
    argv: list[str], message: str, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # in this process: an exception escaping main() fails the test, as a traceback would
    code, _, err = run_cli(capsys, *argv)
    assert code == 2, err
    assert message in err and "Traceback" not in err and err.count("error:") == 1


def test_checkpoint_with_wrong_labels_count(ten_class_checkpoint: tuple[Path, Path], tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n")
    proc = run_cli_process(
        "export",
        "--model",
        "resnet18",
        "--weights",
        ten_class_checkpoint[0],
        "--labels",
        labels,
        "--output",
        tmp_path / "x",
    )
    assert proc.returncode == 2 and "3 labels but the model has 10 classes" in proc.stderr


@pytest.mark.slow  # exports a model or runs subprocesses (seconds)
def test_preprocess_overrides_start_from_the_chosen_weights_preset(tmp_path: Path, capsys) -> None:
    """--crop-size with IMAGENET1K_V1 keeps V1's resize (256), not the DEFAULT (V2) weights' 232."""
    import torch
    from torchvision import models

    from tvdeploy.models.catalog import get_model_info
    from tvdeploy.models.download import cache_path

    v1 = get_model_info("mobilenet_v3_large").find_weights("IMAGENET1K_V1")
    assert v1 is not None and v1.preprocess.resize_size == (256,) and not v1.is_default
    cached = cache_path(v1.url)
    cached.parent.mkdir(parents=True)
    torch.save(models.mobilenet_v3_large().state_dict(), cached)
    code, out, _ = run_cli(
        capsys,
        "export",
        "--model",
        "mobilenet_v3_large",
        "--weights",
        "IMAGENET1K_V1",
        "--crop-size",
        "200",
        "--output",
        tmp_path / "m",
        "--json",
    )
    assert code == 0, out
    manifest = json.loads((tmp_path / "m" / "tvdeploy.json").read_text())
    assert manifest["preprocess"]["resize_size"] == [256] and manifest["preprocess"]["crop_size"] == [200]
    assert manifest["input"]["shape"] == ["batch", 3, 200, 200]


@pytest.mark.slow  # exports a model or runs subprocesses (seconds)
def test_verbose_errors_show_their_cause_chain(tmp_path: Path, capsys) -> None:
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a torch file at all")
    quiet = run_cli(capsys, "export", "--model", "resnet18", "--weights", broken, "--output", tmp_path / "q")
    verbose = run_cli(capsys, "-v", "export", "--model", "resnet18", "--weights", broken, "--output", tmp_path / "v")
    assert quiet[0] == verbose[0] == 2
    assert "Traceback" not in quiet[2] and "not a readable torch checkpoint" in quiet[2]
    # -v shows the underlying exception torch raised, then the same one-line message
    assert "Traceback" in verbose[2] and "UnpicklingError" in verbose[2]
    assert verbose[2].rstrip().endswith(quiet[2].rstrip().splitlines()[-1])


def test_a_closed_stdout_ends_quietly(resnet18_artifacts) -> None:
    import os
    import subprocess
    import sys

    # `tvdeploy inspect ... | head -3` where head has gone: stdout is a pipe whose reader is closed
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "tvdeploy", "inspect", str(resnet18_artifacts["onnx"])],
            stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert proc.returncode == 141 and proc.stderr == "", proc.stderr  # as a shell reports SIGPIPE, no traceback


def test_predict_warns_once_that_random_weights_mean_nothing(resnet18_artifacts, photo_files) -> None:
    proc = run_cli_process("predict", resnet18_artifacts["onnx"], *photo_files[:3], "--json", timeout=120)
    assert proc.returncode == 0
    assert proc.stderr.count("random weights") == 1 and "mean nothing" in proc.stderr
    assert len(proc.stdout.splitlines()) == 3  # stdout stays pure JSON lines


def test_help_names_every_command_in_plain_text() -> None:
    proc = run_cli_process("--help", timeout=60)
    assert proc.returncode == 0 and "``" not in proc.stdout
    for command in ("list", "export", "optimize", "validate", "inspect", "predict", "bench", "serve", "export-triton"):
        assert f"\n    {command} " in proc.stdout or f"\n    {command}\n" in proc.stdout, command
