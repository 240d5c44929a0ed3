"""The serving core of one artifact, protocol-neutral: loading and warm-up, the checks every request gets, image
decoding off the event loop, dynamic batching with its queue limit and timeout, and Triton's classification
strings. The Open Inference Protocol adapter (:mod:`tvdeploy.serve.model`, on KServe's ``Model``), gRPC (through
the same data plane) and the upload route all call this; none of it imports KServe."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from tvdeploy.errors import ImageError, TvdeployError
from tvdeploy.runtime import load
from tvdeploy.runtime.classifier import Classifier
from tvdeploy.runtime.images import image_pixels
from tvdeploy.runtime.manifest import Manifest, read_manifest
from tvdeploy.runtime.postprocess import Prediction, check_top_k, decode_outputs, top_k_indices
from tvdeploy.serve import metrics
from tvdeploy.serve.batching import DynamicBatcher, QueueFull
from tvdeploy.serve.datatypes import DATATYPES, ENCODED_IMAGES_INPUT, protocol_dims
from tvdeploy.serve.failures import InvalidRequest, Overloaded, RequestTimeout
from tvdeploy.serve.options import RETRY_AFTER_S, ServeOptions

logger = logging.getLogger(__name__)


class InputKind(StrEnum):
    """What a request's one input holds."""

    TENSOR = "tensor"  # the model's own input tensor
    IMAGES = "images"  # encoded image files (BYTES), decoded and preprocessed by the server


