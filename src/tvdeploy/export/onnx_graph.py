"""Transformations of an exported ONNX model: precision, onnxslim, embedded pre/post-processing, ORT's offline graph.

:func:`derive_onnx` is the one path from an fp32 ONNX file to the artifact's
model file; ``tvdeploy export`` and ``tvdeploy optimize`` both take it. The
steps run in this order, each optional:

1. precision (:mod:`tvdeploy.export.precision`): fp16 or int8, on the float
   tensor input the calibration data is made for;
2. ``--simplify``: onnxslim;
3. ``--embed-preprocess``: a uint8 ``(N, H, W, 3)`` image input, resized (opset-18
   antialiased ``Resize`` on uint8, which rounds like Pillow), center-cropped with
   torchvision's rounding and normalized inside the graph;
4. ``--embed-postprocess K``: softmax + ``TopK`` at the end (probabilities and
   class indices out, labels in the manifest);
5. ``--optimize LEVEL``: ONNX Runtime's optimized graph saved at ``LEVEL``, weights
   in ``model.onnx.data`` (memory-mapped at load, no protobuf copy).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tvdeploy.errors import ExportError, UserInputError
from tvdeploy.export.options import GraphOptions
from tvdeploy.export.precision import CalibrationSet, convert_precision
from tvdeploy.runtime.host import cpu_signature
from tvdeploy.runtime.manifest import (
    IMAGES_INPUT_NAME,
    IMAGES_LAYOUT,
    TOP_K,
    TOP_K_INDICES_NAME,
    TOP_K_OUTPUT_NAME,
    OptimizedGraph,
    OutputSpec,
    PreprocessSpec,
    TensorSpec,
)
from tvdeploy.runtime.precisions import Precision

logger = logging.getLogger(__name__)

#: The external weights file of an optimized graph (the ONNX format's registry entry lists it).
EXTERNAL_DATA_FILE = "model.onnx.data"
#: Above this many bytes of weights a model is saved with external data (the protobuf limit is 2 GiB).
EXTERNAL_DATA_THRESHOLD = 1_800_000_000
#: Prefix of every tensor and node the embedded steps add (no clash with the exporter's names).
_PRE = "tvdeploy_preprocess/"
_POST = "tvdeploy_postprocess/"
#: ONNX ``Resize`` modes per manifest interpolation that reproduce Pillow's (bicubic with Pillow's a = -0.5).
#: Nearest is not among them: no ONNX coordinate mode picks the pixels Pillow's nearest picks.
_RESIZE_MODES = {"bilinear": "linear", "bicubic": "cubic"}


@dataclass
class DerivedModel:
    """What :func:`derive_onnx` did: the manifest's new interface, and what ``export_info`` records."""

    input_spec: TensorSpec
    output_spec: OutputSpec
    details: dict[str, Any] = field(default_factory=dict)
    optimized_graph: OptimizedGraph | None = None
    files: list[str] = field(default_factory=list)


def derive_onnx(
    source: Path,
    target: Path,
    *,
    precision: str,
    graph: GraphOptions,
    preprocess: PreprocessSpec,
    input_spec: TensorSpec,
    output_spec: OutputSpec,
    calibration: CalibrationSet | None = None,
) -> DerivedModel:
    """Write ``target`` (and its external data, when optimized) from the fp32 ONNX model ``source``."""
    import onnx

    derived = DerivedModel(input_spec, output_spec)
    with tempfile.TemporaryDirectory(prefix="tvdeploy-graph-") as scratch:
        current = source
        if precision != Precision.FP32:
            current = Path(scratch) / "precision.onnx"
            derived.details.update(convert_precision(source, current, precision, input_spec.name, calibration))
        model = onnx.load(str(current))
        if graph.simplify:
            model = simplify(model, derived.details)
        if graph.embed_preprocess:
            model = embed_preprocess(model, preprocess, derived)
        if graph.embed_top_k is not None:
            model = embed_postprocess(model, graph.embed_top_k, len_classes(output_spec), derived)
        if graph.optimize is None:
            save_model(model, target)
        else:
            staged = Path(scratch) / "staged.onnx"
            save_model(model, staged)
            derived.optimized_graph = ort_optimize(staged, target, graph.optimize)
            derived.details["optimized_graph"] = {"level": graph.optimize, "external_data": EXTERNAL_DATA_FILE}
    derived.files = [name for name in (target.name, EXTERNAL_DATA_FILE) if (target.parent / name).is_file()]
    return derived


