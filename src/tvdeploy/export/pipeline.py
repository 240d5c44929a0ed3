"""``tvdeploy export``: load the model, export each format, prove parity, write the artifact atomically."""

from __future__ import annotations

import datetime as _dt
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tvdeploy.errors import ExportError
from tvdeploy.export.artifact import check_output, staged_directory
from tvdeploy.export.eager import EagerRunner
from tvdeploy.export.formats import exporter_for
from tvdeploy.export.inputs import InputSet, default_input_sets
from tvdeploy.export.onnx_exporter import DEFAULT_OPSET
from tvdeploy.export.parity import ParityReport, compare_runners, format_report, run_sets
from tvdeploy.export.versions import tool_versions
from tvdeploy.models.catalog import get_model_info
from tvdeploy.models.loader import LoadedModel, load_model
from tvdeploy.runtime.hashing import sha256_file
from tvdeploy.runtime.manifest import FileEntry, Manifest, OutputSpec, PreprocessSpec, TensorSpec, write_manifest
from tvdeploy.runtime.runners import runner_for_artifact

logger = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


@dataclass
class ExportRequest:
    """What ``tvdeploy export`` was asked to do."""

    model: str
    formats: list[str]
    weights: str = "DEFAULT"
    labels_file: Path | None = None
    output: Path | None = None
    opset: int = DEFAULT_OPSET
    force: bool = False
    name: str | None = None
    preprocess: PreprocessSpec | None = None
    seed: int = 0
    progress: bool = True
    #: treat ``output`` as the parent of ``<name>-<format>`` directories even for a single format
    output_is_parent: bool = False


@dataclass
class ExportOutcome:
    """One written artifact and its parity."""

    format: str
    artifact_dir: Path
    manifest: Manifest
    parity: ParityReport
    export_seconds: float

    @property
    def attempts(self) -> list[dict[str, Any]]:
        """Every exporter strategy tried, as recorded in the manifest's ``export_info``."""
        return list(self.manifest.export_info.get("attempts", []))

    @property
    def passed(self) -> bool:
        """Whether parity passed."""
        return self.parity.passed

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {"format": self.format, "artifact": str(self.artifact_dir), "exporter": self.manifest.exporter,
                "passed": self.passed, "export_seconds": round(self.export_seconds, 3),
                "attempts": self.attempts, "parity": self.parity.to_dict()}


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


def build_manifest(model: LoadedModel, fmt: str, result_files: list[str], exporter: str, opset: int | None,
                   directory: Path, name: str) -> Manifest:
    """The manifest of a freshly exported model file set."""
    height, width = model.preprocess.crop_hw
    return Manifest(
        name=name, architecture=model.architecture, weights=model.weights_id, pretrained=model.pretrained,
        format=fmt, precision="fp32", opset=opset, exporter=exporter,
        input=TensorSpec(INPUT_NAME, ["batch", 3, height, width]),
        output=OutputSpec(OUTPUT_NAME, "logits", ["batch", model.num_classes]),
        preprocess=model.preprocess, labels=list(model.labels),
        files=[FileEntry(f, sha256_file(directory / f), (directory / f).stat().st_size) for f in result_files],
        versions=tool_versions(), source=model.source,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )


def _clear(directory: Path) -> None:
    for child in directory.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()


def _export_one(model: LoadedModel, fmt: str, request: ExportRequest, directory: Path,
                input_sets: list[InputSet], reference: list[np.ndarray]) -> tuple[Manifest, ParityReport, list[dict[str, Any]]]:
    import torch

    exporter = exporter_for(fmt)
    height, width = model.preprocess.crop_hw
    example = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(request.seed))
    attempts: list[dict[str, Any]] = []
    last: tuple[Manifest, ParityReport] | None = None
    for strategy in exporter.strategies:
        _clear(directory)
        try:
            with _Step(f"export {fmt} ({strategy})"):
                result = exporter.export(model.module, example, directory, strategy, request.opset)
        except Exception as exc:  # exporters raise anything from torch internals; recorded and retried
            reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            logger.warning("%s export with %s failed: %s", fmt, strategy, reason)
            attempts.append({"strategy": strategy, "exported": False, "error": f"{type(exc).__name__}: {reason}"})
            continue
        manifest = build_manifest(model, fmt, result.files, result.exporter, result.opset, directory,
                                  request.name or model.architecture)
        with _Step(f"parity {fmt}"), runner_for_artifact(directory, manifest) as runner:
            report = compare_runners(reference, runner, input_sets, precision=manifest.precision)
        logger.info("parity %s: %s", fmt, "PASS" if report.passed else "FAIL: " + "; ".join(report.failures))
        logger.debug("%s", format_report(report))
        attempts.append({"strategy": strategy, "exported": True, "exporter": result.exporter, "parity_passed": report.passed})
        last = (manifest, report)
        if report.passed:
            break
        if strategy != exporter.strategies[-1]:
            logger.warning("%s from %s fails parity; trying the next exporter", fmt, strategy)
    if last is None:
        raise ExportError(
            f"every {fmt} exporter failed for {model.architecture}: "
            + "; ".join(f"{a['strategy']}: {a['error']}" for a in attempts),
            hint="try another --format, or report the model (see docs/coverage.md)",
        )
    return last[0], last[1], attempts


def export_model(request: ExportRequest) -> list[ExportOutcome]:
    """Export ``request.model`` to each requested format; every artifact carries its parity report.

    Returns one outcome per format; an outcome whose parity failed is still
    written (the manifest records the failure) and the caller decides the exit code.
    """
    get_model_info(request.model)  # unknown names fail before anything else happens
    outputs = {fmt: artifact_dir_for(request, fmt) for fmt in request.formats}
    for output in outputs.values():
        check_output(output, request.force)  # before any heavy work
    with _Step(f"load {request.model} (weights {request.weights})"):
        model = load_model(request.model, request.weights, request.labels_file, request.preprocess,
                           request.seed, request.progress)
    input_sets = default_input_sets(model.preprocess, seed=request.seed)
    height, width = model.preprocess.crop_hw
    with _Step("eager reference on parity inputs"):
        reference = run_sets(EagerRunner(model.module, INPUT_NAME, OUTPUT_NAME, ("batch", 3, height, width)), input_sets)
    outcomes = []
    for fmt, output in outputs.items():
        start = time.perf_counter()
        with staged_directory(output, request.force) as staging:
            manifest, report, attempts = _export_one(model, fmt, request, staging, input_sets, reference)
            seconds = time.perf_counter() - start
            manifest.parity = report.to_dict()
            manifest.export_info = {"seconds": round(seconds, 2), "attempts": attempts}
            write_manifest(manifest, staging)
        logger.info("wrote %s (%s)", output, "parity passed" if report.passed else "PARITY FAILED")
        outcomes.append(ExportOutcome(fmt, output, manifest, report, seconds))
    return outcomes
