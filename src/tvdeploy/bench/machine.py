"""A description of the machine a benchmark ran on."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

import tvdeploy
from tvdeploy.runtime.host import cpu_model, cpu_signature, nvidia_gpus, usable_cores
from tvdeploy.runtime.versions import imported_version


def machine_info(threads: int | None) -> dict[str, Any]:
    """CPU model, logical cores, cores this process may use, threads requested, OS, Python, GPU."""
    usable = usable_cores()
    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_signature": cpu_signature(),  # the CPU features that decide which kernels run (AVX2, VNNI, AMX, ...)
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "threads": threads,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
    gpus = nvidia_gpus()  # from the driver: no torch (or CUDA context) needed to name them
    if gpus:
        info["gpu"] = ", ".join(gpus)
    return info


def bench_versions() -> dict[str, str]:
    """Versions of the packages that shape the numbers."""
    versions = {"tvdeploy": tvdeploy.__version__}
    for name in ("torch", "torchvision", "numpy", "pillow"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    imported = imported_version("onnxruntime")  # as imported (onnxruntime-gpu and the CPU build may both be there)
    if imported is not None:
        versions["onnxruntime"], versions["onnxruntime_distribution"] = imported
    return versions
