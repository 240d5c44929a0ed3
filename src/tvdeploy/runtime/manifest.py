"""The artifact manifest ``tvdeploy.json``: the contract between export and runtime.

The runtime reads only this file and the model file(s) it lists. The schema is
versioned: a reader refuses a manifest written by a newer schema rather than
guessing at fields it does not know.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tvdeploy.errors import ArtifactError
from tvdeploy.runtime.formats import FORMATS

#: The newest schema this tvdeploy reads and writes. A manifest is written at the lowest version that describes
#: it: version 2 adds embedded pre/post-processing (``output.indices``, image inputs) and ``optimized_graph``, so
#: plain artifacts stay readable by releases that know only version 1.
SCHEMA_VERSION = 2
MANIFEST_NAME = "tvdeploy.json"
#: Tensor names a fresh export gives its input and output; readers take the names from the manifest.
DEFAULT_INPUT_NAME = "input"
DEFAULT_OUTPUT_NAME = "logits"
#: Tensor names of an export with embedded pre/post-processing (``--embed-preprocess`` / ``--embed-postprocess``).
IMAGES_INPUT_NAME = "images"
TOP_K_OUTPUT_NAME = "probabilities"
TOP_K_INDICES_NAME = "indices"
#: What an output's values are: raw class scores, or the top-k probabilities of an embedded softmax + TopK
#: (with the class indices in a second output).
LOGITS = "logits"
TOP_K = "top_k"
OUTPUT_MEANINGS = (LOGITS, TOP_K)
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
    meaning: str = LOGITS
    shape: list[int | str] = field(default_factory=list)
    indices: str | None = None

    def __post_init__(self) -> None:
        if self.meaning not in OUTPUT_MEANINGS:
            raise ArtifactError(f"unknown output meaning {self.meaning!r}", hint=f"one of {', '.join(OUTPUT_MEANINGS)}")
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


SOURCE_KINDS = ("random", "pretrained", "checkpoint")


@dataclass(frozen=True)
class Source:
    """Where the eager model of an artifact came from, so that it can be rebuilt as the parity reference.

    ``random``: torchvision's init with ``seed`` (weight matrices it zero-initialises,
    listed in ``redrawn_zero_init``, redrawn); ``pretrained``: the torchvision
    weights ``weights`` (an id like ``ResNet50_Weights.IMAGENET1K_V2``);
    ``checkpoint``: the file at ``path`` with its ``sha256`` and head size.
    """

    kind: str
    seed: int = 0
    weights: str | None = None
    path: str | None = None
    sha256: str | None = None
    num_classes: int | None = None
    redrawn_zero_init: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise ArtifactError(f"unknown model source kind {self.kind!r}", hint=f"one of {', '.join(SOURCE_KINDS)}")

    @property
    def weights_argument(self) -> str:
        """The ``--weights`` value that rebuilds this model: ``none``, a weights id, or the checkpoint path."""
        if self.kind == "random":
            return "none"
        value = self.weights if self.kind == "pretrained" else self.path
        if not value:
            raise ArtifactError(
                f"the manifest's {self.kind} source does not say which weights", hint="pass the weights with --weights"
            )
        return value

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``source`` block (unset fields left out)."""
        data: dict[str, Any] = {"kind": self.kind, "seed": self.seed}
        for key in ("weights", "path", "sha256", "num_classes"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        if self.redrawn_zero_init:
            data["redrawn_zero_init"] = list(self.redrawn_zero_init)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Source":
        """Parse a ``source`` block (the one place it is decoded)."""
        if not isinstance(data, dict) or "kind" not in data:
            raise ArtifactError(
                "the manifest does not say where the model came from (source.kind)",
                hint="pass the weights with --weights",
            )
        try:
            return cls(
                kind=str(data["kind"]),
                seed=int(data.get("seed", 0)),
                weights=data.get("weights"),
                path=data.get("path"),
                sha256=data.get("sha256"),
                num_classes=None if data.get("num_classes") is None else int(data["num_classes"]),
                redrawn_zero_init=tuple(data.get("redrawn_zero_init", ())),
            )
        except (TypeError, ValueError) as exc:
            raise ArtifactError(f"malformed source block: {exc}") from exc


@dataclass(frozen=True)
class FileEntry:
    """A file of the artifact, relative to its directory, with its sha256."""

    path: str
    sha256: str
    bytes: int


#: ONNX Runtime graph optimization levels an artifact can be saved at (``--optimize``).
OPTIMIZED_GRAPH_LEVELS = ("basic", "extended", "all")


@dataclass(frozen=True)
class OptimizedGraph:
    """The model file is ONNX Runtime's own offline-optimized graph (``tvdeploy export --optimize``).

    Sessions load it with graph optimization off, which is what makes them start
    fast. ``level`` ``all`` includes the CPU layout transformations of the host it
    was made on (``host``, e.g. AVX-512 vs AVX2 blocking) and ONNX Runtime's own
    kernels of ``onnxruntime``: such a graph runs only where both match.
    """

    level: str
    onnxruntime: str
    host: str

    def __post_init__(self) -> None:
        if self.level not in OPTIMIZED_GRAPH_LEVELS:
            raise ArtifactError(
                f"unknown optimized graph level {self.level!r}", hint=f"one of {', '.join(OPTIMIZED_GRAPH_LEVELS)}"
            )

    @property
    def host_specific(self) -> bool:
        """Whether the graph holds layout transformations for one CPU (level ``all``)."""
        return self.level == "all"


@dataclass
class Manifest:
    """Everything a consumer needs to run an artifact, and nothing it has to guess."""

    name: str
    architecture: str
    weights: str
    pretrained: bool
    format: str
    precision: str
    opset: int | None
    exporter: str
    input: TensorSpec
    output: OutputSpec
    preprocess: PreprocessSpec
    labels: list[str]
    files: list[FileEntry]
    versions: dict[str, str]
    source: Source = field(default_factory=lambda: Source("random"))
    parity: dict[str, Any] | None = None
    export_info: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    #: the version read from the file (written: :attr:`lowest_schema_version`), not part of equality
    schema_version: int = field(default=SCHEMA_VERSION, compare=False)
    optimized_graph: OptimizedGraph | None = None

    @property
    def num_classes(self) -> int:
        """Number of classes (the length of ``labels``)."""
        return len(self.labels)

    @property
    def network_input(self) -> TensorSpec:
        """The float tensor the network itself takes: the input, or, where preprocessing is embedded, the
        (batch, 3, h, w) tensor it makes (what the eager reference is fed)."""
        if not self.input.takes_images:
            return self.input
        return TensorSpec(DEFAULT_INPUT_NAME, [self.input.shape[0], 3, *self.preprocess.crop_hw])

    @property
    def network_output(self) -> OutputSpec:
        """The network's own logits output: the output, or, where softmax + top-k are embedded, the logits
        they take (what the eager reference gives)."""
        if not self.output.is_top_k:
            return self.output
        return OutputSpec(DEFAULT_OUTPUT_NAME, shape=[self.output.shape[0], self.num_classes])

    @property
    def model_file(self) -> FileEntry:
        """The main model file (the first listed)."""
        return self.files[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, keys in a stable, readable order."""
        data = asdict(self)
        data["preprocess"] = self.preprocess.to_dict()
        data["source"] = self.source.to_dict()
        if self.output.indices is None:
            del data["output"]["indices"]
        if self.optimized_graph is None:
            del data["optimized_graph"]
        data.pop("schema_version")
        return {"schema_version": self.lowest_schema_version, **data}

    @property
    def lowest_schema_version(self) -> int:
        """The lowest schema version that describes this manifest (what :meth:`to_dict` writes)."""
        uses_v2 = self.input.takes_images or self.output.indices is not None or self.optimized_graph is not None
        return 2 if uses_v2 else 1

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Manifest":
        """Parse and check a manifest dict."""
        version = data.get("schema_version")
        if not isinstance(version, int):
            raise ArtifactError("manifest has no integer schema_version")
        if version > SCHEMA_VERSION:
            raise ArtifactError(
                f"manifest schema version {version} is newer than this tvdeploy understands ({SCHEMA_VERSION})",
                hint="upgrade tvdeploy (pip install -U tvdeploy)",
            )
        try:
            fmt = data["format"]
            if fmt not in FORMATS:
                raise ArtifactError(
                    f"unknown artifact format {fmt!r}",
                    hint=f"known formats: {', '.join(FORMATS)} (a newer tvdeploy may know it)",
                )
            return cls(
                name=data["name"],
                architecture=data["architecture"],
                weights=data["weights"],
                pretrained=bool(data["pretrained"]),
                format=fmt,
                precision=data["precision"],
                opset=data.get("opset"),
                exporter=data["exporter"],
                input=TensorSpec(**data["input"]),
                output=OutputSpec(**data["output"]),
                preprocess=PreprocessSpec.from_dict(data["preprocess"]),
                labels=list(data["labels"]),
                files=[FileEntry(**entry) for entry in data["files"]],
                versions=dict(data.get("versions", {})),
                source=Source.from_dict(data.get("source", {})),
                parity=data.get("parity"),
                export_info=dict(data.get("export_info", {})),
                created=data.get("created", ""),
                schema_version=version,
                optimized_graph=OptimizedGraph(**data["optimized_graph"]) if data.get("optimized_graph") else None,
            )
        except KeyError as exc:
            raise ArtifactError(f"manifest lacks the key {exc.args[0]!r}") from exc
        except TypeError as exc:
            raise ArtifactError(f"malformed manifest: {exc}") from exc


def read_manifest(artifact_dir: str | Path) -> Manifest:
    """Read ``tvdeploy.json`` from an artifact directory."""
    path = Path(artifact_dir) / MANIFEST_NAME
    if not Path(artifact_dir).is_dir():
        raise ArtifactError(
            f"{artifact_dir} is not a directory",
            hint="pass the directory `tvdeploy export` wrote (it holds tvdeploy.json)",
        )
    if not path.is_file():
        raise ArtifactError(
            f"no {MANIFEST_NAME} in {artifact_dir}",
            hint="pass the directory `tvdeploy export` wrote, not the model file",
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ArtifactError(f"{path} does not hold a JSON object")
    return Manifest.from_dict(data)


def write_manifest(manifest: Manifest, artifact_dir: str | Path) -> Path:
    """Write ``tvdeploy.json`` into ``artifact_dir`` (the caller makes the directory atomic)."""
    path = Path(artifact_dir) / MANIFEST_NAME
    path.write_text(json.dumps(manifest.to_dict(), indent=2) + "\n", encoding="utf-8")
    return path


def check_artifact_files(artifact_dir: str | Path, manifest: Manifest) -> dict[str, str]:
    """``{path: "ok" | "missing" | "MODIFIED"}`` for every file the manifest lists (sha256 compared)."""
    from tvdeploy.runtime.hashing import sha256_file

    checks = {}
    for entry in manifest.files:
        path = Path(artifact_dir) / entry.path
        if not path.is_file():
            checks[entry.path] = "missing"
        else:
            checks[entry.path] = "ok" if sha256_file(path) == entry.sha256 else "MODIFIED"
    return checks


def verify_artifact_files(artifact_dir: str | Path, manifest: Manifest) -> None:
    """Raise :class:`ArtifactError` unless every file the manifest lists is present and matches its sha256."""
    for name, state in check_artifact_files(artifact_dir, manifest).items():
        path = Path(artifact_dir) / name
        if state == "missing":
            raise ArtifactError(f"{path} is listed in the manifest but missing", hint="re-export the artifact")
        if state != "ok":
            raise ArtifactError(
                f"{path} does not match the sha256 in the manifest (modified or corrupt)",
                hint="re-export the artifact, or load with verify=False / --no-verify if you changed it on purpose",
            )
