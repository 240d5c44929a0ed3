"""The artifact manifest ``tvdeploy.json``: the contract between export and runtime.

The runtime reads only this file and the model file(s) it lists. The schema is
versioned: a reader refuses a manifest written by a newer schema rather than
guessing at fields it does not know.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any

from tvdeploy.errors import ArtifactError
from tvdeploy.runtime.deployment_record import (  # noqa: F401 - the manifest's records, importable from here
    MAX_DEPLOYMENT_BATCH,
    MAX_DEPLOYMENT_TEXT,
    MAX_DEPLOYMENT_THREADS,
    OBJECTIVES,
    OPTIMIZED_GRAPH_LEVELS,
    Deployment,
    OptimizedGraph,
)
from tvdeploy.runtime.formats import FORMATS
from tvdeploy.runtime.precisions import PRECISIONS, Precision
from tvdeploy.runtime.records import ExportInfo, ParityReport
from tvdeploy.runtime.tensors import (  # noqa: F401
    DEFAULT_INPUT_NAME,
    DEFAULT_OUTPUT_NAME,
    EXAMPLE_IMAGE_SIZE,
    IMAGES_INPUT_NAME,
    IMAGES_LAYOUT,
    INTERPOLATIONS,
    LOGITS,
    OUTPUT_MEANINGS,
    TOP_K,
    TOP_K_INDICES_NAME,
    TOP_K_OUTPUT_NAME,
    OutputMeaning,
    OutputSpec,
    PreprocessSpec,
    TensorSpec,
)
from tvdeploy.text import a

#: The newest schema this tvdeploy reads and writes. A manifest is written at the lowest version that describes
#: it: version 2 adds embedded pre/post-processing (``output.indices``, image inputs) and ``optimized_graph``, 3 the
#: deployment record, 4 its streams, 5 its provider options, so plain artifacts stay readable by older releases.
SCHEMA_VERSION = 5
MANIFEST_NAME = "tvdeploy.json"
MAX_MANIFEST_BYTES = 16 * 1024 * 1024

#: What a model name may be: a file name and a Triton model name at once (one path component, no ``..``, no
#: separators, no leading dot or dash), so that a name from a manifest can never point outside a directory.
MODEL_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def check_model_name(name: object, what: str = "the manifest's name") -> str:
    """``name`` if it is a valid model name (:data:`MODEL_NAME_PATTERN`, no ``..``); else an :class:`ArtifactError`
    that names ``what`` was wrong."""
    if not isinstance(name, str) or not MODEL_NAME_PATTERN.fullmatch(name) or ".." in name:
        raise ArtifactError(
            f"{what} {name!r} is not a valid model name",
            hint="use letters, digits, '_', '.' and '-' (at most 128, starting with a letter or digit, no '..'), "
            "e.g. resnet50_v2",
        )
    return name


def check_relative_file(path: object) -> str:
    """``path`` if it names a file inside an artifact directory: relative, ``/``-separated, no ``..``."""
    if not isinstance(path, str) or not path or "\0" in path or "\\" in path:
        raise ArtifactError(f"the manifest's files entry {path!r} is not a relative file path")
    parts = PurePosixPath(path).parts
    if PurePosixPath(path).is_absolute() or any(part in ("..", ".") for part in parts) or not parts:
        raise ArtifactError(
            f"the manifest's files entry {path!r} points outside the artifact directory",
            hint="a manifest lists files inside its own directory only; re-export the artifact",
        )
    return path


class SourceKind(StrEnum):
    """Where an artifact's eager model came from."""

    RANDOM = "random"  # torchvision's init, seeded
    PRETRAINED = "pretrained"  # torchvision weights
    CHECKPOINT = "checkpoint"  # a state dict file


SOURCE_KINDS = tuple(SourceKind)


def _source_kind(name: str) -> SourceKind:
    """The :class:`SourceKind` named ``name``; an unknown one is an :class:`ArtifactError` listing the known."""
    if name not in SOURCE_KINDS:
        raise ArtifactError(f"unknown model source kind {name!r}", hint=f"one of {', '.join(SOURCE_KINDS)}")
    return SourceKind(name)


