"""Runners for torch-backed artifacts (TorchScript and torch.export ``.pt2``).

torch is imported only when such a runner is activated, so the ONNX runtime
path never needs it.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from tvdeploy.errors import ArtifactError, MissingDependencyError
from tvdeploy.runtime.manifest import Manifest
from tvdeploy.runtime.providers import TORCH_PROVIDERS, SessionConfig, get_provider
from tvdeploy.runtime.runners.base import Runner, TensorInfo


def import_torch() -> Any:
    """Import torch, or explain which extra installs it."""
    try:
        import torch
    except ImportError as exc:
        raise MissingDependencyError(
            "this artifact needs torch (TorchScript and .pt2 run through torch)",
            hint='pip install "tvdeploy[export]", or export to ONNX for a torch-free deployment',
        ) from exc
    return torch


class TorchModuleRunner(Runner):
    """Shared logic: a callable torch module on a device, one input, one output."""

    backend = "torch"

    def __init__(
        self, input_name: str, output_name: str, input_shape: list[Any] | tuple[Any, ...], device: str = "cpu"
    ) -> None:
        super().__init__()
        self.input_name = input_name
        self.output_name = output_name
        self.input_shape = tuple(input_shape)
        self.device = device
        self.module: Any = None
        self._torch: Any = None

    @classmethod
    def available_providers(cls) -> list[str]:
        torch = import_torch()
        return [
            name
            for name in TORCH_PROVIDERS
            if get_provider(name).torch_device == "cpu" or (torch.cuda.is_available() and get_provider(name).on_gpu)
        ]

    @property
    def inputs(self) -> list[TensorInfo]:
        return [TensorInfo(self.input_name, self.input_shape, "float32")]

    @property
    def outputs(self) -> list[TensorInfo]:
        return [TensorInfo(self.output_name, (self.input_shape[0], None), "float32")]

    def _unload(self) -> None:
        self.module = None

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        tensor = torch.from_numpy(np.ascontiguousarray(feeds[self.input_name])).to(self.device)
        with torch.inference_mode():
            out = self.module(tensor)
        if self.device != "cpu":
            torch.cuda.synchronize()
        return {self.output_name: out.detach().float().cpu().numpy()}


class _FileModuleRunner(TorchModuleRunner):
    """A torch module loaded from a file; subclasses say how (``_open``) and with which loader (``loader``)."""

    loader = ""

    def __init__(self, model_path: str | Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model_path = Path(model_path)

    @classmethod
    def for_artifact(
        cls, artifact_dir: Path, manifest: Manifest, provider: str, config: SessionConfig | None = None
    ) -> "_FileModuleRunner":
        """Tensor names and shapes come from the manifest (the files carry none); the provider's torch device."""
        return cls(
            artifact_dir / manifest.model_file.path,
            input_name=manifest.input.name,
            output_name=manifest.output.name,
            input_shape=manifest.input.shape,
            device=get_provider(provider).torch_device or "cpu",
        )

    def _load(self) -> None:
        self._torch = import_torch()
        try:
            self.module = self._open(self._torch)
        except Exception as exc:  # torch raises RuntimeError subclasses of many kinds
            raise ArtifactError(f"{self.loader} cannot load {self.model_path}: {exc}") from exc

    def _open(self, torch: Any) -> Any:
        raise NotImplementedError


class TorchScriptRunner(_FileModuleRunner):
    """Runs ``model.torchscript.pt`` with ``torch.jit.load``."""

    backend = "torchscript"
    loader = "torch.jit.load"

    def _open(self, torch: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch 2.9+ flags torch.jit as deprecated
            return torch.jit.load(str(self.model_path), map_location=self.device).eval()


class ExportedProgramRunner(_FileModuleRunner):
    """Runs ``model.pt2`` with ``torch.export.load``."""

    backend = "pt2"
    loader = "torch.export.load"

    def _open(self, torch: Any) -> Any:
        return torch.export.load(str(self.model_path)).module().to(self.device)
