"""The eager PyTorch reference, behind the same runner interface as the artifacts."""

from __future__ import annotations

from typing import Any

from tvdeploy.runtime.manifest import PreprocessSpec, TensorSpec
from tvdeploy.runtime.runners.torch_backed import TorchModuleRunner


def torchvision_transforms(spec: PreprocessSpec) -> Any:
    """The tutorial pipeline for a preprocess block, built from torchvision's public transforms:
    ``Resize``, ``CenterCrop``, ``ToTensor``, ``Normalize`` (what ``weights.transforms()`` does to a PIL image)."""
    from torchvision import transforms
    from torchvision.transforms import InterpolationMode

    resize = spec.resize_size[0] if len(spec.resize_size) == 1 else list(spec.resize_size)
    return transforms.Compose(
        [
            transforms.Resize(resize, interpolation=InterpolationMode(spec.interpolation), antialias=spec.antialias),
            transforms.CenterCrop(list(spec.crop_size)),
            transforms.ToTensor(),
            transforms.Normalize(mean=list(spec.mean), std=list(spec.std)),
        ]
    )


class EagerRunner(TorchModuleRunner):
    """Runs an in-memory ``nn.Module`` in eval mode under ``torch.inference_mode``: the parity reference."""

    backend = "eager"

    def __init__(self, module: Any, input_spec: TensorSpec, output_name: str, device: str = "cpu") -> None:
        super().__init__(
            input_name=input_spec.name, output_name=output_name, input_shape=input_spec.shape, device=device
        )
        self.module = module

    def _load(self) -> None:
        import torch

        self._torch = torch
        self.module = self.module.eval().to(self.device)

    def _unload(self) -> None:
        """The module belongs to the caller: keep it, so the runner can be activated again."""
