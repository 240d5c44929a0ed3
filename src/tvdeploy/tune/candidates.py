"""What ``tvdeploy tune`` may try on this host: runtime x precision x provider x threads, each with the reason it
is in or out.

A candidate is an artifact of one format at one precision (derived from the fp32 ONNX artifact with
``optimize``'s own conversions) run on one execution provider with some number of intra-op threads. What this host
cannot run is not tried and is said so: a runtime whose extra is not installed, a precision the CPU cannot compute
in (OpenVINO bf16 without AVX512_BF16/AMX), int8 without calibration images, a GPU provider that this onnxruntime
build lacks or that has no NVIDIA GPU to run on.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvdeploy.export.producers import missing_for_export
from tvdeploy.runtime.formats import get_format
from tvdeploy.runtime.host import cpu_flags, usable_cores
from tvdeploy.runtime.precisions import Precision, get_precision
from tvdeploy.runtime.providers import unavailable_reason

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
GPU_CONFIGURATIONS = (
    ("onnx", Precision.FP32, "cuda"),
    ("onnx", Precision.FP16, "cuda"),
    ("onnx", Precision.FP16, "tensorrt"),
    ("onnx", Precision.INT8, "tensorrt"),
)


@dataclass(frozen=True)
class Candidate:
    """One deployment to measure."""

    format: str
    precision: str
    threads: int
    provider: str = "cpu"

    @property
    def name(self) -> str:
        """``openvino-int8-t2`` on the CPU, ``onnx-fp16-tensorrt`` on a GPU provider (host threads barely matter
        there, so they are not varied)."""
        if self.provider != "cpu":
            return f"{self.format}-{self.precision}-{self.provider}"
        return f"{self.format}-{self.precision}-t{self.threads}"

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


def thread_counts(cores: int) -> list[int]:
    """Intra-op threads to try: all usable cores, and half of them where there are four or more (two callers
    then share the host; on two cores one thread halves a single caller's speed, so it is not tried)."""
    return [cores, cores // 2] if cores >= 4 else [cores]


def plan(has_calibration: bool, cores: int | None = None) -> tuple[list[Candidate], list[Skipped]]:
    """The candidates this host can run, and the configurations it cannot, with the reason."""
    cores = cores or usable_cores()
    candidates: list[Candidate] = []
    skipped: list[Skipped] = []
    flags = cpu_flags()
    for fmt, precision in CPU_CONFIGURATIONS:
        reason = _unavailable(fmt, precision, has_calibration) or _cpu_cannot(fmt, precision, flags)
        if reason:
            skipped.append(Skipped(fmt, precision, reason))
        else:
            candidates.extend(Candidate(fmt, precision, threads) for threads in thread_counts(cores))
    for fmt, precision, provider in GPU_CONFIGURATIONS:
        reason = _unavailable(fmt, precision, has_calibration) or unavailable_reason(provider)
        if reason:
            skipped.append(Skipped(fmt, f"{precision} ({provider})", reason))
        else:
            candidates.append(Candidate(fmt, precision, cores, provider))
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
