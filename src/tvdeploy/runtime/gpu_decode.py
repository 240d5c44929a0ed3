"""JPEG decoding on the GPU with NVIDIA's nvImageCodec (nvJPEG), feeding a graph that preprocesses on the device.

``--decoder gpu|cpu|auto`` chooses where images are decoded. The GPU path needs three things: an artifact that
takes uint8 images (``optimize --embed-preprocess``: the graph resizes, crops and normalizes, so the decoded image
never leaves the device), a model on a GPU provider, and nvImageCodec (the ``gpu-decode`` extra).
``gpu`` without one of them is an error naming it; ``auto`` decodes on the CPU and logs why.

A batch of files is decoded in one nvImageCodec call into device memory; images of one size are gathered into the
runner's device input buffer (device-to-device copies) and run as one batch. A file nvImageCodec cannot decode
(another format, a JPEG variant nvJPEG refuses) goes through Pillow alone and is counted; a corrupt file fails
alone, with Pillow's error, as on the CPU. Header sizes are checked against ``max_pixels`` before any decoding.

nvJPEG's IDCT and chroma upsampling differ slightly from libjpeg's, so the GPU path is gated like a precision
(:func:`decoder_fidelity`): before it is used, the bundled photos are classified both ways and the GPU path must
agree on every top-1 with a minimum cosine of :data:`MIN_COSINE` on the top-k scores.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from tvdeploy.errors import ImageError, UserInputError
from tvdeploy.runtime.device_memory import DeviceMemory
from tvdeploy.runtime.images import DEFAULT_MAX_PIXELS, ImageSource, describe_source, image_pixels
from tvdeploy.runtime.native_output import dropped_native_lines

logger = logging.getLogger(__name__)

#: The extra and the packages that bring nvImageCodec and nvJPEG (torch-free, CUDA 13 wheels).
INSTALL_HINT = (
    'pip install nvidia-nvimgcodec-cu13 nvidia-nvjpeg (the gpu-decode extra: pip install -e ".[gpu-decode]" in a '
    "checkout)"
)
#: The GPU path's gate on the bundled photos: every top-1 the same as Pillow's, and at least this cosine between
#: the two paths' top-k scores (nvJPEG differs from libjpeg by about one grey level).
MIN_COSINE = 0.999


class DecoderKind(StrEnum):
    """Where images are decoded."""

    CPU = "cpu"
    GPU = "gpu"
    AUTO = "auto"


DECODER_CHOICES = tuple(kind.value for kind in DecoderKind)
DECODER_HELP = (
    "where images are decoded: cpu (Pillow, exact), gpu (nvImageCodec on the model's GPU, for an artifact with "
    "--embed-preprocess; gated on the photos), auto (gpu where it can run, else cpu, saying why; default cpu)"
)


#: What nvImageCodec prints on descriptor 2 about codecs tvdeploy does not use (JPEG 2000, TIFF: those files go
#: through Pillow) and about each file it hands back undecoded (counted and decoded by Pillow instead).
_NATIVE_NOTICES = ("nvjpeg2k", "nvJPEG2000", "nvtiff", "nvTIFF", "There will be None on corresponding output position")


def nvimgcodec_module() -> Any:
    """nvImageCodec's Python module (a seam: the tests put a stand-in here); ImportError where not installed."""
    with dropped_native_lines(containing=_NATIVE_NOTICES):
        nvidia = importlib.import_module("nvidia")
        return importlib.import_module(f"{nvidia.__name__}.nvimgcodec")


def gpu_decode_problem(takes_images: bool, memory: DeviceMemory | None, provider: str) -> str | None:
    """Why images cannot be decoded on the GPU for this artifact and runner, or None where they can."""
    if not takes_images:
        return (
            "the artifact preprocesses on the host: GPU decoding feeds a graph that takes uint8 images "
            "(tvdeploy optimize ARTIFACT --embed-preprocess)"
        )
    if memory is None:
        return f"the model runs on {provider}, not on an NVIDIA GPU with a CUDA runtime (--provider cuda)"
    try:
        nvimgcodec_module()
    except ImportError as exc:
        return f"nvImageCodec is not installed ({exc}); {INSTALL_HINT}"
    return None


