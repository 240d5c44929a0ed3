"""OpenVINO IR (``model.xml`` + ``model.bin``) converted from the artifact's ONNX file with OpenVINO's own converter.

Converting the ONNX file rather than the torch module reuses an export that
has already passed parity, keeps its tensor names and dynamic batch axis, and
needs no torch in OpenVINO's frontend. The source is always the fp32 ONNX
file; per precision:

- fp32: fp32 weights stay fp32 (``save_model`` would compress them to fp16 unless told not to);
- fp16: OpenVINO's own fp16 IR (weights compressed to fp16, computed in fp16 where the device supports it);
- bf16: the fp32 IR, computed in bf16 (the runner's ``INFERENCE_PRECISION_HINT``) on CPUs with AVX512_BF16/AMX;
- int8: the ONNX file quantized as tvdeploy's ONNX int8 (ONNX Runtime's QDQ, calibrated on the same images),
  then converted: OpenVINO turns the QDQ pairs into its FakeQuantize and runs those layers in int8 (VNNI/AMX).
  NNCF's ``nncf.quantize`` of the fp32 IR ran at the same speed (docs/optimization.md), so the QDQ path is
  kept: one quantization for both runtimes, the same fidelity as the ONNX int8 artifact, no extra dependency.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from tvdeploy.errors import ExportError
from tvdeploy.export.base import ExportResult, ProduceJob, written_files
from tvdeploy.export.precision import to_int8
from tvdeploy.runtime.precisions import Precision, get_precision


class OpenVinoConverter:
    """``openvino.convert_model(model.onnx)`` then ``openvino.save_model(..., compress_to_fp16=False)``."""

    strategies = ("convert_model",)

    def produce(self, job: ProduceJob, out_dir: Path, strategy: str) -> ExportResult:
        import openvino as ov

        if job.source_dir is None:
            raise ExportError("the OpenVINO converter needs the ONNX artifact it converts")
        from tvdeploy.runtime.manifest import read_manifest

        source = job.source_dir / read_manifest(job.source_dir).model_file.path
        details: dict[str, Any] = {"converted_from": "onnx"}
        with tempfile.TemporaryDirectory(prefix="tvdeploy-ov-") as scratch:
            if get_precision(job.options.precision).needs_calibration:
                if job.calibration is None:
                    raise ExportError(f"OpenVINO {job.options.precision} needs calibration data")
                quantized = Path(scratch) / "model.int8.onnx"
                details.update(to_int8(source, quantized, job.input_spec.name, job.calibration))
                source = quantized
            model = ov.convert_model(str(source))
            ov.save_model(
                model, str(out_dir / job.model_path), compress_to_fp16=job.options.precision == Precision.FP16
            )
        return ExportResult(
            files=written_files(out_dir, job.spec),
            exporter="openvino.convert_model(onnx)",
            opset=job.options.opset,
            details=details,
        )
