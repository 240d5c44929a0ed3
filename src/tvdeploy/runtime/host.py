"""What a host's CPU is, in the terms that decide whether an ONNX Runtime graph optimized on another host runs here.

ONNX Runtime's ``all`` graph optimizations rewrite convolutions into blocked
(NCHWc) layouts whose block size follows the widest vector ISA (8 floats with
AVX2, 16 with AVX-512), so a graph saved at that level is tied to the CPU
features it was made with. :func:`cpu_signature` names those features.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

#: The CPU flags (as Linux's /proc/cpuinfo spells them) that change which kernels and layouts ONNX Runtime picks.
RELEVANT_FLAGS = (
    "sse4_1",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)


def cpuinfo_field(*keys: str) -> str | None:
    """The first value of one of ``keys`` in Linux's /proc/cpuinfo (None elsewhere)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return None
    for line in cpuinfo.read_text(errors="replace").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in keys:
            return value.strip()
    return None


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags as Linux's /proc/cpuinfo spells them (empty where unknown)."""
    return frozenset((cpuinfo_field("flags", "Features") or "").split())


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (``Intel(R) Xeon(R) Processor``), or the machine type where it is unknown."""
    return cpuinfo_field("model name") or platform.processor() or platform.machine() or "unknown"


@lru_cache(maxsize=1)
def cpu_signature() -> str:
    """``"<machine>:<flags>"``, e.g. ``x86_64:avx,avx2,f16c,fma,sse4_1``; just the machine where flags are unknown."""
    machine = platform.machine() or "unknown"
    relevant = sorted(cpu_flags().intersection(RELEVANT_FLAGS))
    return f"{machine}:{','.join(relevant)}" if relevant else machine


@lru_cache(maxsize=1)
def nvidia_gpus() -> tuple[str, ...]:
    """The model names of this host's NVIDIA GPUs as the driver lists them (``/proc/driver/nvidia/gpus``), or
    ``("NVIDIA GPU",)`` per device node where the driver's listing is not visible (a container); empty without one.

    ONNX Runtime's list of available providers names what its build was compiled with (``CUDAExecutionProvider``
    on any onnxruntime-gpu install), not whether a GPU is there: this says the latter.
    """
    listing = Path("/proc/driver/nvidia/gpus")
    names = []
    if listing.is_dir():
        for info in sorted(listing.glob("*/information")):
            fields = dict(line.partition(":")[::2] for line in info.read_text(errors="replace").splitlines())
            names.append(fields.get("Model", "NVIDIA GPU").strip() or "NVIDIA GPU")
    if not names:
        nodes = sorted(Path("/dev").glob("nvidia[0-9]*"))
        names = (_smi_names() or ["NVIDIA GPU" for _ in nodes]) if nodes else []
    return tuple(names)


def _smi_names() -> list[str]:
    """The GPUs' names as ``nvidia-smi`` gives them (where the driver's /proc listing is hidden), or none."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        done = subprocess.run(
            [smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip()] if done.returncode == 0 else []
