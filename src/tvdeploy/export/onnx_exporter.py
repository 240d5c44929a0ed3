"""ONNX export with ``torch.onnx.export``: the dynamo exporter first, the TorchScript-based one as fallback."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from tvdeploy.errors import ExportError
from tvdeploy.export.base import ExportResult, ProduceJob, quiet_torch, torch_batch_dims, written_files
from tvdeploy.export.onnx_graph import EXTERNAL_DATA_THRESHOLD, derive_onnx
from tvdeploy.export.options import EXPORT_BATCH_BOUND
from tvdeploy.runtime.precisions import Precision

logger = logging.getLogger(__name__)


def _parameter_bytes(module: Any) -> int:
    return sum(t.numel() * t.element_size() for t in list(module.parameters()) + list(module.buffers()))


class OnnxExporter:
    """Writes ``model.onnx`` (plus ``model.onnx.data`` for models over ~2 GB) with the manifest's tensor names."""

    strategies = ("dynamo", "torchscript")

    def produce(self, job: ProduceJob, out_dir: Path, strategy: str) -> ExportResult:
        """Export fp32 ONNX; for another precision or graph transformations, export to a scratch directory and
        derive the model file in ``out_dir`` from it (:func:`~tvdeploy.export.onnx_graph.derive_onnx`)."""
        if job.options.precision == Precision.FP32 and not job.options.graph.active:
            return self._export(job, out_dir, strategy)
        if job.preprocess is None:
            raise ExportError("graph transformations need the artifact's preprocessing")
        with tempfile.TemporaryDirectory(prefix="tvdeploy-fp32-") as scratch:
            fp32 = self._export(job, Path(scratch), strategy)
            derived = derive_onnx(
                Path(scratch) / job.model_path,
                out_dir / job.model_path,
                precision=job.options.precision,
                graph=job.options.graph,
                preprocess=job.preprocess,
                input_spec=job.input_spec,
                output_spec=job.output_spec,
                calibration=job.calibration,
            )
        converter = derived.details.get("converter")
        return ExportResult(
            files=written_files(out_dir, job.spec),
            exporter=f"{fp32.exporter} + {converter}" if converter else fp32.exporter,
            opset=fp32.opset,
            details=derived.details,
            input_spec=derived.input_spec,
            output_spec=derived.output_spec,
            optimized_graph=derived.optimized_graph,
        )

    def _export(self, job: ProduceJob, out_dir: Path, strategy: str) -> ExportResult:
        import torch

        path = out_dir / job.model_path
        input_name, output_name = job.input_spec.name, job.output_spec.name
        opset = job.options.opset
        if strategy == "dynamo":
            specific: dict[str, Any] = {
                "dynamic_shapes": torch_batch_dims(job, EXPORT_BATCH_BOUND),
                "external_data": _parameter_bytes(job.module) > EXTERNAL_DATA_THRESHOLD,
            }
        elif strategy == "torchscript":
            axes = {input_name: {0: "batch"}, output_name: {0: "batch"}} if job.options.dynamic_batch else None
            specific = {"dynamic_axes": axes, "do_constant_folding": True}
        else:
            raise ValueError(f"unknown ONNX export strategy {strategy!r}")
        with quiet_torch():
            torch.onnx.export(
                job.module,
                (job.example,),
                str(path),
                dynamo=strategy == "dynamo",
                opset_version=opset,
                input_names=[input_name],
                output_names=[output_name],
                **specific,
            )
        self._check(path)
        return ExportResult(
            files=written_files(out_dir, job.spec),
            exporter=f"torch.onnx.export(dynamo={strategy == 'dynamo'})",
            opset=opset,
        )

    def _check(self, path: Path) -> None:
        import onnx

        try:
            onnx.checker.check_model(str(path), full_check=True)
        except onnx.checker.ValidationError as exc:
            raise ExportError(f"the exported ONNX model fails onnx.checker: {str(exc).splitlines()[0]}") from exc
