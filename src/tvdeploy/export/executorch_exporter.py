"""ExecuTorch ``model.pte``: ``torch.export`` lowered to the XNNPACK delegate.

XNNPACK plans memory for the largest batch the program admits, so the batch
axis is bounded by ``ExportOptions.max_batch`` and the bound is recorded in the
manifest (``input.max_batch``); the runner refuses larger batches clearly.
Where a model's dynamic-batch program does not run (seen: shufflenet's channel
shuffle fails in the delegate at run time), the ``xnnpack-static`` strategy
lowers it for a fixed batch of 1, recorded as the input shape; the runtime then
feeds it one image at a time.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from tvdeploy.export.base import ExportResult, ProduceJob, quiet_torch, torch_batch_dims
from tvdeploy.runtime.native_output import quiet_library_loggers

DELEGATE = "XnnpackBackend"


class ExecuTorchExporter:
    """``to_edge_transform_and_lower(torch.export.export(...), partitioner=[XnnpackPartitioner()]).to_executorch()``;
    a dynamic batch first, a fixed batch (``ExportOptions.batch_size``, default 1) if that does not run."""

    strategies = ("xnnpack", "xnnpack-static")

    def produce(self, job: ProduceJob, out_dir: Path, strategy: str) -> ExportResult:
        import torch

        quiet_library_loggers()
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        static = strategy == "xnnpack-static" or not job.options.dynamic_batch
        example = job.example[: job.options.batch_size] if strategy == "xnnpack-static" else job.example
        with quiet_torch():
            dims = None if static else torch_batch_dims(job, job.options.max_batch)
            program = torch.export.export(job.module, (example,), dynamic_shapes=dims)
            lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
            (out_dir / job.model_path).write_bytes(lowered.buffer)
        result = ExportResult(
            files=[job.model_path],
            exporter="executorch.exir.to_edge_transform_and_lower",
            details={"delegate": DELEGATE, "partitioner": "XnnpackPartitioner"},
        )
        if strategy == "xnnpack-static":
            batch = int(example.shape[0])
            result.input_spec = replace(job.input_spec, shape=[batch, *job.input_spec.shape[1:]], max_batch=None)
            result.output_spec = replace(job.output_spec, shape=[batch, *job.output_spec.shape[1:]])
        return result