def len_classes(output_spec: OutputSpec) -> int:
    """The number of classes of a logits output."""
    if len(output_spec.shape) < 2 or not isinstance(output_spec.shape[1], int):
        raise ExportError(f"the output {output_spec.name} has no known number of classes: {output_spec.shape}")
    return int(output_spec.shape[1])


def save_model(model: Any, path: Path) -> None:
    """Save a ModelProto, with external data beside it when it is too large for one protobuf."""
    import onnx

    large = sum(t.ByteSize() for t in model.graph.initializer) > EXTERNAL_DATA_THRESHOLD
    onnx.save_model(model, str(path), save_as_external_data=large, location=EXTERNAL_DATA_FILE if large else None)


def simplify(model: Any, details: dict[str, Any]) -> Any:
    """onnxslim's simplification (constant folding, dead nodes, redundant ops); the node counts are recorded."""
    try:
        import onnxslim
    except ImportError as exc:
        raise ExportError("--simplify needs onnxslim", hint='pip install "tvdeploy[export]"') from exc
    before = len(model.graph.node)
    slimmed = onnxslim.slim(model)
    details["simplified"] = {
        "tool": f"onnxslim {getattr(onnxslim, '__version__', '')}".strip(),
        "nodes_before": before,
        "nodes_after": len(slimmed.graph.node),
    }
    logger.info("onnxslim: %d -> %d nodes", before, len(slimmed.graph.node))
    return slimmed


