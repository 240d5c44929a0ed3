"""The one runner interface every backend implements.

A runner is cheap to construct; the heavy work (loading a model, creating a
session) happens in :meth:`Runner.activate`, which ``with runner:`` calls.
:meth:`Runner.infer` takes and returns ``dict[str, numpy.ndarray]``, so parity
checks and benchmarks compare backends uniformly.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tvdeploy.runtime.device_memory import DeviceArray, DeviceMemory
    from tvdeploy.runtime.manifest import Manifest, OutputSpec, TensorSpec
    from tvdeploy.runtime.providers import SessionConfig


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
    #: Whether the backend runs several calls at once on parallel streams (``SessionConfig.streams``).
    supports_streams: bool = False

    def __init__(self) -> None:
        self._active = False
        self._activation = threading.Lock()
        self._streams_pool: ThreadPoolExecutor | None = None
        self._in_stream = threading.local()

    @property
    def concurrency(self) -> int:
        """Model calls worth running at once: the backend's streams (1 where it has none)."""
        return 1

    def infer_many(self, feeds: Sequence[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        """:meth:`infer` on each of ``feeds``, in order; with :attr:`concurrency` above one, that many run at
        once on the runner's stream threads, each taking the next as it finishes (called from one of those
        threads, e.g. by work submitted to :attr:`stream_pool`, they run inline)."""
        if self.concurrency <= 1 or len(feeds) <= 1 or getattr(self._in_stream, "active", False):
            return [self.infer(item) for item in feeds]
        return list(self.stream_pool.map(self.infer, feeds))

    @property
    def stream_pool(self) -> ThreadPoolExecutor:
        """The threads that run :attr:`concurrency` calls at once (created on first use; each keeps the backend's
        per-thread state, e.g. an OpenVINO infer request, for the runner's life)."""
        with self._activation:
            if self._streams_pool is None:
                self._streams_pool = ThreadPoolExecutor(
                    max_workers=self.concurrency,
                    thread_name_prefix=f"tvdeploy-{self.backend}-stream",
                    initializer=self._mark_stream_thread,
                )
            return self._streams_pool

    def _mark_stream_thread(self) -> None:
        """Whatever runs on a stream thread calls the model inline (a nested :meth:`infer_many` that waited on
        the pool it runs in could wait for ever)."""
        self._in_stream.active = True

    @classmethod
    def streams_on(cls, provider: str) -> bool:
        """Whether the backend runs several calls at once on ``provider`` (:attr:`supports_streams` by default)."""
        return cls.supports_streams

    @classmethod
    def available_providers(cls) -> list[str]:
        """The providers this backend finds on this machine (imports the backend)."""
        return ["cpu"]

    @classmethod
    def for_artifact(
        cls, artifact_dir: Path, manifest: Manifest, provider: str, config: SessionConfig | None = None
    ) -> "Runner":
        """A runner for an artifact's model file on a resolved provider (see ``runner_for_artifact``)."""
        raise NotImplementedError(f"{cls.__name__} does not load artifacts")

    def activate(self) -> "Runner":
        """Load the model; idempotent, and safe when several threads call it at once."""
        if not self._active:
            with self._activation:
                if not self._active:
                    self._load()
                    self._active = True
        return self

    def deactivate(self) -> None:
        """Release the model and the stream threads."""
        with self._activation:
            pool, self._streams_pool = self._streams_pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
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
    def memory(self) -> DeviceMemory | None:
        """The memory functions of the device the model runs on (pinned staging, device copies); None on the CPU."""
        return None

    def device_input(self, name: str, shape: tuple[int, ...], dtype: Any) -> DeviceArray:
        """A device buffer for a batch of input ``name`` that the caller fills on the device (see
        :attr:`memory`) and passes to :meth:`infer`; only runners on a device have one."""
        raise NotImplementedError(f"{type(self).__name__} has no device inputs")

    def staging(self, name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray | None:
        """A host array for a batch of input ``name`` that the caller fills in place and passes to :meth:`infer`,
        where the backend copies from such memory faster (pinned memory on a GPU); None: use an ordinary array."""
        return None

    def bare_call(self, feeds: dict[str, np.ndarray]) -> Callable[[], Any] | None:
        """A call of the backend's own API on ``feeds`` with none of the runner's wrapping, for measuring
        the runner's overhead; ``None`` where the backend has no such call apart from :meth:`infer`."""
        return None

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


def infer_in_batches(
    runner: Runner,
    input_spec: TensorSpec,
    output_names: Sequence[str],
    batch: np.ndarray,
    stream_batch: int | None = None,
) -> dict[str, np.ndarray]:
    """``runner``'s outputs ``output_names`` for a batch of any size, cut to what the artifact's input admits.

    A static batch axis of B gets chunks of exactly B (the last one padded by
    repeating its final row, the padding's outputs dropped); a bounded dynamic
    axis gets chunks of at most ``max_batch``; an unbounded one gets the batch as is.
    On a runner with parallel streams, a dynamic axis gets chunks of at most ``stream_batch`` rows (the
    caller's batch size) so that the streams share the rows; the chunks run :meth:`Runner.infer_many`'s way.
    """
    fixed, step = input_spec.fixed_batch, input_spec.fixed_batch or input_spec.max_batch
    if fixed is None and stream_batch is not None and runner.concurrency > 1:
        step = min(step or stream_batch, stream_batch)
    if step is None or (fixed is None and len(batch) <= step):
        outputs = runner.infer({input_spec.name: batch})
        return {name: outputs[name] for name in output_names}
    feeds, counts = [], []
    for start in range(0, len(batch), step):
        chunk = batch[start : start + step]
        counts.append(len(chunk))
        if fixed is not None and len(chunk) < fixed:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fixed - len(chunk), axis=0)])
        feeds.append({input_spec.name: chunk})
    chunks = [
        {name: outputs[name][:count] for name in output_names}
        for outputs, count in zip(runner.infer_many(feeds), counts, strict=True)
    ]
    return {name: np.concatenate([c[name] for c in chunks]) for name in output_names}


def interface_mismatches(runner: Runner, input_spec: TensorSpec, output_spec: OutputSpec) -> list[str]:
    """How the model's own input and output names, and its input's fixed sizes, differ from the manifest's (empty
    when they agree): a hand-edited manifest must fail at load, naming the field, not in the first call."""
    problems = []
    inputs = [t.name for t in runner.inputs]
    outputs = [t.name for t in runner.outputs]
    if inputs != [input_spec.name]:
        problems.append(f"the artifact's inputs are {inputs}, the manifest says [{input_spec.name!r}] (input.name)")
    expected = list(output_spec.names)
    if outputs[: len(expected)] != expected:
        problems.append(
            f"the artifact's first outputs are {outputs[: len(expected)]}, the manifest says {expected} (output.name)"
        )
    if inputs == [input_spec.name] and not input_spec.takes_images:
        own = runner.inputs[0].shape
        fixed = [
            (axis, int(mine), theirs)
            for axis, (mine, theirs) in enumerate(zip(own, input_spec.shape, strict=False))
            if axis > 0 and isinstance(mine, int) and isinstance(theirs, int) and mine != theirs
        ]
        if fixed or len(own) != len(input_spec.shape):
            problems.append(
                f"the artifact's input has shape {list(own)}, the manifest says {input_spec.shape} (input.shape)"
            )
    return problems
