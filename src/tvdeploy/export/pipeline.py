"""``tvdeploy export``: load the model, export each format, prove parity, write the artifact atomically."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tvdeploy.errors import ExportError, MissingDependencyError, UserInputError
from tvdeploy.export.artifact import check_output, staged_directory
from tvdeploy.export.base import ProduceJob
from tvdeploy.export.eager import EagerRunner
from tvdeploy.export.inputs import InputSet, default_input_sets
from tvdeploy.export.manifests import fresh_manifest, record_parity
from tvdeploy.export.options import ExportOptions, GraphOptions
from tvdeploy.export.parity import ParityReport, compare_runners, format_report, run_sets
from tvdeploy.export.precision import CalibrationSet, calibration_set
from tvdeploy.export.producers import criteria_for, missing_for_export, producer_of
from tvdeploy.models.catalog import get_model_info
from tvdeploy.models.loader import LoadedModel, PreprocessOverrides, load_model
from tvdeploy.runtime.formats import FormatSpec, get_format
from tvdeploy.runtime.manifest import (
    DEFAULT_INPUT_NAME,
    DEFAULT_OUTPUT_NAME,
    Manifest,
    OutputSpec,
    TensorSpec,
    check_model_name,
    write_manifest,
)
from tvdeploy.runtime.precisions import Precision, get_precision
from tvdeploy.runtime.records import ExportAttempt
from tvdeploy.runtime.runners import runner_for_artifact

logger = logging.getLogger(__name__)


@dataclass
class ExportRequest:
    """What ``tvdeploy export`` was asked to do."""

    model: str
    formats: list[str]
    weights: str = "DEFAULT"
    labels_file: Path | None = None
    output: Path | None = None
    options: ExportOptions = field(default_factory=ExportOptions)
    force: bool = False
    name: str | None = None
    preprocess: PreprocessOverrides | None = None
    seed: int = 0
    progress: bool = True
    #: treat ``output`` as the parent of ``<name>-<format>`` directories even for a single format
    output_is_parent: bool = False

    def __post_init__(self) -> None:
        if self.name is not None:
            check_model_name(self.name, "--name")


@dataclass
class ExportOutcome:
    """One written artifact and its parity."""

    format: str
    artifact_dir: Path
    manifest: Manifest
    parity: ParityReport
    export_seconds: float

    @property
    def attempts(self) -> list[ExportAttempt]:
        """Every producer strategy tried, as recorded in the manifest's ``export_info``."""
        return list(self.manifest.export_info.attempts)

    @property
    def passed(self) -> bool:
        """Whether parity passed."""
        return self.parity.passed

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "format": self.format,
            "artifact": str(self.artifact_dir),
            "exporter": self.manifest.exporter,
            "passed": self.passed,
            "export_seconds": round(self.export_seconds, 3),
            "attempts": [a.to_dict() for a in self.attempts],
            "parity": self.parity.to_dict(),
        }


def artifact_dir_for(request: ExportRequest, fmt: str) -> Path:
    """``--output`` for a single format; ``<output or ./artifacts>/<name>-<format>`` otherwise."""
    name = request.name or request.model
    if request.output is not None and len(request.formats) == 1 and not request.output_is_parent:
        return request.output
    parent = request.output if request.output is not None else Path("artifacts")
    return parent / f"{name}-{fmt}"


class _Step:
    """Logs a long step and how long it took (the CLI shows these as progress)."""

    def __init__(self, message: str) -> None:
        self.message = message

    def __enter__(self) -> "_Step":
        logger.info("%s ...", self.message)
        self.start = time.perf_counter()
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            logger.info("%s: done in %.1fs", self.message, time.perf_counter() - self.start)


def tensor_specs(
    model: LoadedModel, options: ExportOptions, spec: FormatSpec | None = None
) -> tuple[TensorSpec, OutputSpec]:
    """The manifest's input and output specs of a new export: the only source of tensor names and shapes."""
    height, width = model.preprocess.crop_hw
    batch = options.batch_axis()
    max_batch = options.max_batch if options.dynamic_batch and spec is not None and spec.bounded_batch else None
    return (
        TensorSpec(DEFAULT_INPUT_NAME, [batch, 3, height, width], max_batch=max_batch),
        OutputSpec(DEFAULT_OUTPUT_NAME, shape=[batch, model.num_classes]),
    )


def _clear(directory: Path) -> None:
    for child in directory.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()


@dataclass(frozen=True)
class _Context:
    """What every format of one export request shares: the eager model, the request, the parity inputs with the
    eager model's outputs on them, and the calibration set."""

    model: LoadedModel
    request: ExportRequest
    input_sets: list[InputSet]
    reference: list[np.ndarray]
    calibration: CalibrationSet | None