@dataclass(frozen=True)
class Source:
    """Where the eager model of an artifact came from, so that it can be rebuilt as the parity reference.

    ``random``: torchvision's init with ``seed`` (weight matrices it zero-initialises,
    listed in ``redrawn_zero_init``, redrawn); ``pretrained``: the torchvision
    weights ``weights`` (an id like ``ResNet50_Weights.IMAGENET1K_V2``);
    ``checkpoint``: the file at ``path`` with its ``sha256`` and head size.
    """

    kind: SourceKind
    seed: int = 0
    weights: str | None = None
    path: str | None = None
    sha256: str | None = None
    num_classes: int | None = None
    redrawn_zero_init: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", _source_kind(self.kind))

    def random_weights_warning(self, what: str) -> str | None:
        """For a model of random weights, the warning that ``what`` (an artifact, a served model) answers nothing
        meaningful; None for pretrained weights and checkpoints."""
        if self.kind != SourceKind.RANDOM:
            return None
        return (
            f"{what} has random weights (exported with --weights none): its predictions mean nothing; export "
            "pretrained weights or a checkpoint for real answers"
        )

    @property
    def weights_argument(self) -> str:
        """The ``--weights`` value that rebuilds this model: ``none``, a weights id, or the checkpoint path."""
        if self.kind == SourceKind.RANDOM:
            return "none"
        value = self.weights if self.kind == SourceKind.PRETRAINED else self.path
        if not value:
            raise ArtifactError(
                f"the manifest's {self.kind} source does not say which weights", hint="pass the weights with --weights"
            )
        return value

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``source`` block (unset fields left out)."""
        data: dict[str, Any] = {"kind": self.kind.value, "seed": self.seed}
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
                kind=_source_kind(str(data["kind"])),
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

    def __post_init__(self) -> None:
        check_relative_file(self.path)
        if not isinstance(self.sha256, str) or not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise ArtifactError(f"the manifest's files entry {self.path!r} has no valid sha256")
        if not isinstance(self.bytes, int) or isinstance(self.bytes, bool) or self.bytes < 0:
            raise ArtifactError(f"the manifest's files entry {self.path!r} has no valid byte count")

    def location(self, artifact_dir: str | Path) -> Path:
        """The file's path under ``artifact_dir``; an :class:`ArtifactError` where a symbolic link takes it
        outside that directory."""
        root = Path(artifact_dir).resolve()
        path = Path(artifact_dir) / self.path
        if not path.resolve().is_relative_to(root):
            raise ArtifactError(
                f"{path} leads outside the artifact directory {artifact_dir} (a symbolic link)",
                hint="an artifact's files lie inside its directory; re-export it or copy the files in",
            )
        return path


@dataclass
class Manifest:
    """Everything a consumer needs to run an artifact, and nothing it has to guess."""

    name: str
    architecture: str
    weights: str
    pretrained: bool
    format: str
    precision: Precision
    opset: int | None
    exporter: str
    input: TensorSpec
    output: OutputSpec
    preprocess: PreprocessSpec
    labels: list[str]
    files: list[FileEntry]
    versions: dict[str, str]
    source: Source = field(default_factory=lambda: Source(SourceKind.RANDOM))
    parity: ParityReport | None = None
    export_info: ExportInfo = field(default_factory=ExportInfo)
    created: str = ""
    #: the version read from the file (written: :attr:`lowest_schema_version`), not part of equality
    schema_version: int = field(default=SCHEMA_VERSION, compare=False)
    optimized_graph: OptimizedGraph | None = None
    deployment: Deployment | None = None

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
        data["parity"] = None if self.parity is None else self.parity.to_dict()
        data["export_info"] = self.export_info.to_dict()
        if self.output.indices is None:
            del data["output"]["indices"]
        if self.optimized_graph is None:
            del data["optimized_graph"]
        if self.deployment is None:
            del data["deployment"]
        else:
            data["deployment"] = self.deployment.to_dict()
        data.pop("schema_version")
        return {"schema_version": self.lowest_schema_version, **data}

    @property
    def lowest_schema_version(self) -> int:
        """The lowest schema version that describes this manifest (what :meth:`to_dict` writes)."""
        if self.deployment is not None:
            if self.deployment.provider_options:
                return 5
            return 4 if self.deployment.streams > 1 else 3
        uses_v2 = self.input.takes_images or self.output.indices is not None or self.optimized_graph is not None
        return 2 if uses_v2 else 1

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Manifest":
        """Parse and check a manifest dict: every field of the wrong type or value is an :class:`ArtifactError`
        that names the field."""
        version = data.get("schema_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise ArtifactError("manifest has no integer schema_version")
        if version > SCHEMA_VERSION:
            raise ArtifactError(
                f"manifest schema version {version} is newer than this tvdeploy understands ({SCHEMA_VERSION})",
                hint="upgrade tvdeploy (pip install -U tvdeploy)",
            )
        fmt = _typed(data, "format", str)
        if fmt not in FORMATS:
            raise ArtifactError(
                f"unknown artifact format {fmt!r}",
                hint=f"known formats: {', '.join(FORMATS)} (a newer tvdeploy may know it)",
            )
        labels = _typed(data, "labels", list)
        if not labels or not all(isinstance(label, str) for label in labels):
            raise ArtifactError("the manifest's labels must be a non-empty list of strings (labels)")
        files = [_block(data, f"files[{i}]", FileEntry, entry) for i, entry in enumerate(_typed(data, "files", list))]
        if not files:
            raise ArtifactError("the manifest lists no model file (files is empty)", hint="re-export the artifact")
        opset = data.get("opset")
        if opset is not None and (not isinstance(opset, int) or isinstance(opset, bool)):
            raise ArtifactError(f"the manifest's opset must be an integer or null, got {opset!r} (opset)")
        optimized = data.get("optimized_graph")
        manifest = cls(
            name=check_model_name(_typed(data, "name", str)),
            architecture=_typed(data, "architecture", str),
            weights=_typed(data, "weights", str),
            pretrained=_typed(data, "pretrained", bool),
            format=fmt,
            precision=_precision(_typed(data, "precision", str)),
            opset=opset,
            exporter=_typed(data, "exporter", str),
            input=_block(data, "input", TensorSpec, _typed(data, "input", dict)),
            output=_block(data, "output", OutputSpec, _typed(data, "output", dict)),
            preprocess=PreprocessSpec.from_dict(_typed(data, "preprocess", dict)),
            labels=labels,
            files=files,
            versions=dict(_typed(data, "versions", dict, {})),
            source=Source.from_dict(data.get("source", {})),
            parity=ParityReport.from_dict(data["parity"]) if data.get("parity") is not None else None,
            export_info=ExportInfo.from_dict(_typed(data, "export_info", dict, {})),
            created=_typed(data, "created", str, ""),
            schema_version=version,
            optimized_graph=_block(data, "optimized_graph", OptimizedGraph, optimized) if optimized else None,
            deployment=_block(data, "deployment", lambda **fields: Deployment.from_dict(fields), data["deployment"])
            if data.get("deployment")
            else None,
        )
        spatial = manifest.input.shape[2:4]
        if (
            not manifest.input.takes_images
            and len(spatial) == 2
            and all(isinstance(d, int) for d in spatial)
            and tuple(spatial) != manifest.preprocess.crop_hw
        ):
            raise ArtifactError(
                f"the manifest's preprocess crops {manifest.preprocess.crop_hw[0]}x{manifest.preprocess.crop_hw[1]} "
                f"but its input takes {spatial[0]}x{spatial[1]} (preprocess.crop_size, input.shape)",
                hint="re-export the artifact (export --crop-size changes both), or restore the manifest export wrote",
            )
        record = manifest.deployment
        if record is not None and (record.format, record.precision) != (manifest.format, manifest.precision):
            raise ArtifactError(
                f"the deployment record is for {a(record.format)} {record.precision} artifact; this one is "
                f"{manifest.format} {manifest.precision} (deployment.runtime, deployment.precision)",
                hint="re-tune the artifact (tvdeploy tune), or restore the record tune wrote",
            )
        return manifest


_MISSING = object()


def _precision(name: str) -> Precision:
    if name not in PRECISIONS:
        raise ArtifactError(
            f"unknown precision {name!r} (precision)",
            hint=f"known precisions: {', '.join(PRECISIONS)} (a newer tvdeploy may know it)",
        )
    return Precision(name)


def _typed(data: dict[str, Any], key: str, kind: type, default: Any = _MISSING) -> Any:
    """``data[key]`` if it is a ``kind`` (``default`` where it is absent or null and a default is given)."""
    value = data.get(key)
    if value is None and default is not _MISSING:
        return default
    if key not in data:
        raise ArtifactError(f"manifest lacks the key {key!r}")
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ArtifactError(
            f"the manifest's {key} must be {_KIND_NAMES.get(kind, kind.__name__)}, got {type(value).__name__} ({key})",
            hint="the file is not a manifest tvdeploy wrote, or it was edited; re-export the artifact",
        )
    return value


_KIND_NAMES = {str: "a string", bool: "true or false", list: "a list", dict: "an object", int: "an integer"}


def _block(data: dict[str, Any], key: str, kind: Any, value: Any) -> Any:
    """``kind(**value)``: a sub-block of the manifest, with its problems named by ``key``."""
    if not isinstance(value, dict):
        raise ArtifactError(f"the manifest's {key} must be an object, got {type(value).__name__} ({key})")
    try:
        return kind(**value)
    except ArtifactError as exc:
        raise ArtifactError(f"{exc.message} ({key})", hint=exc.hint) from exc
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"malformed {key} block in the manifest: {exc}") from exc


def read_manifest(artifact_dir: str | Path) -> Manifest:
    """Read ``tvdeploy.json`` from an artifact directory (at most :data:`MAX_MANIFEST_BYTES`; anything that is not
    a manifest is an :class:`ArtifactError` that names the problem)."""
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
        with path.open("rb") as stream:
            raw = stream.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise ArtifactError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ArtifactError(f"{path} is larger than {MAX_MANIFEST_BYTES // 2**20} MB: not a tvdeploy manifest")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ArtifactError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except RecursionError as exc:
        raise ArtifactError(f"{path} nests JSON too deeply to be a tvdeploy manifest") from exc
    except ValueError as exc:  # json.JSONDecodeError
        raise ArtifactError(f"{path} is not valid JSON: {exc}") from exc
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
        path = entry.location(artifact_dir)
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
