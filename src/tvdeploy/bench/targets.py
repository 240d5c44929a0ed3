"""What a benchmark measures: backends (the eager model and every registered format) and how to run each."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tvdeploy.errors import UserInputError
from tvdeploy.runtime.deployment import apply_deployment, recorded_provider
from tvdeploy.runtime.formats import EAGER, backend_names, streaming_formats
from tvdeploy.runtime.manifest import Manifest, PreprocessSpec, TensorSpec, read_manifest
from tvdeploy.runtime.providers import SessionConfig, get_provider
from tvdeploy.runtime.runners import Runner, runner_for_artifact

if TYPE_CHECKING:
    from tvdeploy.models.loader import LoadedModel

logger = logging.getLogger(__name__)

CACHE_ENV = "TVDEPLOY_CACHE"


def default_cache_dir() -> Path:
    """Where ``tvdeploy bench --model`` keeps the artifacts it exports ($TVDEPLOY_CACHE or ~/.cache/tvdeploy)."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "tvdeploy")) / "bench"


def default_backends() -> list[str]:
    """Eager and every format whose extra is installed."""
    from tvdeploy.export.producers import exportable_formats

    return [EAGER, *exportable_formats()]


def parse_backends(text: str | None, allowed: Sequence[str] | None = None) -> list[str]:
    """``eager,onnx`` -> ["eager", "onnx"], checked against the registry's backends."""
    if not text:
        return list(allowed) if allowed is not None else default_backends()
    known = backend_names()
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserInputError(f"unknown backend(s) {', '.join(unknown)}", hint=f"choose from {', '.join(known)}")
    return list(dict.fromkeys(names))


@dataclass
class BenchTarget:
    """One thing to measure: the eager model, or an artifact of some format."""

    name: str
    backend: str
    preprocess: PreprocessSpec
    labels: list[str]
    input_spec: TensorSpec
    output_name: str
    artifact: Path | None = None
    manifest: Manifest | None = None
    module: Any = None  # the eager nn.Module, for backend "eager"
    source: dict[str, Any] | None = None  # how to rebuild the eager model in a cold-start subprocess
    threads: int | None = None  # intra-op threads of this target when the run sets none (tune's variants)
    #: execution provider of this target when the run names none (tune's candidates, a deployment record's)
    provider: str | None = None
    #: parallel streams of this target when the run sets none (tune's candidates; else a deployment record's)
    streams: int | None = None
    #: provider options of this target (tune's candidates: ``prefer_nhwc``, ``use_tf32``)
    provider_options: dict[str, Any] = field(default_factory=dict)

    @property
    def file_mb(self) -> float | None:
        """Total size of the model files."""
        if self.manifest is None:
            return None
        return sum(entry.bytes for entry in self.manifest.files) / 1e6

    def runs_batch(self, batch_size: int) -> bool:
        """Whether the target's input admits this batch size (ExecuTorch programs have a largest batch)."""
        try:
            self.input_spec.check_batch(batch_size)
        except UserInputError:
            return False
        return True

    def runner(self, provider: str, threads: int | None, streams: int | None = None) -> Runner:
        """A runner for model-only timing on a resolved provider (threads and streams: the run's, else the
        target's, else the deployment record's)."""
        if self.backend == EAGER:
            from tvdeploy.export.eager import EagerRunner

            return EagerRunner(
                self.module, self.input_spec, self.output_name, device=get_provider(provider).torch_device or "cpu"
            )
        if self.artifact is None or self.manifest is None:
            raise UserInputError(f"bench target {self.name} has no artifact")
        run_streams = streams if self.backend in streaming_formats() else None  # the run's, where the format has them
        config = SessionConfig(
            intra_op_threads=threads or self.threads,
            streams=run_streams or self.streams,
            provider_options=dict(self.provider_options),
        )
        applied = apply_deployment(self.manifest, config, None)
        return runner_for_artifact(self.artifact, applied.manifest, provider=provider, config=applied.session_config)

    def end_to_end(self, runner: Runner, top_k: int = 5, decoder: str = "cpu") -> Callable[[Sequence[bytes]], Any]:
        """The whole predict path on encoded image files, for ``--e2e``.

        Artifacts run tvdeploy's own path (Pillow decode, runtime preprocessing, the
        runner, softmax + top-k; with ``decoder`` gpu, nvImageCodec on the runner's GPU feeding the graph). The eager backend runs the torchvision tutorial
        pipeline: PIL, torchvision's transforms, the eager model, ``softmax`` and ``topk``.
        """
        if self.backend == EAGER:
            return _eager_pipeline(self.module, self.preprocess, getattr(runner, "device", "cpu"), top_k)
        from tvdeploy.runtime.classifier import Classifier

        if self.artifact is None or self.manifest is None:
            raise UserInputError(f"bench target {self.name} has no artifact")
        classifier = Classifier(self.artifact, self.manifest, runner, batch_size=1 << 30, decoder=decoder)
        return lambda files: classifier.predict(list(files), top_k=top_k)


