"""Images decoded on the GPU, classified on the GPU: only the top-k comes back to the host.

A batch of encoded images is decoded by :class:`~tvdeploy.runtime.gpu_decode.GpuImageDecoder` into device memory;
the images of one size are gathered, with device-to-device copies, into the runner's device input buffer for that
batch shape (:meth:`~tvdeploy.runtime.runners.base.Runner.device_input`) and the artifact's graph (which takes uint8
images: ``--embed-preprocess``) resizes, crops, normalizes and classifies them there. An image Pillow decoded (a
format nvImageCodec does not) joins its size's batch with a host-to-device copy.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from tvdeploy.runtime.device_memory import is_contiguous_on_device
from tvdeploy.runtime.gpu_decode import (
    DecodedBatch,
    DecoderFidelity,
    EncodedImage,
    GpuImageDecoder,
    ReadItem,
    decoder_fidelity,
)
from tvdeploy.runtime.images import ImageSource
from tvdeploy.runtime.manifest import Manifest
from tvdeploy.runtime.photos import photo_paths
from tvdeploy.runtime.postprocess import Prediction, decode_outputs
from tvdeploy.runtime.runners import Runner

logger = logging.getLogger(__name__)


#: Decoded pixels one decoding run may hold on the device (RGB, 3 bytes each: 384 MiB), so that a folder of
#: 12-megapixel photos at batch 256 does not ask the GPU for 9 GB at once.
MAX_RUN_PIXELS = 128 * 1024 * 1024


class DevicePipeline:
    """Classify encoded images with decoding and preprocessing on the model's GPU.

    The inputs of a call are cut into runs of at most ``batch_size`` images and :data:`MAX_RUN_PIXELS` decoded
    pixels (from their headers); the next run is decoded on the pipeline's own thread while the current one runs
    through the model.

    Args:
        runner: an active runner on a GPU (its :attr:`~Runner.memory` is not None).
        manifest: the artifact's manifest (an input that takes uint8 images).
        decoder: the GPU decoder.
        batch_size: images per model call (cut further to what the artifact's batch axis admits).
    """

    def __init__(self, runner: Runner, manifest: Manifest, decoder: GpuImageDecoder, batch_size: int) -> None:
        memory = runner.memory
        if memory is None:
            raise ValueError("a device pipeline needs a runner on a GPU")
        self.runner, self.manifest, self.decoder, self.memory = runner, manifest, decoder, memory
        spec = manifest.input
        self.fixed_batch = spec.fixed_batch
        self.batch_size = spec.fixed_batch or min(batch_size, spec.max_batch or batch_size)
        self._decoding: ThreadPoolExecutor | None = None  # made by the first call with more than one run

    def close(self) -> None:
        """Stop the decoding thread (where one was started)."""
        if self._decoding is not None:
            self._decoding.shutdown(wait=True, cancel_futures=True)

    def predict(self, sources: Sequence[ImageSource], top_k: int) -> list[list[Prediction] | str]:
        """Per source, in order, its top-k predictions or the error that stopped it (the others go on)."""
        outputs, errors = self.outputs(sources)
        predictions = iter(
            decode_outputs(outputs, self.manifest.output, self.manifest.labels, top_k) if outputs else []
        )
        return [error if error is not None else next(predictions) for error in errors]

    def outputs(self, sources: Sequence[ImageSource]) -> tuple[dict[str, np.ndarray], list[str | None]]:
        """The model's outputs for the sources that decoded, in order (empty where none did), and per source the
        error that stopped it or None."""
        read = self.decoder.read(sources)
        errors: list[str | None] = [item if isinstance(item, str) else None for item in read]
        runs = self._runs(read)
        rows: dict[int, dict[str, np.ndarray]] = {}

        def decode(run: list[int]) -> DecodedBatch:
            return self.decoder.decode_read([read[i] for i in run], [sources[i] for i in run])

        if len(runs) > 1 and self._decoding is None:
            self._decoding = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tvdeploy-gpu-decode")
        pending: Future[DecodedBatch] | None = None
        for position, run in enumerate(runs):
            decoded = pending.result() if pending is not None else decode(run)
            pending = None
            if position + 1 < len(runs):  # the next run decodes on the pipeline's thread meanwhile
                assert self._decoding is not None
                pending = self._decoding.submit(decode, runs[position + 1])
            by_shape: dict[tuple[int, ...], list[tuple[int, Any]]] = {}
            for index, item in zip(run, decoded.items, strict=True):
                if isinstance(item, str):
                    errors[index] = item
                else:
                    by_shape.setdefault(tuple(int(n) for n in item.shape), []).append((index, item))
            for shape, members in by_shape.items():
                part = self._run([item for _, item in members], shape)
                for row, (index, _) in enumerate(members):
                    rows[index] = {name: values[row] for name, values in part.items()}
        good = sorted(rows)
        gathered = (
            {name: np.stack([rows[i][name] for i in good]) for name in self.manifest.output.names} if good else {}
        )
        return gathered, errors

    def _runs(self, read: list[ReadItem]) -> list[list[int]]:
        """The readable inputs cut into decoding runs: at most a model batch of images and :data:`MAX_RUN_PIXELS`
        decoded pixels each (an image larger than that alone)."""
        runs: list[list[int]] = []
        pixels = 0
        for index, item in enumerate(read):
            if isinstance(item, str):
                continue
            size = item.pixels if isinstance(item, EncodedImage) else int(item.shape[0] * item.shape[1])
            if not runs or len(runs[-1]) >= self.batch_size or pixels + size > MAX_RUN_PIXELS:
                runs.append([])
                pixels = 0
            runs[-1].append(index)
            pixels += size
        return runs

    def _run(self, images: list[Any], shape: tuple[int, ...]) -> dict[str, np.ndarray]:
        """One model call on images of one shape, gathered into the device input (padded to a fixed batch by
        repeating the last image); the outputs of the padding are dropped."""
        rows = len(images)
        batch = self.fixed_batch or rows
        target = self.runner.device_input(self.manifest.input.name, (batch, *shape), np.uint8)
        row_bytes = int(np.prod(shape))
        for slot in range(batch):
            self._copy_image(images[min(slot, rows - 1)], target.address + slot * row_bytes, row_bytes)
        outputs = self.runner.infer({self.manifest.input.name: target})  # type: ignore[dict-item]
        return {name: outputs[name][:rows] for name in self.manifest.output.names}

    def _copy_image(self, image: Any, destination: int, nbytes: int) -> None:
        if isinstance(image, np.ndarray):  # decoded by Pillow on the host
            host = np.ascontiguousarray(image, dtype=np.uint8)
            self.memory.copy(destination, host.ctypes.data, nbytes)
            return
        interface = image.__cuda_array_interface__
        address = int(interface["data"][0])
        if is_contiguous_on_device(image):
            self.memory.copy(destination, address, nbytes)
        else:  # rows padded to a pitch: a 2-D copy packs them
            height, width, channels = (int(n) for n in interface["shape"])
            pitch = int(interface["strides"][0])
            self.memory.copy_rows(destination, address, width * channels, height, pitch)

    def fidelity(self, cpu_predict: Any, top_k: int = 5) -> DecoderFidelity:
        """The GPU path against ``cpu_predict`` (the classifier's Pillow path, a list of sources -> predictions)
        on the bundled photos."""
        photos = [path.read_bytes() for path in photo_paths()]
        gpu = self.predict(photos, top_k)
        failed = [str(p) for p in gpu if isinstance(p, str)]
        if failed:
            raise RuntimeError("the GPU path failed on the bundled photos: " + "; ".join(failed))
        return decoder_fidelity(gpu, cpu_predict(photos, top_k))
