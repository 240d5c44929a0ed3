"""Versions of the modules as imported, not as some distribution's metadata says.

onnxruntime is one import name shipped by several distributions (``onnxruntime``, ``onnxruntime-gpu``,
``onnxruntime-openvino``); with two installed, ``metadata.version("onnxruntime")`` names the CPU one even where the
GPU one's files are what Python imported (seen on an H200 host: onnxruntime-gpu 1.31.1 imported, 1.30.0 recorded).
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib import metadata


@cache
def imported_version(module: str) -> tuple[str, str] | None:
    """``(version, distribution)`` of ``module`` as this process imports it (its ``__version__``, and the installed
    distribution that provides the module at that version); None where it is not installed."""
    try:
        imported = importlib.import_module(module)
    except ImportError:
        return None
    providers = metadata.packages_distributions().get(module, [])
    version = str(getattr(imported, "__version__", "") or "")
    for distribution in dict.fromkeys(providers):
        try:
            if metadata.version(distribution) == version or not version:
                return (version or metadata.version(distribution)), distribution
        except metadata.PackageNotFoundError:
            continue
    return version, (providers[0] if providers else module)
