"""The real photos shipped with tvdeploy (``export/photos/``, sources in its README): parity's inputs at export and
the GPU decoder's gate at run time, read without torch."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

PHOTO_NAMES = ("astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg", "china.jpg", "flower.jpg")


def photo_paths() -> list[Path]:
    """The real photos shipped with tvdeploy (see ``export/photos/README.md`` for their sources)."""
    root = resources.files("tvdeploy.export") / "photos"
    return [Path(str(root / name)) for name in PHOTO_NAMES]
