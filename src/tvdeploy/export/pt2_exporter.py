"""torch.export ExportedProgram with a dynamic batch axis, saved as ``model.pt2``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tvdeploy.export.base import ExportResult, quiet_torch


class ExportedProgramExporter:
    """Writes ``model.pt2``, loadable with ``torch.export.load``."""

    format = "pt2"
    filename = "model.pt2"
    strategies = ("export",)

    def export(self, module: Any, example: Any, out_dir: Path, strategy: str, opset: int) -> ExportResult:
        import torch

        batch = torch.export.Dim("batch", min=1, max=4096)
        with quiet_torch():
            program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
            torch.export.save(program, str(out_dir / self.filename))
        return ExportResult(files=[self.filename], exporter="torch.export.export")
