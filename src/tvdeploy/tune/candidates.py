"""What ``tvdeploy tune`` may try on this host: runtime x precision x threads, each with the reason it is in or out.

A candidate is an artifact of one format at one precision (derived from the fp32 ONNX artifact with
``optimize``'s own conversions) run with some number of intra-op threads. What this host cannot run is not tried
and is said so: a runtime whose extra is not installed, a precision the CPU cannot compute in (OpenVINO bf16
without AVX512_BF16/AMX), int8 without calibration images, a GPU provider without a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvdeploy.runtime.classifier import usable_cores
from tvdeploy.runtime.formats import get_format
from tvdeploy.runtime.host import cpu_flags
from tvdeploy.runtime.precisions import get_precision

#: (format, precision) pairs tune considers on a CPU, the fp32 ONNX artifact (the baseline) first. ONNX
#: Runtime's fp16 is left out on CPUs: its CPU provider runs an fp16 graph through casts, slower than fp32 (a
#: candidate for the CUDA provider).
CPU_CONFIGURATIONS = (
    ("onnx", "fp32"),
    ("onnx", "int8"),
    ("openvino", "fp32"),
    ("openvino", "bf16"),
    ("openvino", "int8"),
)


@dataclass(frozen=True)
class Candidate:
    """One deployment to measure."""

    format: str
    precision: str
    threads: int

    @property
    def name(self) -> str:
        """``openvino-int8-t2``."""
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
        spec, precision_spec = get_format(fmt), get_precision(precision)
        missing = spec.missing_for_export()
        features = precision_spec.missing_features(fmt, flags)
        if missing:
            skipped.append(Skipped(fmt, precision, f"{', '.join(missing)} not installed ({spec.install_hint()})"))
        elif features:
            skipped.append(Skipped(fmt, precision, f"this CPU has no {' or '.join(features)}"))
        elif precision_spec.needs_calibration and not has_calibration:
            skipped.append(Skipped(fmt, precision, "no calibration images (--calibration DIR)"))
        else:
            candidates.extend(Candidate(fmt, precision, threads) for threads in thread_counts(cores))
    skipped.append(Skipped("onnx", "fp16 (cuda, tensorrt)", "no GPU on this host") if not _has_gpu() else _gpu_note())
    return candidates, skipped


def _has_gpu() -> bool:
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


def _gpu_note() -> Skipped:
    return Skipped("onnx", "fp32/fp16 (cuda, tensorrt)", "GPU candidates are not measured by tune yet: use bench")
