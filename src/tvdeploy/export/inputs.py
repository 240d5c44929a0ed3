"""Inputs for parity checks: real photos preprocessed with the artifact's own preprocessing, and seeded noise."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from tvdeploy.runtime.manifest import PreprocessSpec
from tvdeploy.runtime.preprocess import ImagePreprocessor

PHOTO_NAMES = ("astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg", "china.jpg", "flower.jpg")


def photo_paths() -> list[Path]:
    """The real photos shipped with tvdeploy (see ``export/photos/README.md`` for their sources)."""
    root = resources.files("tvdeploy.export") / "photos"
    return [Path(str(root / name)) for name in PHOTO_NAMES]


@dataclass(frozen=True)
class InputSet:
    """Named batches of network inputs; every batch is compared separately."""

    name: str
    batches: tuple[np.ndarray, ...]
    #: whether top-1 agreement is a pass criterion for this set (real photos: yes; noise: reported only).
    require_top1: bool

    @property
    def batch_sizes(self) -> list[int]:
        """Size of each batch."""
        return [int(b.shape[0]) for b in self.batches]


def photo_set(preprocess: PreprocessSpec, batch_size: int = 6) -> InputSet:
    """Each photo alone (batch 1), then ``batch_size`` photos together (the dynamic batch axis)."""
    prep = ImagePreprocessor(preprocess)
    images = np.stack([prep(path) for path in photo_paths()])
    together = np.concatenate([images] * (-(-batch_size // len(images))))[:batch_size]
    return InputSet("photos", (*(images[i : i + 1] for i in range(len(images))), together), require_top1=True)


def noise_set(preprocess: PreprocessSpec, batch_sizes: tuple[int, ...] = (1, 4), seed: int = 0) -> InputSet:
    """Seeded standard-normal tensors (the scale of normalized images)."""
    rng = np.random.default_rng(seed)
    height, width = preprocess.crop_hw
    batches = tuple(rng.standard_normal((n, 3, height, width), dtype=np.float32) for n in batch_sizes)
    return InputSet("random", batches, require_top1=False)


def default_input_sets(preprocess: PreprocessSpec, seed: int = 0) -> list[InputSet]:
    """Photos at batch 1 and 6, noise at batch 1 and 4."""
    return [photo_set(preprocess), noise_set(preprocess, seed=seed)]
