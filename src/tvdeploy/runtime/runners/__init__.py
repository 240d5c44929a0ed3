"""Runners: one interface over ONNX Runtime, TorchScript, .pt2 (and the eager reference in export/)."""

from __future__ import annotations

from pathlib import Path

from tvdeploy.runtime.manifest import Manifest
from tvdeploy.runtime.providers import SessionConfig
from tvdeploy.runtime.runners.base import Runner, TensorInfo

__all__ = ["Runner", "TensorInfo", "runner_for_artifact"]


def runner_for_artifact(
    artifact_dir: str | Path,
    manifest: Manifest,
    provider: str = "cpu",
    config: SessionConfig | None = None,
) -> Runner:
    """A (not yet activated) runner for the model file of an artifact."""
    model_path = Path(artifact_dir) / manifest.model_file.path
    if manifest.format == "onnx":
        from tvdeploy.runtime.runners.onnx import OnnxRunner

        return OnnxRunner(model_path, provider=provider, config=config)
    from tvdeploy.runtime.providers import torch_device
    from tvdeploy.runtime.runners.torch_backed import ExportedProgramRunner, TorchScriptRunner, import_torch

    import_torch()
    runner_class = TorchScriptRunner if manifest.format == "torchscript" else ExportedProgramRunner
    return runner_class(
        model_path,
        input_name=manifest.input.name,
        output_name=manifest.output.name,
        input_shape=manifest.input.shape,
        device=torch_device(provider),
    )
