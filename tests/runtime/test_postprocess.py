from __future__ import annotations

import json

import numpy as np
import pytest

from tvdeploy.errors import UserInputError
from tvdeploy.runtime.postprocess import Prediction, decode_predictions, softmax, top_k_indices


def test_softmax_is_stable_for_huge_logits() -> None:
    probs = softmax(np.array([[1e4, 1e4 - 1, -1e4]], dtype=np.float32))
    assert np.isfinite(probs).all() and probs.sum() == pytest.approx(1.0)
    assert probs[0, 0] == pytest.approx(1 / (1 + np.exp(-1)))


def test_softmax_matches_the_textbook_formula() -> None:
    logits = np.random.default_rng(0).normal(size=(3, 10))
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(softmax(logits), expected, rtol=1e-12)


def test_ties_keep_index_order() -> None:
    scores = np.array([[0.1, 0.3, 0.3, 0.3, 0.0]])
    assert top_k_indices(scores, 4).tolist() == [[1, 2, 3, 0]]


def test_k_larger_than_the_class_count_is_an_error() -> None:
    with pytest.raises(UserInputError, match="top-k of 6 is out of range for a model with 5 classes"):
        top_k_indices(np.zeros((1, 5)), 6)
    with pytest.raises(UserInputError):
        top_k_indices(np.zeros((1, 5)), 0)


def test_decode_gives_typed_json_serialisable_predictions() -> None:
    logits = np.array([[0.0, 2.0, 1.0], [3.0, 0.0, 0.0]], dtype=np.float32)
    result = decode_predictions(logits, ["cat", "dog", "fox"], k=2)
    assert [[p.label for p in row] for row in result] == [["dog", "fox"], ["cat", "dog"]]
    assert isinstance(result[0][0], Prediction) and result[0][0].index == 1
    assert result[0][0].probability == pytest.approx(np.exp(2) / (1 + np.exp(2) + np.exp(1)))
    assert json.loads(json.dumps(result[1][0].to_dict())) == {
        "label": "cat",
        "index": 0,
        "probability": result[1][0].probability,
    }


def test_label_count_mismatch_is_an_error() -> None:
    with pytest.raises(UserInputError, match="3 scores but there are 2 labels"):
        decode_predictions(np.zeros((1, 3)), ["a", "b"])
