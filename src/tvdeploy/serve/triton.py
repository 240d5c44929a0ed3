"""``tvdeploy export-triton``: a Triton Inference Server model repository from ONNX artifacts.

``config.pbtxt`` is built as Triton's own ``ModelConfig`` protobuf
(``tritonclient.grpc.model_config_pb2``) and written with protobuf's text format,
so Triton reads exactly what was meant: the onnxruntime backend, ``max_batch_size``
and dims from the manifest (the batch axis left out, as Triton wants), dynamic
batching, an instance group, and the labels file on the logits output so that
Triton's classification extension returns labels.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from tvdeploy.errors import ArtifactError, MissingDependencyError, UserInputError
from tvdeploy.runtime.manifest import Manifest, read_manifest, verify_artifact_files
from tvdeploy.serve.datatypes import DATATYPES

logger = logging.getLogger(__name__)

LABELS_FILE = "labels.txt"
CONFIG_FILE = "config.pbtxt"


@dataclass(frozen=True)
class TritonOptions:
    """How Triton should run each model.

    Args:
        max_batch_size: Triton's ``max_batch_size`` for a dynamic batch axis (a fixed batch gives 0).
        max_queue_delay_us: dynamic batching's ``max_queue_delay_microseconds``.
        instances: model instances (``instance_group.count``).
        kind: ``KIND_CPU`` or ``KIND_GPU``.
    """

    max_batch_size: int = 8
    max_queue_delay_us: int = 2000
    instances: int = 1
    kind: str = "KIND_CPU"

    def __post_init__(self) -> None:
        if self.max_batch_size < 1 or self.instances < 1 or self.max_queue_delay_us < 0:
            raise UserInputError("--max-batch-size and --instances must be >= 1, the queue delay >= 0")
        if self.kind not in ("KIND_CPU", "KIND_GPU"):
            raise UserInputError(f"unknown instance kind {self.kind!r}", hint="KIND_CPU or KIND_GPU")


def _schema() -> tuple[object, object]:
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError as exc:
        raise MissingDependencyError(
            "export-triton writes Triton's own config schema, from tritonclient[grpc], not installed",
            hint='pip install "tvdeploy[serve]"',
        ) from exc
    return model_config_pb2, text_format


def model_config(manifest: Manifest, options: TritonOptions) -> str:
    """The ``config.pbtxt`` text of one artifact."""
    pb, text_format = _schema()
    spec, output = manifest.input, manifest.output
    dynamic = spec.fixed_batch is None
    config = pb.ModelConfig(  # type: ignore[attr-defined]
        name=manifest.name,
        backend="onnxruntime",
        max_batch_size=min(options.max_batch_size, spec.max_batch or options.max_batch_size) if dynamic else 0,
    )

    def dims(shape: list[int | str]) -> list[int]:
        kept = shape[1:] if dynamic else shape
        return [d if isinstance(d, int) else -1 for d in kept]

    config.input.add(name=spec.name, data_type=getattr(pb, "TYPE_" + DATATYPES[spec.dtype]), dims=dims(spec.shape))
    scores = config.output.add(name=output.name, data_type=pb.TYPE_FP32, dims=dims(output.shape))  # type: ignore[attr-defined]
    if not output.is_top_k:
        scores.label_filename = LABELS_FILE
    else:
        config.output.add(name=output.names[1], data_type=pb.TYPE_INT64, dims=dims(output.shape))  # type: ignore[attr-defined]
    if dynamic:
        config.dynamic_batching.max_queue_delay_microseconds = options.max_queue_delay_us
    config.instance_group.add(count=options.instances, kind=getattr(pb.ModelInstanceGroup, options.kind))  # type: ignore[attr-defined]
    return str(text_format.MessageToString(config))  # type: ignore[attr-defined]


def export_triton(artifacts: list[Path], repository: Path, options: TritonOptions, force: bool = False) -> list[Path]:
    """Write ``repository/<name>/{config.pbtxt, labels.txt, 1/model.onnx}`` for each ONNX artifact."""
    written = []
    for artifact in artifacts:
        manifest = read_manifest(artifact)
        if manifest.format != "onnx":
            raise UserInputError(
                f"{artifact} is a {manifest.format} artifact; Triton's onnxruntime backend takes ONNX",
                hint=f"export ONNX: tvdeploy export --model {manifest.architecture} --format onnx",
            )
        if manifest.optimized_graph is not None and manifest.optimized_graph.host_specific:
            raise ArtifactError(
                f"{artifact} holds a graph optimized for this host's CPU (level all); Triton may run elsewhere",
                hint="export with --optimize extended, or without --optimize (Triton optimizes at load)",
            )
        verify_artifact_files(artifact, manifest)
        target = repository / manifest.name
        if target.exists():
            if not force:
                raise UserInputError(f"{target} already exists", hint="pass --force to replace it")
            shutil.rmtree(target)
        version = target / "1"
        version.mkdir(parents=True)
        for entry in manifest.files:
            shutil.copy2(artifact / entry.path, version / entry.path)
        (target / LABELS_FILE).write_text("\n".join(manifest.labels) + "\n", encoding="utf-8")
        (target / CONFIG_FILE).write_text(model_config(manifest, options), encoding="utf-8")
        logger.info("wrote %s", target)
        written.append(target)
    return written
