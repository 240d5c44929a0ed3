"""``tvdeploy optimize``: derive a new artifact from an existing one (fp16 or int8 from fp32 ONNX).

The new artifact is a full artifact of its own: the converted model file, a
manifest that says what it was derived from and how (precision, calibration
method, image count and the images' hash), and a parity report against the
fp32 eager model, by the criteria of its precision.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import time
from dataclasses import dataclass
from pathlib import Path

from tvdeploy.errors import ArtifactError, UserInputError
from tvdeploy.export.artifact import check_output, staged_directory
from tvdeploy.export.options import CalibrationOptions, require_calibration
from tvdeploy.export.parity import ParityReport
from tvdeploy.export.precision import calibration_set, convert_precision
from tvdeploy.export.validate import artifact_parity, reference_model
from tvdeploy.export.versions import tool_versions
from tvdeploy.runtime.formats import FORMATS, get_format
from tvdeploy.runtime.hashing import sha256_file
from tvdeploy.runtime.manifest import FileEntry, Manifest, read_manifest, verify_artifact_files, write_manifest


@dataclass(frozen=True)
class OptimizeRequest:
    """What ``tvdeploy optimize`` was asked to do."""

    artifact: Path
    precision: str
    calibration: CalibrationOptions | None = None
    output: Path | None = None
    force: bool = False


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


def default_output(source: Path, precision: str) -> Path:
    """``artifacts/resnet50-onnx`` -> ``artifacts/resnet50-onnx-int8``."""
    return source.with_name(f"{source.name}-{precision}")


def optimize_artifact(request: OptimizeRequest) -> OptimizeOutcome:
    """Convert an fp32 artifact to ``request.precision`` and prove parity against its eager model."""
    source = request.artifact
    manifest = read_manifest(source)
    verify_artifact_files(source, manifest)
    spec = get_format(manifest.format)
    if request.precision not in spec.derivable:
        makers = [f"{name} -> {', '.join(f.derivable)}" for name, f in FORMATS.items() if f.derivable]
        raise UserInputError(
            f"cannot make a {request.precision} artifact from a {manifest.format} artifact",
            hint="optimize takes fp32 artifacts and makes: " + "; ".join(makers),
        )
    if manifest.precision != "fp32":
        raise ArtifactError(
            f"{source} is already {manifest.precision}",
            hint="derive lower precisions from the fp32 artifact",
        )
    require_calibration(request.precision, request.calibration)
    spec.criteria_for(request.precision)
    output = request.output or default_output(source, request.precision)
    check_output(output, request.force)
    start = time.perf_counter()
    calibration = (
        calibration_set(request.calibration, manifest.preprocess)
        if request.precision == "int8" and request.calibration is not None
        else None
    )
    model = reference_model(manifest)
    with staged_directory(output, request.force) as staging:
        model_file = manifest.model_file.path
        details = convert_precision(
            source / model_file, staging / model_file, request.precision, manifest.input.name, calibration
        )
        derived = dataclasses.replace(
            manifest,
            precision=request.precision,
            exporter=f"{manifest.exporter} + {details['converter']}",
            files=[FileEntry(model_file, sha256_file(staging / model_file), (staging / model_file).stat().st_size)],
            versions=tool_versions(),
            parity=None,
            export_info={
                **details,
                "derived_from": {
                    "artifact": str(source.resolve()),
                    "precision": manifest.precision,
                    "sha256": manifest.model_file.sha256,
                },
            },
            created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        )
        report = artifact_parity(staging, derived, model)
        derived.parity = report.to_dict()
        derived.export_info["seconds"] = round(time.perf_counter() - start, 2)
        write_manifest(derived, staging)
    return OptimizeOutcome(output, derived, report, time.perf_counter() - start)
