"""Benchmark fixtures: the default model set exported once (seeded random init) into the bench cache.

Models: resnet18, resnet50, mobilenet_v3_small, efficientnet_b0, or ``$TVDEPLOY_BENCH_MODELS``
(comma-separated). Random weights time exactly like pretrained ones.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tvdeploy.bench.targets import BenchTarget, default_backends, default_cache_dir, model_targets
from tvdeploy.export.inputs import photo_paths

MODELS = os.environ.get("TVDEPLOY_BENCH_MODELS", "resnet18,resnet50,mobilenet_v3_small,efficientnet_b0").split(",")
BATCH_SIZES = [1, 8]
#: eager and every format whose extra is installed (the format registry's)
BACKENDS = default_backends()


@pytest.fixture(scope="session")
def bench_targets() -> dict[str, dict[str, BenchTarget]]:
    """model -> backend -> target (artifacts cached across runs)."""
    return {m: {t.backend: t for t in model_targets(m, "none", BACKENDS, default_cache_dir())} for m in MODELS}


@pytest.fixture(scope="session")
def photo_bytes() -> list[bytes]:
    """The six parity photos, encoded."""
    return [Path(p).read_bytes() for p in photo_paths()]


def random_batch(target: BenchTarget, batch_size: int) -> np.ndarray:
    """A seeded input batch of the target's shape."""
    height, width = target.preprocess.crop_hw
    return np.random.default_rng(0).standard_normal((batch_size, 3, height, width), dtype=np.float32)
