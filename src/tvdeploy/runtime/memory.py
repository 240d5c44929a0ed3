"""Whether a batch's arrays fit in this host's memory, asked before the work (a batch of 100,000 resnet50 inputs
is 60 GB: refused at once with the figure, not after seconds of work in an out-of-memory error)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from tvdeploy.errors import UserInputError
from tvdeploy.runtime.manifest import EXAMPLE_IMAGE_SIZE, OutputSpec, TensorSpec

#: Bytes of one output value (float32 logits or probabilities, int64 indices: 8 at most).
_OUTPUT_ITEM_BYTES = 8


def available_memory() -> int | None:
    """Bytes of memory available to new work (Linux's ``MemAvailable``), None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key == "MemAvailable":
                return int(value.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def batch_bytes(input_spec: TensorSpec, output_spec: OutputSpec, classes: int, batch: int) -> int:
    """Bytes of one batch's input and output arrays (an input of whole images: :data:`EXAMPLE_IMAGE_SIZE`
    photos, as timing feeds them)."""
    if input_spec.takes_images:
        per_input = math.prod(EXAMPLE_IMAGE_SIZE) * 3
    else:
        dims = [d if isinstance(d, int) else 1 for d in input_spec.shape[1:]]
        per_input = math.prod(dims) * np.dtype(input_spec.dtype).itemsize
    per_output = (output_spec.top_k or classes) * _OUTPUT_ITEM_BYTES * len(output_spec.names)
    return batch * (per_input + per_output)


def check_batches_fit(input_spec: TensorSpec, output_spec: OutputSpec, classes: int, batch_sizes: list[int]) -> None:
    """Refuse batch sizes whose input and output arrays alone exceed the memory available here, with the
    figures (a lower bound: the model's activations come on top)."""
    available = available_memory()
    if available is None:
        return
    largest = max(batch_sizes)
    needed = batch_bytes(input_spec, output_spec, classes, largest)
    if needed > available:
        fitting = max(1, largest * available // needed // 2)
        raise UserInputError(
            f"batch {largest} needs {needed / 1e9:.1f} GB for its input and output arrays alone; this host has "
            f"{available / 1e9:.1f} GB available",
            hint=f"use smaller batch sizes (at most about {fitting} here, leaving room for the model's activations)",
        )