def resolve_decoder(requested: str, takes_images: bool, memory: DeviceMemory | None, provider: str) -> DecoderKind:
    """``cpu`` or ``gpu`` for a ``--decoder`` choice: ``gpu`` where it cannot run is a :class:`UserInputError`
    (exit 2) naming what is missing; ``auto`` takes the CPU then and logs why."""
    try:
        kind = DecoderKind(str(requested).lower())
    except ValueError:
        raise UserInputError(
            f"unknown decoder {requested!r}", hint=f"use one of {', '.join(DECODER_CHOICES)}"
        ) from None
    if kind == DecoderKind.CPU:
        return kind
    problem = gpu_decode_problem(takes_images, memory, provider)
    if problem is None:
        return DecoderKind.GPU
    if kind == DecoderKind.GPU:
        raise UserInputError(f"--decoder gpu cannot run here: {problem}", hint="or use --decoder cpu (Pillow)")
    logger.info("decoder auto: decoding on the CPU (Pillow): %s", problem)
    return DecoderKind.CPU


@dataclass
class DecodedBatch:
    """One batch decoded: per input, an image (on the device, or a host array from the Pillow fallback) or the
    error that stopped it; and how many went through Pillow."""

    items: list[Any]
    pillow_fallbacks: int = 0


@dataclass(frozen=True)
class EncodedImage:
    """An encoded image read and its header checked: its bytes and its pixel count."""

    data: bytes
    pixels: int


#: What :meth:`GpuImageDecoder.read` gives per input: the encoded image, an image already decoded (an array or a
#: PIL image given as such, through the CPU path), or the error that stopped it.
ReadItem = EncodedImage | np.ndarray | str


