"""Decoding images as they come from real users into RGB PIL images.

Accepts paths, bytes, binary file objects, PIL images and ``HxWx3`` (or ``HxW``,
``HxWx4``) uint8 arrays. Applies the EXIF orientation (phone photos), brings
every Pillow mode to RGB without clipping (16-bit images are scaled, alpha is
composited over a background), takes the first frame of animations, refuses
decompression bombs, and turns every decoding failure into an
:class:`~tvdeploy.errors.ImageError` that names the input.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tvdeploy.errors import ImageError

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | IO[bytes] | Image.Image | np.ndarray

#: Default limit on decoded pixels (Pillow's own default bomb threshold, ~89.5 Mpx).
DEFAULT_MAX_PIXELS = 89_478_485
#: Colour that transparent pixels are composited over.
DEFAULT_BACKGROUND = (255, 255, 255)

_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}


def describe_source(source: ImageSource) -> str:
    """A short name for an input, used in error messages."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    if isinstance(source, Image.Image):
        return f"<PIL image {source.mode} {source.width}x{source.height}>"
    if isinstance(source, np.ndarray):
        return f"<array {source.shape} {source.dtype}>"
    return str(getattr(source, "name", "<file object>"))


#: ``exact``: decode at full size, preprocessing within 1e-5 of torchvision (the default); ``fast``: JPEG DCT-domain
#: downscaling and integer box reduction down to the size the resize needs, then the same exact resize.
DECODE_MODES = ("exact", "fast")


def check_decode_mode(decode: str) -> None:
    """Refuse a decode mode other than :data:`DECODE_MODES`."""
    if decode not in DECODE_MODES:
        raise ImageError(f"unknown decode mode {decode!r}", hint=f"choose one of {', '.join(DECODE_MODES)}")


#: EXIF orientations that swap width and height.
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)

#: ``shrink_to(width, height) -> (width, height)``: the smallest size a later step needs from an image.
ShrinkTo = Callable[[int, int], tuple[int, int]]


def load_image(
    source: ImageSource,
    *,
    exif_transpose: bool = True,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    background: tuple[int, int, int] = DEFAULT_BACKGROUND,
    shrink_to: ShrinkTo | None = None,
) -> Image.Image:
    """Decode ``source`` into an RGB PIL image.

    Args:
        source: a path, encoded bytes, a binary file object, a PIL image or a uint8 array.
        exif_transpose: apply the EXIF orientation tag.
        max_pixels: refuse images with more pixels than this (``None``: no limit).
        background: RGB colour that transparent pixels are composited over.
        shrink_to: fast decoding: the smallest (width, height) the next step needs from an upright image of a
            given size. A JPEG is then decoded at a reduced scale in the DCT domain (Pillow's ``draft``: 1/2,
            1/4 or 1/8, never below that size) and any image is box-reduced by the largest integer factor that
            keeps it at least that size (``Image.reduce``). ``None`` (the default) decodes exactly.

    Raises:
        ImageError: the input is missing, empty, truncated, not an image, too large
            or of an unsupported kind. The message names the input.
    """
    name = describe_source(source)
    if isinstance(source, np.ndarray):
        return to_rgb(_from_array(source, name), background=background)
    if isinstance(source, Image.Image):
        image = source
    else:
        image = _open(source, name, max_pixels)
    _check_pixels(image, name, max_pixels)
    try:
        if getattr(image, "is_animated", False):
            image.seek(0)
        if shrink_to is not None and image is not source and image.format == "JPEG":
            image.draft(image.mode, _needed_stored_size(image, shrink_to, exif_transpose))
        image.load()
        if exif_transpose:
            if image is source:  # never modify the caller's image
                image = ImageOps.exif_transpose(image) or image
            else:  # ours: rotate in place, no copy of an upright photo
                ImageOps.exif_transpose(image, in_place=True)
        rgb = to_rgb(image, background=background)
        return _reduced(rgb, shrink_to) if shrink_to is not None else rgb
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageError(
            f"{name}: truncated or corrupt image ({exc})", hint="re-export or re-download the file"
        ) from exc


