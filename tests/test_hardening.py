"""Hostile values from files and flags, second round: hand-edited manifests and deployment records, output paths
checked before the work, report files, batch sizes that cannot fit, names with control characters, SIGTERM."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli, run_cli_process
from tvdeploy.runtime.host import cpu_signature
from tvdeploy.runtime.manifest import MANIFEST_NAME


def _copy(artifact: Path, tmp_path: Path, name: str = "art") -> Path:
    target = tmp_path / name
    shutil.copytree(artifact, target)
    return target


def _edit(artifact: Path, change) -> None:
    path = artifact / MANIFEST_NAME
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _record(**changes) -> dict:
    record = {
        "runtime": "onnx", "precision": "fp32", "provider": "cpu", "threads": 1, "batch_size": 8,
        "objective": "latency", "host_cpu": "x", "host_signature": cpu_signature(),
    }  # fmt: skip
    return {**record, **changes}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"provider": "foo"}, "unknown deployment provider 'foo'"),
        ({"provider": 5}, "unknown deployment provider 5"),
        ({"provider": ["cpu"]}, r"unknown deployment provider \['cpu'\]"),
        ({"provider": "openvino", "runtime": "pt2"}, "deployment provider 'openvino' does not run pt2"),
        ({"runtime": "openvino"}, "the deployment record is for an openvino fp32 artifact; this one is onnx fp32"),
        ({"precision": "fp8"}, "unknown deployment precision 'fp8'"),
        ({"threads": True}, "deployment.threads must be an integer from 1 to 1024, got True"),
        ({"threads": 10000}, "deployment.threads must be an integer from 1 to 1024, got 10000"),
        ({"batch_size": 10**9}, "deployment.batch_size must be an integer from 1 to 65536"),
        ({"objective": "speed"}, "unknown deployment objective 'speed'"),
        ({"host_cpu": "x\ntvdeploy: error: forged\x1b[31m"}, r"deployment.host_cpu must be one line of printable"),
        ({"host_cpu": "x" * (15 * 2**20)}, r"deployment.host_cpu must be one line .* got 'xxxx"),
    ],
)
def test_every_deployment_field_is_checked_where_the_manifest_is_read(
    resnet18_artifacts, photo_files, tmp_path: Path, changes: dict, message: str
) -> None:
    artifact = _copy(resnet18_artifacts["onnx"], tmp_path)
    _edit(artifact, lambda data: data.update(schema_version=3, deployment=_record(**changes)))
    proc = run_cli_process("predict", artifact, photo_files[0], timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "\x1b" not in proc.stderr
    assert not any(line.startswith("tvdeploy: error: forged") for line in proc.stderr.splitlines())
    assert len(proc.stderr) < 2000  # a 15 MB field is not echoed
    assert proc.stderr.startswith("tvdeploy: error: ") and proc.stderr.count("\n") <= 3
    assert re.search(message, proc.stderr), proc.stderr


def test_export_triton_refuses_a_record_whose_thread_count_no_host_has(
    resnet18_artifacts, tmp_path: Path, capsys
) -> None:
    artifact = _copy(resnet18_artifacts["onnx"], tmp_path)
    _edit(artifact, lambda data: data.update(schema_version=3, deployment=_record(threads=10**18)))
    code, _, err = run_cli(capsys, "export-triton", artifact, "--output", tmp_path / "repo")
    assert code == 2 and "deployment.threads must be an integer from 1 to 1024" in err
    assert not (tmp_path / "repo").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["output"].update(name="scores"), r"outputs are \['logits'\], the manifest says \['scores'\]"),
        (lambda d: d["input"].update(name="pixels"), r"inputs are \['input'\], the manifest says \['pixels'\]"),
        (lambda d: d["preprocess"].update(crop_size=[200]), r"preprocess crops 200x200 but its input takes 224x224"),
        (
            lambda d: (d["preprocess"].update(crop_size=[200]), d["input"].update(shape=["batch", 3, 200, 200])),
            r"input has shape \['batch', 3, 224, 224\], the manifest says \['batch', 3, 200, 200\]",
        ),
    ],
    ids=["output name", "input name", "crop size", "crop size and input shape"],
)
def test_a_manifest_that_does_not_describe_its_model_fails_at_load(
    resnet18_artifacts, photo_files, tmp_path: Path, capsys, change, message: str
) -> None:
    artifact = _copy(resnet18_artifacts["onnx"], tmp_path)
    _edit(artifact, change)
    code, out, err = run_cli(capsys, "predict", artifact, photo_files[0])
    assert code == 2 and out == ""
    assert re.search(message, err), err


def test_optimize_and_tune_refuse_outputs_before_any_work(resnet18_artifacts, tmp_path: Path, capsys) -> None:
    source = _copy(resnet18_artifacts["onnx"], tmp_path, "src")
    folder = tmp_path / "v"
    (folder / "photos").mkdir(parents=True)
    (folder / "photos" / "a.txt").write_text("mine")
    (tmp_path / "afile.txt").write_text("x")
    cases = [
        (["optimize", source, "--precision", "fp16", "--output", folder, "--force"], "is not a tvdeploy artifact"),
        (["tune", source, "--output", source, "--force"], "is the input"),
        (["tune", source, "--output", tmp_path / "afile.txt" / "sub"], "afile.txt is not a directory"),
        (["tune", source, "--output", tmp_path / "t", "--save-json", tmp_path], "--save-json .* is a directory"),
        (["bench", source, "--save-json", tmp_path, "--iterations", "1"], "--save-json .* is a directory"),
        (["tune", source, "--output", tmp_path / "t", "--batch-sizes", "1,100000000"], "batch 100000000 needs"),
        (["bench", source, "--batch-sizes", "100000000", "--iterations", "1"], "batch 100000000 needs"),
    ]
    for argv, message in cases:
        start = time.perf_counter()
        code, _, err = run_cli(capsys, *argv)
        assert code == 2, (argv, err)
        assert re.search(message, err), (argv, err)
        assert time.perf_counter() - start < 20, argv  # refused before the work (a tune takes minutes)
    assert (folder / "photos" / "a.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile.txt", "src", "v"]  # no staging left behind


def test_plot_without_matplotlib_is_refused_before_the_benchmark(
    resnet18_artifacts, tmp_path: Path, capsys, monkeypatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    code, out, err = run_cli(capsys, "bench", resnet18_artifacts["onnx"], "--plot", tmp_path / "p.png")
    assert code == 2 and out == "" and 'pip install "tvdeploy[bench]"' in err


def test_file_names_with_control_characters_are_escaped_in_predicts_text(
    resnet18_artifacts, photo_files, tmp_path: Path
) -> None:
    odd = tmp_path / "new\nline\x1b[2J.jpg"
    shutil.copy(photo_files[0], odd)
    proc = run_cli_process("predict", resnet18_artifacts["onnx"], odd, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "new\\nline\\x1b[2J.jpg" in proc.stdout and "\x1b" not in proc.stdout


def test_predict_names_a_missing_artifact_before_walking_the_inputs(tmp_path: Path, capsys, monkeypatch) -> None:
    walked = []
    monkeypatch.setattr("tvdeploy.runtime.inputs.collect_inputs", lambda paths: walked.append(paths))
    code, _, err = run_cli(capsys, "predict", tmp_path / "nonexistent", tmp_path)
    assert code == 2 and "is not a directory" in err and walked == []


def test_sigterm_during_tune_removes_its_scratch_directories(resnet18_artifacts, tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tvdeploy", "tune", str(resnet18_artifacts["onnx"]), "--output", str(tmp_path / "t")],
        env={**os.environ, "TMPDIR": str(scratch)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not any(scratch.glob("tvdeploy-tune-*")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert any(scratch.glob("tvdeploy-tune-*")), "tune never made its scratch directory"
    time.sleep(1)  # into the work
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "terminated" in err and "Traceback" not in err
    assert list(scratch.glob("tvdeploy-*")) == []  # (other libraries keep files of their own there)
    assert not (tmp_path / "t").exists() and [p.name for p in tmp_path.iterdir()] == ["tmp"]


def test_calibration_names_three_bad_files_and_counts_the_rest(tmp_path: Path, caplog, calibration_dir) -> None:
    from tvdeploy.export.options import CalibrationOptions
    from tvdeploy.export.precision import calibration_set
    from tvdeploy.runtime.manifest import PreprocessSpec

    folder = tmp_path / "calib"
    folder.mkdir()
    for index in range(40):
        (folder / f"bad{index:02d}.jpg").write_bytes(b"not a jpeg")
    shutil.copy(next(calibration_dir.iterdir()), folder / "zz-good.png")
    preprocess = PreprocessSpec((256,), (224,), "bilinear", True, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    with caplog.at_level("WARNING", logger="tvdeploy"):
        found = calibration_set(CalibrationOptions(source=str(folder), max_images=8), preprocess)
    assert len(found.batches) == 1
    skips = [r.getMessage() for r in caplog.records if "calibration: skip" in r.getMessage()]
    assert len(skips) == 4 and "skipped 37 more file(s)" in skips[-1]


def test_the_readme_python_example_runs_as_written(resnet18_artifacts, tmp_path: Path) -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = readme.split("```python\n", 1)[1].split("```", 1)[0]
    assert "artifacts/resnet50-onnx" in block
    (tmp_path / "artifacts").mkdir()
    shutil.copytree(resnet18_artifacts["onnx"], tmp_path / "artifacts" / "resnet50-onnx")  # the same kind of file
    proc = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 5 and all("%" in line for line in proc.stdout.splitlines())


def test_a_served_model_whose_manifest_does_not_match_fails_its_load_with_the_reason(
    resnet18_artifacts, tmp_path: Path
) -> None:
    import importlib.util

    if importlib.util.find_spec("kserve") is None:  # not imported here: its protobufs clash with tritonclient's
        pytest.skip("kserve is not installed")
    artifact = _copy(resnet18_artifacts["onnx"], tmp_path)
    _edit(artifact, lambda d: d["output"].update(name="scores"))
    script = (  # a process of its own: KServe's protobuf descriptors clash with tritonclient.grpc's in one process
        "import sys\n"
        "from tvdeploy.errors import ArtifactError\n"
        "from tvdeploy.serve.core import ModelCore\n"
        "from tvdeploy.serve.options import ServeOptions\n"
        "core = ModelCore(sys.argv[1], ServeOptions())\n"
        "try:\n    core.load()\nexcept ArtifactError:\n    pass\n"
        "print(core.ready, core.load_error)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(artifact)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("False ") and "the manifest says ['scores'] (output.name)" in done.stdout


def test_a_successful_executorch_validate_prints_nothing_of_the_native_libraries(ten_class_exports) -> None:
    pytest.importorskip("executorch")
    proc = run_cli_process("validate", ten_class_exports["executorch"].artifact_dir, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for noise in ("cpuinfo_utils", "midr", "register_constant", "W1204"):
        assert noise not in proc.stderr, proc.stderr


def test_dropped_native_lines_keeps_every_other_line(capfd) -> None:
    from tvdeploy.runtime.native_output import dropped_native_lines

    with dropped_native_lines(("[noise]",)):
        os.write(2, b"[noise] probing\nreal error\n[noise] more\n")
    assert capfd.readouterr().err == "real error\n"
