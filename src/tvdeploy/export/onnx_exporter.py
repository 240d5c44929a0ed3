"""ONNX export with ``torch.onnx.export``: the dynamo exporter first, the TorchScript-based one as fallback."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tvdeploy.errors import ExportError
from tvdeploy.export.base import ExportResult, quiet_torch

logger = logging.getLogger(__name__)

#: Above this many bytes of parameters the weights go to an external data file (the protobuf limit is 2 GiB).
EXTERNAL_DATA_THRESHOLD = 1_800_000_000
DEFAULT_OPSET = 18


def _parameter_bytes(module: Any) -> int:
    return sum(t.numel() * t.element_size() for t in list(module.parameters()) + list(module.buffers()))


class OnnxExporter:
    """Writes ``model.onnx`` (plus ``model.onnx.data`` for models over ~2 GB) with a dynamic batch axis."""

    format = "onnx"
    filename = "model.onnx"
    strategies = ("dynamo", "torchscript")

    def __init__(self, input_name: str = "input", output_name: str = "logits") -> None:
        self.input_name = input_name
        self.output_name = output_name

    def export(self, module: Any, example: Any, out_dir: Path, strategy: str, opset: int) -> ExportResult:
        import torch

        path = out_dir / self.filename
        large = _parameter_bytes(module) > EXTERNAL_DATA_THRESHOLD
        with quiet_torch():
            if strategy == "dynamo":
                batch = torch.export.Dim("batch", min=1, max=4096)
                torch.onnx.export(
                    module, (example,), str(path), dynamo=True, opset_version=opset,
                    input_names=[self.input_name], output_names=[self.output_name],
                    dynamic_shapes=({0: batch},), external_data=large,
                )
            elif strategy == "torchscript":
                torch.onnx.export(
                    module, (example,), str(path), dynamo=False, opset_version=opset,
                    input_names=[self.input_name], output_names=[self.output_name],
                    dynamic_axes={self.input_name: {0: "batch"}, self.output_name: {0: "batch"}},
                    do_constant_folding=True,
                )
            else:
                raise ValueError(f"unknown ONNX export strategy {strategy!r}")
        self._check(path)
        files = sorted(p.name for p in out_dir.iterdir() if p.name.startswith(self.filename))
        files.remove(self.filename)
        return ExportResult(files=[self.filename, *files], exporter=f"torch.onnx.export(dynamo={strategy == 'dynamo'})",
                            opset=opset)

    def _check(self, path: Path) -> None:
        import onnx

        try:
            onnx.checker.check_model(str(path), full_check=True)
        except onnx.checker.ValidationError as exc:
            raise ExportError(f"the exported ONNX model fails onnx.checker: {str(exc).splitlines()[0]}") from None
