"""The eager PyTorch reference, behind the same runner interface as the artifacts."""

from __future__ import annotations

from typing import Any

from tvdeploy.runtime.manifest import PreprocessSpec
from tvdeploy.runtime.runners.torch_backed import TorchModuleRunner


def torchvision_transforms(spec: PreprocessSpec) -> Any:
    """torchvision's own ``ImageClassification`` preset for a preprocess block (the seeds' transforms)."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms._presets import ImageClassification

    if len(spec.crop_size) != 1 or len(spec.resize_size) != 1:
        raise ValueError("torchvision's ImageClassification preset takes square crop and shorter-side resize sizes")
    return ImageClassification(crop_size=spec.crop_size[0], resize_size=spec.resize_size[0], mean=spec.mean,
                               std=spec.std, interpolation=InterpolationMode(spec.interpolation),
                               antialias=spec.antialias)


class EagerRunner(TorchModuleRunner):
    """Runs an in-memory ``nn.Module`` in eval mode under ``torch.inference_mode``: the parity reference."""

    backend = "eager"

    def __init__(self, module: Any, input_name: str = "input", output_name: str = "logits",
                 input_shape: tuple[Any, ...] = ("batch", 3, 224, 224), device: str = "cpu") -> None:
        super().__init__(input_name=input_name, output_name=output_name, input_shape=input_shape, device=device)
        self.module = module

    def _load(self) -> None:
        import torch

        self._torch = torch
        self.module = self.module.eval().to(self.device)

    def _unload(self) -> None:
        """The module belongs to the caller: keep it, so the runner can be activated again."""
