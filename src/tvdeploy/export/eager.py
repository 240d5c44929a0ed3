"""The eager PyTorch reference, behind the same runner interface as the artifacts."""

from __future__ import annotations

from typing import Any

import numpy as np

from tvdeploy.runtime.manifest import PreprocessSpec
from tvdeploy.runtime.runners.base import Runner, TensorInfo


def torchvision_transforms(spec: PreprocessSpec) -> Any:
    """torchvision's own ``ImageClassification`` preset for a preprocess block (the seeds' transforms)."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms._presets import ImageClassification

    if len(spec.crop_size) != 1 or len(spec.resize_size) != 1:
        raise ValueError("torchvision's ImageClassification preset takes square crop and shorter-side resize sizes")
    return ImageClassification(crop_size=spec.crop_size[0], resize_size=spec.resize_size[0], mean=spec.mean,
                               std=spec.std, interpolation=InterpolationMode(spec.interpolation),
                               antialias=spec.antialias)


class EagerRunner(Runner):
    """Runs an ``nn.Module`` in eval mode under ``torch.inference_mode``."""

    backend = "eager"

    def __init__(self, module: Any, input_name: str = "input", output_name: str = "logits",
                 input_shape: tuple[Any, ...] = ("batch", 3, 224, 224), device: str = "cpu") -> None:
        super().__init__()
        self.module = module
        self.input_name = input_name
        self.output_name = output_name
        self.input_shape = tuple(input_shape)
        self.device = device

    @property
    def inputs(self) -> list[TensorInfo]:
        return [TensorInfo(self.input_name, self.input_shape, "float32")]

    @property
    def outputs(self) -> list[TensorInfo]:
        return [TensorInfo(self.output_name, (self.input_shape[0], None), "float32")]

    def _load(self) -> None:
        self.module = self.module.eval().to(self.device)

    def _unload(self) -> None:
        pass

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        tensor = torch.from_numpy(np.ascontiguousarray(feeds[self.input_name])).to(self.device)
        with torch.inference_mode():
            out = self.module(tensor)
        if self.device != "cpu":
            torch.cuda.synchronize()
        return {self.output_name: out.float().cpu().numpy()}
