"""Execution providers: user-facing names to ONNX Runtime providers, and session options.

An explicit request for a provider that is not available is an error that lists
the available ones; ``auto`` picks the best available and logs the choice.
Nothing falls back silently.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from tvdeploy.errors import ProviderError
from tvdeploy.runtime.host import nvidia_gpus

logger = logging.getLogger(__name__)


class DeviceKind(StrEnum):
    """What a provider computes on."""

    CPU = "cpu"
    NVIDIA_GPU = "cuda"


@dataclass(frozen=True)
class Device:
    """A device as a value: its kind and index (``cpu``, ``cuda:0``), not a string convention."""

    kind: DeviceKind
    index: int = 0

    def __str__(self) -> str:
        return "cpu" if self.kind == DeviceKind.CPU else f"{self.kind.value}:{self.index}"

    @classmethod
    def parse(cls, text: str) -> Device:
        """``cpu``, ``cuda`` or ``cuda:N``; anything else is a :class:`ProviderError` naming the forms."""
        kind, _, index = str(text).lower().partition(":")
        try:
            device = cls(DeviceKind(kind), int(index) if index else 0)
        except ValueError:
            raise ProviderError(f"unknown device {text!r}", hint="use cpu, cuda or cuda:N") from None
        if device.index < 0 or (device.kind == DeviceKind.CPU and index):
            raise ProviderError(f"unknown device {text!r}", hint="use cpu, cuda or cuda:N")
        return device


@dataclass(frozen=True)
class TuneVariant:
    """One configuration ``tune`` tries on a provider: a precision, provider options, and a label for them."""

    precision: str
    options: tuple[tuple[str, Any], ...] = ()
    label: str = ""
    #: calls in flight at once (each thread its own device buffers, so one's copies overlap another's compute);
    #: more than one is tried for ``--objective throughput`` only
    streams: int = 1


@dataclass(frozen=True)
class ProviderSpec:
    """One execution provider, as data: what it maps to in each runtime, what it computes on, which options it
    takes (name -> type), what it needs to start and how to install it. Nothing else lists providers."""

    name: str
    summary: str
    device: DeviceKind
    #: ONNX Runtime's provider, and the providers that follow it in the same session (nodes it does not run)
    ort_provider: str | None
    ort_fallbacks: tuple[str, ...] = ()
    #: the torch device of torch-backed runners (TorchScript, .pt2, eager); None: torch does not run on it
    torch_device: str | None = None
    #: the OpenVINO device of the OpenVINO runner; None: OpenVINO's runtime does not run on it
    openvino_device: str | None = None
    #: place in ``auto``'s order (lowest first); None: only when asked for by name
    auto_rank: int | None = None
    #: shared libraries a session on it loads (checked before a session is tried: ONNX Runtime only logs them)
    libraries: tuple[str, ...] = ()
    #: what ships those libraries, as a person calls it (``TensorRT``)
    libraries_of: str = ""
    #: ONNX Runtime provider options it takes, with their types (a manifest's are checked against them)
    options: Mapping[str, type] = field(default_factory=dict)
    install_hint: str = ""
    #: Triton's name for it as an ONNX Runtime backend accelerator (``gpu_execution_accelerator``), where it is one
    triton_accelerator: str | None = None
    #: what ``tune`` tries on it (GPU providers; the CPU's are tune's own plan): ONNX artifacts of a precision, run
    #: with provider options, under a label that names the options in the candidate's name
    tune_variants: tuple[TuneVariant, ...] = ()
    #: builds engines worth keeping between starts (TensorRT): the artifact keeps them per GPU and release
    #: (:mod:`tvdeploy.runtime.tensorrt_cache`)
    engine_cache: bool = False

    @property
    def on_gpu(self) -> bool:
        """Whether it runs on an NVIDIA GPU (inputs and outputs bound on the device)."""
        return self.device == DeviceKind.NVIDIA_GPU

    def check_options(self, options: Mapping[str, Any], where: str = "provider options") -> dict[str, Any]:
        """``options`` if each is one this provider takes, of its type; a :class:`ProviderError` naming the
        option otherwise."""
        if not isinstance(options, Mapping):
            raise ProviderError(f"{where} must be an object of option names and values")
        for key, value in options.items():
            kind = self.options.get(key)
            if kind is None:
                known = ", ".join(self.options) or "none"
                raise ProviderError(f"{where}: {self.name} takes no option {key!r}", hint=f"its options: {known}")
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ProviderError(f"{where}: {self.name} option {key!r} must be {kind.__name__}, got {value!r}")
        return dict(options)


_CUDA_OPTIONS: dict[str, type] = {
    "device_id": int, "use_tf32": int, "prefer_nhwc": int, "enable_cuda_graph": int, "cudnn_conv_algo_search": str,
    "do_copy_in_default_stream": int, "gpu_mem_limit": int, "arena_extend_strategy": str,
}  # fmt: skip

#: Every execution provider tvdeploy knows, ``cpu`` first.
PROVIDERS: dict[str, ProviderSpec] = {
    spec.name: spec
    for spec in (
        ProviderSpec(
            "cpu", "the host's CPU", DeviceKind.CPU, "CPUExecutionProvider", torch_device="cpu",
            openvino_device="CPU", auto_rank=3, options={"arena_extend_strategy": str},
        ),
        ProviderSpec(
            "cuda", "an NVIDIA GPU through CUDA and cuDNN", DeviceKind.NVIDIA_GPU, "CUDAExecutionProvider",
            ("CPUExecutionProvider",), torch_device="cuda", auto_rank=1, options=_CUDA_OPTIONS,
            # TF32 is the CUDA provider's default for fp32 (parity decides whether it holds); NHWC convolutions gave
            # fp16 1.4x on an H200; CUDA graphs replay a batch shape's kernels in one launch (one graph per shape)
            tune_variants=(
                TuneVariant("fp32"), TuneVariant("fp32", (("use_tf32", 0),), "notf32"), TuneVariant("fp16"),
                TuneVariant("fp16", (("prefer_nhwc", 1),), "nhwc"),
                TuneVariant("fp16", (("prefer_nhwc", 1),), "nhwc-s2", streams=2),
                TuneVariant("fp16", (("prefer_nhwc", 1), ("enable_cuda_graph", 1)), "nhwc-graph"),
            ),
            install_hint="pip uninstall onnxruntime && pip install onnxruntime-gpu (needs an NVIDIA driver and "
            "CUDA/cuDNN libraries)",
        ),
        # TensorRT is left out of auto: its engine build takes minutes on the first run, which a default must not cost
        ProviderSpec(
            "tensorrt", "an NVIDIA GPU through TensorRT engines", DeviceKind.NVIDIA_GPU, "TensorrtExecutionProvider",
            ("CUDAExecutionProvider", "CPUExecutionProvider"), libraries=("libnvinfer.so.10",),
            libraries_of="TensorRT", tune_variants=(TuneVariant("fp16"), TuneVariant("int8")),
            triton_accelerator="tensorrt", engine_cache=True,
            options={
                "device_id": int, "trt_fp16_enable": bool, "trt_int8_enable": bool, "trt_engine_cache_enable": bool,
                "trt_engine_cache_path": str, "trt_timing_cache_enable": bool, "trt_timing_cache_path": str,
                "trt_max_workspace_size": int,
            },
            install_hint="pip install tensorrt-cu13 (TensorRT 10's libraries beside onnxruntime-gpu), see "
            "docs/deployment.md",
        ),
        ProviderSpec(
            "openvino", "Intel CPUs and GPUs through ONNX Runtime's OpenVINO provider", DeviceKind.CPU,
            "OpenVINOExecutionProvider", ("CPUExecutionProvider",), auto_rank=2,
            options={"device_type": str, "precision": str, "num_of_threads": int, "num_streams": int},
            install_hint="pip uninstall onnxruntime && pip install onnxruntime-openvino",
        ),
    )
}  # fmt: skip

#: Every provider name a deployment record or a ``--provider`` flag may give (``auto`` aside).
PROVIDER_NAMES = tuple(PROVIDERS)
PROVIDER_CHOICES = (*PROVIDER_NAMES, "auto")
#: What a ``--provider`` flag left out means where an artifact may carry a tuned deployment record.
RECORDED_PROVIDER_HELP = "execution provider (default: the tuned deployment's where the artifact has one, else cpu)"
#: The providers torch-backed code runs on (eager, TorchScript, .pt2).
TORCH_PROVIDERS = tuple(name for name, spec in PROVIDERS.items() if spec.torch_device)


def get_provider(name: str) -> ProviderSpec:
    """The record of a provider; an unknown name is a :class:`ProviderError` that lists the known ones."""
    spec = PROVIDERS.get(str(name).lower())
    if spec is None:
        raise ProviderError(f"unknown provider {name!r}", hint=f"choose one of {', '.join(PROVIDER_CHOICES)}")
    return spec


def auto_order() -> list[str]:
    """What ``auto`` tries, best first."""
    ranked = [spec for spec in PROVIDERS.values() if spec.auto_rank is not None]
    return [spec.name for spec in sorted(ranked, key=lambda spec: spec.auto_rank or 0)]


def on_gpu(provider: str) -> bool:
    """Whether ``provider`` runs on an NVIDIA GPU."""
    return get_provider(provider).on_gpu


GRAPH_OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")


@dataclass(frozen=True)
class SessionConfig:
    """Session settings of a runner (ONNX Runtime's, and the threads and streams of OpenVINO's); ``None`` leaves
    the backend's default.

    ``graph_optimization`` ``None`` means ``all`` for a plain model and ``disable`` for
    an artifact that is already ONNX Runtime's optimized graph (``--optimize``).
    ``spin_wait`` ``False`` stops ONNX Runtime's worker threads from spinning between
    calls (``session.intra_op.allow_spinning``): a server whose cores also parse
    requests wants them back; a tight benchmark loop gains from spinning.
    ``streams``: model calls that may run at once, each on ``intra_op_threads`` threads (OpenVINO's
    ``NUM_STREAMS``; a runner without streams refuses more than one). Callers that hold several batches keep that
    many in flight: ``Classifier.outputs`` on more rows than a batch, ``predict_stream``, ``serve``'s batcher,
    ``bench``'s timing. ``None``: the deployment record's, else one.
    """

    intra_op_threads: int | None = None
    inter_op_threads: int | None = None
    graph_optimization: str | None = None
    parallel_execution: bool = False
    spin_wait: bool | None = None
    streams: int | None = None
    provider_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.graph_optimization is not None and self.graph_optimization not in GRAPH_OPTIMIZATION_LEVELS:
            raise ProviderError(
                f"unknown graph optimization level {self.graph_optimization!r}",
                hint=f"use one of {', '.join(GRAPH_OPTIMIZATION_LEVELS)}",
            )
        for name in ("intra_op_threads", "inter_op_threads"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ProviderError(f"{name} must be >= 0 (0 lets ONNX Runtime choose), got {value}")
        if self.streams is not None and (type(self.streams) is not int or self.streams < 1):
            raise ProviderError(f"streams must be a positive integer, got {self.streams!r}")

    def session_options(self) -> Any:
        """An ``onnxruntime.SessionOptions`` with these settings."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        if self.intra_op_threads is not None:
            options.intra_op_num_threads = self.intra_op_threads
        if self.inter_op_threads is not None:
            options.inter_op_num_threads = self.inter_op_threads
        options.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[self.graph_optimization or "all"]
        if self.spin_wait is not None:
            flag = "1" if self.spin_wait else "0"
            options.add_session_config_entry("session.intra_op.allow_spinning", flag)
            options.add_session_config_entry("session.inter_op.allow_spinning", flag)
        options.execution_mode = (
            ort.ExecutionMode.ORT_PARALLEL if self.parallel_execution else ort.ExecutionMode.ORT_SEQUENTIAL
        )
        return options


