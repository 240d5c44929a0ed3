"""``tvdeploy optimize``: derive a new artifact from a plain fp32 ONNX artifact.

fp16 or int8, onnxslim, ONNX Runtime's optimized graph, embedded pre- and
post-processing: the same transformations as ``export``'s flags
(:func:`~tvdeploy.export.onnx_graph.derive_onnx`). The new artifact is a full
artifact of its own: the model file, a manifest that says what it was derived
from and how (precision, calibration method, image count and the images' hash,
graph transformations), and a parity report against the fp32 eager model, by
the criteria of its precision.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

from tvdeploy.errors import ArtifactError, MissingDependencyError, UserInputError
from tvdeploy.export.artifact import check_output, staged_directory
from tvdeploy.export.base import ProduceJob
from tvdeploy.export.manifests import derived_manifest, record_parity
from tvdeploy.export.onnx_graph import derive_onnx
from tvdeploy.export.options import (
    DEFAULT_OPSET,
    CalibrationOptions,
    ExportOptions,
    GraphOptions,
    require_calibration,
)
from tvdeploy.export.parity import ParityReport
from tvdeploy.export.precision import calibration_set
from tvdeploy.export.producers import PRODUCERS, criteria_for, missing_for_export, producer_of
from tvdeploy.export.validate import artifact_parity, reference_model
from tvdeploy.models.loader import LoadedModel
from tvdeploy.runtime.formats import get_format
from tvdeploy.runtime.manifest import Manifest, check_model_name, read_manifest, verify_artifact_files, write_manifest
from tvdeploy.runtime.precisions import Precision, get_precision
from tvdeploy.text import a


@dataclass(frozen=True)
class OptimizeRequest:
    """What ``tvdeploy optimize`` was asked to do."""

    artifact: Path
    precision: str = Precision.FP32
    calibration: CalibrationOptions | None = None
    graph: GraphOptions = field(default_factory=GraphOptions)
    output: Path | None = None
    force: bool = False
    #: the format of the new artifact: the source's (None), or one converted from it (``openvino`` from ONNX)
    format: str | None = None
    #: the model name of the new artifact (its manifest's ``name``, what ``serve`` serves it as); None: the source's
    name: str | None = None

    def __post_init__(self) -> None:
        if self.name is not None:
            check_model_name(self.name, "--name")

    def suffix(self) -> str:
        """What the default output name adds to the source's: ``-int8``, ``-opt``, ``-slim``, ``-pre``, ``-top5``,
        ``-openvino``."""
        parts = [self.format] if self.format else []
        parts += [self.precision] if self.precision != Precision.FP32 else []
        parts += ["slim"] if self.graph.simplify else []
        parts += ["pre"] if self.graph.embed_preprocess else []
        parts += [f"top{self.graph.embed_top_k}"] if self.graph.embed_top_k else []
        parts += (
            ["opt" if self.graph.optimize == "all" else f"opt-{self.graph.optimize}"] if self.graph.optimize else []
        )
        return "-".join(parts)


@dataclass
class OptimizeOutcome:
    """The derived artifact and its parity against the fp32 eager model."""

    artifact_dir: Path
    manifest: Manifest
    parity: ParityReport
    seconds: float

    @property
    def passed(self) -> bool:
        """Whether parity passed."""
        return self.parity.passed

    def to_dict(self) -> dict:
        """JSON-ready summary."""
        return {
            "artifact": str(self.artifact_dir),
            "format": self.manifest.format,
            "precision": self.manifest.precision,
            "passed": self.passed,
            "seconds": round(self.seconds, 2),
            "files": [dataclasses.asdict(f) for f in self.manifest.files],
            "parity": self.parity.to_dict(),
        }


def default_output(source: Path, suffix: str) -> Path:
    """``artifacts/resnet50-onnx`` -> ``artifacts/resnet50-onnx-int8``."""
    return source.with_name(f"{source.name}-{suffix}")


def optimize_artifact(request: OptimizeRequest, model: LoadedModel | None = None) -> OptimizeOutcome:
    """Convert an fp32 artifact to ``request.precision`` and prove parity against its eager model (``model``: the
    eager reference already rebuilt, as ``tune`` passes it for every candidate; else it is rebuilt here)."""
    source = request.artifact
    manifest = read_manifest(source)
    verify_artifact_files(source, manifest)
    if request.format is not None and request.format != manifest.format:
        return convert_artifact(request, manifest, model)
    _check_optimizable(request, source, manifest)
    criteria_for(manifest.format, request.precision)
    output = request.output or default_output(source, request.suffix())
    check_output(output, request.force, [source])
    start = time.perf_counter()
    calibration = (
        calibration_set(request.calibration, manifest.preprocess)
        if get_precision(request.precision).needs_calibration and request.calibration is not None
        else None
    )
    model = model or reference_model(manifest)
    with staged_directory(output, request.force, [source]) as staging:
        model_file = manifest.model_file.path
        result = derive_onnx(
            source / model_file,
            staging / model_file,
            precision=request.precision,
            graph=request.graph,
            preprocess=manifest.preprocess,
            input_spec=manifest.input,
            output_spec=manifest.output,
            calibration=calibration,
        )
        details = result.details
        converter = details.get("converter")
        derived = derived_manifest(
            manifest,
            source,
            staging,
            result.files,
            details,
            precision=request.precision,
            name=request.name or manifest.name,
            exporter=f"{manifest.exporter} + {converter}" if converter else manifest.exporter,
            input=result.input_spec,
            output=result.output_spec,
            optimized_graph=result.optimized_graph,
        )
        report = _check_and_write(staging, derived, model, start)
    return OptimizeOutcome(output, derived, report, time.perf_counter() - start)


def _check_optimizable(request: OptimizeRequest, source: Path, manifest: Manifest) -> None:
    """Refuse what ``optimize`` cannot derive from this artifact, naming what it can."""
    spec = get_format(manifest.format)
    producer = producer_of(spec)
    if producer.source is not None:
        raise UserInputError(
            f"{manifest.format} artifacts are converted from {producer.source} ones, not optimized themselves",
            hint=f"optimize the {producer.source} artifact with --format {manifest.format} --precision ...",
        )
    if request.precision == Precision.FP32 and not request.graph.active:
        raise UserInputError(
            "nothing to do: ask for a --precision or a graph transformation",
            hint="e.g. --precision int8 --calibration DIR, --optimize, --simplify, --embed-preprocess",
        )
    if request.precision != Precision.FP32 and request.precision not in producer.derivable:
        makers = [
            f"{f.source or name} -> {name} {', '.join(f.derivable)}" for name, f in PRODUCERS.items() if f.derivable
        ]
        raise UserInputError(
            f"cannot make {a(request.precision)} artifact from {a(manifest.format)} artifact",
            hint="optimize takes fp32 artifacts and makes: " + "; ".join(makers),
        )
    if request.graph.active and not producer.graph_passes:
        graph_formats = ", ".join(name for name, f in PRODUCERS.items() if f.graph_passes)
        raise UserInputError(
            f"{' '.join(request.graph.flags())} transforms ONNX graphs, not {manifest.format} artifacts",
            hint=f"pass an artifact of {graph_formats}",
        )
    refuse_derived(source, manifest)
    require_calibration(request.precision, request.calibration)


def derivations(manifest: Manifest) -> list[str]:
    """What makes an artifact derived rather than a plain fp32 export (empty for a plain one)."""
    return [
        what
        for what, present in (
            (manifest.precision, manifest.precision != Precision.FP32),
            ("embedded preprocessing", manifest.input.takes_images),
            ("embedded top-k", manifest.output.is_top_k),
            ("an optimized graph", manifest.optimized_graph is not None),
        )
        if present
    ]


def refuse_derived(source: Path, manifest: Manifest) -> None:
    """Refuse to derive from an artifact that is itself derived (optimize and tune start from plain fp32)."""
    derived = derivations(manifest)
    if derived:
        raise ArtifactError(
            f"{source} is already derived ({', '.join(derived)})",
            hint="derive from the plain fp32 artifact",
        )


def convert_artifact(request: OptimizeRequest, manifest: Manifest, model: LoadedModel | None = None) -> OptimizeOutcome:
    """``optimize --format NAME``: the artifact converted to a format made from it (OpenVINO IR from ONNX) at
    ``request.precision``, by that format's own producer, with parity against the fp32 eager model."""
    source, target = request.artifact, get_format(str(request.format))
    made = producer_of(target)
    if made.source != manifest.format:
        convertible = ", ".join(f"{name} (from {f.source})" for name, f in PRODUCERS.items() if f.source)
        raise UserInputError(
            f"{a(target.name)} artifact is not made from {a(manifest.format)} artifact",
            hint=f"formats converted from another: {convertible}",
        )
    if request.precision not in made.derivable:
        raise UserInputError(
            f"cannot make {a(target.name)} {request.precision} artifact",
            hint=f"{target.name} artifacts come in {', '.join(made.derivable)}",
        )
    if request.graph.active:
        raise UserInputError(f"{' '.join(request.graph.flags())} transforms ONNX graphs, not {target.name} artifacts")
    refuse_derived(source, manifest)
    missing = missing_for_export(target)
    if missing:
        raise MissingDependencyError(
            f"{target.name} needs {', '.join(missing)}, not installed", hint=target.install_hint()
        )
    require_calibration(request.precision, request.calibration)
    output = request.output or default_output(source, request.suffix())
    check_output(output, request.force, [source])
    start = time.perf_counter()
    options = ExportOptions(opset=manifest.opset or DEFAULT_OPSET, precision=request.precision,
                            calibration=request.calibration)  # fmt: skip
    calibration = calibration_set(request.calibration, manifest.preprocess) if request.calibration is not None else None
    job = ProduceJob(target, options, manifest.input, manifest.output, source_dir=source, calibration=calibration,
                     preprocess=manifest.preprocess)  # fmt: skip
    model = model or reference_model(manifest)
    with staged_directory(output, request.force, [source]) as staging:
        producer = made.load()
        result = producer.produce(job, staging, producer.strategies[0])
        derived = derived_manifest(
            manifest,
            source,
            staging,
            result.files,
            result.details,
            format=target.name,
            precision=request.precision,
            name=request.name or manifest.name,
            exporter=result.exporter,
            opset=result.opset,
        )
        report = _check_and_write(staging, derived, model, start)
    return OptimizeOutcome(output, derived, report, time.perf_counter() - start)


def _check_and_write(staging: Path, derived: Manifest, model: LoadedModel, start: float) -> ParityReport:
    """The derived artifact's parity against the eager model, recorded in its manifest, which is then written."""
    report = artifact_parity(staging, derived, model)
    record_parity(derived, report, time.perf_counter() - start)
    write_manifest(derived, staging)
    return report
