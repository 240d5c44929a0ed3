"""Images to model input rows, exactly as the runtime feeds its models: one definition for the classifier, the
server and Triton's preprocessing step."""

from __future__ import annotations

import numpy as np

from tvdeploy.runtime.images import DEFAULT_MAX_PIXELS, ImageSource, check_decode_mode, load_image
from tvdeploy.runtime.manifest import Manifest
from tvdeploy.runtime.preprocess import ImagePreprocessor


class ImageDecoder:
    """Decode one image (encoded bytes, a path, an array or a PIL image) into a model input row.

    The row is the (3, H, W) float32 network input, or, for an artifact that preprocesses in its graph
    (``--embed-preprocess``), the (H, W, 3) uint8 RGB image itself. A bad image raises
    :class:`~tvdeploy.errors.ImageError`.

    Args:
        manifest: the artifact's manifest (its preprocessing and input).
        exif_transpose: apply EXIF orientation when decoding.
        max_pixels: refuse larger images (decompression bombs); ``None`` for no limit.
        decode: ``exact`` (within 1e-5 of torchvision) or ``fast`` (JPEGs decoded at a reduced scale).
    """

    def __init__(
        self,
        manifest: Manifest,
        *,
        exif_transpose: bool = True,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        decode: str = "exact",
    ) -> None:
        check_decode_mode(decode)
        self.decode = decode
        self.exif_transpose = exif_transpose
        self.max_pixels = max_pixels
        self.preprocessor = ImagePreprocessor(manifest.preprocess)
        self.takes_images = manifest.input.takes_images
        self._shrink_to = self.preprocessor.needed_size if decode == "fast" else None

    def __call__(self, image: ImageSource) -> np.ndarray:
        rgb = load_image(
            image, exif_transpose=self.exif_transpose, max_pixels=self.max_pixels, shrink_to=self._shrink_to
        )
        if self.takes_images:
            return np.asarray(rgb, dtype=np.uint8)
        return self.preprocessor(rgb)
