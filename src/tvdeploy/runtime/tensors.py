"""The tensors and preprocessing of a manifest: what the model takes (:class:`TensorSpec`), what it gives
(:class:`OutputSpec`) and how an image becomes its input (:class:`PreprocessSpec`). Decoded and checked here, read
by the runtime, the server, bench and the export side alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from tvdeploy.errors import ArtifactError

#: Tensor names a fresh export gives its input and output; readers take the names from the manifest.
DEFAULT_INPUT_NAME = "input"
DEFAULT_OUTPUT_NAME = "logits"
#: Tensor names of an export with embedded pre/post-processing (``--embed-preprocess`` / ``--embed-postprocess``).
IMAGES_INPUT_NAME = "images"
TOP_K_OUTPUT_NAME = "probabilities"
TOP_K_INDICES_NAME = "indices"


class OutputMeaning(StrEnum):
    """What an output's values are: raw class scores, or the top-k probabilities of an embedded softmax + TopK
    (with the class indices in a second output)."""

    LOGITS = "logits"
    TOP_K = "top_k"


LOGITS = OutputMeaning.LOGITS
TOP_K = OutputMeaning.TOP_K
OUTPUT_MEANINGS = tuple(OutputMeaning)
#: The (height, width) of the example images fed to an artifact that takes images when it is timed (a VGA photo).
EXAMPLE_IMAGE_SIZE = (480, 640)
#: The layout of an input of whole images: uint8 RGB ``(N, H, W, 3)`` of any height and width.
IMAGES_LAYOUT = "NHWC"
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


@dataclass(frozen=True)
class PreprocessSpec:
    """Preprocessing as data, with the values torchvision's ``weights.transforms()`` gives.

    ``resize_size``: the shorter side is resized to this (one value), or the
    image to exactly (h, w) (two values). ``crop_size``: center crop, one value
    for a square or (h, w).
    """

    resize_size: tuple[int, ...]
    crop_size: tuple[int, ...]
    interpolation: str
    antialias: bool
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ArtifactError(
                f"unknown interpolation {self.interpolation!r} in preprocess block",
                hint=f"use one of {', '.join(INTERPOLATIONS)}",
            )
        if len(self.crop_size) not in (1, 2) or len(self.resize_size) not in (1, 2):
            raise ArtifactError("resize_size and crop_size take one value (square) or two (h, w)")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ArtifactError("mean and std take three values (R, G, B)")
        if any(s <= 0 for s in self.std):
            raise ArtifactError("std values must be positive")

    @property
    def crop_hw(self) -> tuple[int, int]:
        """The (height, width) of the network input."""
        if len(self.crop_size) == 1:
            return (self.crop_size[0], self.crop_size[0])
        return (self.crop_size[0], self.crop_size[1])

    def describe(self) -> str:
        """One line, like torchvision's transforms repr."""
        return (
            f"resize {list(self.resize_size)} ({self.interpolation}, antialias={self.antialias}) -> "
            f"center crop {list(self.crop_size)} -> /255 -> normalize mean={list(self.mean)} std={list(self.std)}"
        )

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``preprocess`` block."""
        return {
            "resize_size": list(self.resize_size),
            "crop_size": list(self.crop_size),
            "interpolation": self.interpolation,
            "antialias": self.antialias,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PreprocessSpec":
        """Parse a ``preprocess`` block; a missing key is an :class:`ArtifactError`."""
        try:
            return cls(
                resize_size=tuple(int(v) for v in _as_list(data["resize_size"])),
                crop_size=tuple(int(v) for v in _as_list(data["crop_size"])),
                interpolation=str(data["interpolation"]).lower(),
                antialias=bool(data.get("antialias", True)),
                mean=tuple(float(v) for v in data["mean"]),  # type: ignore[arg-type]
                std=tuple(float(v) for v in data["std"]),  # type: ignore[arg-type]
            )
        except KeyError as exc:
            raise ArtifactError(f"preprocess block lacks the key {exc.args[0]!r}") from exc
        except (TypeError, ValueError) as exc:
            raise ArtifactError(f"malformed preprocess block: {exc}") from exc


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _check_tensor_name(name: object) -> None:
    if not isinstance(name, str) or not name:
        raise ArtifactError(f"a tensor name must be a non-empty string, got {name!r}")


def _check_shape(shape: object) -> None:
    if not isinstance(shape, list) or not all(
        (isinstance(d, int) and not isinstance(d, bool) and d >= 0) or isinstance(d, str) or d is None for d in shape
    ):
        raise ArtifactError(f"a tensor shape must be a list of sizes and axis names, got {shape!r}")


@dataclass(frozen=True)
class TensorSpec:
    """A model input: name, shape (a string names a dynamic axis), dtype and layout.

    ``max_batch`` bounds a dynamic batch axis where the format plans memory for
    a largest batch (ExecuTorch); ``None`` means unbounded.
    """

    name: str
    shape: list[int | str]
    dtype: str = "float32"
    layout: str = "NCHW"
    max_batch: int | None = None

    def __post_init__(self) -> None:
        _check_tensor_name(self.name)
        _check_shape(self.shape)
        if not isinstance(self.dtype, str) or not isinstance(self.layout, str):
            raise ArtifactError("a tensor's dtype and layout must be strings")
        if self.max_batch is not None and (not isinstance(self.max_batch, int) or self.max_batch < 1):
            raise ArtifactError(f"max_batch must be a positive integer or null, got {self.max_batch!r}")

    @property
    def takes_images(self) -> bool:
        """Whether the input is whole uint8 RGB images (preprocessing embedded in the graph), not a preprocessed
        float tensor."""
        return self.layout == IMAGES_LAYOUT and self.dtype == "uint8"

    def example(self, batch_size: int, seed: int = 0) -> Any:
        """A seeded example batch for timing: standard-normal float32 tensors, or uniform uint8 noise images of
        :data:`EXAMPLE_IMAGE_SIZE` for an input of whole images."""
        import numpy as np

        rng = np.random.default_rng(seed)
        if self.takes_images:
            return rng.integers(0, 256, (batch_size, *EXAMPLE_IMAGE_SIZE, 3), dtype=np.uint8)
        height, width = (int(v) for v in self.shape[2:4])
        return rng.standard_normal((batch_size, 3, height, width), dtype=np.float32)

    @property
    def fixed_batch(self) -> int | None:
        """The batch size of a static batch axis; ``None`` when it is dynamic."""
        return self.shape[0] if self.shape and isinstance(self.shape[0], int) else None

    def check_batch(self, batch_size: int) -> None:
        """Refuse a batch size the artifact cannot run, naming the sizes it can."""
        fixed = self.fixed_batch
        if fixed is not None and batch_size != fixed:
            raise ArtifactError(
                f"this artifact runs batches of exactly {fixed}, got {batch_size}",
                hint=f"feed batches of {fixed} (predict: --batch-size {fixed})",
            )
        if self.max_batch is not None and batch_size > self.max_batch:
            raise ArtifactError(
                f"this artifact runs batches of at most {self.max_batch}, got {batch_size}",
                hint=f"split the input into batches of {self.max_batch} or fewer "
                f"(predict: --batch-size {self.max_batch})",
            )


@dataclass(frozen=True)
class OutputSpec:
    """A model output and what its values mean.

    ``meaning`` is :data:`LOGITS` (one score per class) or :data:`TOP_K`: the
    probabilities of the k best classes, best first, with their class indices in
    the output named ``indices``.
    """

    name: str
    meaning: OutputMeaning = OutputMeaning.LOGITS
    shape: list[int | str] = field(default_factory=list)
    indices: str | None = None

    def __post_init__(self) -> None:
        _check_tensor_name(self.name)
        _check_shape(self.shape)
        if self.indices is not None:
            _check_tensor_name(self.indices)
        if self.meaning not in OUTPUT_MEANINGS:
            raise ArtifactError(f"unknown output meaning {self.meaning!r}", hint=f"one of {', '.join(OUTPUT_MEANINGS)}")
        object.__setattr__(self, "meaning", OutputMeaning(self.meaning))  # decoded from JSON as a plain string
        if self.meaning == TOP_K and not self.indices:
            raise ArtifactError("a top_k output needs the name of its indices output (output.indices)")

    @property
    def is_top_k(self) -> bool:
        """Whether the artifact ends in an embedded softmax + top-k."""
        return self.meaning == TOP_K

    @property
    def top_k(self) -> int | None:
        """How many classes a top-k output gives (``None`` for logits)."""
        return int(self.shape[1]) if self.is_top_k and len(self.shape) > 1 else None

    @property
    def names(self) -> tuple[str, ...]:
        """The names of the graph outputs this spec describes, the scores first."""
        return (self.name, self.indices) if self.indices else (self.name,)
