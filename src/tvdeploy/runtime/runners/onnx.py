"""ONNX Runtime runner."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tvdeploy.errors import ArtifactError
from tvdeploy.runtime.host import cpu_signature
from tvdeploy.runtime.manifest import Manifest, OptimizedGraph
from tvdeploy.runtime.precisions import get_precision
from tvdeploy.runtime.providers import (
    Device,
    SessionConfig,
    available_providers,
    check_session_providers,
    get_provider,
    on_gpu,
    ort_provider_list,
)
from tvdeploy.runtime.runners.base import Runner, TensorInfo

logger = logging.getLogger(__name__)

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
}


class OnnxRunner(Runner):
    """Runs an ``.onnx`` file with ONNX Runtime on a chosen execution provider.

    On CUDA and TensorRT, inputs and outputs go through I/O binding: the input is
    copied to the device once and outputs are allocated there, then copied back.
    """

    backend = "onnx"

    def __init__(self, model_path: str | Path, provider: str = "cpu", config: SessionConfig | None = None) -> None:
        """``provider`` is a resolved provider name (``runner_for_artifact`` resolves ``auto``)."""
        super().__init__()
        self.model_path = Path(model_path)
        self.provider = provider
        self.config = config or SessionConfig()
        self.session: Any = None
        self._device = threading.local()

    @classmethod
    def available_providers(cls) -> list[str]:
        return available_providers()

    @classmethod
    def streams_on(cls, provider: str) -> bool:
        """On a GPU: several calls at once, each thread with its own binding and device buffers, so that one
        call's host-to-device copy overlaps another's compute. On the CPU, ONNX Runtime's threads are the
        parallelism."""
        return on_gpu(provider)

    @property
    def concurrency(self) -> int:
        """The streams asked for on a GPU provider (one on the CPU)."""
        return (self.config.streams or 1) if on_gpu(self.provider) else 1

    @classmethod
    def for_artifact(
        cls, artifact_dir: Path, manifest: Manifest, provider: str, config: SessionConfig | None = None
    ) -> "OnnxRunner":
        config = config or SessionConfig()
        needed = get_precision(manifest.precision).options_for(manifest.format, provider)
        if needed:  # the options the provider needs for this precision, under the caller's own
            config = dataclasses.replace(config, provider_options={**needed, **config.provider_options})
        get_provider(provider).check_options(config.provider_options, f"{provider} provider options")
        graph = manifest.optimized_graph
        if graph is not None:
            check_optimized_graph(graph, provider)
            # fully optimized for this host: sessions skip the work; a portable level still gets this host's
            # layout optimizations (level all) at load
            if graph.host_specific and config.graph_optimization is None:
                config = dataclasses.replace(config, graph_optimization="disable")
        return cls(artifact_dir / manifest.model_file.path, provider=provider, config=config)

    def _load(self) -> None:
        import onnxruntime as ort

        if not self.model_path.is_file():
            raise ArtifactError(f"model file {self.model_path} is missing")
        try:
            self.session = ort.InferenceSession(
                str(self.model_path),
                sess_options=self.config.session_options(),
                providers=ort_provider_list(self.provider, self.config.provider_options),
            )
        except Exception as exc:  # onnxruntime raises its own non-exported exception types
            raise ArtifactError(f"onnxruntime cannot load {self.model_path}: {exc}") from exc
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
        if on_gpu(self.provider):
            return self._infer_on_device(feeds, names)
        return dict(zip(names, self.session.run(names, feeds), strict=False))

    def _infer_on_device(self, feeds: dict[str, Any], names: list[str]) -> dict[str, np.ndarray]:
        """One call with inputs and outputs on the device: a host array is copied into this thread's device buffer
        for that input (made once per shape and dtype, then refreshed in place: no allocation per call), an array
        already on the device (``__cuda_array_interface__``: a decoder's, CuPy's, torch's) is bound where it lies,
        and the outputs are made on the device and only they are copied back."""
        import onnxruntime as ort

        device = Device(get_provider(self.provider).device, int(self.config.provider_options.get("device_id", 0)))
        where = (device.kind.value, device.index)
        state = self._device_state()
        binding = state["binding"]
        for name, array in feeds.items():
            interface = getattr(array, "__cuda_array_interface__", None)
            if interface is not None:
                dtype = np.dtype(interface["typestr"])
                binding.bind_input(name, *where, dtype.type, list(interface["shape"]), interface["data"][0])
                continue
            host = np.ascontiguousarray(array)
            key = (host.shape, host.dtype.str)
            held = state["inputs"].get(name)
            if held is None or held[0] != key:  # a buffer of its own (never the caller's memory), then the copy
                held = (key, ort.OrtValue.ortvalue_from_shape_and_type(list(host.shape), host.dtype.type, *where))
                state["inputs"][name] = held
            held[1].update_inplace(host)
            binding.bind_ortvalue_input(name, held[1])
        for name in names:
            binding.bind_output(name, *where)
        self.session.run_with_iobinding(binding)
        return dict(zip(names, binding.copy_outputs_to_cpu(), strict=False))

    def _device_state(self) -> dict[str, Any]:
        """This thread's I/O binding and device input buffers (ONNX Runtime's binding is not shared across
        threads; each stream thread of a server or bench keeps its own)."""
        state = getattr(self._device, "state", None)
        if state is None or state["session"] is not self.session:
            state = {"session": self.session, "binding": self.session.io_binding(), "inputs": {}}
            self._device.state = state
        return state

    def bare_call(self, feeds: dict[str, np.ndarray]) -> Callable[[], Any]:
        """``session.run(None, feeds)`` as it is, without building the output dict."""
        self.activate()
        session = self.session
        return lambda: session.run(None, feeds)


def check_optimized_graph(graph: OptimizedGraph, provider: str) -> None:
    """Refuse a host-specific optimized graph where it was not made for: another CPU, another ONNX Runtime
    release, or a provider other than the CPU."""
    if not graph.host_specific:
        return
    import onnxruntime as ort

    way_out = (
        "run `tvdeploy optimize ARTIFACT --optimize` on this machine with the fp32 source artifact, "
        "or export with --optimize extended (portable, a slower session start)"
    )
    if provider != "cpu":
        raise ArtifactError(
            f"this artifact holds a graph optimized for the CPU at level 'all'; it cannot run on {provider}",
            hint=way_out,
        )
    problems = []
    if graph.onnxruntime != ort.__version__:
        problems.append(f"onnxruntime {graph.onnxruntime}, this is {ort.__version__}")
    if graph.host != cpu_signature():
        problems.append(f"a CPU with {graph.host}, this is {cpu_signature()}")
    if problems:
        raise ArtifactError(
            "this artifact's graph was optimized at level 'all' for " + " and ".join(problems), hint=way_out
        )
