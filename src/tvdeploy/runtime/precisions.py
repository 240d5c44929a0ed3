"""The precision registry: every numeric precision of an artifact is one record of data.

A :class:`PrecisionSpec` says what a precision is called, whether making it needs calibration images, how close to
the fp32 eager model it must answer (its parity criteria), and which CPU features a runtime needs to *compute* in
it rather than emulate it. The formats' registry (:mod:`tvdeploy.runtime.formats`) lists which precisions each
format supports and how it makes them; the CLI's choices, ``optimize``, ``tune``, parity and the runners read
this table; nothing else names a precision's properties.

Adding a precision is one entry here, its name in the formats that support it, and one conversion on the export
side (``export/precision.py`` or the format's producer).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from tvdeploy.errors import ProviderError, UserInputError


class Precision(StrEnum):
    """The numeric precisions tvdeploy knows (equal to their names in manifests and on the command line)."""

    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    INT8 = "int8"


@dataclass(frozen=True)
class ParityCriteria:
    """Pass criteria: ``max|diff| <= atol_scale * (1 + max|reference logit|)`` on every set,
    top-1 agreement of at least ``min_top1`` on the sets that require it (real photos),
    and cosine similarity of at least ``min_cosine`` on every row.

    A top-1 disagreement where the reference's own two logits lie within the
    tolerance of each other is a tie, not a disagreement; ties are reported.
    ``min_cosine`` is scale-free: it still bites where a model's logits are tiny
    (random-init EfficientNets give logits near 1e-20, far below any absolute
    tolerance, and every class looks tied).
    """

    atol_scale: float = 1e-3
    min_top1: float = 1.0
    min_cosine: float = 0.9999
    #: whether the noise set is judged (int8: reported only: its ranges were calibrated on images, and noise
    #: falls outside them by design, so only the real photos can say whether a quantized model still answers)
    judge_noise: bool = True

    def loosened_by(self, other: "ParityCriteria") -> "ParityCriteria":
        """The looser of two criteria in every respect (a variant that is both lower precision and
        differently preprocessed must meet neither's strictest bound)."""
        return ParityCriteria(
            atol_scale=max(self.atol_scale, other.atol_scale),
            min_top1=min(self.min_top1, other.min_top1),
            min_cosine=min(self.min_cosine, other.min_cosine),
            judge_noise=self.judge_noise and other.judge_noise,
        )


@dataclass(frozen=True)
class PrecisionSpec:
    """One numeric precision, as data.

    ``compute_features`` maps a runtime (a format name) to the CPU flags (``/proc/cpuinfo``'s spelling) of which
    the host needs at least one to compute in this precision; a runtime not listed needs none. A runtime that
    would otherwise emulate the precision (OpenVINO runs a bf16 hint in fp32 where the CPU lacks bf16) refuses it
    on such a host instead of silently running something else.

    ``backend_options`` maps an execution, ``(format, provider)`` (``("onnx", "tensorrt")``,
    ``("openvino", "cpu")``), to the options it needs to compute in this precision: TensorRT builds fp32 engines
    unless told that fp16 or int8 layers are allowed, OpenVINO takes an ``INFERENCE_PRECISION_HINT``. Every runner
    looks them up with :meth:`options_for` by the same key and sets them under whatever the caller gave, so a new
    precision's execution is data here, not code in a runner.
    """

    name: Precision
    summary: str
    criteria: ParityCriteria
    needs_calibration: bool = False
    compute_features: Mapping[str, Sequence[str]] = field(default_factory=dict)
    backend_options: Mapping[tuple[str, str], Mapping[str, object]] = field(default_factory=dict)

    def options_for(self, format: str, provider: str) -> dict[str, object]:
        """The options running this precision needs on ``provider`` for a ``format`` artifact (empty: none)."""
        return dict(self.backend_options.get((format, provider), {}))

    def missing_features(self, runtime: str, host_flags: frozenset[str]) -> list[str]:
        """The flags this host lacks to compute in this precision on ``runtime`` (empty: it can)."""
        needed = self.compute_features.get(runtime, ())
        return [] if not needed or host_flags.intersection(needed) else list(needed)

    def check_host(self, runtime: str, host_flags: frozenset[str]) -> None:
        """Refuse to run this precision on ``runtime`` where the host cannot compute in it."""
        missing = self.missing_features(runtime, host_flags)
        if missing:
            raise ProviderError(
                f"{runtime} computes {self.name} only on CPUs with {' or '.join(missing)}, which this host lacks",
                hint="use an fp32 or int8 artifact here (`tvdeploy tune` picks what this host runs fastest)",
            )


#: fp32 artifacts must answer like eager up to float32 reordering.
FP32_CRITERIA = ParityCriteria(atol_scale=1e-3, min_top1=1.0, min_cosine=0.9999)
#: fp16 weights and activations (fp32 inputs, outputs and fragile ops): ~3 decimal digits.
FP16_CRITERIA = ParityCriteria(atol_scale=2e-2, min_top1=1.0, min_cosine=0.999)
#: bf16 activations (8 bits of mantissa, fp32's range): ~2-3 decimal digits (what resnet50 reaches on the photos:
#: docs/optimization.md).
BF16_CRITERIA = ParityCriteria(atol_scale=5e-2, min_top1=1.0, min_cosine=0.999)
#: int8 static quantization: coarser; judged by the ranking on real photos and the direction of the logits.
INT8_CRITERIA = ParityCriteria(atol_scale=0.25, min_top1=0.8, min_cosine=0.98, judge_noise=False)
#: Embedded preprocessing: ONNX Runtime's uint8 antialiased Resize matches Pillow's up to one level (1/255) on a
#: few pixels in ten thousand, so the network sees a slightly different image than the eager reference.
EMBEDDED_PREPROCESS_CRITERIA = ParityCriteria(atol_scale=1e-2, min_top1=1.0, min_cosine=0.999)

#: The CPU flags with which OpenVINO's CPU plugin computes in bf16 (AVX512_BF16, or AMX's bf16 tiles).
BF16_FLAGS = ("avx512_bf16", "amx_bf16")

#: Every precision tvdeploy knows, from the most exact down.
#: The executions (format, provider) whose options a precision sets.
ONNX_TENSORRT = ("onnx", "tensorrt")
OPENVINO_CPU = ("openvino", "cpu")

PRECISION_SPECS: dict[str, PrecisionSpec] = {
    spec.name: spec
    for spec in (
        PrecisionSpec(
            Precision.FP32,
            "32-bit float, as the eager model",
            FP32_CRITERIA,
            # OpenVINO's CPU plugin would default to bf16 on a CPU that has it: fp32 is pinned
            backend_options={OPENVINO_CPU: {"INFERENCE_PRECISION_HINT": "f32"}},
        ),
        PrecisionSpec(
            Precision.FP16,
            "16-bit float weights and activations, fp32 inputs and outputs",
            FP16_CRITERIA,
            backend_options={
                ONNX_TENSORRT: {"trt_fp16_enable": True},
                OPENVINO_CPU: {"INFERENCE_PRECISION_HINT": "f16"},
            },
        ),
        PrecisionSpec(
            Precision.BF16,
            "bfloat16 execution of the fp32 model (OpenVINO's inference precision), on CPUs with AVX512_BF16/AMX",
            BF16_CRITERIA,
            compute_features={"openvino": BF16_FLAGS},
            backend_options={OPENVINO_CPU: {"INFERENCE_PRECISION_HINT": "bf16"}},
        ),
        PrecisionSpec(
            Precision.INT8,
            "static int8 quantization (QDQ, per-channel weights), calibrated on images",
            INT8_CRITERIA,
            needs_calibration=True,
            # TensorRT runs a QDQ graph's int8 layers (explicit quantization, no calibration table) once int8 is
            # allowed; fp16 lets it pick fp16 for the layers left in float
            # OpenVINO runs the quantized layers in int8 whatever the hint; the layers left in float in f32
            backend_options={
                ONNX_TENSORRT: {"trt_int8_enable": True, "trt_fp16_enable": True},
                OPENVINO_CPU: {"INFERENCE_PRECISION_HINT": "f32"},
            },
        ),
    )
}
#: The precision names, in registry order (the CLI's choices).
PRECISIONS = tuple(PRECISION_SPECS)


def get_precision(name: str) -> PrecisionSpec:
    """The record of a precision; an unknown name is an error that lists the known ones."""
    spec = PRECISION_SPECS.get(name)  # a Precision member hashes and compares as its name
    if spec is None:
        raise UserInputError(f"unknown precision {name!r}", hint=f"choose one of {', '.join(PRECISIONS)}")
    return spec
