"""Tensor datatypes in the Open Inference Protocol's names (Triton's config prefixes them with ``TYPE_``)."""

from __future__ import annotations

#: numpy dtype names (the manifest's) -> Open Inference Protocol datatypes.
DATATYPES = {"float32": "FP32", "float16": "FP16", "uint8": "UINT8", "int64": "INT64", "int32": "INT32"}
