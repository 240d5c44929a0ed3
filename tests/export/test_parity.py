from __future__ import annotations

import numpy as np
import pytest

from tvdeploy.export.inputs import InputSet, noise_set, photo_set
from tvdeploy.export.parity import compare_outputs, compare_runners
from tvdeploy.runtime.manifest import OutputSpec, PreprocessSpec, TensorSpec
from tvdeploy.runtime.precisions import FP32_CRITERIA
from tvdeploy.runtime.records import FailureReason, ParityReport
from tvdeploy.runtime.runners.base import Runner, TensorInfo

SPEC = PreprocessSpec((256,), (224,), "bilinear", True, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
FP32 = FP32_CRITERIA


def _logits(seed: int = 0, n: int = 6, classes: int = 20) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 3, (n, classes)).astype(np.float32)


def test_identical_outputs_pass_with_zero_diff() -> None:
    ref = _logits()
    report = compare_outputs("photos", ref, ref.copy(), [6], FP32, require_top1=True)
    assert (
        report.passed
        and report.max_abs_diff == 0
        and report.top1_agreement == 1
        and report.min_cosine == pytest.approx(1)
    )


def test_small_noise_passes_and_reports_the_smallest_passing_atol() -> None:
    ref = _logits()
    cand = ref + np.float32(1e-5)
    report = compare_outputs("photos", ref, cand, [6], FP32, require_top1=True)
    assert report.passed
    assert report.min_passing_atol_scale == pytest.approx(1e-5 / (1 + np.abs(ref).max()), rel=1e-2)
    assert report.atol_limit == pytest.approx(1e-3 * (1 + np.abs(ref).max()), rel=1e-6)


def test_large_diff_fails_and_says_why() -> None:
    ref = _logits()
    report = compare_outputs("random", ref, ref + 0.5, [6], FP32, require_top1=False)
    assert not report.passed and [f.reason for f in report.failures] == [
        FailureReason.MAX_ABS_DIFF,
        FailureReason.MIN_COSINE,
    ]
    assert "max |diff|" in report.failures[0].detail  # the figures, for a person


def test_top1_flip_fails_on_photos_but_a_tie_does_not() -> None:
    ref = np.zeros((2, 5), dtype=np.float32)
    ref[0, 1], ref[0, 2] = 5.0, 1.0
    ref[1, 3] = 5.0
    flipped = ref.copy()
    flipped[0, 2] = 5.5  # a real disagreement, but also a large diff
    report = compare_outputs("photos", ref, flipped, [2], FP32, require_top1=True)
    assert not report.passed and report.top1_agreement == 0.5
    assert FailureReason.TOP1_AGREEMENT in {f.reason for f in report.failures}

    tied = ref.copy()
    tied[0, 2] = 5.0  # the reference itself scores classes 1 and 2 within tolerance
    tied_ref = tied.copy()
    tied_ref[0, 2] = 5.0 - 1e-6
    tied[0, 1] = 5.0 - 2e-6
    report = compare_outputs("photos", tied_ref, tied, [2], FP32, require_top1=True)
    assert report.passed and report.top1_ties == 1 and report.top1_agreement == 0.5


def test_non_finite_and_shape_mismatch_fail() -> None:
    ref = _logits()
    bad = ref.copy()
    bad[0, 0] = np.nan
    assert not compare_outputs("random", ref, bad, [6], FP32, require_top1=False).passed
    assert not compare_outputs("random", ref, ref[:, :10], [6], FP32, require_top1=False).passed


class _LinearRunner(Runner):
    """A tiny 'model': global average pool per channel, then a fixed linear map; optionally scrambles space."""

    backend = "toy"

    def __init__(self, scramble: bool = False, input_name: str = "input") -> None:
        super().__init__()
        self.scramble = scramble
        self.input_name = input_name
        self.weights = np.random.default_rng(3).normal(size=(3 * 4, 10)).astype(np.float32)

    @property
    def inputs(self) -> list[TensorInfo]:
        return [TensorInfo(self.input_name, ("batch", 3, 224, 224), "float32")]

    @property
    def outputs(self) -> list[TensorInfo]:
        return [TensorInfo("logits", ("batch", 10), "float32")]

    def _load(self) -> None: ...

    def _unload(self) -> None: ...

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = feeds[self.input_name]
        if self.scramble:  # e.g. an exporter that mixes up H and W
            x = x.transpose(0, 1, 3, 2)
        quadrants = [x[:, :, :112, :112], x[:, :, :112, 112:], x[:, :, 112:, :112], x[:, :, 112:, 112:]]
        features = np.concatenate([q.mean(axis=(2, 3)) for q in quadrants], axis=1)
        return {"logits": features @ self.weights}


def test_a_runner_that_scrambles_images_fails_on_photos() -> None:
    sets = [photo_set(SPEC), noise_set(SPEC)]
    assert compare_runners(_LinearRunner(), _LinearRunner(), sets).passed
    report = compare_runners(_LinearRunner(), _LinearRunner(scramble=True), sets)
    assert not report.passed
    assert not next(s for s in report.sets if s.name == "photos").passed