class GpuImageDecoder:
    """Decodes encoded images on the GPU in batches (nvImageCodec), Pillow for what it cannot decode.

    Args:
        device: the CUDA device index (the model's).
        cpu_decode: the CPU path for one image (the classifier's :class:`~tvdeploy.runtime.decoder.ImageDecoder`):
            what a file nvImageCodec cannot decode goes through, and where its errors come from.
        exif_transpose: apply the EXIF orientation, as the CPU path does.
        max_pixels: refuse larger images, from their headers, before decoding.
    """

    def __init__(
        self,
        device: int,
        cpu_decode: Any,
        *,
        exif_transpose: bool = True,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.codec = nvimgcodec_module()
        try:
            with dropped_native_lines(containing=_NATIVE_NOTICES):
                self._decoder = self.codec.Decoder(device_id=device)
            self._params = self.codec.DecodeParams(
                apply_exif_orientation=exif_transpose, color_spec=self.codec.ColorSpec.SRGB
            )
        except Exception as exc:  # nvImageCodec raises RuntimeError with CUDA's words
            raise UserInputError(
                f"--decoder gpu cannot run here: nvImageCodec could not start on GPU {device}: {exc}",
                hint="or use --decoder cpu (Pillow)",
            ) from exc
        self.cpu_decode = cpu_decode
        self.max_pixels = max_pixels
        self.pillow_fallbacks = 0

    def read(self, sources: Sequence[ImageSource]) -> list[ReadItem]:
        """Each source's bytes with its header's pixel count (checked against ``max_pixels`` before any decoding),
        an already decoded image through the CPU path, or the error that stopped it."""
        items: list[ReadItem] = []
        for source in sources:
            try:
                if isinstance(source, (str, os.PathLike)):  # the header first (Pillow reads no more), then the file
                    pixels = image_pixels(source, self.max_pixels)
                    items.append(EncodedImage(_file_bytes(source), pixels))
                    continue
                data = _encoded_bytes(source)
                if data is None:  # an array or a PIL image: already decoded, the CPU path takes it
                    items.append(self.cpu_decode(source))
                    continue
                items.append(EncodedImage(data, image_pixels(data, self.max_pixels)))
            except ImageError as exc:
                items.append(_named(source, exc))
        return items

    def decode_read(self, items: Sequence[ReadItem], sources: Sequence[ImageSource]) -> DecodedBatch:
        """Decode what :meth:`read` gave for ``sources`` (in one nvImageCodec call), Pillow for what it cannot: per
        input in order, a device image (HxWx3 uint8, ``__cuda_array_interface__``), a host array Pillow decoded, or
        the error that stopped it."""
        decoded_items: list[Any] = list(items)
        encoded = [(index, item.data) for index, item in enumerate(items) if isinstance(item, EncodedImage)]
        fallbacks = 0
        if encoded:
            with dropped_native_lines(containing=_NATIVE_NOTICES):
                decoded = self._decoder.decode([data for _, data in encoded], params=self._params)
            for (index, data), image in zip(encoded, decoded, strict=True):
                if image is not None and _rgb_bytes(image):
                    decoded_items[index] = image
                    continue
                try:
                    decoded_items[index] = self.cpu_decode(data)
                    fallbacks += 1
                except ImageError as exc:
                    decoded_items[index] = _named(sources[index], exc)
        self.pillow_fallbacks += fallbacks
        return DecodedBatch(decoded_items, fallbacks)


def _named(source: ImageSource, error: ImageError) -> str:
    """An image error's message under the input's own name (the decoder read it as bytes)."""
    name = describe_source(source)
    if error.message.startswith("<"):  # "<N bytes>: what went wrong"
        return f"{name}: {error.message.partition(': ')[2] or error.message}"
    return error.message


def _rgb_bytes(image: Any) -> bool:
    """Whether a decoded image is what the graph takes: HxWx3 uint8 (anything else goes through Pillow)."""
    interface = getattr(image, "__cuda_array_interface__", None)
    if interface is None:
        return False
    shape = tuple(interface["shape"])
    return len(shape) == 3 and shape[2] == 3 and np.dtype(interface["typestr"]) == np.uint8


def _file_bytes(path: str | os.PathLike[str]) -> bytes:
    """A file's bytes once its header was read; an :class:`ImageError` naming it where it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ImageError(f"{describe_source(path)}: cannot read ({exc.strerror or exc})") from exc


def _encoded_bytes(source: ImageSource) -> bytes | None:
    """The encoded bytes of a bytes-like or file object; None for an already decoded image."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if hasattr(source, "read"):
        return bytes(source.read())
    return None


@dataclass(frozen=True)
class DecoderFidelity:
    """How the GPU path's answers compare with Pillow's on the same files."""

    images: int
    top1_agreement: float
    min_cosine: float

    @property
    def passed(self) -> bool:
        """The gate: every top-1 the same and the top-k scores at least :data:`MIN_COSINE` alike."""
        return self.top1_agreement == 1.0 and self.min_cosine >= MIN_COSINE

    def describe(self) -> str:
        return (
            f"GPU decode vs Pillow on {self.images} photos: top-1 agreement {self.top1_agreement:.0%}, "
            f"min cosine {self.min_cosine:.5f} (gate: 100%, >= {MIN_COSINE})"
        )


def decoder_fidelity(gpu: Sequence[Sequence[Any]], cpu: Sequence[Sequence[Any]]) -> DecoderFidelity:
    """Compare two paths' top-k predictions (:class:`~tvdeploy.runtime.postprocess.Prediction` lists), image
    for image: top-1 agreement, and the cosine between their probability vectors over the union of their top-k."""
    agree, cosines = 0, []
    for mine, theirs in zip(gpu, cpu, strict=True):
        agree += int(mine[0].index == theirs[0].index)
        classes = sorted({p.index for p in mine} | {p.index for p in theirs})
        a = np.array([next((p.probability for p in mine if p.index == c), 0.0) for c in classes])
        b = np.array([next((p.probability for p in theirs if p.index == c), 0.0) for c in classes])
        cosines.append(float(a @ b / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12)))
    count = len(cosines)
    return DecoderFidelity(count, agree / count if count else 0.0, min(cosines) if cosines else 0.0)
