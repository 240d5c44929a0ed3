"""The format registry: every artifact format is one record of data.

A :class:`FormatSpec` says what a format is called, which files it writes, which
runner loads it (torch-free or torch-backed), which providers it runs on, how it
is produced (an exporter from the eager module, or a converter from another
format's artifact), which extra installs it, and how close to eager it must be
for each precision. Manifest validation, the CLI's choices and help, the bench
backends, the coverage renderer, the zoo sweep and ``runner_for_artifact`` all
read this table; nothing else lists formats.

This module imports neither torch nor any backend: runners and producers are
named as ``"module:attribute"`` strings and imported only when used.
Adding a format is a runner module, a producer module and one entry in
:data:`FORMATS`.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tvdeploy.errors import UserInputError
from tvdeploy.runtime.precisions import (
    EMBEDDED_PREPROCESS_CRITERIA,
    FP16_CRITERIA,
    FP32_CRITERIA,
    INT8_CRITERIA,
    PRECISION_SPECS,
    PRECISIONS,
    ParityCriteria,
)

#: The eager PyTorch model: not an artifact format, but a bench backend and the parity reference.
EAGER = "eager"
#: Providers torch-backed code runs on (eager, TorchScript, .pt2).
TORCH_PROVIDERS = ("cpu", "cuda")
#: The runner of the eager reference (bench and parity).
EAGER_RUNNER = "tvdeploy.runtime.runners.torch_backed:TorchModuleRunner"
#: Precisions and their parity criteria live in the precision registry; re-exported here for the formats' users.
__all__ = [
    "EMBEDDED_PREPROCESS_CRITERIA",
    "FP16_CRITERIA",
    "FP32_CRITERIA",
    "INT8_CRITERIA",
    "PRECISIONS",
    "ParityCriteria",
]


def _import(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # an import hook that refuses it, or a broken install
        return False


def _missing(modules: tuple[str, ...]) -> list[str]:
    return [name for name in modules if not _installed(name)]


@dataclass(frozen=True)
class Producer:
    """How a format is made.

    ``source`` is ``None`` for an exporter that works on the eager module, or the
    name of the format whose artifact a converter turns into this one (the
    pipeline makes that artifact first, parity-checked). ``requires`` are the
    modules it imports (torch included where it needs it).
    """

    target: str
    requires: tuple[str, ...]
    source: str | None = None

    def load(self) -> Any:
        """A new producer object (``strategies`` and ``produce(job, out_dir, strategy)``)."""
        return _import(self.target)()


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
    producer: Producer
    #: The pip extra that installs what producing and running it needs.
    extra: str
    #: What loads the file outside tvdeploy (docs).
    loads_with: str
    #: Whether a dynamic batch axis is bounded (the runtime plans memory for the largest batch).
    bounded_batch: bool = False
    #: Precisions ``tvdeploy optimize`` derives from a plain fp32 artifact: of this format, or, for a format
    #: converted from another (``producer.source``), of that source format (``optimize --format NAME``).
    derivable: tuple[str, ...] = ()
    #: Whether the ONNX graph transformations of ``GraphOptions`` apply (simplify, optimize, embedded processing).
    graph_passes: bool = False
    #: The precisions the format supports (names of :data:`~tvdeploy.runtime.precisions.PRECISION_SPECS`).
    precisions: tuple[str, ...] = ("fp32",)
    #: The Triton Inference Server backend that runs it (``export-triton``); None: Triton runs none of ours.
    triton_backend: str | None = None

    @property
    def criteria(self) -> Mapping[str, ParityCriteria]:
        """Parity criteria per precision the format supports (the precision registry's)."""
        return {name: PRECISION_SPECS[name].criteria for name in self.precisions}

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
        return _import(self.runner)

    def missing_for_export(self) -> list[str]:
        """Modules that producing this format needs and that are not installed."""
        return _missing(tuple(dict.fromkeys(self.producer.requires + self.runtime_requires)))

    def missing_for_runtime(self) -> list[str]:
        """Modules that running this format needs and that are not installed."""
        return _missing(self.runtime_requires)

    def install_hint(self) -> str:
        """How to install what this format needs."""
        return f'pip install "tvdeploy[{self.extra}]"'

    def criteria_for(self, precision: str, images_input: bool = False) -> ParityCriteria:
        """The parity criteria of this format at ``precision``; ``images_input``: the artifact preprocesses
        images in its own graph (compared with the runtime's Pillow preprocessing), which loosens them to
        :data:`EMBEDDED_PREPROCESS_CRITERIA` where they are stricter."""
        if precision not in self.criteria:
            raise UserInputError(
                f"format {self.name} does not support precision {precision!r}",
                hint=f"{self.name} supports {', '.join(self.criteria)}",
            )
        criteria = self.criteria[precision]
        return criteria.loosened_by(EMBEDDED_PREPROCESS_CRITERIA) if images_input else criteria


_TORCH_EXPORT = ("torch", "torchvision")

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
            providers=("cpu", "cuda", "tensorrt", "openvino"),
            producer=Producer("tvdeploy.export.onnx_exporter:OnnxExporter", (*_TORCH_EXPORT, "onnx", "onnxscript")),
            extra="export",
            loads_with="onnxruntime.InferenceSession",
            precisions=("fp32", "fp16", "int8"),
            derivable=("fp16", "int8"),
            triton_backend="onnxruntime",
            graph_passes=True,
        ),
        FormatSpec(
            name="torchscript",
            summary="TorchScript, run by torch (and libtorch)",
            model_file="model.torchscript.pt",
            extra_files=(),
            runner="tvdeploy.runtime.runners.torch_backed:TorchScriptRunner",
            runtime_requires=("torch",),
            providers=TORCH_PROVIDERS,
            producer=Producer("tvdeploy.export.torchscript_exporter:TorchScriptExporter", _TORCH_EXPORT),
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
            producer=Producer("tvdeploy.export.pt2_exporter:ExportedProgramExporter", _TORCH_EXPORT),
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
            producer=Producer("tvdeploy.export.openvino_converter:OpenVinoConverter", ("openvino",), source="onnx"),
            extra="openvino",
            loads_with="openvino.Core().compile_model",
            precisions=("fp32", "fp16", "bf16", "int8"),
            derivable=("fp32", "fp16", "bf16", "int8"),
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
            producer=Producer("tvdeploy.export.executorch_exporter:ExecuTorchExporter", (*_TORCH_EXPORT, "executorch")),
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


def exportable_formats() -> list[str]:
    """The formats whose extras are installed here (what ``--format all`` exports)."""
    return [name for name, spec in FORMATS.items() if not spec.missing_for_export()]


def backend_names() -> tuple[str, ...]:
    """Bench backends: the eager model, then every format."""
    return (EAGER, *FORMATS)


def providers_of(backend: str) -> tuple[str, ...]:
    """The providers a bench backend (``eager`` or a format) runs on."""
    return TORCH_PROVIDERS if backend == EAGER else get_format(backend).providers


def runner_class_of(backend: str) -> Any:
    """The runner class of a bench backend (``eager`` or a format)."""
    return _import(EAGER_RUNNER) if backend == EAGER else get_format(backend).runner_class()


def runs_on_torch(backend: str) -> bool:
    """Whether a bench backend (``eager`` or a format) runs through torch."""
    return backend == EAGER or get_format(backend).torch_runtime
