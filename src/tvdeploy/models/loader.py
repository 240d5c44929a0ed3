"""Resolve ``--weights`` and build the eager model with its preprocessing and labels.

``--weights`` takes ``DEFAULT``, a weights name (``IMAGENET1K_V2`` or
``ResNet50_Weights.IMAGENET1K_V2``), ``none`` (seeded random init) or a path
to a checkpoint.
"""

from __future__ import annotations

import dataclasses
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tvdeploy.errors import LabelsError, WeightsError
from tvdeploy.models.catalog import ModelInfo, WeightsInfo, get_model_info
from tvdeploy.runtime.hashing import sha256_file
from tvdeploy.runtime.manifest import PreprocessSpec, Source, SourceKind

logger = logging.getLogger(__name__)

RANDOM_WEIGHTS = ("none", "random")
DEFAULT_SEED = 0


@dataclass(frozen=True)
class WeightsChoice:
    """What ``--weights`` resolved to: ``pretrained`` (with its entry), ``random`` or ``checkpoint`` (with a path)."""

    kind: str
    entry: WeightsInfo | None = None
    path: Path | None = None


def resolve_weights(info: ModelInfo, spec: str) -> WeightsChoice:
    """Interpret a ``--weights`` value for an architecture."""
    text = spec.strip()
    if text.upper() == "DEFAULT":
        return WeightsChoice("pretrained", entry=info.default_weights)
    if text.lower() in RANDOM_WEIGHTS:
        return WeightsChoice("random")
    entry = info.find_weights(text)
    if entry is not None:
        return WeightsChoice("pretrained", entry=entry)
    path = Path(text).expanduser()
    if path.exists():
        return WeightsChoice("checkpoint", path=path.resolve())
    looks_like_path = any(sep in text for sep in ("/", "\\")) or path.suffix in (
        ".pt",
        ".pth",
        ".bin",
        ".safetensors",
        ".ckpt",
    )
    if looks_like_path:
        raise WeightsError(f"checkpoint file {text} does not exist")
    names = ", ".join(w.name for w in info.weights)
    raise WeightsError(
        f"unknown weights {spec!r} for {info.name}",
        hint=f"use DEFAULT, one of {names}, none (random init) or a checkpoint PATH",
    )


@dataclass
class LoadedModel:
    """An eager model in eval mode with everything the manifest records about it."""

    module: Any
    architecture: str
    weights_id: str
    pretrained: bool
    preprocess: PreprocessSpec
    labels: list[str]
    source: Source

    @property
    def num_classes(self) -> int:
        """Number of classes the head produces."""
        return len(self.labels)


def read_labels(path: str | Path) -> list[str]:
    """One label per line; surrounding blank lines are ignored, inner blank lines are an error."""
    try:
        lines = Path(path).read_text(encoding="utf-8").strip("\n").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelsError(f"cannot read labels file {path}: {exc}") from exc
    labels = [line.strip() for line in lines]
    if not labels or any(not label for label in labels):
        raise LabelsError(f"labels file {path} must hold one non-empty label per line")
    return labels


def builder_kwargs(info: ModelInfo) -> dict[str, Any]:
    """Builder arguments that make a weightless model match its DEFAULT preset.

    torchvision's ViT builders size the position embedding from the weights'
    ``min_size`` only when weights are given; without them they build for 224,
    while ``vit_h_14``'s DEFAULT (SWAG E2E) preprocessing crops 518.
    """
    crop = info.default_weights.preprocess.crop_size[0]
    if info.name.startswith("vit_") and crop != 224:
        return {"image_size": crop}
    return {}


def _build(info: ModelInfo, seed: int, **kwargs: Any) -> Any:
    import torch
    from torchvision import models

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return models.get_model(info.name, weights=None, **{**builder_kwargs(info), **kwargs}).eval()


def _random_model(info: ModelInfo, seed: int) -> tuple[Any, list[str]]:
    """Seeded random init; weight matrices torchvision initialises to zero are redrawn.

    torchvision zero-initialises ViT classification heads, which makes every
    logit 0 for every input: such a model answers nothing, and parity against
    it could not tell a correct export from a broken one. Those parameters get a
    seeded normal(0, 0.02) (timm's head init) and are named in the manifest.
    """
    import torch

    module = _build(info, seed)
    redrawn = []
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name.endswith(".weight") and param.ndim >= 2 and not bool(param.any()):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.02)
                redrawn.append(name)
    if redrawn:
        logger.info("random init: redrew zero-initialised %s with normal(0, 0.02)", ", ".join(redrawn))
    return module, redrawn


