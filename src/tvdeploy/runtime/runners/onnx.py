"""ONNX Runtime runner."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from tvdeploy.errors import ArtifactError
from tvdeploy.runtime.providers import (
    SessionConfig,
    check_session_providers,
    ort_provider_list,
    resolve_provider,
)
from tvdeploy.runtime.runners.base import Runner, TensorInfo

logger = logging.getLogger(__name__)

_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
              "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(uint8)": "uint8", "tensor(int8)": "int8"}


class OnnxRunner(Runner):
    """Runs an ``.onnx`` file with ONNX Runtime on a chosen execution provider.

    On CUDA and TensorRT, inputs and outputs go through I/O binding: the input is
    copied to the device once and outputs are allocated there, then copied back.
    """

    backend = "onnx"

    def __init__(self, model_path: str | Path, provider: str = "cpu", config: SessionConfig | None = None) -> None:
        super().__init__()
        self.model_path = Path(model_path)
        self.requested_provider = provider
        self.config = config or SessionConfig()
        self.provider: str | None = None
        self.session: Any = None

    def _load(self) -> None:
        import onnxruntime as ort

        if not self.model_path.is_file():
            raise ArtifactError(f"model file {self.model_path} is missing")
        self.provider = resolve_provider(self.requested_provider)
        try:
            self.session = ort.InferenceSession(
                str(self.model_path),
                sess_options=self.config.session_options(),
                providers=ort_provider_list(self.provider, self.config.provider_options),
            )
        except Exception as exc:  # onnxruntime raises its own non-exported exception types
            raise ArtifactError(f"onnxruntime cannot load {self.model_path}: {exc}") from None
        check_session_providers(self.session, self.provider)
        logger.debug("onnxruntime session on %s", self.session.get_providers())

    def _unload(self) -> None:
        self.session = None

    @property
    def inputs(self) -> list[TensorInfo]:
        self.activate()
        return [TensorInfo(i.name, tuple(i.shape), _ORT_TYPES.get(i.type, i.type)) for i in self.session.get_inputs()]

    @property
    def outputs(self) -> list[TensorInfo]:
        self.activate()
        return [TensorInfo(o.name, tuple(o.shape), _ORT_TYPES.get(o.type, o.type)) for o in self.session.get_outputs()]

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [o.name for o in self.session.get_outputs()]
        if self.provider in ("cuda", "tensorrt"):
            binding = self.session.io_binding()
            for name, array in feeds.items():
                binding.bind_cpu_input(name, np.ascontiguousarray(array))
            for name in names:
                binding.bind_output(name, "cuda")
            self.session.run_with_iobinding(binding)
            return dict(zip(names, binding.copy_outputs_to_cpu()))
        return dict(zip(names, self.session.run(names, feeds)))
