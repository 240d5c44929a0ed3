"""Multiply-accumulates of an ONNX classifier, counted from its graph: how much arithmetic one image costs.

Counted for the ops that hold nearly all of a CNN's or ViT's arithmetic, from ONNX's inferred shapes at batch 1:
``Conv`` (output elements x input channels per group x kernel area), ``ConvTranspose`` likewise, ``Gemm`` and
``MatMul`` (M x N x K, batched dimensions multiplied in). Elementwise ops, pooling and normalisation are left
out (a few percent at most on the catalog's models), as every MACs table of the field does.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def _static_batch_one(model: Any) -> Any:
    """The model with every symbolic input dimension set to 1, shapes inferred."""
    import onnx

    for graph_input in model.graph.input:
        for dim in graph_input.type.tensor_type.shape.dim:
            if not dim.HasField("dim_value"):
                dim.dim_value = 1
    return onnx.shape_inference.infer_shapes(model)


def _shapes(model: Any) -> dict[str, list[int]]:
    shapes = {}
    for value in (*model.graph.value_info, *model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = [d.dim_value for d in dims]
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def _conv_macs(node: Any, shapes: dict[str, list[int]]) -> int:
    weight, output = shapes.get(node.input[1]), shapes.get(node.output[0])
    if weight is None or output is None:
        return 0
    # weight (C_out, C_in / groups, kH, kW): each output element takes C_in / groups x kH x kW products
    return math.prod(output) * math.prod(weight[1:])


def _matmul_macs(node: Any, shapes: dict[str, list[int]]) -> int:
    a, b, out = shapes.get(node.input[0]), shapes.get(node.input[1]), shapes.get(node.output[0])
    if a is None or b is None or out is None:
        return 0
    transposed_a = any(attr.name == "transA" and attr.i for attr in node.attribute)
    k = a[-2] if node.op_type == "Gemm" and transposed_a else a[-1]
    return math.prod(out) * k


def count_macs(model_path: str | Path) -> int:
    """Multiply-accumulates one image costs in the ONNX model at ``model_path`` (see the module docstring)."""
    import onnx

    model = _static_batch_one(onnx.load(str(model_path), load_external_data=False))
    shapes = _shapes(model)
    total = 0
    for node in model.graph.node:
        if node.op_type in ("Conv", "ConvTranspose"):
            total += _conv_macs(node, shapes)
        elif node.op_type in ("Gemm", "MatMul"):
            total += _matmul_macs(node, shapes)
    return total
