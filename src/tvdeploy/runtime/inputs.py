"""Finding the images to predict: files as given, directories walked recursively.

Inside a directory a file is an image by its content (Pillow recognises its
header), whatever its name; a file that Pillow does not recognise but whose
extension promises an image (an empty or garbled ``.jpg``) is kept, so that it
fails with an error line instead of vanishing. Other files (a README, a CSV) are
skipped and counted. Hidden files and directories are skipped.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".gif",
        ".bmp",
        ".dib",
        ".tif",
        ".tiff",
        ".webp",
        ".ppm",
        ".pgm",
        ".pbm",
        ".pnm",
        ".ico",
        ".tga",
        ".jp2",
        ".j2k",
        ".heic",
        ".heif",
        ".avif",
        ".psd",
        ".dds",
        ".pcx",
        ".sgi",
    }
)


def looks_like_image(path: Path) -> bool:
    """Whether Pillow recognises the file's header (reads only the header)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path):
                return True
    except Image.DecompressionBombError:
        return True  # an image, refused later with a clear message
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return False


@dataclass
class CollectedInputs:
    """The files to predict, in order, and what was skipped."""

    files: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def collect_inputs(paths: Sequence[str | os.PathLike]) -> CollectedInputs:
    """Expand files and directories into the list of inputs (directories sorted, recursively)."""
    collected = CollectedInputs()
    for given in paths:
        path = Path(given)
        if not path.is_dir():
            collected.files.append(os.fspath(given))  # a missing or bad file fails with its own error line
            continue
        for root, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                if name.startswith("."):
                    continue
                candidate = Path(root) / name
                if not candidate.is_file():
                    continue
                if looks_like_image(candidate) or candidate.suffix.lower() in IMAGE_EXTENSIONS:
                    collected.files.append(os.fspath(candidate))
                else:
                    collected.skipped.append(os.fspath(candidate))
    if collected.skipped:
        logger.info("skipped %d file(s) that are not images, e.g. %s", len(collected.skipped), collected.skipped[0])
    return collected
