"""torch.export ExportedProgram with a dynamic batch axis, saved as ``model.pt2``."""

from __future__ import annotations

from pathlib import Path

from tvdeploy.export.base import ExportResult, ProduceJob, quiet_torch, torch_batch_dims
from tvdeploy.export.options import EXPORT_BATCH_BOUND


class ExportedProgramExporter:
    """Writes ``model.pt2``, loadable with ``torch.export.load``."""

    strategies = ("export",)

    def produce(self, job: ProduceJob, out_dir: Path, strategy: str) -> ExportResult:
        import torch

        with quiet_torch():
            program = torch.export.export(
                job.module, (job.example,), dynamic_shapes=torch_batch_dims(job, EXPORT_BATCH_BOUND)
            )
            torch.export.save(program, str(out_dir / job.model_path))
        return ExportResult(files=[job.model_path], exporter="torch.export.export")
