"""From logits to ranked, labelled predictions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tvdeploy.errors import UserInputError
from tvdeploy.runtime.manifest import OutputSpec


@dataclass(frozen=True)
class Prediction:
    """One ranked class: its label, index in the output and probability."""

    label: str
    index: int
    probability: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax (the max is subtracted first), computed in float64."""
    values = np.asarray(logits, dtype=np.float64)
    shifted = values - values.max(axis=axis, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=axis, keepdims=True)
    return shifted


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best scores per row, best first; ties go to the lower index.

    Args:
        scores: (N, C) array.
        k: how many; at most C.
    """
    num_classes = scores.shape[-1]
    if not 1 <= k <= num_classes:
        raise UserInputError(
            f"top-k of {k} is out of range for a model with {num_classes} classes",
            hint=f"choose k between 1 and {num_classes}",
        )
    # A stable sort on the negated scores keeps equal scores in index order.
    return np.argsort(-scores, axis=-1, kind="stable")[..., :k]


def decode_predictions(logits: np.ndarray, labels: Sequence[str], k: int = 5) -> list[list[Prediction]]:
    """Softmax + top-k over a (N, C) batch of logits, one list per row, best first."""
    logits = np.asarray(logits)
    if logits.ndim != 2:
        raise UserInputError(f"expected (batch, classes) logits, got shape {logits.shape}")
    if logits.shape[1] != len(labels):
        raise UserInputError(f"the model gives {logits.shape[1]} scores but there are {len(labels)} labels")
    probabilities = softmax(logits)
    indices = top_k_indices(probabilities, k)
    return [
        [Prediction(label=labels[i], index=int(i), probability=float(row_probs[i])) for i in row]
        for row, row_probs in zip(indices, probabilities, strict=False)
    ]


def check_top_k(k: int, output: OutputSpec, num_classes: int) -> None:
    """Refuse a k the artifact cannot answer: outside 1..classes, or over the k its graph's own top-k keeps."""
    if not 1 <= k <= num_classes:
        raise UserInputError(
            f"top-k of {k} is out of range for a model with {num_classes} classes",
            hint=f"choose k between 1 and {num_classes}",
        )
    if output.top_k is not None and k > output.top_k:
        raise UserInputError(
            f"this artifact's graph ends in a top-{output.top_k}; top-{k} was asked for",
            hint=f"ask for at most {output.top_k}, or re-export with --embed-postprocess {k}",
        )


def decode_outputs(
    outputs: dict[str, np.ndarray], output: OutputSpec, labels: Sequence[str], k: int = 5
) -> list[list[Prediction]]:
    """Top-k predictions from a model's named outputs: softmax + top-k of logits, or the graph's own top-k."""
    if not output.is_top_k:
        return decode_predictions(outputs[output.name], labels, k)
    check_top_k(k, output, len(labels))
    probabilities, indices = outputs[output.name], outputs[output.names[1]]
    return [
        [
            Prediction(label=labels[int(i)], index=int(i), probability=float(p))
            for p, i in zip(row_p[:k], row_i[:k], strict=True)
        ]
        for row_p, row_i in zip(probabilities, indices, strict=False)
    ]