def _const(name: str, value: Any, dtype: Any) -> Any:
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def preprocess_graph(preprocess: PreprocessSpec, output_name: str, opset: int) -> Any:
    """A model from uint8 RGB images ``(N, H, W, 3)`` to the normalized ``(N, 3, h, w)`` float32 network input.

    Step for step what :class:`~tvdeploy.runtime.preprocess.ImagePreprocessor` does with Pillow: the shorter
    side to ``resize_size`` (the longer one truncated), or exactly (h, w); an antialiased resize on uint8
    (ONNX Runtime rounds like Pillow); torchvision's center crop (``round`` half to even); ``x / 255``,
    ``- mean``, ``/ std`` in float32.
    """
    from onnx import TensorProto, helper

    _check_embeddable(preprocess)
    crop_h, crop_w = preprocess.crop_hw
    size_inits, size_nodes = _resize_size_nodes(preprocess)
    step_inits, step_nodes = _resize_crop_normalize_nodes(preprocess, output_name)
    graph = helper.make_graph(
        size_nodes + step_nodes,
        "tvdeploy_preprocess",
        [helper.make_tensor_value_info(IMAGES_INPUT_NAME, TensorProto.UINT8, ["batch", "height", "width", 3])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", 3, crop_h, crop_w])],
        size_inits + step_inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _check_embeddable(preprocess: PreprocessSpec) -> None:
    """Refuse preprocessing the graph cannot reproduce: another interpolation, or a crop that needs padding."""
    crop_h, crop_w = preprocess.crop_hw
    if preprocess.interpolation not in _RESIZE_MODES:
        raise UserInputError(
            f"--embed-preprocess reproduces {' and '.join(_RESIZE_MODES)} resizing, not {preprocess.interpolation}",
            hint="keep the preprocessing in the runtime (no --embed-preprocess) for this model",
        )
    if len(preprocess.resize_size) == 2 and (crop_h > preprocess.resize_size[0] or crop_w > preprocess.resize_size[1]):
        raise UserInputError(
            f"--embed-preprocess cannot pad: the crop {crop_h}x{crop_w} is larger than the resize "
            f"{preprocess.resize_size[0]}x{preprocess.resize_size[1]}",
            hint="choose a --crop-size no larger than --resize-size",
        )
    if len(preprocess.resize_size) == 1 and max(crop_h, crop_w) > preprocess.resize_size[0]:
        raise UserInputError(
            f"--embed-preprocess cannot pad: the crop {crop_h}x{crop_w} is larger than the shorter side "
            f"{preprocess.resize_size[0]}",
            hint="choose a --crop-size no larger than --resize-size",
        )


def _resize_size_nodes(preprocess: PreprocessSpec) -> tuple[list[Any], list[Any]]:
    """Initializers and nodes from the images to ``sizes_hw``, the (h, w) they are resized to: fixed, or the
    shorter side to ``resize_size`` with the longer one scaled and truncated (integer division)."""
    from onnx import helper

    p = _PRE
    inits = [_const(p + "i0", [0], np.int64), _const(p + "i2", [2], np.int64)]
    nodes = [
        helper.make_node("Transpose", [IMAGES_INPUT_NAME], [p + "nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Shape", [p + "nchw"], [p + "shape"]),
        helper.make_node("Slice", [p + "shape", p + "i0", p + "i2"], [p + "nc"]),
    ]
    if len(preprocess.resize_size) == 2:
        inits.append(_const(p + "hw", list(preprocess.resize_size), np.int64))
        nodes.append(helper.make_node("Identity", [p + "hw"], [p + "sizes_hw"]))
        return inits, nodes
    inits += [_const(p + "size", [preprocess.resize_size[0]], np.int64)]
    inits += [_const(p + "i3", [3], np.int64), _const(p + "i4", [4], np.int64)]
    nodes += [
        helper.make_node("Slice", [p + "shape", p + "i2", p + "i3"], [p + "h"]),
        helper.make_node("Slice", [p + "shape", p + "i3", p + "i4"], [p + "w"]),
        helper.make_node("Min", [p + "h", p + "w"], [p + "short"]),
        helper.make_node("Max", [p + "h", p + "w"], [p + "long"]),
        helper.make_node("Mul", [p + "size", p + "long"], [p + "size_long"]),
        helper.make_node("Div", [p + "size_long", p + "short"], [p + "new_long"]),  # int64: floor division
        helper.make_node("LessOrEqual", [p + "w", p + "h"], [p + "portrait"]),  # width <= height: width short
        helper.make_node("Where", [p + "portrait", p + "new_long", p + "size"], [p + "new_h"]),
        helper.make_node("Where", [p + "portrait", p + "size", p + "new_long"], [p + "new_w"]),
        helper.make_node("Concat", [p + "new_h", p + "new_w"], [p + "sizes_hw"], axis=0),
    ]
    return inits, nodes


def _resize_crop_normalize_nodes(preprocess: PreprocessSpec, output_name: str) -> tuple[list[Any], list[Any]]:
    """Initializers and nodes from ``sizes_hw`` to ``output_name``: the resize, the center crop (torchvision's
    ``round``, half to even) and ``(x / 255 - mean) / std``."""
    from onnx import TensorProto, helper

    p = _PRE
    crop_h, crop_w = preprocess.crop_hw
    inits = [
        _const(p + "crop", [crop_h, crop_w], np.int64),
        _const(p + "two", [2], np.int64),
        _const(p + "k255", 255.0, np.float32),
        _const(p + "mean", np.reshape(preprocess.mean, (1, 3, 1, 1)), np.float32),
        _const(p + "std", np.reshape(preprocess.std, (1, 3, 1, 1)), np.float32),
        _const(p + "axes", [2, 3], np.int64),
    ]
    nodes = [
        helper.make_node("Concat", [p + "nc", p + "sizes_hw"], [p + "sizes"], axis=0),
        helper.make_node(
            "Resize",
            [p + "nchw", "", "", p + "sizes"],
            [p + "resized"],
            mode=_RESIZE_MODES[preprocess.interpolation],
            antialias=int(preprocess.antialias),
            coordinate_transformation_mode="half_pixel",  # Pillow samples pixel centers
            cubic_coeff_a=-0.5,
        ),
        # start = round(excess / 2), half to even like Python's round, in int64 alone (excess >= 0: no padding), so
        # that the whole size computation stays a shape computation that a GPU provider leaves on the host: q =
        # excess // 2, plus one where excess is odd and q is odd
        helper.make_node("Sub", [p + "sizes_hw", p + "crop"], [p + "excess"]),
        helper.make_node("Div", [p + "excess", p + "two"], [p + "q"]),
        helper.make_node("Mul", [p + "q", p + "two"], [p + "q2"]),
        helper.make_node("Sub", [p + "excess", p + "q2"], [p + "odd_excess"]),
        helper.make_node("Div", [p + "q", p + "two"], [p + "qh"]),
        helper.make_node("Mul", [p + "qh", p + "two"], [p + "qh2"]),
        helper.make_node("Sub", [p + "q", p + "qh2"], [p + "odd_q"]),
        helper.make_node("Mul", [p + "odd_excess", p + "odd_q"], [p + "to_even"]),
        helper.make_node("Add", [p + "q", p + "to_even"], [p + "start"]),
        helper.make_node("Add", [p + "start", p + "crop"], [p + "end"]),
        helper.make_node("Slice", [p + "resized", p + "start", p + "end", p + "axes"], [p + "cropped"]),
        helper.make_node("Cast", [p + "cropped"], [p + "pixels"], to=TensorProto.FLOAT),
        helper.make_node("Div", [p + "pixels", p + "k255"], [p + "scaled"]),
        helper.make_node("Sub", [p + "scaled", p + "mean"], [p + "centered"]),
        helper.make_node("Div", [p + "centered", p + "std"], [output_name]),
    ]
    return inits, nodes


def _default_opset(model: Any) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise ExportError("the model imports no default ONNX opset")


def embed_preprocess(model: Any, preprocess: PreprocessSpec, derived: DerivedModel) -> Any:
    """Prepend :func:`preprocess_graph`: the model then takes uint8 RGB images of any size."""
    from onnx import compose

    opset = _default_opset(model)
    if opset < 18:
        raise UserInputError(
            f"--embed-preprocess needs opset 18 or newer (antialiased Resize); the model has {opset}",
            hint="export with --opset 18 (the default)",
        )
    tensor_input = derived.input_spec.name
    pre = preprocess_graph(preprocess, _PRE + "network_input", opset)
    pre.ir_version = model.ir_version
    merged = compose.merge_models(pre, model, io_map=[(_PRE + "network_input", tensor_input)])
    batch = derived.input_spec.shape[0]
    derived.input_spec = TensorSpec(
        IMAGES_INPUT_NAME,
        [batch, "height", "width", 3],
        dtype="uint8",
        layout=IMAGES_LAYOUT,
        max_batch=derived.input_spec.max_batch,
    )
    if isinstance(batch, int):
        merged.graph.input[0].type.tensor_type.shape.dim[0].dim_value = batch
    derived.details["embedded_preprocess"] = {
        "input": f"uint8 RGB {IMAGES_LAYOUT} (batch, height, width, 3), any height and width",
        "steps": preprocess.describe(),
        "resize": f"ONNX Resize opset {opset} on uint8, antialias={preprocess.antialias}",
    }
    return merged


def embed_postprocess(model: Any, k: int, num_classes: int, derived: DerivedModel) -> Any:
    """Append softmax + TopK(k): outputs the k best probabilities (best first) and their class indices."""
    from onnx import TensorProto, helper

    if k > num_classes:
        raise UserInputError(
            f"--embed-postprocess {k} asks for more classes than the model has ({num_classes})",
            hint=f"choose at most {num_classes}",
        )
    logits = derived.output_spec.name
    batch = derived.output_spec.shape[0] if derived.output_spec.shape else "batch"
    graph = model.graph
    kept = [o for o in graph.output if o.name != logits]
    del graph.output[:]
    graph.initializer.append(_const(_POST + "k", [k], np.int64))
    graph.node.extend(
        [
            helper.make_node("Softmax", [logits], [_POST + "softmax"], axis=1),
            helper.make_node(
                "TopK", [_POST + "softmax", _POST + "k"], [TOP_K_OUTPUT_NAME, TOP_K_INDICES_NAME], axis=1, sorted=1
            ),
        ]
    )
    graph.output.extend(
        [
            helper.make_tensor_value_info(TOP_K_OUTPUT_NAME, TensorProto.FLOAT, [batch, k]),
            helper.make_tensor_value_info(TOP_K_INDICES_NAME, TensorProto.INT64, [batch, k]),
            *kept,
        ]
    )
    derived.output_spec = OutputSpec(TOP_K_OUTPUT_NAME, meaning=TOP_K, shape=[batch, k], indices=TOP_K_INDICES_NAME)
    derived.details["embedded_postprocess"] = {"softmax": "axis 1", "top_k": k}
    return model


def ort_optimize(source: Path, target: Path, level: str) -> OptimizedGraph:
    """Save ONNX Runtime's optimized graph of ``source`` at ``level`` into ``target``, weights external."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    options.log_severity_level = 3  # the "hardware specific" warning of level all is recorded in the manifest
    with tempfile.TemporaryDirectory(prefix="tvdeploy-ort-") as scratch:
        optimized = Path(scratch) / target.name
        options.optimized_model_filepath = str(optimized)
        options.add_session_config_entry("session.optimized_model_external_initializers_file_name", EXTERNAL_DATA_FILE)
        options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
        try:
            ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own exception types
            raise ExportError(f"onnxruntime cannot optimize the graph: {exc}") from exc
        shutil.move(str(optimized), target)
        data = Path(scratch) / EXTERNAL_DATA_FILE
        if data.is_file():
            shutil.move(str(data), target.parent / EXTERNAL_DATA_FILE)
    logger.info("saved onnxruntime's graph optimized at level %s", level)
    return OptimizedGraph(level=level, onnxruntime=ort.__version__, host=cpu_signature())
