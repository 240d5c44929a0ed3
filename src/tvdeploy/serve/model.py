"""The Open Inference Protocol adapter of the serving core: KServe's ``Model`` around a
:class:`~tvdeploy.serve.core.ModelCore`, turning protocol tensors into core calls and core outputs into protocol
responses (binary or JSON, the classification extension, inputs from shared memory)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model

from tvdeploy.serve.core import InputKind, ModelCore
from tvdeploy.serve.datatypes import DATATYPES, ENCODED_IMAGES_INPUT
from tvdeploy.serve.failures import InvalidRequest
from tvdeploy.serve.options import ServeOptions
from tvdeploy.serve.shared_memory import SharedMemoryRegistry, points_at_shared_memory

#: The requested-output parameter of Triton's classification extension (tritonclient's ``class_count``).
CLASSIFICATION_PARAMETER = "classification"


class ServedClassifier(Model):
    """An artifact served under its manifest's name on KServe's data plane (HTTP and gRPC)."""

    def __init__(self, artifact: Path, options: ServeOptions, shared_memory: SharedMemoryRegistry) -> None:
        self.core = ModelCore(artifact, options)
        super().__init__(self.core.name)
        self.shared_memory = shared_memory

    @property
    def manifest(self) -> Any:
        """The artifact's manifest."""
        return self.core.manifest

    @property
    def load_error(self) -> str | None:
        """Why loading failed (None while loading and once loaded)."""
        return self.core.load_error

    def load(self) -> bool:
        """Load and warm up the core, then report ready."""
        self.core.load()
        self.ready = self.core.ready  # KServe's Model keeps its own flag, which its data plane reads
        return self.ready

    def stop(self) -> None:
        """Release the core's model and batcher."""
        self.core.stop()

    def get_input_types(self) -> list[dict[str, Any]]:
        """The inputs the model metadata lists."""
        return self.core.input_types()

    def get_output_types(self) -> list[dict[str, Any]]:
        """The outputs the model metadata lists."""
        return self.core.output_types()

    async def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:
        """Check the request, queue it for a batched model call, answer in the protocol's terms."""
        return self._response(payload, await self._outputs(payload))

    async def _outputs(self, payload: InferRequest) -> dict[str, np.ndarray]:
        """The model's outputs for the request's one input (a tensor, or encoded images)."""
        if len(payload.inputs) != 1:
            raise InvalidRequest(
                f"send exactly one input, '{self.manifest.input.name}' or '{ENCODED_IMAGES_INPUT}'; "
                f"got {len(payload.inputs)}"
            )
        tensor = payload.inputs[0]
        kind = self.core.check_input(tensor.name, tensor.datatype, list(tensor.shape))
        data = await self._as_numpy(tensor)
        if kind is InputKind.IMAGES:
            return await self.core.image_outputs([_encoded(image) for image in data.reshape(-1)])
        return await self.core.infer([data])

    async def _as_numpy(self, tensor: Any) -> np.ndarray:
        """The input's data: from the request, or from the shared memory region it names (read off the loop)."""
        if points_at_shared_memory(tensor.parameters):
            return await self.shared_memory.read_async(
                tensor.name, tensor.datatype, list(tensor.shape), tensor.parameters
            )
        try:
            return np.asarray(tensor.as_numpy())
        except (ValueError, TypeError, struct.error) as exc:  # the data does not fill the shape or the datatype
            raise InvalidRequest(
                f"input '{tensor.name}': its data does not match shape {list(tensor.shape)} and datatype "
                f"{tensor.datatype} ({exc})"
            ) from exc

    def _response(self, payload: InferRequest, outputs: dict[str, np.ndarray]) -> InferResponse:
        requested = payload.request_outputs or []
        names = [r.name for r in requested] or list(self.manifest.output.names)
        # gRPC answers in raw output contents, as Triton does (all tritonclient.grpc reads); KServe would answer a
        # request without raw inputs (its tensors in shared memory) in typed contents
        binary = payload.use_binary_outputs or payload.from_grpc
        infer_outputs = []
        for name in names:
            self.core.check_output(name)
            request = next((r for r in requested if r.name == name), None)
            if request is not None and points_at_shared_memory(request.parameters):
                raise InvalidRequest(
                    f"output '{name}' is requested into shared memory, which this server does not write: "
                    "read it from the response (shared memory is for inputs)"
                )
            class_count = _class_count(request.parameters if request is not None else None)
            if class_count is None:
                values = np.ascontiguousarray(outputs[name])
                datatype = DATATYPES.get(str(values.dtype), "FP32")
            else:
                values, datatype = self.core.classification(outputs, name, class_count), "BYTES"
            infer_output = InferOutput(name=name, shape=list(values.shape), datatype=datatype)
            infer_output.set_data_from_numpy(values, binary_data=binary)
            infer_outputs.append(infer_output)
        return InferResponse(
            response_id=payload.id or "",
            model_name=self.name,
            infer_outputs=infer_outputs,
            use_binary_outputs=binary,
            requested_outputs=requested or None,
        )


def _encoded(item: Any) -> bytes:
    """One BYTES item as the encoded image: bytes as they are, text as its UTF-8 bytes."""
    if isinstance(item, str):
        return item.encode()
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    raise InvalidRequest(f"input '{ENCODED_IMAGES_INPUT}' holds a {type(item).__name__}, not encoded image bytes")


def _class_count(parameters: Any) -> int | None:
    """The ``classification`` parameter of a requested output (REST: a number; gRPC: an InferParameter)."""
    if not parameters or CLASSIFICATION_PARAMETER not in parameters:
        return None
    value = parameters[CLASSIFICATION_PARAMETER]
    value = getattr(value, "int64_param", value)
    try:
        count = int(value)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"class_count must be an integer, got {value!r}") from exc
    if count < 1:
        raise InvalidRequest(f"class_count must be >= 1, got {count}")
    return count
