"""Typed export options: what ``tvdeploy export`` carries from the CLI through each producer into the manifest."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tvdeploy.errors import UserInputError
from tvdeploy.runtime.manifest import OPTIMIZED_GRAPH_LEVELS
from tvdeploy.runtime.precisions import PRECISIONS, Precision, get_precision

#: The ONNX opset of new exports (18 brings the antialiased ``Resize`` and reduction ops as attributes).
DEFAULT_OPSET = 18
#: The first opset whose ``Resize`` antialiases (what torchvision's resize of a PIL image does).
EMBED_PREPROCESS_MIN_OPSET = 18
#: Largest batch a dynamic batch axis admits where a format plans memory for it (ExecuTorch). torch.export's
#: own bound elsewhere.
DEFAULT_MAX_BATCH = 8
#: Bound of the dynamic batch axis given to torch.export where memory is not planned for it.
EXPORT_BATCH_BOUND = 4096


#: ONNX Runtime's calibration methods, by the names the CLI takes.
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
#: Images a calibration uses by default (the first ones of the directory, in sorted order).
DEFAULT_CALIBRATION_IMAGES = 64
#: ``--calibration random``: seeded noise instead of images, for speed tests only.
RANDOM_CALIBRATION = "random"


@dataclass(frozen=True)
class CalibrationOptions:
    """Where int8 calibration data comes from and how it is used.

    Args:
        source: a directory of images (taken in sorted order, preprocessed with the artifact's own
            preprocessing), or ``"random"`` for seeded noise (speed tests only; the manifest says so).
        method: ``minmax``, ``entropy`` or ``percentile`` (ONNX Runtime's calibrators).
        max_images: how many images (or noise tensors) at most.
        seed: the seed of random calibration.
    """

    source: str
    method: str = "minmax"
    max_images: int = DEFAULT_CALIBRATION_IMAGES
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise UserInputError(
                f"unknown calibration method {self.method!r}", hint=f"choose one of {', '.join(CALIBRATION_METHODS)}"
            )
        if self.max_images < 1:
            raise UserInputError("the calibration needs at least one image")
        if not self.is_random and not Path(self.source).is_dir():
            raise UserInputError(
                f"calibration directory {self.source} does not exist",
                hint="pass a directory of representative images, or --calibration random for a speed test",
            )

    @property
    def is_random(self) -> bool:
        """Whether the calibration uses seeded noise instead of images."""
        return self.source == RANDOM_CALIBRATION


def require_calibration(precision: str, calibration: CalibrationOptions | None) -> None:
    """Refuse int8 without calibration data (export and optimize alike)."""
    if get_precision(precision).needs_calibration and calibration is None:
        raise UserInputError(
            f"{precision} needs calibration images",
            hint="pass --calibration DIR (representative images, e.g. a few dozen from your own data); "
            "--calibration random calibrates on noise, for speed tests only",
        )


#: How many classes ``--embed-postprocess`` keeps when no number is given.
DEFAULT_EMBED_TOP_K = 5


@dataclass(frozen=True)
class GraphOptions:
    """Transformations of an ONNX graph after export (formats whose registry entry has ``graph_passes``).

    Args:
        simplify: run onnxslim (constant folding, dead-node and redundant-op removal).
        optimize: save ONNX Runtime's offline-optimized graph at this level (``basic``, ``extended``, or
            ``all``, which is tied to this host's CPU and ONNX Runtime release), weights in an external file that
            sessions memory-map; sessions then load it with optimization off. ``None``: leave the graph as is.
        embed_preprocess: the graph takes uint8 RGB images ``(N, H, W, 3)`` of any size and resizes, crops and
            normalizes them itself, as the manifest's ``preprocess`` block says.
        embed_top_k: end the graph in softmax + top-k with this many classes (probabilities and indices out).
    """

    simplify: bool = False
    optimize: str | None = None
    embed_preprocess: bool = False
    embed_top_k: int | None = None

    def __post_init__(self) -> None:
        if self.optimize is not None and self.optimize not in OPTIMIZED_GRAPH_LEVELS:
            raise UserInputError(
                f"unknown graph optimization level {self.optimize!r}",
                hint=f"choose one of {', '.join(OPTIMIZED_GRAPH_LEVELS)}",
            )
        if self.embed_top_k is not None and self.embed_top_k < 1:
            raise UserInputError("--embed-postprocess keeps at least one class")

    @property
    def active(self) -> bool:
        """Whether any transformation is asked for."""
        return self != GraphOptions()

    def flags(self) -> list[str]:
        """The command-line flags that ask for these transformations (for messages)."""
        flags = ["--simplify"] if self.simplify else []
        flags += [f"--optimize {self.optimize}"] if self.optimize else []
        flags += ["--embed-preprocess"] if self.embed_preprocess else []
        flags += [f"--embed-postprocess {self.embed_top_k}"] if self.embed_top_k else []
        return flags


@dataclass(frozen=True)
class ExportOptions:
    """How to export, whatever the format.

    Args:
        opset: ONNX opset (ONNX, and OpenVINO which converts the ONNX file).
        precision: numeric precision of the artifact (see ``tvdeploy.runtime.formats.PRECISIONS``).
        dynamic_batch: a dynamic batch axis; ``False`` fixes the batch to ``batch_size``.
        batch_size: the fixed batch when ``dynamic_batch`` is off.
        max_batch: the largest batch of formats that plan memory for one (ExecuTorch).
        calibration: the int8 calibration data (required for int8, ignored otherwise).
        graph: transformations of the exported graph (ONNX).
    """

    opset: int = DEFAULT_OPSET
    precision: str = Precision.FP32
    dynamic_batch: bool = True
    batch_size: int = 1
    max_batch: int = DEFAULT_MAX_BATCH
    calibration: CalibrationOptions | None = None
    graph: GraphOptions = field(default_factory=GraphOptions)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UserInputError(f"unknown precision {self.precision!r}", hint=f"choose one of {', '.join(PRECISIONS)}")
        require_calibration(self.precision, self.calibration)
        if self.opset < 7:
            raise UserInputError(f"ONNX opset {self.opset} is too old", hint=f"use {DEFAULT_OPSET} (the default)")
        if self.batch_size < 1 or self.max_batch < 1:
            raise UserInputError("batch sizes must be >= 1")
        if self.graph.embed_preprocess and self.opset < EMBED_PREPROCESS_MIN_OPSET:
            raise UserInputError(
                f"--embed-preprocess needs ONNX opset {EMBED_PREPROCESS_MIN_OPSET} or newer (antialiased Resize), "
                f"got --opset {self.opset}",
                hint=f"use --opset {DEFAULT_OPSET} (the default)",
            )

    def batch_axis(self) -> int | str:
        """The first entry of the input shape in the manifest."""
        return "batch" if self.dynamic_batch else self.batch_size
