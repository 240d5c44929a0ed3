"""The fine-tuning workflow end to end: a 10-class resnet18 state dict to all three formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tvdeploy.export.pipeline import ExportOutcome
from tvdeploy.runtime.hashing import sha256_file


@pytest.fixture(scope="module")
def exported(ten_class_exports: dict[str, ExportOutcome]) -> dict[str, ExportOutcome]:
    """The checkpoint's ONNX, TorchScript and .pt2 artifacts (exported once for the session)."""
    return {fmt: ten_class_exports[fmt] for fmt in ("onnx", "torchscript", "pt2")}


@pytest.fixture(scope="module")
def eager_and_photos(
    ten_class_checkpoint: tuple[Path, Path], photos: dict[str, Image.Image]
) -> tuple[torch.nn.Module, torch.Tensor]:
    """The user's own eager pipeline: the state dict in a torchvision resnet18, the weights' transforms."""
    from torchvision import models

    model = models.resnet18(num_classes=10)
    model.load_state_dict(torch.load(ten_class_checkpoint[0]))
    transforms = models.ResNet18_Weights.DEFAULT.transforms()
    batch = torch.stack([transforms(image) for image in photos.values()])
    assert batch.shape[0] == 6
    return model.eval(), batch


def _check(run, model: torch.nn.Module, batch: torch.Tensor) -> None:
    with torch.inference_mode():
        expected = model(batch).numpy()
    for size in (1, 6):
        for start in range(0, 6, size):
            got = run(batch[start : start + size])
            np.testing.assert_allclose(got, expected[start : start + size], atol=1e-4, rtol=1e-4)
            assert (got.argmax(1) == expected[start : start + size].argmax(1)).all()


def test_all_formats_pass_parity_with_labels(exported: dict[str, ExportOutcome]) -> None:
    assert set(exported) == {"onnx", "torchscript", "pt2"}
    for fmt, outcome in exported.items():
        assert outcome.passed, outcome.parity.failures
        manifest = json.loads((outcome.artifact_dir / "tvdeploy.json").read_text())
        assert outcome.artifact_dir.name == f"resnet18-{fmt}"
        assert manifest["format"] == fmt and manifest["precision"] == "fp32"
        assert manifest["labels"][:3] == ["airplane", "automobile", "bird"] and len(manifest["labels"]) == 10
        assert manifest["output"] == {"name": "logits", "meaning": "logits", "shape": ["batch", 10]}
        assert manifest["input"]["shape"] == ["batch", 3, 224, 224] and manifest["input"]["layout"] == "NCHW"
        assert manifest["weights"] == "checkpoint:resnet18_cifar10.pt" and manifest["pretrained"] is True
        assert manifest["parity"]["passed"] is True
        assert {s["name"] for s in manifest["parity"]["sets"]} == {"photos", "random"}
        assert set(manifest["versions"]) >= {"torch", "torchvision", "onnx", "onnxruntime", "tvdeploy"}
        for entry in manifest["files"]:
            assert sha256_file(outcome.artifact_dir / entry["path"]) == entry["sha256"]


def test_onnx_file_matches_eager_in_onnxruntime(exported: dict[str, ExportOutcome], eager_and_photos) -> None:
    import onnxruntime as ort

    outcome = exported["onnx"]
    assert outcome.manifest.exporter == "torch.onnx.export(dynamo=True)" and outcome.manifest.opset == 18
    session = ort.InferenceSession(str(outcome.artifact_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    assert isinstance(session.get_inputs()[0].shape[0], str)  # the batch axis is dynamic
    _check(lambda x: session.run(None, {"input": x.numpy()})[0], *eager_and_photos)


def test_torchscript_file_matches_eager_with_torch_jit_load(
    exported: dict[str, ExportOutcome], eager_and_photos
) -> None:
    module = torch.jit.load(str(exported["torchscript"].artifact_dir / "model.torchscript.pt"))
    _check(lambda x: module(x).detach().numpy(), *eager_and_photos)


def test_pt2_file_matches_eager_with_torch_export_load(exported: dict[str, ExportOutcome], eager_and_photos) -> None:
    module = torch.export.load(str(exported["pt2"].artifact_dir / "model.pt2")).module()
    with torch.inference_mode():
        _check(lambda x: module(x).numpy(), *eager_and_photos)
