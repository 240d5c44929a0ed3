"""Latency statistics from timing samples."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    """Milliseconds per batch."""

    mean: float
    min: float
    max: float
    p50: float
    p90: float
    p99: float
    samples: int

    @classmethod
    def from_seconds(cls, samples: Sequence[float]) -> "LatencyStats":
        """Statistics of per-call durations given in seconds."""
        if not samples:
            raise ValueError("no timing samples")
        ms = np.asarray(samples, dtype=np.float64) * 1000.0
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        return cls(float(ms.mean()), float(ms.min()), float(ms.max()), float(p50), float(p90), float(p99), int(ms.size))

    def to_dict(self) -> dict[str, float]:
        """The ``latency_ms`` block of the JSON report."""
        data = asdict(self)
        data.pop("samples")
        return {k: round(v, 4) for k, v in data.items()}