def image_pixels(source: ImageSource, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> int:
    """The pixel count of an encoded image, read from its header without decoding it (what a server checks against
    its budget before it decodes anything); the same :class:`ImageError` as :func:`load_image` for an input that
    is not an image or is over ``max_pixels``."""
    name = describe_source(source)
    if isinstance(source, np.ndarray):
        return int(source.shape[0] * source.shape[1]) if source.ndim >= 2 else 0
    image = source if isinstance(source, Image.Image) else _open(source, name, max_pixels)
    try:
        return int(image.width * image.height)
    finally:
        if image is not source:
            image.close()


def _needed_stored_size(image: Image.Image, shrink_to: ShrinkTo, exif_transpose: bool) -> tuple[int, int]:
    """The size needed, in the file's own (not yet rotated) orientation."""
    width, height = image.size
    if exif_transpose and image.getexif().get(0x0112, 1) in _TRANSPOSING_ORIENTATIONS:
        needed_w, needed_h = shrink_to(height, width)
        return (needed_h, needed_w)
    return shrink_to(width, height)


def _reduced(image: Image.Image, shrink_to: ShrinkTo) -> Image.Image:
    needed_w, needed_h = shrink_to(image.width, image.height)
    factor = min(image.width // max(needed_w, 1), image.height // max(needed_h, 1))
    return image.reduce(factor) if factor >= 2 else image


def _open(source: ImageSource, name: str, max_pixels: int | None) -> Image.Image:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise ImageError(f"{name}: no such file")
        if path.is_dir():
            raise ImageError(f"{name}: is a directory, not an image")
        if path.stat().st_size == 0:
            raise ImageError(f"{name}: empty file")
        stream: str | IO[bytes] = os.fspath(path)  # Pillow owns (and closes) files it opens by name
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageError(f"{name}: empty input")
        stream = io.BytesIO(bytes(source))
    elif hasattr(source, "read"):
        stream = source  # type: ignore[assignment]
    else:
        raise ImageError(
            f"unsupported image input of type {type(source).__name__}",
            hint="pass a path, bytes, a binary file object, a PIL image or an HxWx3 uint8 array",
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(stream)
    except UnidentifiedImageError as exc:
        raise ImageError(f"{name}: not an image Pillow can decode") from exc
    except Image.DecompressionBombError as exc:
        raise ImageError(
            f"{name}: refused as a decompression bomb ({exc})",
            hint="raise the pixel limit (max_pixels / --max-pixels) if you trust the file",
        ) from exc
    except OSError as exc:
        raise ImageError(f"{name}: cannot read ({exc})") from exc
    _check_pixels(image, name, max_pixels)
    return image


def _check_pixels(image: Image.Image, name: str, max_pixels: int | None) -> None:
    if max_pixels is not None and image.width * image.height > max_pixels:
        raise ImageError(
            f"{name}: {image.width}x{image.height} = {image.width * image.height:,} pixels exceeds the limit of "
            f"{max_pixels:,} (possible decompression bomb)",
            hint="raise the pixel limit (max_pixels / --max-pixels) if you trust the file",
        )


def _from_array(array: np.ndarray, name: str) -> Image.Image:
    if array.dtype != np.uint8:
        raise ImageError(
            f"{name}: arrays must be uint8", hint="convert with array.astype(np.uint8) after scaling to 0..255"
        )
    if array.ndim == 2:
        return Image.fromarray(array, mode="L")
    if array.ndim == 3 and array.shape[2] in (3, 4):
        return Image.fromarray(np.ascontiguousarray(array), mode="RGB" if array.shape[2] == 3 else "RGBA")
    raise ImageError(f"{name}: expected an HxWx3 (RGB), HxWx4 (RGBA) or HxW array")


def _scale_to_uint8(values: np.ndarray, full_scale: float) -> np.ndarray:
    return np.clip(np.rint(values.astype(np.float64) * (255.0 / full_scale)), 0, 255).astype(np.uint8)


def _integer_to_l(image: Image.Image) -> Image.Image:
    """16-bit and 32-bit integer images to 8-bit grey, scaled by their bit depth."""
    values = np.asarray(image)
    if image.mode in _SIXTEEN_BIT_MODES:
        full_scale = 65535.0
    else:  # "I": 32-bit ints; most are 16-bit data (PNG) or 8-bit data
        peak = float(values.max()) if values.size else 0.0
        low = float(values.min()) if values.size else 0.0
        if low >= 0 and peak <= 255:
            return Image.fromarray(values.astype(np.uint8), mode="L")
        if low >= 0 and peak <= 65535:
            full_scale = 65535.0
        else:
            span = (peak - low) or 1.0
            return Image.fromarray(_scale_to_uint8(values - low, span), mode="L")
    return Image.fromarray(_scale_to_uint8(values, full_scale), mode="L")


def _float_to_l(image: Image.Image) -> Image.Image:
    values = np.nan_to_num(np.asarray(image, dtype=np.float64))
    low, peak = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if low >= 0 and peak <= 1.0:
        return Image.fromarray(_scale_to_uint8(values, 1.0), mode="L")
    if low >= 0 and peak <= 255:
        return Image.fromarray(_scale_to_uint8(values, 255.0), mode="L")
    return Image.fromarray(_scale_to_uint8(values - low, (peak - low) or 1.0), mode="L")


def to_rgb(image: Image.Image, background: tuple[int, int, int] = DEFAULT_BACKGROUND) -> Image.Image:
    """Bring any Pillow mode to RGB.

    Transparency (RGBA, LA, PA, P with a transparency key) is composited over
    ``background``; 16-bit images are scaled to 8 bits rather than clipped.
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _SIXTEEN_BIT_MODES or mode == "I":
        return _integer_to_l(image).convert("RGB")
    if mode == "F":
        return _float_to_l(image).convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")
