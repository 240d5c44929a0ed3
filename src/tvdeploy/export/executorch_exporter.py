"""ExecuTorch ``model.pte``: ``torch.export`` lowered to the XNNPACK delegate.

XNNPACK plans memory for the largest batch the program admits, so the batch
axis is bounded by ``ExportOptions.max_batch`` and the bound is recorded in the
manifest (``input.max_batch``); the runner refuses larger batches clearly.
"""

from __future__ import annotations

from pathlib import Path

from tvdeploy.export.base import ExportResult, ProduceJob, quiet_torch, torch_batch_dims

DELEGATE = "XnnpackBackend"


class ExecuTorchExporter:
    """``to_edge_transform_and_lower(torch.export.export(...), partitioner=[XnnpackPartitioner()]).to_executorch()``."""

    strategies = ("xnnpack",)

    def produce(self, job: ProduceJob, out_dir: Path, strategy: str) -> ExportResult:
        import torch
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        with quiet_torch():
            program = torch.export.export(
                job.module, (job.example,), dynamic_shapes=torch_batch_dims(job, job.options.max_batch)
            )
            lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
            (out_dir / job.model_path).write_bytes(lowered.buffer)
        return ExportResult(
            files=[job.model_path],
            exporter="executorch.exir.to_edge_transform_and_lower",
            details={"delegate": DELEGATE, "partitioner": "XnnpackPartitioner"},
        )