def available_providers() -> list[str]:
    """The providers ONNX Runtime can run here: compiled into this onnxruntime build *and* able to start a session
    on this host (probed once per process; see :func:`start_problem`)."""
    return [name for name in _compiled_providers() if start_problem(name) is None]


def unavailable_reason(provider: str) -> str | None:
    """Why ONNX Runtime cannot run ``provider`` here (not in this build, no GPU, a library missing and which, a
    session that would not start), with the way to get it; None where it can."""
    if provider not in _compiled_providers():
        spec = get_provider(provider)
        return f"this onnxruntime build has no {provider} provider ({spec.install_hint})"
    return start_problem(provider)


def _compiled_providers() -> list[str]:
    """The providers this onnxruntime build was compiled with (what ``get_available_providers`` lists: not what
    can start)."""
    import onnxruntime as ort

    offered = set(ort.get_available_providers())
    return [name for name, spec in PROVIDERS.items() if spec.ort_provider in offered]


#: A one-node ONNX model (``y = Relu(x)``, opset 13, IR 7) that a probe session loads: the runtime has no onnx.
_PROBE_MODEL = bytes.fromhex(
    "0807120874766465706c6f793a370a0c0a0178120179220452656c75120570726f62655a0f0a0178120a0a08080112040a020801620f"
    "0a0179120a0a08080112040a02080142040a00100d"
)