def _produce(
    context: _Context, spec: FormatSpec, directory: Path, source_dir: Path | None
) -> tuple[Manifest, ParityReport, list[ExportAttempt]]:
    """Try the format's strategies in order until one writes files that pass parity."""
    producer = producer_of(spec).load()
    job = _job(context, spec, source_dir)
    attempts: list[ExportAttempt] = []
    last: tuple[Manifest, ParityReport] | None = None
    for strategy in producer.strategies:
        _clear(directory)
        attempt, produced = _try_strategy(context, job, producer, strategy, directory)
        attempts.append(attempt)
        if produced is None:
            continue
        last = produced
        if produced[1].passed:
            break
        if strategy != producer.strategies[-1]:
            logger.warning("%s from %s fails parity; trying the next strategy", spec.name, strategy)
    if last is None:
        raise ExportError(
            f"every {spec.name} exporter failed for {context.model.architecture}: "
            + "; ".join(f"{a.strategy}: {a.error}" for a in attempts),
            hint="try another --format, or report the model (see docs/coverage.md)",
        )
    return last[0], last[1], attempts


def _job(context: _Context, spec: FormatSpec, source_dir: Path | None) -> ProduceJob:
    """The producer's job: the tensors, the eager module and a seeded example batch to trace with."""
    import torch

    request, model = context.request, context.model
    input_spec, output_spec = tensor_specs(model, request.options, spec)
    height, width = model.preprocess.crop_hw
    batch = 2 if request.options.dynamic_batch else request.options.batch_size  # 2: torch.export specialises 0/1
    example = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(request.seed))
    return ProduceJob(
        spec=spec,
        options=request.options,
        input_spec=input_spec,
        output_spec=output_spec,
        module=model.module,
        example=example,
        source_dir=source_dir,
        calibration=context.calibration,
        preprocess=model.preprocess,
    )


def _try_strategy(
    context: _Context, job: ProduceJob, producer: Any, strategy: str, directory: Path
) -> tuple[ExportAttempt, tuple[Manifest, ParityReport] | None]:
    """One strategy: produce the files, then check their parity; the attempt record, and the manifest and report
    where the files were written and ran."""
    spec = job.spec
    try:
        with _Step(f"export {spec.name} ({strategy})"):
            result = producer.produce(job, directory, strategy)
    except Exception as exc:  # producers raise anything from torch/backend internals; recorded and retried
        return _failed_attempt(spec.name, strategy, exc, exported=False), None
    manifest = fresh_manifest(context.model, job, result, directory, context.request.name or context.model.architecture)
    try:
        with _Step(f"parity {spec.name}"), runner_for_artifact(directory, manifest) as runner:
            report = compare_runners(
                context.reference,
                runner,
                context.input_sets,
                criteria=criteria_for(spec, manifest.precision, manifest.input.takes_images),
                precision=manifest.precision,
                expected=(manifest.input, manifest.output),
            )
    except Exception as exc:  # the written file does not load or run: recorded, next strategy
        return _failed_attempt(spec.name, strategy, exc, exported=True), None
    failures = "; ".join(str(f) for f in report.failures)
    logger.info("parity %s: %s", spec.name, "PASS" if report.passed else "FAIL: " + failures)
    logger.debug("%s", format_report(report))
    return ExportAttempt(strategy, exported=True, exporter=result.exporter, parity_passed=report.passed), (
        manifest,
        report,
    )


def _failed_attempt(fmt: str, strategy: str, exc: BaseException, exported: bool) -> ExportAttempt:
    """Log a strategy that failed (to export, or, ``exported``, to run) and return its ``attempts`` record."""
    text = str(exc).strip()
    reason = text.splitlines()[0][:300] if text else type(exc).__name__
    what = "does not run" if exported else "failed to export"
    logger.warning("%s from %s %s: %s", fmt, strategy, what, reason)
    logger.debug("%s from %s %s", fmt, strategy, what, exc_info=True)
    return ExportAttempt(strategy, exported=exported, error=f"{type(exc).__name__}: {reason}")


@dataclass(frozen=True)
class _Production:
    """One production: a format, and whether it is a scratch fp32 source for a converter (not an output)."""

    format: str
    scratch: bool


def production_order(formats: list[str], precision: str = Precision.FP32, plain: bool = True) -> list[_Production]:
    """The requested formats, each converter's source first. Converters convert plain fp32 artifacts (they apply
    the precision themselves), so a source is made as a plain fp32 scratch artifact unless it is requested at
    fp32 and ``plain`` (no graph transformations)."""
    order: list[_Production] = []

    def visit(name: str, scratch: bool) -> None:
        source = producer_of(name).source
        if source is not None:
            visit(source, scratch=source not in formats or precision != Precision.FP32 or not plain)
        if _Production(name, scratch) not in order:
            order.append(_Production(name, scratch))

    for name in formats:
        visit(name, scratch=False)
    return order


class PartialExportError(ExportError):
    """Some formats of a request could not be exported at all; ``outcomes`` holds the ones that were written."""

    def __init__(self, message: str, outcomes: list[ExportOutcome], failed: dict[str, str]) -> None:
        super().__init__(message, hint="try another --format, or report the model (see docs/coverage.md)")
        self.outcomes = outcomes
        self.failed = failed


