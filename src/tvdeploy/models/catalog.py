"""The catalog of torchvision image classifiers, derived from torchvision's own registry.

Nothing here is a hand-copied table: builders come from ``list_models``, weights
and their metadata (categories, metrics, preprocessing) from
``get_model_weights``.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from tvdeploy.errors import UnknownModelError
from tvdeploy.runtime.manifest import PreprocessSpec

DEFAULT_NUM_CLASSES = 1000


@dataclass(frozen=True)
class WeightsInfo:
    """One pretrained weights entry of an architecture."""

    id: str
    name: str
    is_default: bool
    url: str
    preprocess: PreprocessSpec
    num_classes: int
    num_params: int
    acc1: float | None
    acc5: float | None
    gflops: float | None
    file_size_mb: float | None
    #: Class names in output order (empty for feature-extractor weights).
    categories: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "id": self.id,
            "name": self.name,
            "default": self.is_default,
            "num_classes": self.num_classes,
            "num_params": self.num_params,
            "acc@1": self.acc1,
            "acc@5": self.acc5,
            "gflops": self.gflops,
            "file_size_mb": self.file_size_mb,
            "preprocess": self.preprocess.to_dict(),
            "url": self.url,
        }


@dataclass(frozen=True)
class ModelInfo:
    """A classification architecture with all its weights entries."""

    name: str
    weights: tuple[WeightsInfo, ...]

    @property
    def default_weights(self) -> WeightsInfo:
        """The entry torchvision calls ``DEFAULT``."""
        return next(w for w in self.weights if w.is_default)

    def find_weights(self, name: str) -> WeightsInfo | None:
        """A weights entry by ``IMAGENET1K_V2`` or ``ResNet50_Weights.IMAGENET1K_V2`` (case-insensitive)."""
        wanted = name.lower()
        return next((w for w in self.weights if wanted in (w.name.lower(), w.id.lower())), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "name": self.name,
            "default_weights": self.default_weights.id,
            "weights": [w.to_dict() for w in self.weights],
        }


def preprocess_from_transforms(transforms: Any) -> PreprocessSpec:
    """The manifest's preprocess block from torchvision's ``ImageClassification`` preset."""
    return PreprocessSpec(
        resize_size=tuple(int(v) for v in transforms.resize_size),
        crop_size=tuple(int(v) for v in transforms.crop_size),
        interpolation=transforms.interpolation.value,
        antialias=bool(transforms.antialias) if transforms.antialias is not None else True,
        mean=tuple(float(v) for v in transforms.mean),  # type: ignore[arg-type]
        std=tuple(float(v) for v in transforms.std),  # type: ignore[arg-type]
    )


def _weights_info(entry: Any, default: Any) -> WeightsInfo:
    meta = entry.meta
    metrics = {k: v for k, v in meta.get("_metrics", {}).get("ImageNet-1K", {}).items() if v == v}  # drop NaN
    # Feature-extractor weights (VGG16 IMAGENET1K_FEATURES) list no categories but keep the 1000-way head.
    categories = meta.get("categories") or []
    return WeightsInfo(
        id=f"{type(entry).__name__}.{entry.name}",
        name=entry.name,
        is_default=entry is default,
        url=entry.url,
        preprocess=preprocess_from_transforms(entry.transforms()),
        num_classes=len(categories) or DEFAULT_NUM_CLASSES,
        num_params=int(meta["num_params"]),
        acc1=metrics.get("acc@1"),
        acc5=metrics.get("acc@5"),
        gflops=meta.get("_ops"),
        file_size_mb=meta.get("_file_size"),
        categories=tuple(categories),
    )


@lru_cache(maxsize=1)
def _catalog() -> dict[str, ModelInfo]:
    from torchvision import models

    catalog: dict[str, ModelInfo] = {}
    for name in models.list_models(module=models):
        enum = models.get_model_weights(name)
        default = enum.DEFAULT
        catalog[name] = ModelInfo(name=name, weights=tuple(_weights_info(e, default) for e in enum))
    return catalog


def list_catalog(pattern: str | None = None) -> list[ModelInfo]:
    """All classifiers, or those matching ``pattern`` (a glob like ``resnet*``, else a substring)."""
    models = list(_catalog().values())
    if not pattern:
        return models
    pattern = pattern.lower()
    if any(ch in pattern for ch in "*?["):
        return [m for m in models if fnmatch.fnmatch(m.name, pattern)]
    return [m for m in models if pattern in m.name]


def get_model_info(name: str) -> ModelInfo:
    """The catalog entry of ``name``; unknown names get close-match suggestions."""
    catalog = _catalog()
    info = catalog.get(name) or catalog.get(name.lower())
    if info is not None:
        return info
    suggestions = difflib.get_close_matches(name.lower(), list(catalog), n=5, cutoff=0.5)
    hint = f"did you mean {', '.join(suggestions)}?" if suggestions else "run `tvdeploy list` to see all models"
    raise UnknownModelError(f"unknown model {name!r}: torchvision has no classification model of that name", hint=hint)
