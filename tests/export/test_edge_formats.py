"""The edge targets end to end: a fine-tuned 10-class resnet18 state dict to OpenVINO IR and ExecuTorch.

As a user does it: ``tvdeploy export --weights ft.pt --labels classes.txt --format openvino|executorch``, then
the files are loaded with OpenVINO's and ExecuTorch's own runtimes and compared with the user's own eager
pipeline on real photos; ``tvdeploy predict`` and ``bench`` run them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.cli_helpers import run_cli
from tests.runtime.test_no_torch import BLOCK_TORCH
from tvdeploy.errors import ArtifactError
from tvdeploy.runtime import load
from tvdeploy.runtime.formats import FORMATS


@pytest.fixture(scope="module")
def edge_artifacts(ten_class_exports: dict) -> dict[str, Path]:
    """The checkpoint's OpenVINO IR and ExecuTorch program (exported once for the session, each with parity)."""
    for fmt in ("openvino", "executorch"):
        assert ten_class_exports[fmt].passed, ten_class_exports[fmt].parity.failures
    return {fmt: ten_class_exports[fmt].artifact_dir for fmt in ("openvino", "executorch")}


@pytest.fixture(scope="module")
def eager_reference(
    ten_class_checkpoint: tuple[Path, Path], photos: dict[str, Image.Image]
) -> tuple[torch.Tensor, np.ndarray]:
    """The tutorial pipeline: the state dict in a torchvision resnet18, the weights' transforms, eval mode."""
    from torchvision import models

    model = models.resnet18(num_classes=10)
    model.load_state_dict(torch.load(ten_class_checkpoint[0]))
    transforms = models.ResNet18_Weights.DEFAULT.transforms()
    batch = torch.stack([transforms(image) for image in photos.values()])
    with torch.inference_mode():
        return batch, model.eval()(batch).numpy()


def test_manifests_describe_the_new_formats(edge_artifacts: dict[str, Path]) -> None:
    for fmt, path in edge_artifacts.items():
        manifest = json.loads((path / "tvdeploy.json").read_text())
        assert manifest["format"] == fmt and manifest["precision"] == "fp32" and manifest["parity"]["passed"]
        assert [f["path"] for f in manifest["files"]] == [n for n in FORMATS[fmt].files if (path / n).exists()]
        assert manifest["labels"][:2] == ["airplane", "automobile"]
    openvino = json.loads((edge_artifacts["openvino"] / "tvdeploy.json").read_text())
    assert [f["path"] for f in openvino["files"]] == ["model.xml", "model.bin"]
    assert (
        openvino["export_info"]["converted_from"] == "onnx" and openvino["exporter"] == "openvino.convert_model(onnx)"
    )
    executorch = json.loads((edge_artifacts["executorch"] / "tvdeploy.json").read_text())
    assert executorch["export_info"]["delegate"] == "XnnpackBackend"
    assert executorch["input"]["shape"] == ["batch", 3, 224, 224] and executorch["input"]["max_batch"] == 8


def test_openvino_runtime_loads_the_ir_and_matches_eager(edge_artifacts, eager_reference) -> None:
    import openvino as ov

    batch, expected = eager_reference
    compiled = ov.Core().compile_model(
        str(edge_artifacts["openvino"] / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
    )
    assert compiled.inputs[0].get_any_name() == "input" and compiled.outputs[0].get_any_name() == "logits"
    for size in (1, 6):
        got = compiled({"input": batch[:size].numpy()})[compiled.outputs[0]]
        np.testing.assert_allclose(got, expected[:size], atol=1e-4, rtol=1e-4)


def test_executorch_runtime_loads_the_program_and_matches_eager(edge_artifacts, eager_reference) -> None:
    from executorch.runtime import Runtime

    batch, expected = eager_reference
    method = Runtime.get().load_program(edge_artifacts["executorch"] / "model.pte").load_method("forward")
    for size in (1, 6):
        got = method.execute([batch[:size].contiguous()])[0].numpy()
        np.testing.assert_allclose(got, expected[:size], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("fmt", ["openvino", "executorch"])
def test_predict_agrees_with_eager(edge_artifacts, eager_reference, photo_files, fmt: str, capsys) -> None:
    _, expected = eager_reference
    code, out, _ = run_cli(capsys, "predict", edge_artifacts[fmt], *photo_files, "--json", "--top-k", "1")
    assert code == 0
    labels = json.loads((edge_artifacts[fmt] / "tvdeploy.json").read_text())["labels"]
    got = [json.loads(line)["predictions"][0]["label"] for line in out.splitlines()]
    assert got == [labels[i] for i in expected.argmax(1)]


def test_openvino_artifact_runs_without_torch(edge_artifacts, photo_files) -> None:
    code = BLOCK_TORCH + (
        "import sys\nfrom tvdeploy.runtime import load\n"
        "rows = load(sys.argv[1]).predict(sys.argv[2:], top_k=1)\n"
        "assert not any(m.split('.')[0] in ('torch', 'torchvision') for m in sys.modules)\n"
        "print(len(rows))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(edge_artifacts["openvino"]), *map(str, photo_files)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(len(photo_files))


def test_executorch_refuses_batches_over_its_bound_and_predict_splits_them(edge_artifacts, photo_files) -> None:
    with load(edge_artifacts["executorch"], batch_size=32) as clf:
        with pytest.raises(ArtifactError, match="at most 8, got 9"):
            clf.runner.infer({"input": np.zeros((9, 3, 224, 224), np.float32)})
        many = clf.predict(photo_files * 2, top_k=1)  # 12 images in one call: run as 8 + 4
        once = clf.predict(photo_files, top_k=1)
    assert [row[0].index for row in many] == [row[0].index for row in once] * 2


def test_bench_runs_the_formats_side_by_side(edge_artifacts, tmp_path: Path, capsys) -> None:
    code, _, _ = run_cli(
        capsys,
        "bench",
        edge_artifacts["openvino"],
        edge_artifacts["executorch"],
        "--batch-sizes",
        "1,9",
        "--iterations",
        "2",
        "--warmup",
        "1",
        "--no-cold-start",
        "--bare",
        "--save-json",
        tmp_path / "b.json",
    )
    assert code == 0
    report = json.loads((tmp_path / "b.json").read_text())
    rows = {(r["backend"], r["mode"], r["batch_size"]) for r in report["results"]}
    # batch 9 is over the ExecuTorch program's bound: not timed for it, timed for OpenVINO
    assert rows == {
        ("openvino", "model", 1),
        ("openvino", "bare", 1),
        ("executorch", "model", 1),
        ("executorch", "bare", 1),
        ("openvino", "model", 9),
        ("openvino", "bare", 9),
    }
    assert report["config"]["resolved_provider"] == "cpu"
