"""TorchScript export: ``torch.jit.trace``, with ``torch.jit.script`` where tracing fails."""

from __future__ import annotations

from pathlib import Path

from tvdeploy.export.base import ExportResult, ProduceJob, quiet_torch


class TorchScriptExporter:
    """Writes ``model.torchscript.pt``, loadable with ``torch.jit.load`` (and libtorch's ``torch::jit::load``)."""

    strategies = ("trace", "script")

    def produce(self, job: ProduceJob, out_dir: Path, strategy: str) -> ExportResult:
        import torch

        with quiet_torch(), torch.no_grad():
            if strategy == "trace":
                compiled = torch.jit.trace(job.module, job.example, check_trace=False)
            elif strategy == "script":
                compiled = torch.jit.script(job.module)
            else:
                raise ValueError(f"unknown TorchScript strategy {strategy!r}")
            torch.jit.save(compiled, str(out_dir / job.model_path))
        return ExportResult(files=[job.model_path], exporter=f"torch.jit.{strategy}")
