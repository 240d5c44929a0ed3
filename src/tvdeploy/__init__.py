"""tvdeploy: deployable artifacts from torchvision classifiers.

Heavy dependencies (torch, onnxruntime) are imported lazily by the
subpackages that need them; importing :mod:`tvdeploy` is cheap.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
