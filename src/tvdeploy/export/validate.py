"""``tvdeploy validate``: re-prove an artifact's parity against the eager model it came from."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tvdeploy.errors import ArtifactError
from tvdeploy.export.eager import EagerRunner
from tvdeploy.export.inputs import default_input_sets
from tvdeploy.export.parity import ParityReport, compare_runners
from tvdeploy.export.producers import criteria_for
from tvdeploy.models.loader import LoadedModel, load_model
from tvdeploy.runtime.hashing import sha256_file
from tvdeploy.runtime.manifest import Manifest, SourceKind, read_manifest, verify_artifact_files
from tvdeploy.runtime.runners import runner_for_artifact

logger = logging.getLogger(__name__)


def reference_weights(manifest: Manifest, weights_override: str | None = None) -> str:
    """The ``--weights`` value that rebuilds an artifact's eager model; a checkpoint must be the one exported."""
    if weights_override:
        return weights_override
    source = manifest.source
    weights = source.weights_argument
    if source.kind == SourceKind.CHECKPOINT:
        path = Path(weights)
        if not path.is_file():
            raise ArtifactError(
                f"the checkpoint this artifact was exported from is not at {path}", hint="pass it with --weights PATH"
            )
        if sha256_file(path) != source.sha256:
            raise ArtifactError(
                f"the checkpoint at {path} changed since the export (sha256 differs)",
                hint="pass the original with --weights PATH",
            )
    return weights


def reference_model(manifest: Manifest, weights_override: str | None = None) -> LoadedModel:
    """Rebuild the eager model an artifact was exported from."""
    return load_model(
        manifest.architecture,
        reference_weights(manifest, weights_override),
        preprocess=manifest.preprocess,
        seed=manifest.source.seed,
        progress=False,
    )


@dataclass
class ValidationResult:
    """An artifact's manifest and its fresh parity report."""

    artifact_dir: Path
    manifest: Manifest
    parity: ParityReport

    @property
    def passed(self) -> bool:
        """Parity passed."""
        return self.parity.passed

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "artifact": str(self.artifact_dir),
            "format": self.manifest.format,
            "passed": self.passed,
            "parity": self.parity.to_dict(),
        }


def artifact_parity(directory: Path, manifest: Manifest, model: LoadedModel, provider: str = "cpu") -> ParityReport:
    """Compare an artifact with its eager model on photos and noise, by its format's criteria at its precision."""
    if model.num_classes != manifest.num_classes:
        raise ArtifactError(f"the reference model has {model.num_classes} classes, the artifact {manifest.num_classes}")
    input_sets = default_input_sets(manifest.preprocess, seed=manifest.source.seed, images=manifest.input.takes_images)
    reference = EagerRunner(model.module, manifest.network_input, manifest.network_output.name)
    criteria = criteria_for(manifest.format, manifest.precision, manifest.input.takes_images)
    with runner_for_artifact(directory, manifest, provider=provider) as candidate:
        return compare_runners(
            reference,
            candidate,
            input_sets,
            criteria=criteria,
            precision=manifest.precision,
            expected=(manifest.input, manifest.output),
        )


def validate_artifact(artifact_dir: str | Path, provider: str = "cpu", weights: str | None = None) -> ValidationResult:
    """Verify the files of an artifact, rebuild its eager reference, and compare on photos and noise."""
    directory = Path(artifact_dir)
    manifest = read_manifest(directory)
    verify_artifact_files(directory, manifest)
    report = artifact_parity(directory, manifest, reference_model(manifest, weights), provider)
    return ValidationResult(directory, manifest, report)
