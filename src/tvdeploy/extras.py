"""Which pip extra installs each optional import: how a missing one is named to the user.

The core install is the torch-free runtime (ONNX Runtime, NumPy, Pillow, tqdm); everything else comes with an
extra of ``pyproject.toml``. A command that reaches a module of an extra that is not installed ends with one
line that names the extra (exit 2), not a ``ModuleNotFoundError`` traceback.
"""

from __future__ import annotations

#: Top-level import names -> the extra that installs them (pyproject.toml's optional-dependencies).
EXTRA_OF_MODULE = {
    **dict.fromkeys(
        ("torch", "torchvision", "onnx", "onnxscript", "safetensors", "onnxconverter_common", "onnxslim"), "export"
    ),
    **dict.fromkeys(("openvino", "nncf"), "openvino"),
    "executorch": "executorch",
    **dict.fromkeys(
        ("kserve", "tritonclient", "fastapi", "starlette", "uvicorn", "grpc", "prometheus_client"), "serve"
    ),
    "matplotlib": "bench",
    **dict.fromkeys(("ray", "pyarrow"), "ray"),
}


def extra_of_module(module: str | None) -> str | None:
    """The extra that installs ``module`` (a dotted name; its top level decides), or None for the core install's
    own and unknown modules."""
    if not module:
        return None
    return EXTRA_OF_MODULE.get(module.split(".")[0])


def install_hint(extra: str) -> str:
    """The command that installs ``extra``."""
    return f'pip install "tvdeploy[{extra}]"'
