"""How far a speed measured on an NVIDIA GPU is from the GPU's limit: dense tensor-core throughput per precision.

The figures are NVIDIA's datasheets' (the "with sparsity" figures halved: tvdeploy's models are dense), in
multiply-accumulates per second (one MAC is two FLOPs):

| GPU | fp32 (CUDA cores) | TF32 | fp16 / bf16 | int8 | fp8 | source |
|---|---|---|---|---|---|---|
| H200 (SXM) | 67 | 494.5 | 989.5 | 1979 | 1979 | NVIDIA H200 Tensor Core GPU datasheet (2024) |
| H100 SXM | 67 | 494.5 | 989.5 | 1979 | 1979 | NVIDIA H100 Tensor Core GPU datasheet (2023) |
| H100 PCIe | 51 | 378 | 756.5 | 1513 | 1513 | NVIDIA H100 Tensor Core GPU datasheet (2023) |
| A100 (SXM and PCIe) | 19.5 | 156 | 312 | 624 | - | NVIDIA A100 Tensor Core GPU datasheet (2021) |
| L40S | 91.6 | 183 | 362 | 733 | 733 | NVIDIA L40S datasheet (2023) |
| L4 | 30.3 | 60 | 121 | 242.5 | 242.5 | NVIDIA L4 Tensor Core GPU datasheet (2023) |
| T4 | 8.1 | - | 65 | 130 | - | NVIDIA T4 Tensor Core GPU datasheet (2019) |

(TFLOPS / TOPS as the datasheets print them, dense.) An fp32 model on ONNX Runtime's CUDA provider computes its
convolutions in TF32 unless ``use_tf32`` is 0, so its yardstick is TF32's. A GPU not in the table gets no figure
("-", with the reason), never the CPU's.
"""

from __future__ import annotations

from dataclasses import dataclass

#: GPU name fragments (as the driver names the GPU) -> dense TFLOPS/TOPS per precision; the most specific first.
DATASHEET_TFLOPS: tuple[tuple[str, dict[str, float], str], ...] = (
    ("H200", {"fp32": 67, "tf32": 494.5, "fp16": 989.5, "bf16": 989.5, "int8": 1979, "fp8": 1979}, "H200 datasheet"),
    ("H100 PCIe", {"fp32": 51, "tf32": 378, "fp16": 756.5, "bf16": 756.5, "int8": 1513, "fp8": 1513}, "H100 datasheet"),
    ("H100", {"fp32": 67, "tf32": 494.5, "fp16": 989.5, "bf16": 989.5, "int8": 1979, "fp8": 1979}, "H100 datasheet"),
    ("A100", {"fp32": 19.5, "tf32": 156, "fp16": 312, "bf16": 312, "int8": 624}, "A100 datasheet"),
    ("L40S", {"fp32": 91.6, "tf32": 183, "fp16": 362, "bf16": 362, "int8": 733, "fp8": 733}, "L40S datasheet"),
    ("L4", {"fp32": 30.3, "tf32": 60, "fp16": 121, "bf16": 121, "int8": 242.5, "fp8": 242.5}, "L4 datasheet"),
    ("T4", {"fp32": 8.1, "fp16": 65, "int8": 130}, "T4 datasheet"),
)


@dataclass(frozen=True)
class GpuPeak:
    """A precision's dense peak on one GPU, and where the figure comes from."""

    gpu: str
    precision: str
    macs_per_s: float
    #: the arithmetic the figure is for (``tf32`` for an fp32 model on tensor cores)
    arithmetic: str
    source: str

    def describe(self) -> str:
        """``"494.8 TMAC/s (NVIDIA H200, fp16 tensor cores, H200 datasheet)"``."""
        return f"{self.macs_per_s / 1e12:.1f} TMAC/s ({self.gpu}, {self.arithmetic}, {self.source})"


def gpu_peak(gpu: str, precision: str, tf32: bool = True) -> GpuPeak | None:
    """The dense peak of ``gpu`` (a name as the driver gives it) at ``precision``: TF32's for fp32 where ``tf32``
    (the CUDA provider's default); None for a GPU or precision not in :data:`DATASHEET_TFLOPS`."""
    arithmetic = "tf32" if precision == "fp32" and tf32 else precision
    for fragment, table, source in DATASHEET_TFLOPS:
        if fragment.lower() in gpu.lower():
            tflops = table.get(arithmetic)
            if tflops is None:
                return None
            label = f"{arithmetic} tensor cores" if arithmetic != "fp32" else "fp32 CUDA cores"
            return GpuPeak(gpu, precision, tflops * 1e12 / 2, label, source)
    return None


def missing_reason(gpu: str, precision: str) -> str:
    """Why :func:`gpu_peak` has no figure for ``gpu`` at ``precision`` (shown in place of the share of peak)."""
    known = any(fragment.lower() in gpu.lower() for fragment, _, _ in DATASHEET_TFLOPS)
    if known:
        return f"no {precision} figure for {gpu} in tvdeploy's datasheet table"
    return f"{gpu} is not in tvdeploy's datasheet table (bench/gpu_peak.py)"
