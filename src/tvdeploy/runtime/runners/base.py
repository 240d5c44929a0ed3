"""The one runner interface every backend implements.

A runner is cheap to construct; the heavy work (loading a model, creating a
session) happens in :meth:`Runner.activate`, which ``with runner:`` calls.
:meth:`Runner.infer` takes and returns ``dict[str, numpy.ndarray]``, so parity
checks and benchmarks compare backends uniformly.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TensorInfo:
    """Name, shape (strings or None for dynamic axes) and dtype of a model input or output."""

    name: str
    shape: tuple[Any, ...]
    dtype: str


class Runner(ABC):
    """Base class of all backends: ONNX Runtime, TorchScript, .pt2 and the eager reference."""

    #: Short backend name, e.g. ``onnx`` or ``eager``.
    backend: str = "runner"

    def __init__(self) -> None:
        self._active = False

    @property
    def is_active(self) -> bool:
        """Whether :meth:`activate` has run (and :meth:`deactivate` has not)."""
        return self._active

    def activate(self) -> "Runner":
        """Load the model; idempotent."""
        if not self._active:
            self._load()
            self._active = True
        return self

    def deactivate(self) -> None:
        """Release the model."""
        if self._active:
            self._unload()
            self._active = False

    def __enter__(self) -> "Runner":
        return self.activate()

    def __exit__(self, *exc_info: object) -> None:
        self.deactivate()

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on named inputs; returns named outputs."""
        if not self._active:
            self.activate()
        return self._infer(feeds)

    @property
    @abstractmethod
    def inputs(self) -> list[TensorInfo]:
        """The model's inputs."""

    @property
    @abstractmethod
    def outputs(self) -> list[TensorInfo]:
        """The model's outputs."""

    @abstractmethod
    def _load(self) -> None: ...

    @abstractmethod
    def _unload(self) -> None: ...

    @abstractmethod
    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...
