"""Inputs for parity checks: real photos preprocessed with the artifact's own preprocessing, and seeded noise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from tvdeploy.runtime.images import load_image
from tvdeploy.runtime.manifest import PreprocessSpec
from tvdeploy.runtime.photos import photo_paths  # also imported from here (README, bench, tools)
from tvdeploy.runtime.preprocess import ImagePreprocessor


@dataclass(frozen=True)
class InputSet:
    """Named batches of network inputs; every batch is compared separately.

    ``images`` holds, batch for batch, the uint8 RGB ``(N, H, W, 3)`` images that ``batches`` are the
    runtime's preprocessing of: what an artifact with embedded preprocessing is fed (``None`` when the set
    was made without them).
    """

    name: str
    batches: tuple[np.ndarray, ...]
    #: whether top-1 agreement is a pass criterion for this set (real photos: yes; noise: reported only).
    require_top1: bool
    images: tuple[np.ndarray, ...] | None = None

    def feeds_for(self, takes_images: bool) -> tuple[np.ndarray, ...]:
        """The batches an artifact is fed: the images when it preprocesses them itself, else the tensors."""
        if not takes_images:
            return self.batches
        if self.images is None:
            raise ValueError(f"the input set {self.name!r} was made without images (default_input_sets(images=True))")
        return self.images

    @property
    def batch_sizes(self) -> list[int]:
        """Size of each batch."""
        return [int(b.shape[0]) for b in self.batches]


#: The (height, width) the photos of a batch share when a set carries images (a batch is one tensor).
BATCH_PHOTO_SIZE = (427, 640)


def photo_set(preprocess: PreprocessSpec, batch_size: int = 6, images: bool = False) -> InputSet:
    """Each photo alone (batch 1), then ``batch_size`` photos together (the dynamic batch axis).

    ``images``: carry the photos as uint8 images too; each single photo keeps its own size, and the batch
    holds the photos resized (by Pillow) to :data:`BATCH_PHOTO_SIZE`, since a batch of images shares one size.
    """
    prep = ImagePreprocessor(preprocess)
    photos = [load_image(path) for path in photo_paths()]
    singles = np.stack([prep(photo) for photo in photos])
    count = -(-batch_size // len(photos))
    if not images:
        together = np.concatenate([singles] * count)[:batch_size]
        return InputSet("photos", (*(singles[i : i + 1] for i in range(len(photos))), together), require_top1=True)
    height, width = BATCH_PHOTO_SIZE
    resized = ([photo.resize((width, height), Image.Resampling.BILINEAR) for photo in photos] * count)[:batch_size]
    together = np.stack([prep(photo) for photo in resized])
    raw = [np.asarray(photo, dtype=np.uint8)[None] for photo in photos]
    raw_together = np.stack([np.asarray(photo, dtype=np.uint8) for photo in resized])
    return InputSet(
        "photos",
        (*(singles[i : i + 1] for i in range(len(photos))), together),
        require_top1=True,
        images=(*raw, raw_together),
    )


#: The (height, width) of the noise images of a set that carries images.
NOISE_IMAGE_SIZE = (240, 320)


def noise_set(
    preprocess: PreprocessSpec, batch_sizes: tuple[int, ...] = (1, 4), seed: int = 0, images: bool = False
) -> InputSet:
    """Seeded standard-normal tensors (the scale of normalized images); with ``images``, seeded uniform uint8
    noise images of :data:`NOISE_IMAGE_SIZE` instead, the tensors being their preprocessing."""
    rng = np.random.default_rng(seed)
    if images:
        prep = ImagePreprocessor(preprocess)
        raw = tuple(rng.integers(0, 256, (n, *NOISE_IMAGE_SIZE, 3), dtype=np.uint8) for n in batch_sizes)
        tensors = tuple(np.stack([prep(image) for image in batch]) for batch in raw)
        return InputSet("random", tensors, require_top1=False, images=raw)
    height, width = preprocess.crop_hw
    batches = tuple(rng.standard_normal((n, 3, height, width), dtype=np.float32) for n in batch_sizes)
    return InputSet("random", batches, require_top1=False)


def default_input_sets(preprocess: PreprocessSpec, seed: int = 0, images: bool = False) -> list[InputSet]:
    """Photos at batch 1 and 6, noise at batch 1 and 4; ``images``: carrying the uint8 images too."""
    return [photo_set(preprocess, images=images), noise_set(preprocess, seed=seed, images=images)]
