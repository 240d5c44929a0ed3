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
from typing import Any

import numpy as np

from tvdeploy.runtime.device_memory import is_contiguous_on_device
from tvdeploy.runtime.gpu_decode import DecoderFidelity, GpuImageDecoder, decoder_fidelity, photo_files
from tvdeploy.runtime.images import ImageSource
from tvdeploy.runtime.manifest import Manifest
from tvdeploy.runtime.postprocess import Prediction, decode_outputs
from tvdeploy.runtime.runners import Runner

logger = logging.getLogger(__name__)


class DevicePipeline:
    """Classify encoded images with decoding and preprocessing on the model's GPU.

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
        decoded = self.decoder.decode(sources)
        errors = [item if isinstance(item, str) else None for item in decoded.items]
        good = [index for index, error in enumerate(errors) if error is None]
        row_of = {index: row for row, index in enumerate(good)}
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for index in good:
            by_shape.setdefault(tuple(int(n) for n in decoded.items[index].shape), []).append(index)
        gathered: dict[str, np.ndarray] = {}
        for shape, indices in by_shape.items():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                part = self._run([decoded.items[i] for i in chunk], shape)
                rows = [row_of[i] for i in chunk]
                for name, values in part.items():
                    if name not in gathered:
                        gathered[name] = np.empty((len(good), *values.shape[1:]), dtype=values.dtype)
                    gathered[name][rows] = values
        return gathered, errors

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
        photos = [path.read_bytes() for path in photo_files()]
        gpu = self.predict(photos, top_k)
        failed = [str(p) for p in gpu if isinstance(p, str)]
        if failed:
            raise RuntimeError("the GPU path failed on the bundled photos: " + "; ".join(failed))
        return decoder_fidelity(gpu, cpu_predict(photos, top_k))
