"""Typed export options: what ``tvdeploy export`` carries from the CLI through each producer into the manifest."""

from __future__ import annotations

from dataclasses import dataclass

from tvdeploy.errors import UserInputError
from tvdeploy.runtime.formats import PRECISIONS

#: The ONNX opset of new exports (18 brings the antialiased ``Resize`` and reduction ops as attributes).
DEFAULT_OPSET = 18
#: Largest batch a dynamic batch axis admits where a format plans memory for it (ExecuTorch). torch.export's
#: own bound elsewhere.
DEFAULT_MAX_BATCH = 8
#: Bound of the dynamic batch axis given to torch.export where memory is not planned for it.
EXPORT_BATCH_BOUND = 4096


@dataclass(frozen=True)
class ExportOptions:
    """How to export, whatever the format.

    Args:
        opset: ONNX opset (ONNX, and OpenVINO which converts the ONNX file).
        precision: numeric precision of the artifact (see ``tvdeploy.runtime.formats.PRECISIONS``).
        dynamic_batch: a dynamic batch axis; ``False`` fixes the batch to ``batch_size``.
        batch_size: the fixed batch when ``dynamic_batch`` is off.
        max_batch: the largest batch of formats that plan memory for one (ExecuTorch).
    """

    opset: int = DEFAULT_OPSET
    precision: str = "fp32"
    dynamic_batch: bool = True
    batch_size: int = 1
    max_batch: int = DEFAULT_MAX_BATCH

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UserInputError(f"unknown precision {self.precision!r}", hint=f"choose one of {', '.join(PRECISIONS)}")
        if self.opset < 7:
            raise UserInputError(f"ONNX opset {self.opset} is too old", hint=f"use {DEFAULT_OPSET} (the default)")
        if self.batch_size < 1 or self.max_batch < 1:
            raise UserInputError("batch sizes must be >= 1")

    def batch_axis(self) -> int | str:
        """The first entry of the input shape in the manifest."""
        return "batch" if self.dynamic_batch else self.batch_size
