"""``tvdeploy export-triton``: a Triton Inference Server model repository from ONNX and OpenVINO artifacts.

``config.pbtxt`` is built as Triton's own ``ModelConfig`` protobuf
(``tritonclient.grpc.model_config_pb2``) and written with protobuf's text format,
so Triton reads exactly what was meant: the format's backend (onnxruntime, or openvino with its parameters
for a tuned or bf16 artifact), ``max_batch_size``
and dims from the manifest (the batch axis left out, as Triton wants), dynamic
batching, an instance group, and the labels file on the logits output so that
Triton's classification extension returns labels.

With ``--ensemble``, two more models per artifact: ``<name>_preprocess``, Triton's
Python backend running tvdeploy's runtime decoder (BYTES images in, the network's
input out; ``serve/triton_preprocess.py``), and ``<name>_ensemble``, which chains
it to the ONNX model, so that Triton takes encoded images as ``tvdeploy serve``
does.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tvdeploy.errors import ArtifactError, MissingDependencyError, UserInputError
from tvdeploy.flags import flag, positive_int
from tvdeploy.runtime.deployment import resolve_execution
from tvdeploy.runtime.execution import Execution
from tvdeploy.runtime.formats import FORMATS, get_format
from tvdeploy.runtime.manifest import MANIFEST_NAME, Manifest, read_manifest, verify_artifact_files
from tvdeploy.runtime.precisions import Precision
from tvdeploy.runtime.providers import get_provider
from tvdeploy.runtime.runners.openvino import stream_properties
from tvdeploy.serve.datatypes import DATATYPES, ENCODED_IMAGES_INPUT, protocol_dims
from tvdeploy.text import a

logger = logging.getLogger(__name__)

LABELS_FILE = "labels.txt"
CONFIG_FILE = "config.pbtxt"
#: Written into every model directory export-triton makes: ``--force`` replaces only directories that hold it.
WRITTEN_MARKER = ".tvdeploy-export-triton"
#: Suffixes of the ensemble's two extra models.
PREPROCESS_SUFFIX = "_preprocess"
ENSEMBLE_SUFFIX = "_ensemble"


@dataclass(frozen=True)
class TritonOptions:
    """How Triton should run each model.

    Args:
        max_batch_size: Triton's ``max_batch_size`` for a dynamic batch axis (a fixed batch gives 0).
        max_queue_delay_us: dynamic batching's ``max_queue_delay_microseconds``.
        instances: model instances (``instance_group.count``).
        kind: ``KIND_CPU`` or ``KIND_GPU``; None: ``KIND_GPU`` for an artifact tuned on a GPU provider, else
            ``KIND_CPU``.
        ensemble: also write the preprocessing model and the ensemble that takes encoded images.
    """

    max_batch_size: int = flag(8, "Triton's max_batch_size", parse=positive_int)
    max_queue_delay_us: int = flag(2000, "dynamic batching's queue delay")
    instances: int = flag(1, "model instances", parse=positive_int)
    kind: str | None = flag(
        None,
        "instance kind (default: KIND_GPU for an artifact tuned on a GPU provider, else KIND_CPU)",
        choices=("KIND_CPU", "KIND_GPU"),
    )
    ensemble: bool = flag(
        False,
        "also write NAME_preprocess (Triton's Python backend decoding BYTES images with tvdeploy's runtime) "
        "and NAME_ensemble (images in, the model's outputs out)",
    )

    def __post_init__(self) -> None:
        if self.max_batch_size < 1 or self.instances < 1 or self.max_queue_delay_us < 0:
            raise UserInputError("--max-batch-size and --instances must be >= 1, the queue delay >= 0")
        if self.kind is not None and self.kind not in ("KIND_CPU", "KIND_GPU"):
            raise UserInputError(f"unknown instance kind {self.kind!r}", hint="KIND_CPU or KIND_GPU")


def _schema() -> tuple[Any, Any]:
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError as exc:
        raise MissingDependencyError(
            "export-triton writes Triton's own config schema, from tritonclient[grpc], not installed",
            hint='pip install "tvdeploy[serve]"',
        ) from exc
    return model_config_pb2, text_format


def _max_batch_size(manifest: Manifest, options: TritonOptions) -> int:
    spec = manifest.input
    return min(options.max_batch_size, spec.max_batch or options.max_batch_size) if spec.fixed_batch is None else 0


def _add_outputs(pb: Any, config: Any, manifest: Manifest, batched: bool) -> None:
    output = manifest.output
    scores = config.output.add(name=output.name, data_type=pb.TYPE_FP32, dims=protocol_dims(output.shape, batched))
    if not output.is_top_k:
        scores.label_filename = LABELS_FILE
    else:
        config.output.add(name=output.names[1], data_type=pb.TYPE_INT64, dims=protocol_dims(output.shape, batched))


def _new_config(manifest: Manifest, options: TritonOptions, suffix: str = "", **kind: str) -> tuple[Any, Any, bool]:
    """Triton's schema module, a ``ModelConfig`` named after the artifact (plus ``suffix``) with ``kind``
    (``backend=`` or ``platform=``), and whether Triton batches it."""
    pb, _ = _schema()
    max_batch_size = _max_batch_size(manifest, options)
    return pb, pb.ModelConfig(name=manifest.name + suffix, max_batch_size=max_batch_size, **kind), max_batch_size > 0


def _as_text(config: Any) -> str:
    _, text_format = _schema()
    return str(text_format.MessageToString(config))


def _add_images_input(pb: Any, config: Any, batched: bool) -> None:
    """The BYTES input of encoded images: one image per batch row where Triton batches."""
    config.input.add(name=ENCODED_IMAGES_INPUT, data_type=pb.TYPE_STRING, dims=[1] if batched else [-1])


def _add_scheduling(pb: Any, config: Any, options: TritonOptions, batched: bool, kind: str) -> None:
    if batched:
        config.dynamic_batching.max_queue_delay_microseconds = options.max_queue_delay_us
    config.instance_group.add(count=options.instances, kind=getattr(pb.ModelInstanceGroup, kind))


def model_config(manifest: Manifest, options: TritonOptions) -> str:
    """The ``config.pbtxt`` text of one artifact, for its format's Triton backend."""
    pb, config, batched = _new_config(manifest, options, backend=str(get_format(manifest.format).triton_backend))
    for key, value in _backend_parameters(manifest, options.instances).items():
        config.parameters[key].string_value = value
    spec = manifest.input
    config.input.add(
        name=spec.name, data_type=getattr(pb, "TYPE_" + DATATYPES[spec.dtype]), dims=protocol_dims(spec.shape, batched)
    )
    _add_outputs(pb, config, manifest, batched)
    _add_scheduling(pb, config, options, batched, instance_kind(manifest, options))
    _add_gpu_execution(config, manifest)
    return _as_text(config)


