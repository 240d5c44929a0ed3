"""The torch-free runtime: manifest reading, preprocessing, runners, top-k decoding.

Nothing here imports torch at module level; ONNX artifacts run with
onnxruntime, NumPy and Pillow only.

>>> from tvdeploy.runtime import load          # doctest: +SKIP
>>> clf = load("artifacts/resnet50-onnx")      # doctest: +SKIP
>>> clf.predict(["cat.jpg"], top_k=5)          # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Classifier", "ImagePreprocessor", "Prediction", "PredictionResult", "SessionConfig", "load"]

if TYPE_CHECKING:
    from tvdeploy.runtime.classifier import Classifier, PredictionResult, load
    from tvdeploy.runtime.postprocess import Prediction
    from tvdeploy.runtime.preprocess import ImagePreprocessor
    from tvdeploy.runtime.providers import SessionConfig

_LAZY = {
    "Classifier": "tvdeploy.runtime.classifier",
    "PredictionResult": "tvdeploy.runtime.classifier",
    "load": "tvdeploy.runtime.classifier",
    "Prediction": "tvdeploy.runtime.postprocess",
    "ImagePreprocessor": "tvdeploy.runtime.preprocess",
    "SessionConfig": "tvdeploy.runtime.providers",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tvdeploy.runtime' has no attribute {name!r}")