def test_photo_set_has_every_photo_alone_and_a_batch_of_six() -> None:
    photos = photo_set(SPEC)
    assert photos.batch_sizes == [1, 1, 1, 1, 1, 1, 6] and photos.require_top1
    assert photos.batches[0].shape == (1, 3, 224, 224) and photos.batches[0].dtype == np.float32
    np.testing.assert_array_equal(photos.batches[-1][2], photos.batches[2][0])


def test_noise_set_is_seeded() -> None:
    a, b, c = noise_set(SPEC, seed=0), noise_set(SPEC, seed=0), noise_set(SPEC, seed=1)
    np.testing.assert_array_equal(a.batches[1], b.batches[1])
    assert not np.array_equal(a.batches[1], c.batches[1])
    assert isinstance(a, InputSet) and not a.require_top1


def test_tiny_logits_are_still_checked_by_cosine() -> None:
    ref = _logits() * np.float32(1e-20)  # random-init EfficientNets really produce logits this small
    scrambled = ref[:, ::-1].copy()
    report = compare_outputs("photos", ref, scrambled, [6], FP32, require_top1=True)
    assert report.max_abs_diff < report.atol_limit  # the absolute tolerance alone would pass it
    assert not report.passed and [f.reason for f in report.failures] == [FailureReason.MIN_COSINE]


def test_all_zero_rows_on_both_sides_are_identical_not_orthogonal() -> None:
    ref = _logits()
    ref[2] = 0
    report = compare_outputs("random", ref, ref.copy(), [6], FP32, require_top1=False)
    assert report.passed and report.min_cosine == 1.0
    cand = ref.copy()
    cand[2] = 1e-3  # a zero reference row against a non-zero candidate row is not similar
    assert compare_outputs("random", ref, cand, [6], FP32, require_top1=False).min_cosine == 0.0


def test_a_reference_with_constant_scores_fails_on_photos_as_uninformative() -> None:
    ref = np.zeros((6, 20), dtype=np.float32)
    report = compare_outputs("photos", ref, ref.copy(), [6], FP32, require_top1=True)
    assert not report.passed
    assert report.failures[0].reason == FailureReason.CONSTANT_REFERENCE


def test_an_artifact_whose_tensor_names_differ_from_the_manifest_fails() -> None:
    sets = [photo_set(SPEC), noise_set(SPEC)]
    expected = (TensorSpec("input", ["batch", 3, 224, 224]), OutputSpec("logits", "logits", ["batch", 10]))
    assert compare_runners(_LinearRunner(), _LinearRunner(), sets, expected=expected).passed
    report = compare_runners(_LinearRunner(), _LinearRunner(input_name="x.1"), sets, expected=expected)
    assert not report.passed and report.interface and "'x.1'" in report.interface[0]
    assert report.failures[0].reason == FailureReason.INTERFACE
    assert report.to_dict()["interface"] == report.interface
    assert ParityReport.from_dict(report.to_dict()) == report  # what the manifest records reads back the same


def test_batches_are_cut_to_what_the_artifact_admits() -> None:
    from tvdeploy.runtime.runners.base import infer_in_batches

    class Recording(_LinearRunner):
        def __init__(self) -> None:
            super().__init__()
            self.sizes: list[int] = []

        def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            self.sizes.append(len(feeds["input"]))
            return super()._infer(feeds)

    batch = np.random.default_rng(0).standard_normal((7, 3, 224, 224), dtype=np.float32)
    whole = _LinearRunner().infer({"input": batch})["logits"]
    for spec, sizes in (
        (TensorSpec("input", ["batch", 3, 224, 224]), [7]),
        (TensorSpec("input", ["batch", 3, 224, 224], max_batch=3), [3, 3, 1]),
        (TensorSpec("input", [4, 3, 224, 224]), [4, 4]),
    ):
        runner = Recording()
        out = infer_in_batches(runner, spec, ["logits"], batch)["logits"]
        assert runner.sizes == sizes and out.shape == (7, 10)
        np.testing.assert_allclose(out, whole, rtol=1e-6, atol=1e-6)


def test_int8_criteria_report_noise_but_judge_only_the_photos() -> None:
    from tvdeploy.runtime.precisions import INT8_CRITERIA

    ref = _logits()
    far = ref + 10.0  # far outside any tolerance
    noise = compare_outputs("random", ref, far, [6], INT8_CRITERIA, require_top1=False)
    assert noise.passed and not noise.judged and noise.max_abs_diff == pytest.approx(10.0)
    photos = compare_outputs("photos", ref, far, [6], INT8_CRITERIA, require_top1=True)
    assert not photos.passed and photos.judged
    assert not compare_outputs("random", ref, far, [6], FP32, require_top1=False).passed
