"""Versions of the tools that made an artifact, recorded in its manifest."""

from __future__ import annotations

import platform
from importlib import metadata

import tvdeploy
from tvdeploy.runtime.versions import imported_version

_PACKAGES = ("torch", "torchvision", "onnx", "onnxscript", "onnxruntime", "openvino", "executorch", "numpy", "pillow")


def tool_versions() -> dict[str, str]:
    """Installed versions of the packages that matter for an export."""
    versions = {"tvdeploy": tvdeploy.__version__, "python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    imported = imported_version("onnxruntime")  # the runtime as imported: onnxruntime-gpu beside the CPU build
    if imported is not None:
        versions["onnxruntime"], versions["onnxruntime_distribution"] = imported
    return versions
