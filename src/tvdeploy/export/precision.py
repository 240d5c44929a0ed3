"""Lower-precision ONNX models: fp16 with onnxconverter-common, int8 with ONNX Runtime's static quantization.

Both keep the model's fp32 input and output, so a runtime feeds an fp16 or int8
artifact exactly like an fp32 one.

- fp16: ``onnxconverter_common.float16.convert_float_to_float16(keep_io_types=True)``,
  with numerically fragile ops (:data:`FP16_KEEP_FP32_OPS`) left in fp32.
- int8: ``quant_pre_process`` (shape inference and graph cleanup), then
  ``quantize_static`` in the QDQ format with per-channel int8 weights and uint8
  activations, calibrated on images preprocessed with the artifact's own
  preprocessing (or on seeded noise, only when asked explicitly).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tvdeploy.errors import ExportError, ImageError, UserInputError
from tvdeploy.export.options import CalibrationOptions
from tvdeploy.runtime.hashing import sha256_file
from tvdeploy.runtime.inputs import collect_inputs
from tvdeploy.runtime.manifest import PreprocessSpec
from tvdeploy.runtime.precisions import Precision
from tvdeploy.runtime.preprocess import ImagePreprocessor

logger = logging.getLogger(__name__)

#: Ops kept in fp32 in fp16 models: reductions and normalisations whose sums overflow or lose precision in fp16.
FP16_KEEP_FP32_OPS = ("Softmax", "LayerNormalization", "ReduceMean", "ReduceSum", "Pow", "Sqrt", "Exp", "Log")


@dataclass
class CalibrationSet:
    """The batches an int8 calibration runs, and what the manifest records about them."""

    batches: list[np.ndarray]
    info: dict[str, Any] = field(default_factory=dict)


#: How many skipped calibration files are named one by one before the rest are only counted.
NAMED_SKIPS = 3


@functools.lru_cache(maxsize=1)
def calibration_set(options: CalibrationOptions, preprocess: PreprocessSpec) -> CalibrationSet:
    """Load the calibration data: the first ``max_images`` images of the directory in sorted order, each
    preprocessed with the artifact's own preprocessing, or seeded noise for ``random``.

    An image that cannot be decoded is skipped (it fails alone): the first :data:`NAMED_SKIPS` are named, the rest
    counted in one line; no usable image is an error. The last set loaded is kept, so that ``tune``'s int8
    candidates share one load (and its warnings).
    """
    base = {"method": options.method}
    if options.is_random:
        rng = np.random.default_rng(options.seed)
        height, width = preprocess.crop_hw
        batches = [rng.standard_normal((1, 3, height, width), dtype=np.float32) for _ in range(options.max_images)]
        logger.warning("int8 calibration on random noise: fine for speed tests, not for accuracy")
        return CalibrationSet(batches, {**base, "source": "random", "images": len(batches), "seed": options.seed})
    root = Path(options.source)
    files = collect_inputs([root]).files
    if not files:
        raise UserInputError(
            f"no images in the calibration directory {root}",
            hint="pass a directory of representative images (JPEG, PNG, ...)",
        )
    prep = ImagePreprocessor(preprocess)
    batches, used, digest = [], [], hashlib.sha256()
    skipped = 0
    for path in files:
        if len(batches) == options.max_images:
            break
        try:
            batches.append(prep(path)[None])
        except ImageError as exc:
            skipped += 1
            if skipped <= NAMED_SKIPS:
                logger.warning("calibration: skipping %s", exc.message)
            continue
        relative = Path(path).relative_to(root).as_posix()
        used.append(relative)
        digest.update(f"{relative}\0{sha256_file(path)}\n".encode())
    if skipped > NAMED_SKIPS:
        logger.warning("calibration: skipped %d more file(s) that could not be decoded", skipped - NAMED_SKIPS)
    if not batches:
        raise UserInputError(f"none of the images in {root} could be decoded for calibration")
    if len(batches) < min(options.max_images, 16):
        logger.warning("int8 calibration on only %d image(s): the ranges may not represent your data", len(batches))
    info = {**base, "source": str(root.resolve()), "images": len(batches), "images_sha256": digest.hexdigest()}
    return CalibrationSet(batches, info)


def to_fp16(source: Path, target: Path) -> dict[str, Any]:
    """Convert an fp32 ONNX model to fp16 (fp32 inputs and outputs, fragile ops in fp32)."""
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(str(source))
    block = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(FP16_KEEP_FP32_OPS))
    converted = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=block)
    onnx.save(converted, str(target))
    return {"converter": "onnxconverter_common.float16", "kept_fp32_ops": list(FP16_KEEP_FP32_OPS)}


class _Reader:
    """ONNX Runtime's ``CalibrationDataReader`` protocol over a list of batches."""

    def __init__(self, input_name: str, batches: list[np.ndarray]) -> None:
        self._feeds = iter([{input_name: batch} for batch in batches])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def to_int8(source: Path, target: Path, input_name: str, calibration: CalibrationSet) -> dict[str, Any]:
    """Statically quantize an fp32 ONNX model: QDQ, per-channel int8 weights, uint8 activations."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[calibration.info["method"]]
    with tempfile.TemporaryDirectory(prefix="tvdeploy-int8-") as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared))
        quantize_static(
            str(prepared),
            str(target),
            _Reader(input_name, calibration.batches),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=method,
            extra_options={"CalibTensorRangeSymmetric": False},
        )
    return {
        "converter": "onnxruntime.quantization.quantize_static",
        "quantization": {"format": "QDQ", "per_channel": True, "weights": "int8", "activations": "uint8"},
        "calibration": calibration.info,
    }


def convert_precision(
    source: Path, target: Path, precision: str, input_name: str, calibration: CalibrationSet | None
) -> dict[str, Any]:
    """Write ``target``, the fp32 model ``source`` at ``precision``; returns what the manifest records."""
    if precision == Precision.FP16:
        return to_fp16(source, target)
    if precision == Precision.INT8:
        if calibration is None:
            raise ExportError("int8 quantization needs calibration data")
        return to_int8(source, target, input_name, calibration)
    raise ExportError(f"no conversion to {precision!r}")
