"""What ``tvdeploy tune`` may try on this host: runtime x precision x provider x threads x streams, each with the
reason it is in or out.

A candidate is an artifact of one format at one precision (derived from the fp32 ONNX artifact with
``optimize``'s own conversions) run on one execution provider with some number of intra-op threads. What this host
cannot run is not tried and is said so: a runtime whose extra is not installed, a precision the CPU cannot compute
in (OpenVINO bf16 without AVX512_BF16/AMX), int8 without calibration images, a GPU provider that this onnxruntime
build lacks or that has no NVIDIA GPU to run on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tvdeploy.export.producers import missing_for_export
from tvdeploy.runtime import providers as registry
from tvdeploy.runtime.formats import get_format, streaming_formats
from tvdeploy.runtime.host import cpu_flags, usable_cores
from tvdeploy.runtime.precisions import Precision, get_precision
from tvdeploy.runtime.providers import PROVIDERS, unavailable_reason

#: (format, precision) pairs tune considers on a CPU, the fp32 ONNX artifact (the baseline) first. ONNX
#: Runtime's fp16 is left out on CPUs: its CPU provider runs an fp16 graph through casts, slower than fp32 (a
#: candidate for the CUDA provider).
CPU_CONFIGURATIONS = (
    ("onnx", Precision.FP32),
    ("onnx", Precision.INT8),
    ("openvino", Precision.FP32),
    ("openvino", Precision.BF16),
    ("openvino", Precision.INT8),
)
#: (format, precision, provider) tune considers where an NVIDIA GPU and onnxruntime-gpu are present. TensorRT runs
#: the fp16 artifact with fp16 engines and the int8 QDQ artifact with int8 engines (explicit quantization: the
#: artifact's own scales, no calibration table); its first session builds the engine, which the warm-up absorbs.
GPU_CONFIGURATIONS = tuple(
    ("onnx", name, variant) for name, spec in PROVIDERS.items() if spec.on_gpu for variant in spec.tune_variants
)


#: Why parallel streams are not tried for latency.
STREAMS_FOR_THROUGHPUT = (
    "parallel streams raise the images per second of calls in flight at once, not one call's latency "
    "(--objective throughput tries them)"
)


@dataclass(frozen=True)
class Candidate:
    """One deployment to measure."""

    format: str
    precision: str
    threads: int
    provider: str = "cpu"
    #: parallel streams of ``threads`` threads each (calls in flight at once)
    streams: int = 1
    #: provider options (``prefer_nhwc``, ``use_tf32``), and the label they add to the name
    options: tuple[tuple[str, Any], ...] = ()
    label: str = ""

    @property
    def name(self) -> str:
        """``openvino-int8-t2`` on the CPU, ``openvino-int8-t1-s2`` on two streams of one thread,
        ``onnx-fp16-cuda-nhwc`` on a GPU provider with options (host threads barely matter there, so they are not
        varied)."""
        if self.provider != "cpu":
            return f"{self.format}-{self.precision}-{self.provider}" + (f"-{self.label}" if self.label else "")
        return f"{self.format}-{self.precision}-t{self.threads}" + (f"-s{self.streams}" if self.streams > 1 else "")

    @property
    def artifact_key(self) -> tuple[str, str]:
        """Candidates that share an artifact (and differ in threads only) share this key."""
        return (self.format, self.precision)


@dataclass(frozen=True)
class Skipped:
    """A configuration tune does not try here, and why."""

    format: str
    precision: str
    reason: str
    provider: str = "cpu"

    def describe(self) -> str:
        """``onnx int8 on tensorrt: TensorRT libraries not found ...``."""
        where = f" on {self.provider}" if self.provider != "cpu" else ""
        return f"{self.format} {self.precision}{where}: {self.reason}"


def thread_counts(cores: int) -> list[int]:
    """Intra-op threads to try: all usable cores, and half of them where there are four or more (two callers
    then share the host; on two cores one thread halves a single caller's speed, so it is not tried)."""
    return [cores, cores // 2] if cores >= 4 else [cores]


def stream_count(cores: int) -> int:
    """Parallel streams to try: two on up to seven cores (one thread each on two), a stream per four cores above
    (OpenVINO's throughput hint makes about as many for a CNN); none on one core."""
    return 0 if cores < 2 else max(2, cores // 4)


def plan(
    has_calibration: bool, cores: int | None = None, objective: str = "latency"
) -> tuple[list[Candidate], list[Skipped]]:
    """The candidates this host can run, and the configurations it cannot, with the reason. With the throughput
    objective, formats whose runner has parallel streams are tried on them too."""
    cores = cores or usable_cores()
    candidates: list[Candidate] = []
    skipped: list[Skipped] = []
    flags = cpu_flags()
    streams, streaming = stream_count(cores), streaming_formats()
    for fmt, precision in CPU_CONFIGURATIONS:
        reason = _unavailable(fmt, precision, has_calibration) or _cpu_cannot(fmt, precision, flags)
        if reason:
            skipped.append(Skipped(fmt, precision, reason))
            continue
        candidates.extend(Candidate(fmt, precision, threads) for threads in thread_counts(cores))
        if fmt in streaming and streams and objective == "throughput":
            candidates.append(Candidate(fmt, precision, cores // streams, streams=streams))
    if streams and objective != "throughput":
        planned = dict.fromkeys(c.format for c in candidates if c.format in streaming)
        skipped.extend(Skipped(fmt, f"any precision on {streams} streams", STREAMS_FOR_THROUGHPUT) for fmt in planned)
    gpus = registry.nvidia_gpus()
    for fmt, provider, variant in GPU_CONFIGURATIONS if gpus else ():  # no NVIDIA GPU: none is listed
        precision = Precision(variant.precision)
        reason = _unavailable(fmt, precision, has_calibration) or unavailable_reason(provider)
        if reason:
            if not variant.label:  # one row per precision and provider says why
                skipped.append(Skipped(fmt, precision, reason, provider))
        elif variant.streams == 1 or objective == "throughput":
            candidates.append(
                Candidate(
                    fmt, precision, cores, provider, streams=variant.streams, options=variant.options,
                    label=variant.label,
                )
            )  # fmt: skip
    return candidates, skipped


def _unavailable(fmt: str, precision: str, has_calibration: bool) -> str | None:
    """Why a (format, precision) cannot be made here at all, or None."""
    spec = get_format(fmt)
    missing = missing_for_export(spec)
    if missing:
        return f"{', '.join(missing)} not installed ({spec.install_hint()})"
    if get_precision(precision).needs_calibration and not has_calibration:
        return "no calibration images (--calibration DIR)"
    return None


def _cpu_cannot(fmt: str, precision: str, flags: frozenset[str]) -> str | None:
    features = get_precision(precision).missing_features(fmt, flags)
    return f"this CPU has no {' or '.join(features)}" if features else None
