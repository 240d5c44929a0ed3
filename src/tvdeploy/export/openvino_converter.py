"""OpenVINO IR (``model.xml`` + ``model.bin``) converted from the artifact's ONNX file with OpenVINO's own converter.

Converting the ONNX file rather than the torch module reuses an export that
has already passed parity, keeps its tensor names and dynamic batch axis, and
needs no torch in OpenVINO's frontend. The source is always the fp32 ONNX
file: fp32 weights stay fp32 (``save_model`` would compress them to fp16 unless
told not to), and an fp16 artifact is OpenVINO's own fp16 IR (weights compressed
to fp16, computed in fp16 where the device supports it and in fp32 elsewhere).
"""

from __future__ import annotations

from pathlib import Path

from tvdeploy.errors import ExportError
from tvdeploy.export.base import ExportResult, ProduceJob, written_files


class OpenVinoConverter:
    """``openvino.convert_model(model.onnx)`` then ``openvino.save_model(..., compress_to_fp16=False)``."""

    strategies = ("convert_model",)

    def produce(self, job: ProduceJob, out_dir: Path, strategy: str) -> ExportResult:
        import openvino as ov

        if job.source_dir is None:
            raise ExportError("the OpenVINO converter needs the ONNX artifact it converts")
        from tvdeploy.runtime.manifest import read_manifest

        source = job.source_dir / read_manifest(job.source_dir).model_file.path
        model = ov.convert_model(str(source))
        ov.save_model(model, str(out_dir / job.model_path), compress_to_fp16=job.options.precision == "fp16")
        return ExportResult(
            files=written_files(out_dir, job.spec),
            exporter="openvino.convert_model(onnx)",
            opset=job.options.opset,
            details={"converted_from": "onnx"},
        )
