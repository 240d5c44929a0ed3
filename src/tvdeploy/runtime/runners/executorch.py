"""ExecuTorch runner: ``model.pte`` through ExecuTorch's Python runtime (``executorch.runtime``).

The Python bindings take and return torch tensors, so this runner needs torch
(the on-device C++ runtime does not). A program has no tensor names: inputs and
outputs are positional, and the names come from the manifest.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tvdeploy.errors import ArtifactError
from tvdeploy.runtime.manifest import Manifest, TensorSpec
from tvdeploy.runtime.native_output import dropped_native_lines, quiet_library_loggers
from tvdeploy.runtime.providers import SessionConfig
from tvdeploy.runtime.runners.base import Runner, TensorInfo
from tvdeploy.runtime.runners.torch_backed import import_torch

#: What ExecuTorch's runtime prints of its CPU probing (info level, no switch to turn it off).
CPUINFO_LINES = ("[cpuinfo_utils.cpp:",)


class ExecuTorchRunner(Runner):
    """Loads the program's ``forward`` method and executes it; one call at a time (a method is not reentrant)."""

    backend = "executorch"

    def __init__(self, model_path: str | Path, input_spec: TensorSpec, output_name: str) -> None:
        super().__init__()
        self.model_path = Path(model_path)
        self.input_spec = input_spec
        self.output_name = output_name
        self.method: Any = None
        self._torch: Any = None
        self._calls = threading.Lock()

    @classmethod
    def for_artifact(
        cls, artifact_dir: Path, manifest: Manifest, provider: str, config: SessionConfig | None = None
    ) -> "ExecuTorchRunner":
        return cls(artifact_dir / manifest.model_file.path, manifest.input, manifest.output.name)

    def _load(self) -> None:
        self._torch = import_torch()
        quiet_library_loggers()
        from executorch.runtime import Runtime

        if not self.model_path.is_file():
            raise ArtifactError(f"model file {self.model_path} is missing")
        try:
            program = Runtime.get().load_program(self.model_path)
            with dropped_native_lines(CPUINFO_LINES):  # its CPU probing, printed when a method loads
                self.method = program.load_method("forward")
        except (RuntimeError, ValueError) as exc:
            raise ArtifactError(f"ExecuTorch cannot load {self.model_path}: {exc}") from exc

    def _unload(self) -> None:
        self.method = None

    @property
    def inputs(self) -> list[TensorInfo]:
        return [TensorInfo(self.input_spec.name, tuple(self.input_spec.shape), self.input_spec.dtype)]

    @property
    def outputs(self) -> list[TensorInfo]:
        return [TensorInfo(self.output_name, (self.input_spec.shape[0], None), "float32")]

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        array = feeds[self.input_spec.name]
        self.input_spec.check_batch(int(array.shape[0]))
        tensor = self._torch.from_numpy(np.ascontiguousarray(array))
        with self._calls:
            outputs = self.method.execute([tensor])
        return {self.output_name: outputs[0].numpy().copy()}

    def bare_call(self, feeds: dict[str, np.ndarray]) -> Callable[[], Any]:
        """``method.execute([tensor])`` as it is."""
        self.activate()
        tensor = self._torch.from_numpy(np.ascontiguousarray(feeds[self.input_spec.name]))
        method = self.method
        return lambda: method.execute([tensor])