@functools.cache
def start_problem(provider: str) -> str | None:
    """Why a session on ``provider`` cannot start on this host, or None where one did: compiled in is not "can
    start" (onnxruntime-gpu lists CUDA and TensorRT on every install). Checked once per process, in order: an NVIDIA
    GPU for a GPU provider, the shared libraries it loads (ONNX Runtime would only log their absence and fall back),
    then a session on a one-node model, which must keep the provider."""
    spec = get_provider(provider)
    if provider == "cpu":
        return None
    if spec.on_gpu and not nvidia_gpus():
        return "no NVIDIA GPU on this host"
    missing = [library for library in spec.libraries if not _loads(library)]
    if missing:
        return f"{spec.libraries_of or spec.name} libraries not found ({', '.join(missing)}); {spec.install_hint}"
    return _session_problem(spec)


def _loads(library: str) -> bool:
    """Whether the dynamic loader finds and loads ``library`` (as a session on the provider would)."""
    try:
        ctypes.CDLL(library)
    except OSError:
        return False
    return True


def _session_problem(spec: ProviderSpec) -> str | None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # a provider that fails is this function's answer, not a log line
    try:
        session = ort.InferenceSession(
            _PROBE_MODEL, sess_options=options, providers=[spec.ort_provider, *spec.ort_fallbacks]
        )
    except Exception as exc:  # onnxruntime raises its own non-exported exception types
        return f"onnxruntime could not start a {spec.name} session: {str(exc).splitlines()[0][:200]}"
    if spec.ort_provider not in session.get_providers():
        return f"onnxruntime could not start a {spec.name} session here (it fell back to {', '.join(session.get_providers())})"
    return None