def export_model(request: ExportRequest, model: LoadedModel | None = None) -> list[ExportOutcome]:
    """Export ``request.model`` to each requested format; every artifact carries its parity report.

    ``model`` is the already loaded eager model (``bench`` passes it so that it is
    loaded once). A format made by converting another format's artifact gets
    that artifact first: the requested one, or a parity-checked one in a scratch
    directory. Returns one outcome per requested format; an outcome whose
    parity failed is still written (the manifest records the failure) and the
    caller decides the exit code.
    """
    _check_request(request)
    outputs = {fmt: artifact_dir_for(request, fmt) for fmt in request.formats}
    for output in outputs.values():
        check_output(output, request.force)  # before any heavy work
    context = _prepare(request, model)
    outcomes, failures = _export_formats(context, outputs)
    failed = {fmt: reason for fmt, reason in failures.items() if fmt in outputs}
    if failed:
        written = ", ".join(str(o.artifact_dir) for o in outcomes)
        raise PartialExportError(
            "; ".join(f"{fmt}: {reason}" for fmt, reason in failed.items())
            + (f" (written: {written})" if written else ""),
            outcomes=outcomes,
            failed=failed,
        )
    return outcomes


def _check_request(request: ExportRequest) -> None:
    """Refuse what cannot be exported before anything is loaded: an unknown model, a missing extra, a precision
    or graph transformation a format does not take."""
    get_model_info(request.model)
    for spec in (get_format(name) for name in request.formats):
        missing = missing_for_export(spec)
        if missing:
            raise MissingDependencyError(
                f"exporting to {spec.name} needs {', '.join(missing)}, not installed", hint=spec.install_hint()
            )
        criteria_for(spec, request.options.precision)
        if request.options.graph.active and not producer_of(spec).graph_passes:
            raise UserInputError(
                f"{' '.join(request.options.graph.flags())} transforms ONNX graphs; {spec.name} artifacts take none",
                hint="export those formats in a separate run without these flags",
            )


def _prepare(request: ExportRequest, model: LoadedModel | None) -> _Context:
    """The eager model, the parity inputs with its outputs on them, and the calibration set: once for every
    format of the request."""
    if model is None:
        with _Step(f"load {request.model} (weights {request.weights})"):
            model = load_model(
                request.model, request.weights, request.labels_file, request.preprocess, request.seed, request.progress
            )
    input_sets = default_input_sets(model.preprocess, seed=request.seed, images=request.options.graph.embed_preprocess)
    calibration = None
    if get_precision(request.options.precision).needs_calibration and request.options.calibration is not None:
        with _Step("load calibration data"):
            calibration = calibration_set(request.options.calibration, model.preprocess)
    input_spec, output_spec = tensor_specs(model, request.options)
    with _Step("eager reference on parity inputs"):
        reference = run_sets(
            EagerRunner(model.module, input_spec, output_spec.name), input_sets, (input_spec, output_spec)
        )
    return _Context(model, request, input_sets, reference, calibration)


def _export_formats(context: _Context, outputs: dict[str, Path]) -> tuple[list[ExportOutcome], dict[str, str]]:
    """Every format in :func:`production_order`, each written atomically; the outcomes, and why each format that
    could not be exported failed (the others go on)."""
    request = context.request
    outcomes: list[ExportOutcome] = []
    failures: dict[str, str] = {}
    fp32_sources: dict[str, Path] = {}
    source_request = dataclasses.replace(  # converters convert plain fp32 sources
        request,
        options=dataclasses.replace(request.options, precision=Precision.FP32, calibration=None, graph=GraphOptions()),
    )
    with tempfile.TemporaryDirectory(prefix="tvdeploy-sources-") as scratch:
        for step in production_order(
            request.formats, request.options.precision, plain=not request.options.graph.active
        ):
            fmt, spec = step.format, get_format(step.format)
            source = producer_of(spec).source
            source_dir = fp32_sources.get(source) if source else None
            if source and source_dir is None:
                failures[fmt] = f"it is converted from {source}, whose fp32 export failed"
                continue
            step_context = dataclasses.replace(context, request=source_request if step.scratch else request)
            output = Path(scratch) / fmt if step.scratch else outputs[fmt]
            try:
                manifest, report, seconds = _write_format(step_context, spec, output, source_dir, step.scratch)
            except ExportError as exc:  # this format failed; the others go on
                logger.error("%s", exc.message)
                failures[f"{fmt} (fp32 source)" if step.scratch else fmt] = exc.message
                continue
            if report.passed and manifest.precision == Precision.FP32 and not step_context.request.options.graph.active:
                fp32_sources[fmt] = output
            if not step.scratch:
                logger.info("wrote %s (%s)", output, "parity passed" if report.passed else "PARITY FAILED")
                outcomes.append(ExportOutcome(fmt, output, manifest, report, seconds))
    return outcomes, failures


def _write_format(
    context: _Context, spec: FormatSpec, output: Path, source_dir: Path | None, scratch: bool
) -> tuple[Manifest, ParityReport, float]:
    """One format's artifact, produced, parity-checked and written atomically to ``output``."""
    start = time.perf_counter()
    with staged_directory(output, force=scratch or context.request.force) as staging:
        manifest, report, attempts = _produce(context, spec, staging, source_dir)
        seconds = time.perf_counter() - start
        record_parity(manifest, report, seconds, attempts)
        write_manifest(manifest, staging)
    return manifest, report, seconds
