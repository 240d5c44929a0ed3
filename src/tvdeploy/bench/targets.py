"""What a benchmark measures: backends (eager, TorchScript, .pt2, ONNX) and how to run each."""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from tvdeploy.errors import UserInputError
from tvdeploy.runtime.manifest import Manifest, PreprocessSpec, read_manifest
from tvdeploy.runtime.providers import SessionConfig
from tvdeploy.runtime.runners import Runner, runner_for_artifact

logger = logging.getLogger(__name__)

BACKENDS = ("eager", "torchscript", "pt2", "onnx")
CACHE_ENV = "TVDEPLOY_CACHE"


def default_cache_dir() -> Path:
    """Where ``tvdeploy bench --model`` keeps the artifacts it exports ($TVDEPLOY_CACHE or ~/.cache/tvdeploy)."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "tvdeploy")) / "bench"


def parse_backends(text: str | None, allowed: Sequence[str] = BACKENDS) -> list[str]:
    """``eager,onnx`` -> ["eager", "onnx"], checked against the known backends."""
    if not text:
        return list(allowed)
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in BACKENDS]
    if unknown:
        raise UserInputError(f"unknown backend(s) {', '.join(unknown)}", hint=f"choose from {', '.join(BACKENDS)}")
    return list(dict.fromkeys(names))


@dataclass
class BenchTarget:
    """One thing to measure: the eager model, or an artifact of some format."""

    name: str
    backend: str
    preprocess: PreprocessSpec
    labels: list[str]
    artifact: Path | None = None
    manifest: Manifest | None = None
    module: Any = None  # the eager nn.Module, for backend "eager"
    source: dict[str, Any] | None = None  # how to rebuild the eager model in a cold-start subprocess

    @property
    def file_mb(self) -> float | None:
        """Total size of the model files."""
        if self.manifest is None:
            return None
        return sum(entry.bytes for entry in self.manifest.files) / 1e6

    def runner(self, provider: str, threads: int | None) -> Runner:
        """A runner for model-only timing."""
        if self.backend == "eager":
            from tvdeploy.export.eager import EagerRunner

            height, width = self.preprocess.crop_hw
            return EagerRunner(self.module, "input", "logits", ("batch", 3, height, width),
                               device="cuda" if provider == "cuda" else "cpu")
        assert self.artifact is not None and self.manifest is not None
        return runner_for_artifact(self.artifact, self.manifest, provider=provider,
                                   config=SessionConfig(intra_op_threads=threads))

    def end_to_end(self, runner: Runner, top_k: int = 5) -> Callable[[Sequence[bytes]], Any]:
        """The whole predict path on encoded image files, for ``--e2e``.

        Artifacts run tvdeploy's own path (Pillow decode, runtime preprocessing, the
        runner, softmax + top-k). The eager backend runs the seeds' pipeline: PIL,
        torchvision's transforms, the eager model, ``softmax`` and ``topk``.
        """
        if self.backend == "eager":
            return _eager_pipeline(self.module, self.preprocess, getattr(runner, "device", "cpu"), top_k)
        from tvdeploy.runtime.classifier import Classifier

        assert self.manifest is not None and self.artifact is not None
        classifier = Classifier(self.artifact, self.manifest, runner, batch_size=1 << 30)
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
    return BenchTarget(name=path.name, backend=manifest.format, preprocess=manifest.preprocess,
                       labels=manifest.labels, artifact=path, manifest=manifest, source=manifest.source)


def eager_target_for(manifest: Manifest) -> BenchTarget:
    """The eager reference of an artifact, rebuilt from its manifest."""
    from tvdeploy.export.validate import reference_model

    model = reference_model(manifest)
    return BenchTarget(name="eager", backend="eager", preprocess=manifest.preprocess, labels=manifest.labels,
                       module=model.module, source={"architecture": manifest.architecture, **manifest.source})


def model_targets(model: str, weights: str, backends: Sequence[str], cache_dir: Path, seed: int = 0) -> list[BenchTarget]:
    """Targets for ``--model``: exports the formats it needs into ``cache_dir`` (reused when up to date)."""
    from tvdeploy.export.pipeline import ExportRequest, export_model
    from tvdeploy.models.catalog import get_model_info
    from tvdeploy.models.loader import load_model, resolve_weights

    choice = resolve_weights(get_model_info(model), weights)
    expected = {"random": "none", "pretrained": choice.entry.id if choice.entry else None}.get(choice.kind)
    formats = [b for b in backends if b != "eager"]
    slug = f"{model}-{(expected or 'checkpoint').split('.')[-1].lower()}-seed{seed}"
    stale = [f for f in formats if expected is None or not _cached_ok(cache_dir / f"{slug}-{f}", expected)]
    if stale:
        logger.info("exporting %s to %s for the benchmark (cache: %s)", model, ", ".join(stale), cache_dir)
        export_model(ExportRequest(model, stale, weights=weights, output=cache_dir, name=slug, force=True,
                                   seed=seed, progress=False, output_is_parent=True))
    targets: list[BenchTarget] = []
    if "eager" in backends:
        loaded = load_model(model, weights, seed=seed, progress=False)
        targets.append(BenchTarget(name="eager", backend="eager", preprocess=loaded.preprocess, labels=loaded.labels,
                                   module=loaded.module, source={"architecture": model, **loaded.source}))
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
    return same_tools and manifest.weights == weights_id and bool(manifest.parity and manifest.parity.get("passed"))