#: The provider options Triton's onnxruntime backend takes as model parameters (the rest it cannot express).
TRITON_ORT_PARAMETERS = ("cudnn_conv_algo_search", "gpu_mem_limit", "arena_extend_strategy")


def instance_kind(manifest: Manifest, options: TritonOptions) -> str:
    """``--kind`` where given; else ``KIND_GPU`` for an artifact whose deployment record is on a GPU provider."""
    if options.kind is not None:
        return options.kind
    record = manifest.deployment
    return "KIND_GPU" if record is not None and get_provider(record.provider).on_gpu else "KIND_CPU"


def _add_gpu_execution(config: Any, manifest: Manifest) -> None:
    """A tuned GPU record's execution in Triton's terms: TensorRT as the onnxruntime backend's GPU accelerator (at
    the artifact's precision), the provider options the backend takes as parameters; what it cannot express is said
    (Triton then runs the backend's defaults for it)."""
    record = manifest.deployment
    if record is None or manifest.format != "onnx" or not get_provider(record.provider).on_gpu:
        return
    accelerator = get_provider(record.provider).triton_accelerator
    if accelerator is not None:
        added = config.optimization.execution_accelerators.gpu_execution_accelerator.add(name=accelerator)
        added.parameters["precision_mode"] = {"fp16": "FP16", "int8": "INT8"}.get(manifest.precision, "FP32")
    options = dict(record.provider_options)
    for key in TRITON_ORT_PARAMETERS:
        if key in options:
            config.parameters[key].string_value = str(options.pop(key))
    options.pop("device_id", None)  # Triton places instances on its GPUs itself
    if options:
        logger.warning(
            "%s: Triton's onnxruntime backend has no setting for %s (tuned with them); Triton runs its defaults there",
            manifest.name, ", ".join(f"{key}={value}" for key, value in sorted(options.items())),
        )  # fmt: skip


