"""The export side of the format registry: how each format is made, what ``optimize`` derives of it, and the
parity criteria its artifacts are held to.

:mod:`tvdeploy.runtime.formats` says what a format *is* (files, runner, providers, precisions, extra), which the
torch-free runtime needs; this module says how it is *produced*, which only the export side needs. One
:class:`ProducerSpec` per format of that registry (a test ties the two together). Producers are named as
``"module:Class"`` strings and imported only when used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tvdeploy.errors import UserInputError
from tvdeploy.runtime.formats import FORMATS, FormatSpec, get_format, import_target, missing_modules
from tvdeploy.runtime.precisions import EMBEDDED_PREPROCESS_CRITERIA, PRECISION_SPECS, ParityCriteria

_TORCH_EXPORT = ("torch", "torchvision")


@dataclass(frozen=True)
class ProducerSpec:
    """How one format is made.

    ``source`` is ``None`` for an exporter that works on the eager module, or the name of the format whose
    artifact a converter turns into this one (the pipeline makes that artifact first, parity-checked).
    ``requires`` are the modules it imports (torch included where it needs it). ``derivable``: the precisions
    ``optimize`` derives from a plain fp32 artifact (of this format, or, for a converted format, of its source:
    ``optimize --format NAME``). ``graph_passes``: whether the ONNX graph transformations of ``GraphOptions``
    apply.
    """

    target: str
    requires: tuple[str, ...]
    source: str | None = None
    derivable: tuple[str, ...] = ()
    graph_passes: bool = False

    def load(self) -> Any:
        """A new producer object (``strategies`` and ``produce(job, out_dir, strategy)``)."""
        return import_target(self.target)()


#: How each format of :data:`~tvdeploy.runtime.formats.FORMATS` is made.
PRODUCERS: dict[str, ProducerSpec] = {
    "onnx": ProducerSpec(
        "tvdeploy.export.onnx_exporter:OnnxExporter",
        (*_TORCH_EXPORT, "onnx", "onnxscript"),
        derivable=("fp16", "int8"),
        graph_passes=True,
    ),
    "torchscript": ProducerSpec("tvdeploy.export.torchscript_exporter:TorchScriptExporter", _TORCH_EXPORT),
    "pt2": ProducerSpec("tvdeploy.export.pt2_exporter:ExportedProgramExporter", _TORCH_EXPORT),
    "openvino": ProducerSpec(
        "tvdeploy.export.openvino_converter:OpenVinoConverter",
        ("openvino",),
        source="onnx",
        derivable=("fp32", "fp16", "bf16", "int8"),
    ),
    "executorch": ProducerSpec(
        "tvdeploy.export.executorch_exporter:ExecuTorchExporter", (*_TORCH_EXPORT, "executorch")
    ),
}


def producer_of(fmt: str | FormatSpec) -> ProducerSpec:
    """The producer of a format (a name or its registry record)."""
    return PRODUCERS[fmt.name if isinstance(fmt, FormatSpec) else get_format(fmt).name]


def missing_for_export(fmt: str | FormatSpec) -> list[str]:
    """Modules that producing a format needs (its producer's and its runner's) and that are not installed."""
    spec = fmt if isinstance(fmt, FormatSpec) else get_format(fmt)
    return missing_modules(tuple(dict.fromkeys(producer_of(spec).requires + spec.runtime_requires)))


def exportable_formats() -> list[str]:
    """The formats whose extras are installed here (what ``--format all`` exports)."""
    return [name for name in FORMATS if not missing_for_export(name)]


def criteria_of(fmt: str | FormatSpec) -> Mapping[str, ParityCriteria]:
    """Parity criteria per precision a format supports (the precision registry's)."""
    spec = fmt if isinstance(fmt, FormatSpec) else get_format(fmt)
    return {name: PRECISION_SPECS[name].criteria for name in spec.precisions}


def criteria_for(fmt: str | FormatSpec, precision: str, images_input: bool = False) -> ParityCriteria:
    """The parity criteria of a format at ``precision``; ``images_input``: the artifact preprocesses images in its
    own graph (compared with the runtime's Pillow preprocessing), which loosens them to
    :data:`~tvdeploy.runtime.precisions.EMBEDDED_PREPROCESS_CRITERIA` where they are stricter."""
    spec = fmt if isinstance(fmt, FormatSpec) else get_format(fmt)
    criteria = criteria_of(spec)
    if precision not in criteria:
        raise UserInputError(
            f"format {spec.name} does not support precision {precision!r}",
            hint=f"{spec.name} supports {', '.join(criteria)}",
        )
    chosen = criteria[precision]
    return chosen.loosened_by(EMBEDDED_PREPROCESS_CRITERIA) if images_input else chosen
