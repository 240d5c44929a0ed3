"""ONNX Runtime runner."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tvdeploy.errors import ArtifactError, ProviderError
from tvdeploy.runtime.device_memory import DeviceArray, DeviceMemory, cuda_memory
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
from tvdeploy.runtime.tensorrt_cache import cache_options, current_key

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
#: Device buffers kept per input and thread, one per shape, the least recently used dropped beyond this (an
#: artifact that takes images of any size sees many shapes; a CUDA graph keeps every shape it captured).
_BUFFERS_PER_INPUT = 4
#: CUDA graphs captured per runner, one per input shape; calls of further shapes run without a graph.
_MAX_GRAPHS = 8


class OnnxRunner(Runner):
    """Runs an ``.onnx`` file with ONNX Runtime on a chosen execution provider.

    On CUDA and TensorRT, inputs and outputs go through I/O binding on device buffers kept per thread and shape
    (see :meth:`_infer_on_device`).
    """

    backend = "onnx"

    def __init__(self, model_path: str | Path, provider: str = "cpu", config: SessionConfig | None = None) -> None:
        """``provider`` is a resolved provider name (``runner_for_artifact`` resolves ``auto``)."""
        super().__init__()
        self.model_path = Path(model_path)
        self.provider = provider
        self.config = config or SessionConfig()
        if self.cuda_graph and (self.config.streams or 1) > 1:
            raise ProviderError(
                f"CUDA graphs run one call at a time (one set of captured buffers): streams {self.config.streams} "
                "cannot run with enable_cuda_graph",
                hint="--streams 1, or a deployment without enable_cuda_graph",
            )
        self.session: Any = None
        self._device = threading.local()
        self._pinned: list[np.ndarray] = []
        self._pinned_lock = threading.Lock()
        self._graph_lock = threading.Lock()

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
        spec = get_provider(provider)
        spec.check_options(config.provider_options, f"{provider} provider options")
        if spec.engine_cache and "trt_engine_cache_path" not in config.provider_options:
            key = current_key(int(config.provider_options.get("device_id", 0)))
            if key is not None:  # engines kept in the artifact per GPU and TensorRT release
                config = dataclasses.replace(
                    config, provider_options={**config.provider_options, **cache_options(artifact_dir, key)}
                )
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
            if self.cuda_graph:
                with self._graph_lock:  # one session's captured graphs: one call at a time
                    return self._infer_on_device(feeds, names)
            return self._infer_on_device(feeds, names)
        return dict(zip(names, self.session.run(names, feeds), strict=False))

    @property
    def device(self) -> Device:
        """Where the model runs: the provider's device and the ``device_id`` it was given."""
        return Device(get_provider(self.provider).device, int(self.config.provider_options.get("device_id", 0)))

    @property
    def memory(self) -> DeviceMemory | None:
        """The device's memory functions (pinned staging, device-to-device copies), or None on the CPU and where
        no CUDA runtime loads (host arrays then reach the device through ONNX Runtime's own pageable copy)."""
        if not on_gpu(self.provider):
            return None
        return device_memory(self.device.index)

    @property
    def cuda_graph(self) -> bool:
        """Whether the session replays CUDA graphs (``enable_cuda_graph``): every call then runs on the same input
        and output buffers of its shape, one graph captured per shape."""
        return bool(self.config.provider_options.get("enable_cuda_graph"))

    def staging(self, name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray | None:
        """A host array in pinned memory for a batch of input ``name`` that the caller fills in place (e.g.
        ``np.stack(images, out=...)``) and passes to :meth:`infer`: its copy to the device then runs from pinned
        memory, on this thread's own stream. One per thread and input, grown as needed; None where there is no
        device or no CUDA runtime (fill an ordinary array)."""
        memory = self.memory
        if memory is None:
            return None
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        held = self._device.__dict__.setdefault("staging", {})  # per thread even where CUDA graphs share the state
        buffer = held.get(name)
        if buffer is None or buffer.nbytes < nbytes:
            grown, buffer = buffer, memory.pinned(nbytes)
            held[name] = buffer
            with self._pinned_lock:  # the outgrown buffer is let go (freed with its last view)
                self._pinned = [b for b in self._pinned if b is not grown] + [buffer]
        return buffer[:nbytes].view(dtype).reshape(shape)

    def device_input(self, name: str, shape: tuple[int, ...], dtype: Any) -> DeviceArray:
        """This thread's device buffer for a batch of input ``name`` of that shape (made once per shape), for a
        caller that fills it on the device (a decoder gathering images with :meth:`DeviceMemory.copy`) and passes
        it to :meth:`infer`, which then binds it without a copy."""
        self.activate()
        value = self._input_buffer(self._device_state(), name, tuple(shape), np.dtype(dtype))
        return DeviceArray(int(value.data_ptr()), tuple(shape), np.dtype(dtype))

    def _input_buffer(
        self, state: dict[str, Any], name: str, shape: tuple[int, ...], dtype: np.dtype[Any], keep: bool = False
    ) -> Any:
        """This state's device buffer for an input of that shape: kept for good where a CUDA graph was captured on
        it (``keep``), else among the few most recently used."""
        import onnxruntime as ort

        key = (shape, dtype.str)
        buffers = state["graph_inputs" if keep else "inputs"].setdefault(name, {})
        if key in buffers:
            buffers[key] = buffers.pop(key)  # the most recently used last
        else:  # a buffer of its own (never the caller's memory)
            if len(buffers) >= _BUFFERS_PER_INPUT and not keep:  # images of many sizes: the oldest goes
                buffers.pop(next(iter(buffers)))
            buffers[key] = ort.OrtValue.ortvalue_from_shape_and_type(list(shape), dtype.type, *self._where)
        return buffers[key]

    def _pinned_source(self, array: np.ndarray) -> bool:
        """Whether ``array`` lies in one of this runner's pinned staging buffers."""
        start, end = array.ctypes.data, array.ctypes.data + array.nbytes
        with self._pinned_lock:
            buffers = list(self._pinned)
        return any(b.ctypes.data <= start and end <= b.ctypes.data + b.nbytes for b in buffers)

    def _infer_on_device(self, feeds: dict[str, Any], names: list[str]) -> dict[str, np.ndarray]:
        """One call with inputs and outputs on the device.

        A host array goes into a device buffer for its input and shape (made once, then refreshed: no allocation
        per call): from pinned staging (:meth:`staging`) with an asynchronous copy on this thread's stream,
        otherwise with ONNX Runtime's copy. An array already on the device (``__cuda_array_interface__``: a
        decoder's, CuPy's, torch's, :meth:`device_input`) is bound where it lies. Outputs are made on the device
        and only they are copied back.

        Under CUDA graphs, the first :data:`_MAX_GRAPHS` input shapes each get a graph captured on buffers kept for
        good (a device array is copied into its shape's buffer; outputs go to fixed buffers too), and later shapes
        run without a graph; the calls are serialized (one session, one set of captured addresses).
        """
        state = self._device_state()
        binding = state["binding"]
        memory = self.memory
        shapes = tuple(_shape_of(array) for array in feeds.values())
        graphed = self.cuda_graph and (shapes in state["graphs"] or len(state["graphs"]) < _MAX_GRAPHS)
        for name, array in feeds.items():
            interface = getattr(array, "__cuda_array_interface__", None)
            if interface is not None:
                shape, dtype = tuple(interface["shape"]), np.dtype(interface["typestr"])
                address = int(interface["data"][0])
                if graphed:
                    buffer = self._input_buffer(state, name, shape, dtype, keep=True)
                    if int(buffer.data_ptr()) != address:
                        if memory is None:
                            raise ProviderError("CUDA graphs need the CUDA runtime library to copy device inputs")
                        memory.copy(int(buffer.data_ptr()), address, DeviceArray(address, shape, dtype).nbytes)
                        address = int(buffer.data_ptr())
                binding.bind_input(name, *self._where, dtype.type, list(shape), address)
                continue
            host = np.ascontiguousarray(array)
            buffer = self._input_buffer(state, name, host.shape, host.dtype, keep=graphed)
            if memory is not None and self._pinned_source(host):
                memory.copy(int(buffer.data_ptr()), host.ctypes.data, host.nbytes)
            else:
                buffer.update_inplace(host)
            binding.bind_ortvalue_input(name, buffer)
        if graphed:
            for name, value in self._output_buffers(state, shapes, names).items():
                binding.bind_ortvalue_output(name, value)
        else:
            for name in names:
                binding.bind_output(name, *self._where)
        if self.cuda_graph:
            self.session.run_with_iobinding(binding, self._graph_run_options(state, shapes if graphed else None))
        else:
            self.session.run_with_iobinding(binding)
        return dict(zip(names, binding.copy_outputs_to_cpu(), strict=False))

    @property
    def _where(self) -> tuple[str, int]:
        device = self.device
        return (device.kind.value, device.index)

    def _graph_run_options(self, state: dict[str, Any], shapes: tuple[tuple[int, ...], ...] | None) -> Any:
        """The run options that select the CUDA graph of these input shapes (``gpu_graph_id``, one per shape,
        captured on its first call)."""
        import onnxruntime as ort

        graphs = state["graphs"]
        if shapes not in graphs:
            options = ort.RunOptions()  # None: a shape beyond the graphs kept runs without one (-1)
            options.add_run_config_entry("gpu_graph_id", "-1" if shapes is None else str(len(graphs) + 1))
            graphs[shapes] = options
        return graphs[shapes]

    def _output_buffers(self, state: dict[str, Any], shapes: tuple[tuple[int, ...], ...], names: list[str]) -> Any:
        """Output buffers of fixed addresses for a CUDA graph (made once per input shapes): each output's shape
        is the model's with the batch axis of the first input."""
        import onnxruntime as ort

        held = state["outputs"]
        if shapes not in held:
            batch = shapes[0][0]
            values = {}
            for output in self.session.get_outputs():
                dims = [batch if axis == 0 and not isinstance(d, int) else d for axis, d in enumerate(output.shape)]
                if not all(isinstance(d, int) for d in dims):
                    raise ProviderError(
                        f"CUDA graphs need outputs of known shape; {output.name} has {output.shape}",
                        hint="run without enable_cuda_graph",
                    )
                dtype = np.dtype(_ORT_TYPES.get(output.type, "float32"))
                values[output.name] = ort.OrtValue.ortvalue_from_shape_and_type(dims, dtype.type, *self._where)
            held[shapes] = values
        return {name: held[shapes][name] for name in names}

    def _device_state(self) -> dict[str, Any]:
        """This thread's I/O binding, device buffers and pinned staging (ONNX Runtime's binding is not shared
        across threads; each stream thread of a server or bench keeps its own)."""
        holder: Any = self if self.cuda_graph else self._device  # CUDA graphs: one state for every thread
        state = getattr(holder, "_device_state_held", None)
        if state is None or state["session"] is not self.session:
            state = {
                "session": self.session, "binding": self.session.io_binding(), "inputs": {}, "graph_inputs": {},
                "outputs": {}, "graphs": {},
            }  # fmt: skip
            holder._device_state_held = state
        return state

    def bare_call(self, feeds: dict[str, np.ndarray]) -> Callable[[], Any]:
        """``session.run(None, feeds)`` as it is, without building the output dict."""
        self.activate()
        session = self.session
        return lambda: session.run(None, feeds)


def _shape_of(array: Any) -> tuple[int, ...]:
    """The shape of a host or device array."""
    interface = getattr(array, "__cuda_array_interface__", None)
    return tuple(int(n) for n in (interface["shape"] if interface is not None else np.shape(array)))


def device_memory(index: int) -> DeviceMemory | None:
    """The memory functions of GPU ``index`` (a seam: the tests put the host stand-in here)."""
    return cuda_memory(index)


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