def _backend_parameters(manifest: Manifest, instances: int) -> dict[str, str]:
    """The OpenVINO backend's parameters for an OpenVINO artifact: the latency hint and the tuned threads, or a
    tuned deployment's streams (``NUM_STREAMS``, the throughput hint, threads for all of them), and bf16 for a bf16
    artifact (its ``HINT_BF16``; the backend has no way to pin f32, so an fp32 IR may run in bf16 on a CPU that
    has it, OpenVINO's default there: said in the log)."""
    if manifest.format != "openvino":
        return {}
    # the tuned record read as every command reads it: on another CPU, or beyond this host's cores, set aside
    execution = resolve_execution(manifest, Execution()).execution
    streams, threads = execution.streams or 1, execution.threads
    parameters = {key: str(value) for key, value in stream_properties(threads, streams).items()}
    if instances < streams:
        logger.warning(
            "%s: tuned for %d streams, i.e. %d batches in flight; Triton runs one batch per model instance at "
            "a time, so give --instances %d to keep them busy",
            manifest.name, streams, streams, streams,
        )  # fmt: skip
    if manifest.precision == Precision.BF16:
        parameters["HINT_BF16"] = "YES"
    elif manifest.precision == Precision.FP32:
        logger.warning(
            "%s: Triton's OpenVINO backend cannot pin f32 inference: on a CPU with AVX512_BF16/AMX it may compute "
            "this fp32 IR in bf16 (OpenVINO's default there)",
            manifest.name,
        )
    return parameters


def preprocess_config(manifest: Manifest, options: TritonOptions) -> str:
    """The ``config.pbtxt`` of the Python-backend step that decodes BYTES images into the network's input."""
    pb, config, batched = _new_config(manifest, options, PREPROCESS_SUFFIX, backend="python")
    _add_images_input(pb, config, batched)
    config.output.add(
        name=manifest.input.name, data_type=pb.TYPE_FP32, dims=protocol_dims(manifest.input.shape, batched)
    )
    _add_scheduling(pb, config, options, batched, "KIND_CPU")  # decoding is CPU work
    return _as_text(config)


def ensemble_config(manifest: Manifest, options: TritonOptions) -> str:
    """The ``config.pbtxt`` of the ensemble: encoded images -> preprocessing step -> the ONNX model."""
    pb, config, batched = _new_config(manifest, options, ENSEMBLE_SUFFIX, platform="ensemble")
    _add_images_input(pb, config, batched)
    _add_outputs(pb, config, manifest, batched)
    preprocess = config.ensemble_scheduling.step.add(model_name=manifest.name + PREPROCESS_SUFFIX, model_version=-1)
    preprocess.input_map[ENCODED_IMAGES_INPUT] = ENCODED_IMAGES_INPUT
    preprocess.output_map[manifest.input.name] = "preprocessed"
    model = config.ensemble_scheduling.step.add(model_name=manifest.name, model_version=-1)
    model.input_map[manifest.input.name] = "preprocessed"
    for name in manifest.output.names:
        model.output_map[name] = name
    return _as_text(config)