class ModelCore:
    """One artifact served under its manifest's name; ready only once loaded and warmed up."""

    def __init__(self, artifact: Path, options: ServeOptions) -> None:
        self.artifact = artifact
        self.options = options
        self.manifest: Manifest = read_manifest(artifact)  # read at start: a broken artifact fails early
        self.name = self.manifest.name
        self.classifier: Classifier | None = None
        self.batcher: DynamicBatcher | None = None
        #: why loading failed (the model then stays not ready); None while loading and once loaded
        self.load_error: str | None = None
        #: the threads that decode and classify requests' images on the GPU (``--decoder gpu``), else None
        self._device_calls: ThreadPoolExecutor | None = None

    # -- loading -----------------------------------------------------------------------------------------------
    def load(self) -> None:
        """Load the artifact, run one warm-up inference, then report ready (a failure is kept in ``load_error``
        and raised)."""
        try:
            self._load()
        except TvdeployError as exc:
            self.load_error = exc.message
            raise
        except Exception as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"
            raise

    def _load(self) -> None:
        self.classifier = load(
            self.artifact,
            provider=self.options.provider,
            max_pixels=self.options.max_pixels,
            batch_size=self.options.max_batch_size,
            session_config=self.options.session_config(),
            decoder=self.options.decoder,
        )
        self.classifier.outputs(self.manifest.input.example(1))  # warm-up: the first call allocates
        if self.classifier.device_pipeline is not None:  # requests' images decoded on the GPU, that many at once
            self._device_calls = ThreadPoolExecutor(
                max_workers=self.classifier.runner.concurrency, thread_name_prefix="tvdeploy-gpu-decode"
            )
        self.batcher = DynamicBatcher(
            self.name,
            self.classifier.outputs,
            max_batch_size=self.options.max_batch_size,
            max_queue_delay_s=self.options.max_queue_delay_ms / 1000,
            max_queue=self.options.max_queue,
            instances=max(self.options.instances, self.classifier.runner.concurrency),
            place_instances=self.options.pin_instances,
        )
        logger.info("model %s ready (%s, %s)", self.name, self.manifest.format, self.manifest.precision)

    @property
    def ready(self) -> bool:
        """Loaded, warmed up and batching."""
        return self.batcher is not None

    def stop(self) -> None:
        """Release the batcher's thread and the model."""
        if self.batcher is not None:
            self.batcher.close()
        if self._device_calls is not None:
            self._device_calls.shutdown(wait=True, cancel_futures=True)
        if self.classifier is not None:
            self.classifier.close()

    # -- metadata ----------------------------------------------------------------------------------------------
    def input_types(self) -> list[dict[str, Any]]:
        """The model's tensor input, and the alternative input of encoded images (one of them per request)."""
        spec = self.manifest.input
        return [
            {"name": spec.name, "datatype": DATATYPES.get(spec.dtype, spec.dtype), "shape": protocol_dims(spec.shape)},
            {"name": ENCODED_IMAGES_INPUT, "datatype": "BYTES", "shape": [-1]},
        ]

    def output_types(self) -> list[dict[str, Any]]:
        """The outputs: logits, or the probabilities and indices of an embedded top-k."""
        output = self.manifest.output
        types = [{"name": output.name, "datatype": "FP32", "shape": protocol_dims(output.shape)}]
        if output.is_top_k:
            types.append({"name": output.names[1], "datatype": "INT64", "shape": protocol_dims(output.shape)})
        return types

    # -- requests ----------------------------------------------------------------------------------------------
    def check_input(self, name: str, datatype: str, shape: Sequence[Any]) -> InputKind:
        """What the request's one input is, once its name, datatype and shape (not its data) are checked, and
        its rows are within one model call."""
        spec = self.manifest.input
        if any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in shape):
            raise InvalidRequest(f"input '{name}': shape {list(shape)} is not a list of sizes >= 0")
        if name == ENCODED_IMAGES_INPUT:
            if datatype != "BYTES":
                raise InvalidRequest(f"input '{ENCODED_IMAGES_INPUT}' takes BYTES (encoded images), got {datatype}")
            count = math.prod(shape)
            if count == 0:
                raise InvalidRequest(f"input '{ENCODED_IMAGES_INPUT}' holds no image")
            self.check_rows(count)
            return InputKind.IMAGES
        expected_type = DATATYPES.get(spec.dtype, spec.dtype)
        if name != spec.name:
            raise InvalidRequest(
                f"unknown input '{name}': model {self.name} takes '{spec.name}' "
                f"({expected_type} {protocol_dims(spec.shape)}) or '{ENCODED_IMAGES_INPUT}' (BYTES)"
            )
        if datatype != expected_type:
            raise InvalidRequest(f"input '{spec.name}' takes {expected_type}, got {datatype}")
        if len(shape) != len(spec.shape) or any(
            isinstance(want, int) and got != want for got, want in zip(shape[1:], spec.shape[1:], strict=False)
        ):
            raise InvalidRequest(
                f"input '{spec.name}' has shape {list(shape)}; model {self.name} takes {protocol_dims(spec.shape)}"
            )
        if shape[0] < 1:
            raise InvalidRequest(f"input '{spec.name}' holds no rows (shape {list(shape)})")
        self.check_rows(shape[0])
        return InputKind.TENSOR

    def check_rows(self, rows: int) -> None:
        """Refuse a request of more rows than one model call takes, before any of them is read or decoded."""
        if rows > self.options.max_batch_size:
            raise InvalidRequest(
                f"a request of {rows} rows is larger than this server's max batch size "
                f"{self.options.max_batch_size}: split it, or start the server with --max-batch-size {rows}"
            )

    def check_output(self, name: str) -> None:
        """Refuse an output the model does not give."""
        if name not in self.manifest.output.names:
            raise InvalidRequest(f"unknown output '{name}': model {self.name} gives {list(self.manifest.output.names)}")

    async def classify(self, images: Sequence[bytes], top_k: int) -> list[list[Prediction]]:
        """The runtime's top-k predictions for encoded images (the upload route)."""
        try:
            check_top_k(top_k, self.manifest.output, self.manifest.num_classes)
        except TvdeployError as exc:
            raise InvalidRequest(exc.message) from exc
        self.check_rows(len(images))
        outputs = await self.image_outputs(images)
        return decode_outputs(outputs, self.manifest.output, self.manifest.labels, top_k)

    async def infer(self, batches: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Queue the batches (whose rows the callers have checked with :meth:`check_rows`) for model calls."""
        if self.batcher is None:
            raise RuntimeError(f"model {self.name} is not loaded")
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

    async def image_outputs(self, images: Sequence[bytes]) -> dict[str, np.ndarray]:
        """The model's outputs for a request's encoded images (whose rows the caller has checked): decoded on the
        GPU and classified there in one call per image size where the server decodes on the GPU (``--decoder``),
        else decoded on the host and queued for batched model calls. One bad image fails the request."""
        if self.classifier is None or self.classifier.device_pipeline is None or self._device_calls is None:
            return await self.infer(await self.decode(images))
        pipeline, loop = self.classifier.device_pipeline, asyncio.get_running_loop()
        await self._check_request_pixels(images)
        try:
            outputs, errors = await asyncio.wait_for(
                loop.run_in_executor(self._device_calls, pipeline.outputs, images), self.options.request_timeout_s
            )
        except TimeoutError as exc:
            metrics.INFERENCE_ERRORS.labels(self.name, "timeout").inc()
            raise RequestTimeout(
                f"model {self.name} did not answer within {self.options.request_timeout_s:g} s"
            ) from exc
        failed = [error for error in errors if error is not None]
        if failed:
            metrics.INFERENCE_ERRORS.labels(self.name, "bad_image").inc()
            raise InvalidRequest(failed[0])
        return outputs

    async def _check_request_pixels(self, images: Sequence[bytes]) -> None:
        """Refuse a request whose images' headers hold more pixels than ``--max-request-pixels``."""
        if self.classifier is None or self.options.max_request_pixels is None:
            return
        loop = asyncio.get_running_loop()
        try:
            pixels = sum(await loop.run_in_executor(self.classifier.pool, self._header_pixels, images))
        except ImageError as exc:
            metrics.INFERENCE_ERRORS.labels(self.name, "bad_image").inc()
            raise InvalidRequest(exc.message) from exc
        if pixels > self.options.max_request_pixels:
            raise InvalidRequest(
                f"the request's {len(images)} image(s) hold {pixels:,} pixels, more than this server decodes "
                f"for one request ({self.options.max_request_pixels:,}): send fewer or smaller images, or "
                "start the server with a larger --max-request-pixels"
            )

    async def decode(self, images: Sequence[bytes]) -> list[np.ndarray]:
        """Decode and preprocess encoded images off the event loop, as the runtime does, once their headers say
        that the request's pixels fit the server's budget (``--max-request-pixels``): the model batches (one per
        image for a graph that takes images of any size)."""
        if self.classifier is None:
            raise RuntimeError(f"model {self.name} is not loaded")
        classifier, loop = self.classifier, asyncio.get_running_loop()
        await self._check_request_pixels(images)
        try:
            arrays = await asyncio.gather(
                *(loop.run_in_executor(classifier.pool, classifier.preprocess, image) for image in images)
            )
        except ImageError as exc:
            metrics.INFERENCE_ERRORS.labels(self.name, "bad_image").inc()
            raise InvalidRequest(exc.message) from exc
        if self.manifest.input.takes_images:  # one batch per image size
            return [array[None] for array in arrays]
        return [np.stack(arrays)]

    def _header_pixels(self, images: Sequence[bytes]) -> list[int]:
        """Each image's pixel count from its header alone (an image that cannot be read fails the request)."""
        return [image_pixels(image, self.options.max_pixels) for image in images]

    def classification(self, outputs: dict[str, np.ndarray], name: str, k: int) -> np.ndarray:
        """Triton's classification extension: the top ``k`` of an output as ``"<value>:<index>:<label>"``."""
        spec, labels = self.manifest.output, self.manifest.labels
        if spec.is_top_k:
            if name != spec.name:
                raise InvalidRequest(f"class_count applies to '{spec.name}', not '{name}'")
            if k > (spec.top_k or 0):
                raise InvalidRequest(f"class_count {k} is more than the {spec.top_k} classes this graph's top-k keeps")
            values, indices = outputs[spec.name][:, :k], outputs[spec.names[1]][:, :k].astype(np.int64)
        else:
            if not 1 <= k <= len(labels):
                raise InvalidRequest(f"class_count {k} is out of range for a model with {len(labels)} classes")
            scores = outputs[name]
            indices = top_k_indices(scores, k)
            values = np.take_along_axis(scores, indices, axis=1)
        strings = [
            [f"{value:f}:{index}:{labels[index]}".encode() for value, index in zip(row_v, row_i, strict=True)]
            for row_v, row_i in zip(values, indices, strict=True)
        ]
        return np.array(strings, dtype=np.object_)
