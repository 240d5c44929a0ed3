"""The format registry: every artifact format is one record of data.

A :class:`FormatSpec` says what a format is called, which files it writes, which
runner loads it (torch-free or torch-backed), which providers it runs on, which
precisions it comes in, which extra installs it and which Triton backend runs it:
what a *runtime* needs to know. How a format is produced, what ``optimize``
derives of it and its parity criteria are the export side's
(:mod:`tvdeploy.export.producers`, one entry per format here). Manifest
validation, the CLI's choices and help, the bench backends, the coverage
renderer, the zoo sweep and ``runner_for_artifact`` all read this table; nothing
else lists formats.

This module imports neither torch nor any backend: runners are named as
``"module:attribute"`` strings and imported only when used.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any

from tvdeploy.errors import UserInputError
from tvdeploy.runtime.providers import PROVIDER_NAMES, TORCH_PROVIDERS

#: The eager PyTorch model: not an artifact format, but a bench backend and the parity reference.
EAGER = "eager"
#: The runner of the eager reference (bench and parity).
EAGER_RUNNER = "tvdeploy.runtime.runners.torch_backed:TorchModuleRunner"


def import_target(target: str) -> Any:
    """The attribute a ``"module:attribute"`` string names (runners and producers are named this way, imported
    only when used)."""
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # an import hook that refuses it, or a broken install
        return False


def missing_modules(modules: tuple[str, ...]) -> list[str]:
    """Those of ``modules`` that are not installed here."""
    return [name for name in modules if not _installed(name)]


@dataclass(frozen=True)
class FormatSpec:
    """One artifact format, as data."""

    name: str
    #: One line for help texts and docs.
    summary: str
    #: The main model file first; ``extra_files`` are written beside it when needed.
    model_file: str
    extra_files: tuple[str, ...]
    #: ``"module:Class"`` of the :class:`~tvdeploy.runtime.runners.base.Runner` that loads it.
    runner: str
    #: What the runner imports; ``torch`` in it makes the runner torch-backed.
    runtime_requires: tuple[str, ...]
    #: The providers (``--provider`` values) it runs on.
    providers: tuple[str, ...]
    #: The pip extra that installs what producing and running it needs.
    extra: str
    #: What loads the file outside tvdeploy (docs).
    loads_with: str
    #: Whether a dynamic batch axis is bounded (the runtime plans memory for the largest batch).
    bounded_batch: bool = False
    #: The precisions the format supports (names of :data:`~tvdeploy.runtime.precisions.PRECISION_SPECS`).
    precisions: tuple[str, ...] = ("fp32",)
    #: The Triton Inference Server backend that runs it (``export-triton``); None: Triton runs none of ours.
    triton_backend: str | None = None

    @property
    def torch_runtime(self) -> bool:
        """Whether running the artifact needs torch."""
        return "torch" in self.runtime_requires

    @property
    def files(self) -> tuple[str, ...]:
        """Every file name the format may write."""
        return (self.model_file, *self.extra_files)

    def runner_class(self) -> Any:
        """The runner class (imports its module, not the backend)."""
        return import_target(self.runner)

    def missing_for_runtime(self) -> list[str]:
        """Modules that running this format needs and that are not installed."""
        return missing_modules(self.runtime_requires)

    def install_hint(self) -> str:
        """How to install what this format needs."""
        return f'pip install "tvdeploy[{self.extra}]"'


#: Every format tvdeploy knows, in the order ``--format all`` exports them.
FORMATS: dict[str, FormatSpec] = {
    spec.name: spec
    for spec in (
        FormatSpec(
            name="onnx",
            summary="ONNX, run by ONNX Runtime without torch",
            model_file="model.onnx",
            extra_files=("model.onnx.data",),
            runner="tvdeploy.runtime.runners.onnx:OnnxRunner",
            runtime_requires=("onnxruntime",),
            providers=PROVIDER_NAMES,
            extra="export",
            loads_with="onnxruntime.InferenceSession",
            precisions=("fp32", "fp16", "int8"),
            triton_backend="onnxruntime",
        ),
        FormatSpec(
            name="torchscript",
            summary="TorchScript, run by torch (and libtorch)",
            model_file="model.torchscript.pt",
            extra_files=(),
            runner="tvdeploy.runtime.runners.torch_backed:TorchScriptRunner",
            runtime_requires=("torch",),
            providers=TORCH_PROVIDERS,
            extra="export",
            loads_with="torch.jit.load",
        ),
        FormatSpec(
            name="pt2",
            summary="torch.export ExportedProgram, run by torch",
            model_file="model.pt2",
            extra_files=(),
            runner="tvdeploy.runtime.runners.torch_backed:ExportedProgramRunner",
            runtime_requires=("torch",),
            providers=TORCH_PROVIDERS,
            extra="export",
            loads_with="torch.export.load",
        ),
        FormatSpec(
            name="openvino",
            summary="OpenVINO IR, converted from the ONNX file, run by OpenVINO's CPU plugin without torch",
            model_file="model.xml",
            extra_files=("model.bin",),
            runner="tvdeploy.runtime.runners.openvino:OpenVinoRunner",
            runtime_requires=("openvino",),
            providers=("cpu",),
            extra="openvino",
            loads_with="openvino.Core().compile_model",
            precisions=("fp32", "fp16", "bf16", "int8"),
            triton_backend="openvino",
        ),
        FormatSpec(
            name="executorch",
            summary="ExecuTorch program lowered to the XNNPACK delegate (phones, embedded Linux)",
            model_file="model.pte",
            extra_files=(),
            runner="tvdeploy.runtime.runners.executorch:ExecuTorchRunner",
            runtime_requires=("torch", "executorch"),
            providers=("cpu",),
            extra="executorch",
            loads_with="executorch.runtime.Runtime",
            bounded_batch=True,
        ),
    )
}

#: ``--format all`` means every format whose extra is installed.
ALL = "all"


def format_names() -> tuple[str, ...]:
    """Every format name, in registry order."""
    return tuple(FORMATS)


def get_format(name: str) -> FormatSpec:
    """The record of a format; an unknown name is an error that lists the known ones."""
    spec = FORMATS.get(name.lower())
    if spec is None:
        raise UserInputError(f"unknown format {name!r}", hint=f"choose one of {', '.join((*FORMATS, ALL))}")
    return spec


def backend_names() -> tuple[str, ...]:
    """Bench backends: the eager model, then every format."""
    return (EAGER, *FORMATS)


def providers_of(backend: str) -> tuple[str, ...]:
    """The providers a bench backend (``eager`` or a format) runs on."""
    return TORCH_PROVIDERS if backend == EAGER else get_format(backend).providers


def runner_class_of(backend: str) -> Any:
    """The runner class of a bench backend (``eager`` or a format)."""
    return import_target(EAGER_RUNNER) if backend == EAGER else get_format(backend).runner_class()


def streaming_formats() -> list[str]:
    """Formats whose runner runs several calls at once on parallel streams (``SessionConfig.streams``)."""
    return [name for name, spec in FORMATS.items() if spec.runner_class().supports_streams]


def runs_on_torch(backend: str) -> bool:
    """Whether a bench backend (``eager`` or a format) runs through torch."""
    return backend == EAGER or get_format(backend).torch_runtime
