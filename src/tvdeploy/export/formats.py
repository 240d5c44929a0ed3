"""The registry of export formats."""

from __future__ import annotations

from tvdeploy.errors import UserInputError
from tvdeploy.export.base import FormatExporter
from tvdeploy.export.onnx_exporter import OnnxExporter
from tvdeploy.export.pt2_exporter import ExportedProgramExporter
from tvdeploy.export.torchscript_exporter import TorchScriptExporter

EXPORTERS: dict[str, type] = {
    "onnx": OnnxExporter,
    "torchscript": TorchScriptExporter,
    "pt2": ExportedProgramExporter,
}
FORMAT_CHOICES = (*EXPORTERS, "all")


def expand_formats(requested: str) -> list[str]:
    """``all`` -> every format; a name -> itself; anything else is an error listing the choices."""
    if requested == "all":
        return list(EXPORTERS)
    if requested not in EXPORTERS:
        raise UserInputError(f"unknown format {requested!r}", hint=f"choose one of {', '.join(FORMAT_CHOICES)}")
    return [requested]


def exporter_for(fmt: str) -> FormatExporter:
    """A new exporter for ``fmt``."""
    return EXPORTERS[fmt]()
