"""Runners: one interface over every backend (ONNX Runtime, OpenVINO, ExecuTorch, TorchScript, .pt2, and the
eager reference in export/). Which runner loads which format is the format registry's business."""

from __future__ import annotations

from pathlib import Path

from tvdeploy.errors import MissingDependencyError, ProviderError
from tvdeploy.runtime.formats import get_format, streaming_formats
from tvdeploy.runtime.host import usable_cores
from tvdeploy.runtime.manifest import Manifest
from tvdeploy.runtime.providers import SessionConfig, resolve_provider
from tvdeploy.runtime.runners.base import Runner, TensorInfo

__all__ = ["Runner", "TensorInfo", "runner_for_artifact"]


def runner_for_artifact(
    artifact_dir: str | Path,
    manifest: Manifest,
    provider: str = "cpu",
    config: SessionConfig | None = None,
) -> Runner:
    """A (not yet activated) runner for the model file of an artifact, on ``provider`` resolved for its format."""
    spec = get_format(manifest.format)
    missing = spec.missing_for_runtime()
    if missing:
        what = "torch" if "torch" in missing else ", ".join(missing)
        raise MissingDependencyError(
            f"this {spec.name} artifact needs {what}, which is not installed",
            hint=f"{spec.install_hint()}"
            + (", or export to ONNX for a torch-free deployment" if spec.torch_runtime else ""),
        )
    resolved = resolve_provider(provider, [spec.name])
    runner_class = spec.runner_class()
    if config is not None and (config.streams or 1) > 1 and not runner_class.streams_on(resolved):
        raise ProviderError(
            f"{spec.name} artifacts do not run on parallel streams on {resolved} (asked for {config.streams})",
            hint=f"leave streams at 1 for {spec.name}; formats with streams: {', '.join(streaming_formats())}",
        )
    cores = usable_cores()
    if config is not None and (config.streams or 1) > cores:
        raise ProviderError(
            f"{config.streams} streams asked for; this host has {cores} usable cores and each stream needs one",
            hint=f"use at most {cores} streams",
        )
    return runner_class.for_artifact(Path(artifact_dir), manifest, resolved, config)
