"""Names in the Open Inference Protocol: tensor datatypes (Triton's config prefixes them with ``TYPE_``) and the
input of encoded images."""

from __future__ import annotations

from collections.abc import Sequence

#: numpy dtype names (the manifest's) -> Open Inference Protocol datatypes.
DATATYPES = {"float32": "FP32", "float16": "FP16", "uint8": "UINT8", "int64": "INT64", "int32": "INT32"}

#: Open Inference Protocol datatypes -> numpy dtype names (BYTES has none: its items are length-prefixed).
NUMPY_DTYPES = {datatype: dtype for dtype, datatype in DATATYPES.items()}

#: Where the image upload endpoint lives (outside the protocol's /v2 namespace).
CLASSIFY_ROUTE = "/tvdeploy/models/{model_name}/classify"

#: The input that takes encoded images (JPEG, PNG, ...) as BYTES, decoded and preprocessed like the runtime.
ENCODED_IMAGES_INPUT = "image_bytes"


def protocol_dims(shape: Sequence[int | str], without_batch: bool = False) -> list[int]:
    """A manifest shape in the protocol's terms: named (dynamic) axes as -1; ``without_batch`` leaves the batch
    axis out, as Triton's config wants for a model that Triton batches."""
    kept = shape[1:] if without_batch else shape
    return [d if isinstance(d, int) else -1 for d in kept]