def _available_for(backend: str) -> list[str]:
    from tvdeploy.runtime.formats import runner_class_of

    return list(runner_class_of(backend).available_providers())


def resolve_provider(requested: str, backends: Sequence[str]) -> str:
    """The one provider every backend of a run uses (a format name, or ``eager``).

    ``auto`` takes the first of :func:`auto_order` that every backend supports and
    finds available, and logs the choice. An explicit provider that a backend does
    not support, or cannot find, is an error naming the backend and the way out:
    one run never puts one backend on CUDA and another on the CPU.
    """
    from tvdeploy.runtime.formats import providers_of

    requested = str(requested).lower()
    if requested != "auto":
        get_provider(requested)  # an unknown name: the error lists the known ones
    backends = list(dict.fromkeys(backends))
    if requested == "auto":
        passed_over: list[str] = []
        for candidate in auto_order():
            if candidate == "cpu" or all(
                candidate in providers_of(b) and candidate in _available_for(b) for b in backends
            ):
                logger.info(
                    "provider auto: chose %s for %s%s", candidate, ", ".join(backends),
                    f" (not {'; '.join(passed_over)})" if passed_over else "",
                )  # fmt: skip
                return candidate
            if any(candidate in providers_of(b) for b in backends):
                passed_over.append(f"{candidate}: {_why_not(candidate, backends)}")
    unsupported = [b for b in backends if requested not in providers_of(b)]
    if unsupported:
        raise ProviderError(
            f"provider {requested!r} does not apply to "
            + ", ".join(f"{b} (runs on {', '.join(providers_of(b))})" for b in unsupported),
            hint="choose a provider every backend supports, e.g. --provider cpu, or --provider auto",
        )
    if requested != "cpu":
        for backend in backends:
            available = _available_for(backend)
            if requested not in available:
                raise ProviderError(
                    f"provider {requested!r} is not available for {backend} here: {_why_not(requested, [backend])} "
                    f"(available: {', '.join(available)})",
                    hint=get_provider(requested).install_hint or None,
                )
    return requested


def _why_not(provider: str, backends: Sequence[str]) -> str:
    """Why ``provider`` cannot run one of ``backends`` here (the first reason found)."""
    from tvdeploy.runtime.formats import providers_of, runs_on_torch

    for backend in backends:
        if provider not in providers_of(backend):
            return f"{backend} does not run on it"
        if runs_on_torch(backend) and provider not in _available_for(backend):
            return "torch sees no CUDA device (a CUDA build of torch on a machine with an NVIDIA GPU runs it)"
        reason = unavailable_reason(provider) if not runs_on_torch(backend) else None
        if reason and provider not in _available_for(backend):
            return reason
    return "not available"


def ort_provider_list(provider: str, options: dict[str, Any] | None = None) -> list[Any]:
    """The ``providers`` argument of ``InferenceSession`` for a resolved provider.

    Accelerated providers are followed by the CPU provider, which ONNX Runtime
    uses for the nodes they do not implement (graph partitioning, not a fallback
    of the whole session: :func:`check_session_providers` verifies that).
    """
    spec = get_provider(provider)
    return [(spec.ort_provider, dict(options or {})), *spec.ort_fallbacks]


def check_session_providers(session: Any, provider: str) -> None:
    """Fail if ONNX Runtime quietly dropped the requested provider when creating the session."""
    active = session.get_providers()
    spec = get_provider(provider)
    if spec.ort_provider not in active:
        raise ProviderError(
            f"onnxruntime could not start the {provider} provider for this model (active: {', '.join(active)})",
            hint=spec.install_hint or "check onnxruntime's log for why the provider failed",
        )
