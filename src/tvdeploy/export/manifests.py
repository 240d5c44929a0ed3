"""Every manifest the export side writes is built here: a fresh export's, a derived artifact's, a tuned one's, and
the parity and timing recorded on them, so that what a manifest holds is decided in one module."""

from __future__ import annotations

import dataclasses
import datetime as _dt
from pathlib import Path
from typing import Any

from tvdeploy.export.base import ExportResult, ProduceJob
from tvdeploy.export.versions import tool_versions
from tvdeploy.models.loader import LoadedModel
from tvdeploy.runtime.hashing import sha256_file
from tvdeploy.runtime.manifest import Deployment, FileEntry, Manifest
from tvdeploy.runtime.precisions import Precision
from tvdeploy.runtime.records import Derivation, ExportAttempt, ExportInfo, ParityReport


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _file_entries(directory: Path, files: list[str]) -> list[FileEntry]:
    return [FileEntry(f, sha256_file(directory / f), (directory / f).stat().st_size) for f in files]


def fresh_manifest(model: LoadedModel, job: ProduceJob, result: ExportResult, directory: Path, name: str) -> Manifest:
    """The manifest of a model file set just produced from the eager model (no parity yet)."""
    return Manifest(
        name=name,
        architecture=model.architecture,
        weights=model.weights_id,
        pretrained=model.pretrained,
        format=job.spec.name,
        precision=Precision(job.options.precision),
        opset=result.opset,
        exporter=result.exporter,
        input=result.input_spec or job.input_spec,
        output=result.output_spec or job.output_spec,
        preprocess=model.preprocess,
        labels=list(model.labels),
        files=_file_entries(directory, result.files),
        versions=tool_versions(),
        source=model.source,
        export_info=ExportInfo(details=dict(result.details)),
        created=_now(),
        optimized_graph=result.optimized_graph,
    )


def derived_manifest(
    manifest: Manifest, source: Path, staging: Path, files: list[str], details: dict[str, Any], **changes: Any
) -> Manifest:
    """The manifest of an artifact derived from ``source`` (whose manifest is ``manifest``): ``changes``, its files
    in ``staging`` hashed, this tvdeploy's versions, what it was derived from, no parity yet."""
    derivation = Derivation(str(source.resolve()), manifest.precision, manifest.model_file.sha256)
    if "precision" in changes:
        changes["precision"] = Precision(changes["precision"])
    return dataclasses.replace(
        manifest,
        files=_file_entries(staging, files),
        versions=tool_versions(),
        parity=None,
        export_info=ExportInfo(derived_from=derivation, details=dict(details)),
        created=_now(),
        **changes,
    )


def record_parity(
    manifest: Manifest, report: ParityReport, seconds: float, attempts: list[ExportAttempt] | None = None
) -> None:
    """Record the parity report, the seconds the artifact took and (for an export) the strategies tried."""
    manifest.parity = report
    manifest.export_info.seconds = round(seconds, 2)
    if attempts is not None:
        manifest.export_info.attempts = list(attempts)


def tuned_manifest(manifest: Manifest, record: Deployment, name: str) -> Manifest:
    """The winner's manifest with ``tune``'s deployment record, under the source artifact's ``name``."""
    return dataclasses.replace(manifest, deployment=record, name=name)