def _write_ensemble(artifact: Path, manifest: Manifest, repository: Path, options: TritonOptions) -> list[Path]:
    if manifest.input.takes_images:
        raise UserInputError(
            f"{artifact} takes decoded uint8 images (--embed-preprocess): the ensemble's step makes "
            "preprocessed tensors",
            hint="send it decoded images directly, or export without --embed-preprocess for --ensemble",
        )
    preprocess, ensemble = (
        repository / (manifest.name + PREPROCESS_SUFFIX),
        repository / (manifest.name + ENSEMBLE_SUFFIX),
    )
    _new_model_dir(preprocess)
    shutil.copy2(Path(__file__).with_name("triton_preprocess.py"), preprocess / "1" / "model.py")
    shutil.copy2(artifact / MANIFEST_NAME, preprocess / "1" / MANIFEST_NAME)
    (preprocess / CONFIG_FILE).write_text(preprocess_config(manifest, options), encoding="utf-8")
    _new_model_dir(ensemble)  # Triton wants a version directory, empty for an ensemble
    (ensemble / LABELS_FILE).write_text("\n".join(manifest.labels) + "\n", encoding="utf-8")
    (ensemble / CONFIG_FILE).write_text(ensemble_config(manifest, options), encoding="utf-8")
    return [preprocess, ensemble]


def _clear(repository: Path, name: str, force: bool) -> None:
    """Make room for model ``name``: nothing there, or (with ``force``) a model directory export-triton wrote.

    ``name`` comes from a manifest, whose reader allows one plain path component only
    (:func:`~tvdeploy.runtime.manifest.check_model_name`); a directory there that tvdeploy did not write (no
    :data:`WRITTEN_MARKER`), a symbolic link or a file is never removed.
    """
    target = repository / name
    if not (target.exists() or target.is_symlink()):
        return
    if not force:
        raise UserInputError(f"{target} already exists", hint="pass --force to replace it")
    if target.is_symlink() or not target.is_dir() or not (target / WRITTEN_MARKER).is_file():
        raise UserInputError(
            f"{target} was not written by tvdeploy export-triton: --force replaces only models it wrote",
            hint="remove it yourself, or write the repository somewhere else (--output)",
        )
    shutil.rmtree(target)


def _new_model_dir(target: Path) -> Path:
    """``target/1``, made with the marker that lets a later ``--force`` replace ``target``."""
    version = target / "1"
    version.mkdir(parents=True)
    (target / WRITTEN_MARKER).write_text("written by tvdeploy export-triton; --force may replace it\n")
    return version


def export_triton(artifacts: list[Path], repository: Path, options: TritonOptions, force: bool = False) -> list[Path]:
    """Write ``repository/<name>/{config.pbtxt, labels.txt, 1/model.onnx}`` for each ONNX artifact."""
    written = []
    for artifact in artifacts:
        manifest = read_manifest(artifact)
        if get_format(manifest.format).triton_backend is None:
            served = ", ".join(f"{f.name} ({f.triton_backend})" for f in FORMATS.values() if f.triton_backend)
            raise UserInputError(
                f"{artifact} is {a(manifest.format)} artifact, which no Triton backend runs",
                hint=f"Triton runs {served}: tvdeploy export --model {manifest.architecture} --format onnx",
            )
        if manifest.optimized_graph is not None and manifest.optimized_graph.host_specific:
            raise ArtifactError(
                f"{artifact} holds a graph optimized for this host's CPU (level all); Triton may run elsewhere",
                hint="export with --optimize extended, or without --optimize (Triton optimizes at load)",
            )
        verify_artifact_files(artifact, manifest)
        names = [manifest.name]
        if options.ensemble:
            names += [manifest.name + PREPROCESS_SUFFIX, manifest.name + ENSEMBLE_SUFFIX]
        for name in names:
            _clear(repository, name, force)
        target = repository / manifest.name
        version = _new_model_dir(target)
        for entry in manifest.files:
            (version / entry.path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(entry.location(artifact), version / entry.path)
        (target / LABELS_FILE).write_text("\n".join(manifest.labels) + "\n", encoding="utf-8")
        (target / CONFIG_FILE).write_text(model_config(manifest, options), encoding="utf-8")
        written.append(target)
        if options.ensemble:
            written += _write_ensemble(artifact, manifest, repository, options)
        for directory in written[-len(names) :]:
            logger.info("wrote %s", directory)
    return written
