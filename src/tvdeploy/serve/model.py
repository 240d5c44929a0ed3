"""One artifact as a KServe model: Open Inference Protocol tensors in and out, dynamic batching, image bytes,
and Triton's classification extension."""

from __future__ import annotations

import asyncio
import logging
import math
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model
from kserve.errors import InvalidInput

from tvdeploy.errors import ImageError
from tvdeploy.runtime import load
from tvdeploy.runtime.classifier import Classifier
from tvdeploy.runtime.images import image_pixels
from tvdeploy.runtime.manifest import Manifest, read_manifest
from tvdeploy.runtime.postprocess import Prediction, top_k_indices
from tvdeploy.serve import metrics
from tvdeploy.serve.batching import DynamicBatcher, QueueFull
from tvdeploy.serve.datatypes import DATATYPES, ENCODED_IMAGES_INPUT, protocol_dims
from tvdeploy.serve.errors import Overloaded, RequestTimeout
from tvdeploy.serve.options import RETRY_AFTER_S, ServeOptions
from tvdeploy.serve.shared_memory import SharedMemoryRegistry, points_at_shared_memory

logger = logging.getLogger(__name__)


class ServedClassifier(Model):
    """An artifact served under its manifest's name; ready only once loaded and warmed up."""

    def __init__(self, artifact: Path, options: ServeOptions, shared_memory: SharedMemoryRegistry) -> None:
        manifest = read_manifest(artifact)
        super().__init__(manifest.name)
        self.artifact = artifact
        self.options = options
        self.shared_memory = shared_memory
        self.manifest: Manifest = manifest
        self.classifier: Classifier | None = None
        self.batcher: DynamicBatcher | None = None
        #: why loading failed (the model then stays not ready); None while loading and once loaded
        self.load_error: str | None = None

    # -- loading -----------------------------------------------------------------------------------------------
    def load(self) -> bool:
        """Load the artifact, run one warm-up inference, then report ready."""
        self.classifier = load(
            self.artifact,
            provider=self.options.provider,
            max_pixels=self.options.max_pixels,
            batch_size=self.options.max_batch_size,
            session_config=self.options.session_config(),
        )
        self.classifier.outputs(self.manifest.input.example(1))  # warm-up: the first call allocates
        self.batcher = DynamicBatcher(
            self.name,
            self.classifier.outputs,
            max_batch_size=self.options.max_batch_size,
            max_queue_delay_s=self.options.max_queue_delay_ms / 1000,
            max_queue=self.options.max_queue,
            instances=self.options.instances,
            place_instances=self.options.pin_instances,
        )
        self.ready = True
        logger.info("model %s ready (%s, %s)", self.name, self.manifest.format, self.manifest.precision)
        random_weights = self.manifest.source.random_weights_warning(f"model {self.name}")
        if random_weights:
            logger.warning("%s", random_weights)
        return True

    def stop(self) -> None:
        """Release the batcher's thread and the model."""
        if self.batcher is not None:
            self.batcher.close()
        if self.classifier is not None:
            self.classifier.close()

    # -- metadata ----------------------------------------------------------------------------------------------
    def get_input_types(self) -> list[dict[str, Any]]:
        """The model's tensor input, and the alternative input of encoded images (one of them per request)."""
        spec = self.manifest.input
        return [
            {"name": spec.name, "datatype": DATATYPES.get(spec.dtype, spec.dtype), "shape": protocol_dims(spec.shape)},
            {"name": ENCODED_IMAGES_INPUT, "datatype": "BYTES", "shape": [-1]},
        ]

    def get_output_types(self) -> list[dict[str, Any]]:
        """The outputs: logits, or the probabilities and indices of an embedded top-k."""
        output = self.manifest.output
        if not output.is_top_k:
            return [{"name": output.name, "datatype": "FP32", "shape": protocol_dims(output.shape)}]
        return [
            {"name": output.name, "datatype": "FP32", "shape": protocol_dims(output.shape)},
            {"name": output.names[1], "datatype": "INT64", "shape": protocol_dims(output.shape)},
        ]

    # -- inference ---------------------------------------------------------------------------------------------
    async def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:
        """Validate the request, queue it for a batched model call, answer in the protocol's terms."""
        batches = await self._batches(payload)
        outputs = await self._infer(batches)
        return self._response(payload, outputs)

    async def classify(self, images: Sequence[bytes], top_k: int) -> list[list[Prediction]]:
        """The runtime's top-k predictions for encoded images (the upload endpoint)."""
        from tvdeploy.runtime.postprocess import check_top_k, decode_outputs

        try:
            check_top_k(top_k, self.manifest.output, self.manifest.num_classes)
        except Exception as exc:
            raise InvalidInput(str(getattr(exc, "message", exc))) from exc
        self._check_rows(len(images))
        outputs = await self._infer(await self._decoded(images))
        return decode_outputs(outputs, self.manifest.output, self.manifest.labels, top_k)

    def _check_rows(self, rows: int) -> None:
        """Refuse a request of more rows than one model call takes, before any of them is read or decoded."""
        if rows > self.options.max_batch_size:
            raise InvalidInput(
                f"a request of {rows} rows is larger than this server's max batch size "
                f"{self.options.max_batch_size}: split it, or start the server with --max-batch-size {rows}"
            )

    async def _infer(self, batches: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Queue the batches (whose rows the callers have checked with :meth:`_check_rows`) for model calls."""
        assert self.batcher is not None, "predict before load"
        try:
            parts = await asyncio.wait_for(
                asyncio.gather(*(self.batcher.submit(batch) for batch in batches)), self.options.request_timeout_s
            )
        except QueueFull as exc:
            metrics.INFERENCE_ERRORS.labels(self.name, "queue_full").inc()
            raise Overloaded(
                f"model {self.name} is overloaded: {exc}; retry in {RETRY_AFTER_S} s", RETRY_AFTER_S
            ) from exc
        except TimeoutError as exc:
            metrics.INFERENCE_ERRORS.labels(self.name, "timeout").inc()
            raise RequestTimeout(
                f"model {self.name} did not answer within {self.options.request_timeout_s:g} s"
            ) from exc
        if len(parts) == 1:  # one batch (a tensor request): its rows as they are, not copied
            return parts[0]
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

    async def _batches(self, payload: InferRequest) -> list[np.ndarray]:
        """The request's input as model batches (images of different sizes for an image-taking graph apart)."""
        spec = self.manifest.input
        if len(payload.inputs) != 1:
            raise InvalidInput(
                f"send exactly one input, '{spec.name}' or '{ENCODED_IMAGES_INPUT}'; got {len(payload.inputs)}"
            )
        tensor = payload.inputs[0]
        if any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in tensor.shape):
            raise InvalidInput(f"input '{tensor.name}': shape {list(tensor.shape)} is not a list of sizes >= 0")
        if tensor.name == ENCODED_IMAGES_INPUT:
            if tensor.datatype != "BYTES":
                raise InvalidInput(
                    f"input '{ENCODED_IMAGES_INPUT}' takes BYTES (encoded images), got {tensor.datatype}"
                )
            count = math.prod(tensor.shape)
            if count == 0:
                raise InvalidInput(f"input '{ENCODED_IMAGES_INPUT}' holds no image")
            self._check_rows(count)
            images = (await self._as_numpy(tensor)).reshape(-1)
            return await self._decoded([_encoded(image) for image in images])
        if tensor.name != spec.name:
            raise InvalidInput(
                f"unknown input '{tensor.name}': model {self.name} takes '{spec.name}' "
                f"({DATATYPES.get(spec.dtype, spec.dtype)} {protocol_dims(spec.shape)}) or '{ENCODED_IMAGES_INPUT}' (BYTES)"
            )
        expected_type = DATATYPES.get(spec.dtype, spec.dtype)
        if tensor.datatype != expected_type:
            raise InvalidInput(f"input '{spec.name}' takes {expected_type}, got {tensor.datatype}")
        shape = list(tensor.shape)
        if len(shape) != len(spec.shape) or any(
            isinstance(want, int) and got != want for got, want in zip(shape[1:], spec.shape[1:], strict=False)
        ):
            raise InvalidInput(
                f"input '{spec.name}' has shape {shape}; model {self.name} takes {protocol_dims(spec.shape)}"
            )
        if shape[0] < 1:
            raise InvalidInput(f"input '{spec.name}' holds no rows (shape {shape})")
        self._check_rows(shape[0])
        return [await self._as_numpy(tensor)]

    async def _as_numpy(self, tensor: Any) -> np.ndarray:
        """The input's data: from the request, or from the shared memory region it names (read off the loop)."""
        if points_at_shared_memory(tensor.parameters):
            return await self.shared_memory.read_async(
                tensor.name, tensor.datatype, list(tensor.shape), tensor.parameters
            )
        try:
            return np.asarray(tensor.as_numpy())
        except InvalidInput:
            raise
        except (ValueError, TypeError, struct.error) as exc:  # the data does not fill the shape or the datatype
            raise InvalidInput(
                f"input '{tensor.name}': its data does not match shape {list(tensor.shape)} and datatype "
                f"{tensor.datatype} ({exc})"
            ) from exc

    async def _decoded(self, images: Sequence[bytes]) -> list[np.ndarray]:
        """Decode and preprocess encoded images off the event loop, as the runtime does, once their headers say
        that the request's pixels fit the server's budget (``--max-request-pixels``)."""
        assert self.classifier is not None
        loop = asyncio.get_running_loop()
        try:
            if self.options.max_request_pixels is not None:
                pixels = sum(await loop.run_in_executor(self.classifier.pool, self._header_pixels, images))
                if pixels > self.options.max_request_pixels:
                    raise InvalidInput(
                        f"the request's {len(images)} image(s) hold {pixels:,} pixels, more than this server decodes "
                        f"for one request ({self.options.max_request_pixels:,}): send fewer or smaller images, or "
                        "start the server with a larger --max-request-pixels"
                    )
            arrays = await asyncio.gather(
                *(loop.run_in_executor(self.classifier.pool, self.classifier.preprocess, image) for image in images)
            )
        except ImageError as exc:
            metrics.INFERENCE_ERRORS.labels(self.name, "bad_image").inc()
            raise InvalidInput(exc.message) from exc
        if self.manifest.input.takes_images:  # one batch per image size
            return [array[None] for array in arrays]
        return [np.stack(arrays)]

    def _header_pixels(self, images: Sequence[bytes]) -> list[int]:
        """Each image's pixel count from its header alone (an image that cannot be read fails the request)."""
        return [image_pixels(image, self.options.max_pixels) for image in images]

    def _response(self, payload: InferRequest, outputs: dict[str, np.ndarray]) -> InferResponse:
        output_spec = self.manifest.output
        requested = payload.request_outputs or []
        names = [r.name for r in requested] or list(output_spec.names)
        # gRPC answers in raw output contents, as Triton does (all tritonclient.grpc reads); KServe would answer a
        # request without raw inputs (its tensors in shared memory) in typed contents
        binary = payload.use_binary_outputs or payload.from_grpc
        infer_outputs = []
        for name in names:
            if name not in output_spec.names:
                raise InvalidInput(f"unknown output '{name}': model {self.name} gives {list(output_spec.names)}")
            request = next((r for r in requested if r.name == name), None)
            if request is not None and points_at_shared_memory(request.parameters):
                raise InvalidInput(
                    f"output '{name}' is requested into shared memory, which this server does not write: "
                    "read it from the response (shared memory is for inputs)"
                )
            class_count = _class_count(request.parameters if request is not None else None)
            if class_count is None:
                values = np.ascontiguousarray(outputs[name])
                datatype = DATATYPES.get(str(values.dtype), "FP32")
            else:
                values = self._classification(outputs, name, class_count)
                datatype = "BYTES"
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

    def _classification(self, outputs: dict[str, np.ndarray], name: str, k: int) -> np.ndarray:
        """Triton's classification extension: the top ``k`` of an output as ``"<value>:<index>:<label>"``."""
        spec, labels = self.manifest.output, self.manifest.labels
        if spec.is_top_k:
            if name != spec.name:
                raise InvalidInput(f"class_count applies to '{spec.name}', not '{name}'")
            if k > (spec.top_k or 0):
                raise InvalidInput(f"class_count {k} is more than the {spec.top_k} classes this graph's top-k keeps")
            values, indices = outputs[spec.name][:, :k], outputs[spec.names[1]][:, :k].astype(np.int64)
        else:
            if not 1 <= k <= len(labels):
                raise InvalidInput(f"class_count {k} is out of range for a model with {len(labels)} classes")
            scores = outputs[name]
            indices = top_k_indices(scores, k)
            values = np.take_along_axis(scores, indices, axis=1)
        strings = [
            [f"{value:f}:{index}:{labels[index]}".encode() for value, index in zip(row_v, row_i, strict=True)]
            for row_v, row_i in zip(values, indices, strict=True)
        ]
        return np.array(strings, dtype=np.object_)


def _encoded(item: Any) -> bytes:
    """One BYTES item as the encoded image: bytes as they are, text as its UTF-8 bytes."""
    if isinstance(item, str):
        return item.encode()
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    raise InvalidInput(f"input '{ENCODED_IMAGES_INPUT}' holds a {type(item).__name__}, not encoded image bytes")


#: The requested-output parameter of Triton's classification extension (tritonclient's ``class_count``).
CLASSIFICATION_PARAMETER = "classification"


def _class_count(parameters: Any) -> int | None:
    """The ``classification`` parameter of a requested output (REST: a number; gRPC: an InferParameter)."""
    if not parameters or CLASSIFICATION_PARAMETER not in parameters:
        return None
    value = parameters[CLASSIFICATION_PARAMETER]
    value = getattr(value, "int64_param", value)
    try:
        count = int(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"class_count must be an integer, got {value!r}") from exc
    if count < 1:
        raise InvalidInput(f"class_count must be >= 1, got {count}")
    return count