def _pretrained(info: ModelInfo, entry: WeightsInfo, progress: bool) -> Any:
    """torchvision's own builder with the weights; the file must be (or get) into torch hub's cache first."""
    from torchvision import models

    from tvdeploy.models.download import ensure_cached

    cached = ensure_cached(entry.url, progress=progress)
    try:
        return models.get_model(info.name, weights=models.get_weight(entry.id)).eval()
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError) as exc:  # corrupt or foreign file
        raise WeightsError(
            f"cannot load the cached weights {cached}: {str(exc).splitlines()[0]}",
            hint="delete the file so that it is downloaded again",
        ) from exc


@dataclass(frozen=True)
class PreprocessOverrides:
    """``--resize-size/--crop-size/--interpolation/--mean/--std``: changes to the chosen weights' preprocessing.

    They apply to the preset of the weights actually chosen (``IMAGENET1K_V1``
    keeps V1's resize when only the crop changes), not to the DEFAULT weights'.
    """

    resize_size: tuple[int, ...] | None = None
    crop_size: tuple[int, ...] | None = None
    interpolation: str | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None

    def apply(self, base: PreprocessSpec) -> PreprocessSpec:
        """``base`` with the given fields replaced."""
        changes = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        return dataclasses.replace(base, **changes) if changes else base


def load_model(
    architecture: str,
    weights: str = "DEFAULT",
    labels_file: str | Path | None = None,
    preprocess: PreprocessSpec | PreprocessOverrides | None = None,
    seed: int = DEFAULT_SEED,
    progress: bool = True,
) -> LoadedModel:
    """Build an eager model for export.

    Args:
        architecture: a torchvision classification model name.
        weights: ``DEFAULT``, a weights name, ``none`` or a checkpoint path.
        labels_file: one label per line; must match the class count.
        preprocess: the preprocessing (a whole spec, as a manifest records it) or overrides of the
            chosen weights' own (the architecture's DEFAULT weights' for ``none`` and checkpoints).
        seed: seed of the random init for ``none`` (and of layers a checkpoint fills).
        progress: show the download progress bar.
    """
    info = get_model_info(architecture)
    choice = resolve_weights(info, weights)
    default = info.default_weights
    if choice.kind == "pretrained":
        assert choice.entry is not None
        entry = choice.entry
        result = LoadedModel(
            _pretrained(info, entry, progress),
            info.name,
            entry.id,
            True,
            entry.preprocess,
            [],
            Source(SourceKind.PRETRAINED, seed=seed, weights=entry.id),
        )
        categories, num_classes = list(entry.categories), entry.num_classes
    elif choice.kind == "random":
        module, redrawn = _random_model(info, seed)
        result = LoadedModel(
            module,
            info.name,
            "none",
            False,
            default.preprocess,
            [],
            Source(SourceKind.RANDOM, seed=seed, redrawn_zero_init=tuple(redrawn)),
        )
        categories, num_classes = list(default.categories), default.num_classes
    else:
        assert choice.path is not None
        result = _from_checkpoint(info, choice.path, seed)
        num_classes = int(result.source.num_classes or default.num_classes)
        categories = list(default.categories) if num_classes == default.num_classes else []
    result.labels = _choose_labels(labels_file, categories, num_classes)
    if isinstance(preprocess, PreprocessOverrides):
        result.preprocess = preprocess.apply(result.preprocess)
    elif preprocess is not None:
        result.preprocess = preprocess
    return result


def _from_checkpoint(info: ModelInfo, path: Path, seed: int) -> LoadedModel:
    from tvdeploy.models.checkpoint import fit_checkpoint, read_checkpoint

    state = read_checkpoint(path)
    default = info.default_weights
    fitted = fit_checkpoint(info.name, state, default.num_classes, lambda **kw: _build(info, seed, **kw))
    return LoadedModel(
        fitted.module,
        info.name,
        f"checkpoint:{path.name}",
        True,
        default.preprocess,
        [],
        Source(
            SourceKind.CHECKPOINT, seed=seed, path=str(path), sha256=sha256_file(path), num_classes=fitted.num_classes
        ),
    )


def _choose_labels(labels_file: str | Path | None, categories: list[str], num_classes: int) -> list[str]:
    if labels_file is not None:
        labels = read_labels(labels_file)
        if len(labels) != num_classes:
            raise LabelsError(
                f"labels file {labels_file} has {len(labels)} labels but the model has {num_classes} classes",
                hint="give one label per class, in class-index order",
            )
        return labels
    if len(categories) == num_classes:
        return categories
    logger.warning(
        "no labels for %d classes: naming them class_0..class_%d (pass --labels FILE)", num_classes, num_classes - 1
    )
    return [f"class_{i}" for i in range(num_classes)]
