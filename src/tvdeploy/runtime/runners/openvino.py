"""OpenVINO runner: ``model.xml`` + ``model.bin`` on OpenVINO's CPU plugin, without torch.

The inference precision is pinned to the artifact's own: OpenVINO's CPU plugin
defaults to bf16 on processors that have it (seen here: resnet18 logits off by
1.2e-2), which an fp32 artifact must not silently get; a bf16 artifact is refused
on a CPU that cannot compute in bf16 (OpenVINO would quietly run it in f32). Each
thread gets its own infer request (a request is not thread-safe; the compiled model is). With
``SessionConfig.streams`` the model is compiled into that many streams (``NUM_STREAMS``, the throughput hint),
which run that many calls at once: on 2 AMX cores, resnet50 int8 batches of 8 kept two in flight ran 1.27x the
images per second of one synchronous call at a time (docs/optimization.md).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tvdeploy.errors import ArtifactError, ProviderError
from tvdeploy.runtime.host import cpu_flags
from tvdeploy.runtime.manifest import Manifest
from tvdeploy.runtime.precisions import Precision, get_precision
from tvdeploy.runtime.providers import SessionConfig, get_provider
from tvdeploy.runtime.runners.base import Runner, TensorInfo


def stream_properties(threads: int | None, streams: int) -> dict[str, Any]:
    """OpenVINO's hint, streams and threads for ``streams`` streams of ``threads`` threads each (``None``:
    OpenVINO's choice): the latency hint on one stream, the throughput hint with ``NUM_STREAMS`` on more;
    ``INFERENCE_NUM_THREADS`` counts the threads of all streams. The runner compiles with them and
    ``export-triton`` writes them for Triton's OpenVINO backend."""
    props: dict[str, Any] = (
        {"PERFORMANCE_HINT": "LATENCY"} if streams <= 1 else {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": streams}
    )
    if threads:
        props["INFERENCE_NUM_THREADS"] = threads * streams
    return props


def _type_name(element_type: Any) -> str:
    return {"f32": "float32", "f16": "float16", "u8": "uint8", "i64": "int64", "i32": "int32"}.get(
        element_type.get_type_name(), element_type.get_type_name()
    )


def _tensor_info(port: Any) -> TensorInfo:
    """Name, shape (``None`` for dynamic dimensions) and dtype of a compiled model's input or output."""
    shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
    return TensorInfo(port.get_any_name(), shape, _type_name(port.get_element_type()))


class OpenVinoRunner(Runner):
    """Compiles an OpenVINO IR for a device and runs it with per-thread infer requests."""

    backend = "openvino"
    supports_streams = True

    def __init__(
        self,
        model_path: str | Path,
        provider: str = "cpu",
        precision: str = Precision.FP32,
        config: SessionConfig | None = None,
    ) -> None:
        super().__init__()
        self.model_path = Path(model_path)
        self.provider = provider
        device = get_provider(provider).openvino_device
        if device is None:
            raise ProviderError(
                f"OpenVINO's runtime does not run on the {provider} provider", hint="use --provider cpu"
            )
        self.device = device
        self.precision = precision
        self.config = config or SessionConfig()
        self.compiled: Any = None
        self._local = threading.local()

    @classmethod
    def for_artifact(
        cls, artifact_dir: Path, manifest: Manifest, provider: str, config: SessionConfig | None = None
    ) -> "OpenVinoRunner":
        return cls(
            artifact_dir / manifest.model_file.path, provider=provider, precision=manifest.precision, config=config
        )

    @property
    def concurrency(self) -> int:
        """The compiled model's streams (``SessionConfig.streams``, one by default)."""
        return self.config.streams or 1

    def properties(self) -> dict[str, Any]:
        """The compile properties: the precision's (the registry's ``backend_options``), and the hint, streams and
        threads of :func:`stream_properties`."""
        return {
            "INFERENCE_PRECISION_HINT": "f32",
            **get_precision(self.precision).options_for(self.backend, self.provider),
            **stream_properties(self.config.intra_op_threads, self.concurrency),
        }

    def _load(self) -> None:
        import openvino as ov

        get_precision(self.precision).check_host("openvino", cpu_flags())
        if not self.model_path.is_file():
            raise ArtifactError(f"model file {self.model_path} is missing")
        try:
            self.compiled = ov.Core().compile_model(str(self.model_path), self.device, self.properties())
        except RuntimeError as exc:
            raise ArtifactError(f"OpenVINO cannot load {self.model_path}: {str(exc).strip().splitlines()[0]}") from exc
        self._local = threading.local()

    def _unload(self) -> None:
        self.compiled = None
        self._local = threading.local()

    def _request(self) -> Any:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        return request

    @property
    def inputs(self) -> list[TensorInfo]:
        self.activate()
        return [_tensor_info(port) for port in self.compiled.inputs]

    @property
    def outputs(self) -> list[TensorInfo]:
        self.activate()
        return [_tensor_info(port) for port in self.compiled.outputs]

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self._request().infer(feeds)
        return {output.get_any_name(): np.array(results[output]) for output in self.compiled.outputs}

    def bare_call(self, feeds: dict[str, np.ndarray]) -> Callable[[], Any]:
        """``infer_request.infer(feeds)`` as it is."""
        self.activate()
        request = self._request()
        return lambda: request.infer(feeds)
