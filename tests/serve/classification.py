"""Triton's classification extension in tests: the ``"<score>:<index>:<label>"`` rows an output requested with
``class_count=k`` returns, against the runtime's top-k."""

from __future__ import annotations

import numpy as np
import pytest

from tvdeploy.runtime.postprocess import Prediction


def assert_classification_rows(rows: np.ndarray, expected: list[list[Prediction]], logits: np.ndarray) -> None:
    """Each row's indices and labels are the runtime's top-k, and its scores the logits at those indices (1e-4)."""
    assert len(rows) == len(expected) == len(logits)
    for row, predictions, scores in zip(rows, expected, logits, strict=True):
        fields = [item.decode().split(":", 2) for item in row]
        assert [int(index) for _, index, _ in fields] == [p.index for p in predictions]
        assert [label for _, _, label in fields] == [p.label for p in predictions]
        assert [float(value) for value, _, _ in fields] == pytest.approx(
            [scores[p.index] for p in predictions], abs=1e-4
        )
