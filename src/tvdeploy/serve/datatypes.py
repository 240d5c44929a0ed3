"""Names in the Open Inference Protocol: tensor datatypes (Triton's config prefixes them with ``TYPE_``) and the
input of encoded images."""

from __future__ import annotations

#: numpy dtype names (the manifest's) -> Open Inference Protocol datatypes.
DATATYPES = {"float32": "FP32", "float16": "FP16", "uint8": "UINT8", "int64": "INT64", "int32": "INT32"}

#: The input that takes encoded images (JPEG, PNG, ...) as BYTES, decoded and preprocessed like the runtime.
ENCODED_IMAGES_INPUT = "image_bytes"
