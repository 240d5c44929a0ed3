"""Execution providers: user-facing names to ONNX Runtime providers, and session options.

An explicit request for a provider that is not available is an error that lists
the available ones; ``auto`` picks the best available and logs the choice.
Nothing falls back silently.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tvdeploy.errors import ProviderError
from tvdeploy.runtime.host import nvidia_gpus

logger = logging.getLogger(__name__)

#: User-facing provider names and the ONNX Runtime providers they mean.
ORT_PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}
#: Every provider name a deployment record or a ``--provider`` flag may give (``auto`` aside).
PROVIDER_NAMES = tuple(ORT_PROVIDERS)
PROVIDER_CHOICES = (*PROVIDER_NAMES, "auto")
#: What a ``--provider`` flag left out means where an artifact may carry a tuned deployment record.
RECORDED_PROVIDER_HELP = "execution provider (default: the tuned deployment's where the artifact has one, else cpu)"
#: The providers that run on an NVIDIA GPU (inputs and outputs bound on the device).
GPU_PROVIDERS = ("cuda", "tensorrt")
#: What ``auto`` tries, best first. TensorRT is left to explicit requests: its
#: engine build takes minutes on the first run, which a default must not cost.
AUTO_ORDER = ("cuda", "openvino", "cpu")

_INSTALL_HINTS = {
    "cuda": "pip uninstall onnxruntime && pip install onnxruntime-gpu (needs an NVIDIA driver and CUDA/cuDNN libraries)",
    "tensorrt": "install onnxruntime-gpu and TensorRT (pip install tensorrt), see docs/deployment.md",
    "openvino": "pip uninstall onnxruntime && pip install onnxruntime-openvino",
}

_TORCH_HINT = {"cuda": "torch sees no CUDA device: install a CUDA build of torch on a machine with an NVIDIA GPU"}

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
    """User-facing names of the providers this onnxruntime build offers and this host can run: CUDA and TensorRT
    only where an NVIDIA GPU is present (onnxruntime-gpu lists them on any install, GPU or not)."""
    gpu = bool(nvidia_gpus())
    return [name for name in _compiled_providers() if gpu or name not in GPU_PROVIDERS]


def unavailable_reason(provider: str) -> str | None:
    """Why ``provider`` cannot run here (no NVIDIA GPU, or not in this onnxruntime build, with the way to get it);
    None where it can."""
    if provider == "cpu" or provider in available_providers():
        return None
    if provider in GPU_PROVIDERS and not nvidia_gpus():
        return "no NVIDIA GPU on this host"
    return f"this onnxruntime build has no {provider} provider ({_INSTALL_HINTS[provider]})"


def _compiled_providers() -> list[str]:
    """User-facing names of the providers this onnxruntime build was compiled with."""
    import onnxruntime as ort

    offered = set(ort.get_available_providers())
    return [name for name, ort_name in ORT_PROVIDERS.items() if ort_name in offered]


def _available_for(backend: str) -> list[str]:
    from tvdeploy.runtime.formats import runner_class_of

    return list(runner_class_of(backend).available_providers())


def resolve_provider(requested: str, backends: Sequence[str]) -> str:
    """The one provider every backend of a run uses (a format name, or ``eager``).

    ``auto`` takes the first of :data:`AUTO_ORDER` that every backend supports and
    finds available, and logs the choice. An explicit provider that a backend does
    not support, or cannot find, is an error naming the backend and the way out:
    one run never puts one backend on CUDA and another on the CPU.
    """
    from tvdeploy.runtime.formats import providers_of

    requested = requested.lower()
    if requested not in PROVIDER_CHOICES:
        raise ProviderError(f"unknown provider {requested!r}", hint=f"choose one of {', '.join(PROVIDER_CHOICES)}")
    backends = list(dict.fromkeys(backends))
    if requested == "auto":
        for candidate in AUTO_ORDER:
            if candidate == "cpu" or all(
                candidate in providers_of(b) and candidate in _available_for(b) for b in backends
            ):
                logger.info("provider auto: chose %s for %s", candidate, ", ".join(backends))
                return candidate
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
                    f"provider {requested!r} is not available for {backend} here (available: {', '.join(available)})",
                    hint=_INSTALL_HINTS.get(requested) if backend == "onnx" else _TORCH_HINT.get(requested),
                )
    return requested


def ort_provider_list(provider: str, options: dict[str, Any] | None = None) -> list[Any]:
    """The ``providers`` argument of ``InferenceSession`` for a resolved provider.

    Accelerated providers are followed by the CPU provider, which ONNX Runtime
    uses for the nodes they do not implement (graph partitioning, not a fallback
    of the whole session: :func:`check_session_providers` verifies that).
    """
    primary = (ORT_PROVIDERS[provider], dict(options or {}))
    if provider == "cpu":
        return [primary]
    if provider == "tensorrt":
        return [primary, (ORT_PROVIDERS["cuda"], {}), ORT_PROVIDERS["cpu"]]
    return [primary, ORT_PROVIDERS["cpu"]]


def check_session_providers(session: Any, provider: str) -> None:
    """Fail if ONNX Runtime quietly dropped the requested provider when creating the session."""
    active = session.get_providers()
    if ORT_PROVIDERS[provider] not in active:
        raise ProviderError(
            f"onnxruntime could not start the {provider} provider for this model (active: {', '.join(active)})",
            hint=_INSTALL_HINTS.get(provider, "check onnxruntime's log for why the provider failed"),
        )
