"""The high-level runtime API: ``load(artifact_dir).predict(images)``.

Needs only onnxruntime, NumPy and Pillow for ONNX artifacts; TorchScript and
``.pt2`` artifacts import torch when loaded.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from tvdeploy.errors import ArtifactError, ImageError, UserInputError
from tvdeploy.runtime.decoder import ImageDecoder
from tvdeploy.runtime.deployment import apply_deployment
from tvdeploy.runtime.gpu_decode import DecoderFidelity, DecoderKind, GpuImageDecoder, resolve_decoder
from tvdeploy.runtime.gpu_pipeline import DevicePipeline
from tvdeploy.runtime.host import usable_cores
from tvdeploy.runtime.images import DEFAULT_MAX_PIXELS, ImageSource, check_decode_mode, describe_source
from tvdeploy.runtime.manifest import Manifest, read_manifest, verify_artifact_files
from tvdeploy.runtime.postprocess import Prediction, check_top_k, decode_outputs
from tvdeploy.runtime.providers import SessionConfig
from tvdeploy.runtime.runners import Runner, runner_for_artifact
from tvdeploy.runtime.runners.base import infer_in_batches, interface_mismatches

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 8
#: Batches handed to the GPU pipeline at once by ``predict_stream`` (decoding overlaps the model within a call).
_GPU_BATCHES_PER_CALL = 4


@dataclass(frozen=True)
class PredictionResult:
    """The outcome for one input of a stream: its predictions, or the error that stopped it."""

    source: str
    predictions: list[Prediction] | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the input was predicted."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """``{"path", "predictions": [...]}`` or ``{"path", "error"}``."""
        if self.error is not None:
            return {"path": self.source, "error": self.error}
        return {"path": self.source, "predictions": [p.to_dict() for p in self.predictions or []]}


class Classifier:
    """An artifact ready to classify images: preprocessing, the model, softmax and top-k."""

    def __init__(
        self,
        artifact_dir: Path,
        manifest: Manifest,
        runner: Runner,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        exif_transpose: bool = True,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        decode_workers: int | None = None,
        decode: str = "exact",
        decoder: str = "cpu",
    ) -> None:
        if batch_size < 1:
            raise UserInputError(f"batch size must be >= 1, got {batch_size}")
        self.artifact_dir = artifact_dir
        self.manifest = manifest
        self.runner = runner
        self.batch_size = batch_size
        self.decode_workers = decode_workers
        self.decoder = ImageDecoder(manifest, exif_transpose=exif_transpose, max_pixels=max_pixels, decode=decode)
        self.takes_images = manifest.input.takes_images
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        #: where images are decoded and preprocessed on the model's GPU (``decoder`` gpu or auto), else None
        self.device_pipeline: DevicePipeline | None = None
        #: the GPU path's agreement with Pillow's on the bundled photos, where it was measured
        self.decoder_fidelity: DecoderFidelity | None = None
        provider = str(getattr(runner, "provider", "cpu"))
        if resolve_decoder(decoder, self.takes_images, runner.memory, provider) == DecoderKind.GPU:
            self._start_gpu_decoding(decoder, exif_transpose, max_pixels)

    def _start_gpu_decoding(self, requested: str, exif_transpose: bool, max_pixels: int | None) -> None:
        """Decode on the GPU once the bundled photos pass the gate there (``gpu``: else an error; ``auto``: else
        the CPU path, saying why)."""
        device = int(getattr(getattr(self.runner, "device", None), "index", 0))
        # the gate's photos are tvdeploy's own: no pixel limit for them, and the exact Pillow path as the reference
        gpu_decoder = GpuImageDecoder(device, self.decoder, exif_transpose=exif_transpose, max_pixels=None)
        pipeline = DevicePipeline(self.runner, self.manifest, gpu_decoder, self.batch_size)
        reference = ImageDecoder(self.manifest, exif_transpose=exif_transpose, max_pixels=None)
        fidelity = pipeline.fidelity(lambda photos, k: self.predict_arrays([reference(p) for p in photos], k))
        gpu_decoder.max_pixels = max_pixels
        self.decoder_fidelity = fidelity
        if not fidelity.passed:
            if requested == DecoderKind.GPU:
                raise UserInputError(
                    f"--decoder gpu: {fidelity.describe()}: below the gate", hint="use --decoder cpu (Pillow)"
                )
            logger.warning("decoder auto: decoding on the CPU: %s: below the gate", fidelity.describe())
            return
        logger.info("decoding on GPU %d (nvImageCodec): %s", device, fidelity.describe())
        self.device_pipeline = pipeline

    @property
    def labels(self) -> list[str]:
        """Class labels, in output order."""
        return self.manifest.labels

    def __enter__(self) -> "Classifier":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the model and the decoding threads."""
        if self.device_pipeline is not None:
            self.device_pipeline.close()
        self.runner.deactivate()
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    @property
    def pool(self) -> ThreadPoolExecutor:
        """The threads that decode and preprocess (created on first use, once, whichever thread gets there first)."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self.decode_workers or usable_cores(), thread_name_prefix="tvdeploy-decode"
                )
            return self._pool

    def preprocess(self, image: ImageSource) -> np.ndarray:
        """Decode and preprocess one image into the model's input: the (3, H, W) float32 network input, or the
        (H, W, 3) uint8 RGB image itself for an artifact that preprocesses in its graph."""
        return self.decoder(image)

    def outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """The model's named outputs for a batch of any N (cut to what the artifact's batch axis admits, and on
        parallel streams into chunks of :attr:`batch_size` that run at once): (N, 3, H, W) float32 tensors, or
        (N, H, W, 3) uint8 images for an artifact that takes images."""
        dtype = np.uint8 if self.takes_images else np.float32
        return infer_in_batches(
            self.runner,
            self.manifest.input,
            self.manifest.output.names,
            np.ascontiguousarray(batch, dtype=dtype),
            stream_batch=self.batch_size,
        )

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """The scores for a batch (see :meth:`outputs`): logits, or the top-k probabilities of an artifact whose
        graph ends in softmax + top-k."""
        return self.outputs(batch)[self.manifest.output.name]

    def predict_arrays(self, arrays: Sequence[np.ndarray], top_k: int = 5) -> list[list[Prediction]]:
        """Top-k predictions for model inputs made by :meth:`preprocess`, in order. Images of different sizes
        run in separate calls (a batch of images shares one size)."""
        results: list[list[Prediction]] = []
        for group in _same_shape_runs(arrays):
            results.extend(decode_outputs(self.outputs(self._stack(group)), self.manifest.output, self.labels, top_k))
        return results

    def _stack(self, group: list[np.ndarray]) -> np.ndarray:
        """One batch of rows, stacked where the runner copies from fastest (pinned staging on a GPU)."""
        dtype = np.uint8 if self.takes_images else np.float32
        staging = self.runner.staging(self.manifest.input.name, (len(group), *group[0].shape), dtype)
        return np.stack(group, out=staging) if staging is not None else np.stack(group)

    def predict(self, images: ImageSource | Sequence[ImageSource], top_k: int = 5) -> list[list[Prediction]]:
        """Top-k predictions per image, best first, in input order; batches internally.

        A single image is accepted too (one list in the result). A bad image raises
        :class:`~tvdeploy.errors.ImageError`; use :meth:`predict_stream` to get
        per-input errors instead.
        """
        check_top_k(top_k, self.manifest.output, len(self.labels))
        if _is_single(images):
            images = [images]  # type: ignore[list-item]
        if self.device_pipeline is not None:
            results = []
            for chunk in _chunks(list(images), self.batch_size):  # type: ignore[arg-type]
                for answer in self.device_pipeline.predict(chunk, top_k):
                    if isinstance(answer, str):
                        raise ImageError(answer)
                    results.append(answer)
            return results
        return self._predict_on_host(images, top_k)  # type: ignore[arg-type]

    def _predict_on_host(self, images: Sequence[ImageSource], top_k: int) -> list[list[Prediction]]:
        """:meth:`predict` with decoding and preprocessing on the host (Pillow, NumPy)."""
        results: list[list[Prediction]] = []
        # a batch per stream at a time: on parallel streams, outputs() runs the batches of a chunk at once
        for chunk in _chunks(list(images), self.batch_size * self.runner.concurrency):
            arrays = [self.preprocess(chunk[0])] if len(chunk) == 1 else list(self.pool.map(self.preprocess, chunk))
            results.extend(self.predict_arrays(arrays, top_k))
        return results

    def predict_stream(
        self, sources: Iterable[ImageSource], top_k: int = 5, executor: Executor | None = None
    ) -> Iterator[PredictionResult]:
        """Predict a stream of inputs; yields one result per input, in order, as batches complete.

        Decoding and preprocessing run in a thread pool ahead of the model so that it
        is not starved; on a runner with parallel streams that many batches run at once. A bad input yields a
        result with ``error`` set and the others go on.
        """
        check_top_k(top_k, self.manifest.output, len(self.labels))
        if self.device_pipeline is not None:
            yield from self._stream_on_device(sources, top_k)
            return
        pool = executor or self.pool
        streams = self.runner.concurrency
        iterator = iter(sources)
        # keep a batch of decoding in flight ahead of each batch the model runs
        pending = [(s, pool.submit(self._decode, s)) for s in islice(iterator, (streams + 1) * self.batch_size)]
        in_flight: deque[tuple[list[tuple[ImageSource, np.ndarray | str]], Future[list[list[Prediction]]]]] = deque()
        while pending or in_flight:
            while pending and len(in_flight) < streams:
                chunk, pending = pending[: self.batch_size], pending[self.batch_size :]
                pending.extend((s, pool.submit(self._decode, s)) for s in islice(iterator, self.batch_size))
                decoded = [(source, future.result()) for source, future in chunk]
                good = [arr for _, arr in decoded if isinstance(arr, np.ndarray)]
                in_flight.append((decoded, self._run_predictions(good, top_k, streams)))
            decoded, model_call = in_flight.popleft()
            predictions = iter(model_call.result())
            for source, arr in decoded:
                if isinstance(arr, np.ndarray):
                    yield PredictionResult(describe_source(source), predictions=next(predictions))
                else:
                    yield PredictionResult(describe_source(source), error=arr)

    def _stream_on_device(self, sources: Iterable[ImageSource], top_k: int) -> Iterator[PredictionResult]:
        """:meth:`predict_stream` with decoding on the GPU, a batch of files at a time."""
        assert self.device_pipeline is not None
        iterator = iter(sources)
        # a few batches per call, so that the next batch decodes while the current one runs through the model
        while chunk := list(islice(iterator, self.batch_size * _GPU_BATCHES_PER_CALL)):
            for source, answer in zip(chunk, self.device_pipeline.predict(chunk, top_k), strict=True):
                if isinstance(answer, str):
                    yield PredictionResult(describe_source(source), error=answer)
                else:
                    yield PredictionResult(describe_source(source), predictions=answer)

    def _run_predictions(self, arrays: list[np.ndarray], top_k: int, streams: int) -> Future[list[list[Prediction]]]:
        """One batch's predictions: on a stream thread where the runner has parallel streams (the caller goes on
        forming the next batch), else here and now."""
        if streams > 1:
            return self.runner.stream_pool.submit(self.predict_arrays, arrays, top_k)
        done: Future[list[list[Prediction]]] = Future()
        try:
            done.set_result(self.predict_arrays(arrays, top_k))
        except Exception as exc:  # raised where the result is read, as from a stream thread
            done.set_exception(exc)
        return done

    def _decode(self, source: ImageSource) -> np.ndarray | str:
        try:
            return self.preprocess(source)
        except ImageError as exc:
            return exc.message
        except Exception as exc:  # one unexpected decoder failure must not stop the stream
            logger.debug("unexpected error decoding %s", describe_source(source), exc_info=True)
            return f"{describe_source(source)}: {type(exc).__name__}: {exc}"


def _is_single(images: Any) -> bool:
    return (
        isinstance(images, (str, bytes, bytearray, memoryview, Path, np.ndarray))
        or hasattr(images, "read")
        or type(images).__module__.startswith("PIL.")
    )


def _same_shape_runs(arrays: Sequence[np.ndarray]) -> Iterator[list[np.ndarray]]:
    """Consecutive arrays of one shape, in order."""
    run: list[np.ndarray] = []
    for array in arrays:
        if run and array.shape != run[0].shape:
            yield run
            run = []
        run.append(array)
    if run:
        yield run


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def load(
    artifact_dir: str | Path,
    provider: str | None = None,
    *,
    verify: bool = True,
    session_config: SessionConfig | None = None,
    batch_size: int | None = None,
    exif_transpose: bool = True,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    decode_workers: int | None = None,
    decode: str = "exact",
    decoder: str = "cpu",
) -> Classifier:
    """Load an artifact directory for inference.

    Args:
        artifact_dir: the directory ``tvdeploy export`` wrote.
        provider: ``cpu``, ``cuda``, ``tensorrt``, ``openvino`` or ``auto``; which apply depends on the format.
            ``None``: the deployment record's (``tvdeploy tune``) where this host offers it, else ``cpu``.
        verify: check the model files against the manifest's sha256 first (refuse tampered files).
        session_config: ONNX Runtime threads, graph optimization level and provider options (threads left
            open take the manifest's ``deployment`` record's, from ``tvdeploy tune``).
        batch_size: images per model call in :meth:`Classifier.predict` / ``predict_stream`` (default: the
            deployment record's, else 8).
        exif_transpose: apply EXIF orientation when decoding.
        max_pixels: refuse larger images (decompression bombs); ``None`` for no limit.
        decode_workers: threads that decode and preprocess ahead of the model (default: one per usable
            core; more only oversubscribe the cores the CPU provider already runs on).
        decode: ``exact`` (default; within 1e-5 of torchvision) or ``fast`` (JPEGs decoded at a reduced scale
            and large images box-reduced to the size the resize needs: much faster on phone photos, not exact).
        decoder: ``cpu`` (Pillow), ``gpu`` (nvImageCodec on the model's GPU, for an artifact that takes uint8
            images; an error where it cannot run or fails its gate on the photos) or ``auto`` (``gpu`` where it
            can, else ``cpu``, logged); see :mod:`tvdeploy.runtime.gpu_decode`.
    """
    check_decode_mode(decode)  # before the model is loaded
    directory = Path(artifact_dir)
    manifest = read_manifest(directory)
    if verify:
        verify_artifact_files(directory, manifest)
    random_weights = manifest.source.random_weights_warning(str(artifact_dir))
    if random_weights:  # said by every way in: predict, serve, Ray's driver, the Python API
        logger.warning("warning: %s", random_weights)
    applied = apply_deployment(manifest, session_config, batch_size, provider)
    runner = runner_for_artifact(directory, applied.manifest, provider=applied.provider, config=applied.session_config)
    runner.activate()
    problems = interface_mismatches(runner, manifest.input, manifest.output)
    if problems:
        runner.deactivate()
        raise ArtifactError(
            f"{directory}'s manifest does not describe its model: " + "; ".join(problems),
            hint="re-export the artifact, or restore the manifest export wrote",
        )
    try:
        return Classifier(
            directory,
            manifest,
            runner,
            batch_size=applied.batch_size or DEFAULT_BATCH_SIZE,
            exif_transpose=exif_transpose,
            max_pixels=max_pixels,
            decode_workers=decode_workers,
            decode=decode,
            decoder=decoder,
        )
    except BaseException:  # a decoder that cannot run: the model goes with it
        runner.deactivate()
        raise