def _eager_pipeline(module: Any, spec: PreprocessSpec, device: str, top_k: int) -> Callable[[Sequence[bytes]], Any]:
    import torch
    from PIL import Image

    from tvdeploy.export.eager import torchvision_transforms

    transforms = torchvision_transforms(spec)

    def run(files: Sequence[bytes]) -> Any:
        batch = torch.stack([transforms(Image.open(io.BytesIO(data)).convert("RGB")) for data in files]).to(device)
        with torch.inference_mode():
            top = module(batch).softmax(dim=1).topk(top_k, dim=1)
        return top.values.cpu(), top.indices.cpu()

    return run


def artifact_target(path: Path) -> BenchTarget:
    """A target for an existing artifact directory, named after the directory."""
    manifest = read_manifest(path)
    return BenchTarget(
        name=path.name,
        backend=manifest.format,
        preprocess=manifest.preprocess,
        labels=manifest.labels,
        input_spec=manifest.input,
        output_name=manifest.output.name,
        artifact=path,
        manifest=manifest,
        source={"architecture": manifest.architecture, **manifest.source.to_dict()},
        provider=recorded_provider(manifest),
    )


def _eager_target(model: LoadedModel, input_spec: TensorSpec, output_name: str) -> BenchTarget:
    return BenchTarget(
        name=EAGER,
        backend=EAGER,
        preprocess=model.preprocess,
        labels=model.labels,
        input_spec=input_spec,
        output_name=output_name,
        module=model.module,
        source={"architecture": model.architecture, **model.source.to_dict()},
    )


def eager_target_for(manifest: Manifest) -> BenchTarget:
    """The eager reference of an artifact, rebuilt from its manifest."""
    from tvdeploy.export.validate import reference_model

    return _eager_target(reference_model(manifest), manifest.network_input, manifest.network_output.name)


def model_targets(
    model: str, weights: str, backends: Sequence[str], cache_dir: Path, seed: int = 0
) -> list[BenchTarget]:
    """Targets for ``--model``: exports the formats it needs into ``cache_dir`` (reused when up to date).

    The eager model is loaded once, for the export and the eager target alike.
    """
    from tvdeploy.export.options import ExportOptions
    from tvdeploy.export.pipeline import ExportRequest, export_model, tensor_specs
    from tvdeploy.models.catalog import get_model_info
    from tvdeploy.models.loader import load_model, resolve_weights

    choice = resolve_weights(get_model_info(model), weights)
    expected = {"random": "none", "pretrained": choice.entry.id if choice.entry else None}.get(choice.kind)
    formats = [b for b in backends if b != EAGER]
    slug = f"{model}-{(expected or 'checkpoint').split('.')[-1].lower()}-seed{seed}"
    stale = [f for f in formats if expected is None or not _cached_ok(cache_dir / f"{slug}-{f}", expected)]
    loaded = load_model(model, weights, seed=seed, progress=False) if stale or EAGER in backends else None
    if stale:
        logger.info("exporting %s to %s for the benchmark (cache: %s)", model, ", ".join(stale), cache_dir)
        export_model(
            ExportRequest(
                model,
                stale,
                weights=weights,
                output=cache_dir,
                name=slug,
                force=True,
                seed=seed,
                progress=False,
                output_is_parent=True,
            ),
            model=loaded,
        )
    targets: list[BenchTarget] = []
    if loaded is not None and EAGER in backends:
        input_spec, output_spec = tensor_specs(loaded, ExportOptions())
        targets.append(_eager_target(loaded, input_spec, output_spec.name))
    for fmt in formats:
        target = artifact_target(cache_dir / f"{slug}-{fmt}")
        target.name = fmt
        targets.append(target)
    return targets


def _cached_ok(path: Path, weights_id: str) -> bool:
    """An artifact in the cache made from the same weights by the same tools, with parity passed."""
    from tvdeploy.export.versions import tool_versions

    try:
        manifest = read_manifest(path)
    except UserInputError:  # missing or unreadable: export again
        return False
    current = tool_versions()
    same_tools = all(manifest.versions.get(k) == current.get(k) for k in ("torch", "tvdeploy", "onnx"))
    return same_tools and manifest.weights == weights_id and manifest.parity is not None and manifest.parity.passed


def artifact_targets(paths: Sequence[Path], backends: str | None) -> list[BenchTarget]:
    """Targets for artifact directories (named by directory, by path where two share a name), those of the
    ``backends`` asked for (default: all of them), with the eager model of the first first where ``eager`` is
    asked for."""
    artifacts = [artifact_target(path) for path in paths]
    if len({t.name for t in artifacts}) < len(artifacts):
        for target, path in zip(artifacts, paths, strict=True):
            target.name = str(path)
    wanted = parse_backends(backends, allowed=[t.backend for t in artifacts])
    targets = [t for t in artifacts if t.backend in wanted]
    if not targets:
        raise UserInputError(
            f"none of the artifacts is of the backends {', '.join(wanted)}",
            hint="the artifacts are " + ", ".join(f"{t.name} ({t.backend})" for t in artifacts),
        )
    if EAGER in wanted and artifacts[0].manifest is not None:
        targets.insert(0, eager_target_for(artifacts[0].manifest))
    return targets
