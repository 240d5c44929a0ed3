"""The runtime runs where torch cannot be imported, and answers like eager torchvision."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch

BLOCK_TORCH = textwrap.dedent("""
    import importlib.abc, sys

    class _BlockTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "torchvision"):
                raise ImportError(f"{name} is blocked: the runtime must not need it")
            return None

    sys.meta_path.insert(0, _BlockTorch())
""")


def _run_blocked(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH + textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


def test_blocker_really_blocks_torch() -> None:
    proc = _run_blocked("import torch")
    assert proc.returncode != 0 and "is blocked" in proc.stderr


def test_every_runtime_module_imports_without_torch() -> None:
    proc = _run_blocked("""
        import importlib, pkgutil, sys
        import tvdeploy.runtime
        for module in pkgutil.walk_packages(tvdeploy.runtime.__path__, "tvdeploy.runtime."):
            importlib.import_module(module.name)
        import tvdeploy.cli
        assert not any(m.split(".")[0] in ("torch", "torchvision") for m in sys.modules)
        print("ok")
    """)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_predict_without_torch_matches_eager_torchvision(resnet18_artifacts, photo_files) -> None:
    proc = _run_blocked(
        """
        import json, sys
        from tvdeploy.runtime import load
        clf = load(sys.argv[1])
        rows = clf.predict(sys.argv[2:], top_k=5)
        print(json.dumps([[p.to_dict() for p in row] for row in rows]))
    """,
        str(resnet18_artifacts["onnx"]),
        *map(str, photo_files),
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)

    # the tutorial pipeline: PIL + the weights' transforms + eager model + softmax + sort
    from PIL import Image
    from torchvision import models

    from tvdeploy.models.loader import load_model

    model = load_model("resnet18", "none").module
    transforms = models.ResNet18_Weights.DEFAULT.transforms()
    with torch.inference_mode():
        batch = torch.stack([transforms(Image.open(p).convert("RGB")) for p in photo_files])
        probabilities = model(batch).softmax(dim=1)
        top = probabilities.topk(5, dim=1)
    for row, values, indices in zip(got, top.values.numpy(), top.indices.numpy(), strict=False):
        assert [p["index"] for p in row] == indices.tolist()
        np.testing.assert_allclose([p["probability"] for p in row], values, atol=1e-4)
        np.testing.assert_allclose([p["probability"] for p in row], values, rtol=1e-3)  # random-init probs are small
    assert max(row[0]["probability"] for row in got) > 10 / 1000  # far from uniform: the ranking means something


def test_predict_cli_without_torch(resnet18_artifacts, photo_files) -> None:
    proc = _run_blocked(
        """
        import sys
        from tvdeploy.cli import main
        sys.exit(main(["predict", sys.argv[1], sys.argv[2], "--json", "--top-k", "2"]))
    """,
        str(resnet18_artifacts["onnx"]),
        str(photo_files[0]),
    )
    assert proc.returncode == 0, proc.stderr
    line = json.loads(proc.stdout)
    assert line["path"] == str(photo_files[0]) and len(line["predictions"]) == 2


def test_torch_formats_explain_the_missing_extra(resnet18_artifacts) -> None:
    proc = _run_blocked(
        """
        import sys
        from tvdeploy.cli import main
        sys.exit(main(["predict", sys.argv[1], sys.argv[2]]))
    """,
        str(resnet18_artifacts["torchscript"]),
        str(Path(__file__)),
    )
    assert proc.returncode == 2 and "needs torch" in proc.stderr and "Traceback" not in proc.stderr


#: As a torch-free install (`pip install .`) is: none of the export extra's modules exist.
BLOCK_EXPORT_EXTRA = textwrap.dedent("""
    import importlib.abc, sys

    class _NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "torchvision", "onnx", "onnxscript", "onnxslim", "safetensors",
                                      "onnxconverter_common", "executorch"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, _NotInstalled())
    from tvdeploy.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def test_commands_that_need_the_export_extra_name_it_in_a_torch_free_install(resnet18_artifacts, tmp_path) -> None:
    commands = {
        "list": ["list"],
        "export": ["export", "--model", "resnet18", "--weights", "none", "--output", str(tmp_path / "x")],
        "validate": ["validate", str(resnet18_artifacts["onnx"])],
        "bench --model": ["bench", "--model", "resnet18", "--weights", "none", "--cache-dir", str(tmp_path / "c")],
        "optimize": [
            "optimize",
            str(resnet18_artifacts["onnx"]),
            "--precision",
            "fp16",
            "--output",
            str(tmp_path / "o"),
        ],
    }
    for name, argv in commands.items():
        proc = subprocess.run(
            [sys.executable, "-c", BLOCK_EXPORT_EXTRA, *argv], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 2, (name, proc.stderr)
        assert "Traceback" not in proc.stderr, (name, proc.stderr)
        assert "export extra" in proc.stderr and 'pip install "tvdeploy[export]"' in proc.stderr, (name, proc.stderr)
        assert proc.stderr.count("\n") <= 3, (name, proc.stderr)  # the error line and its hint


def test_the_ray_predictor_imports_without_torch() -> None:
    proc = _run_blocked("""
        import sys
        import tvdeploy.batch.predictor, tvdeploy.batch.ray_job
        assert not any(m.split(".")[0] in ("torch", "torchvision") for m in sys.modules)
        print("ok")
    """)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
