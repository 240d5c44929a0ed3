"""TorchScript export: ``torch.jit.trace``, with ``torch.jit.script`` where tracing fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tvdeploy.export.base import ExportResult, quiet_torch


class TorchScriptExporter:
    """Writes ``model.torchscript.pt``, loadable with ``torch.jit.load`` (and libtorch's ``torch::jit::load``)."""

    format = "torchscript"
    filename = "model.torchscript.pt"
    strategies = ("trace", "script")

    def export(self, module: Any, example: Any, out_dir: Path, strategy: str, opset: int) -> ExportResult:
        import torch

        with quiet_torch(), torch.no_grad():
            if strategy == "trace":
                compiled = torch.jit.trace(module, example, check_trace=False)
            elif strategy == "script":
                compiled = torch.jit.script(module)
            else:
                raise ValueError(f"unknown TorchScript strategy {strategy!r}")
            torch.jit.save(compiled, str(out_dir / self.filename))
        return ExportResult(files=[self.filename], exporter=f"torch.jit.{strategy}")
