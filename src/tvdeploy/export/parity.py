"""Parity: compare a candidate runner with a reference runner on the same inputs.

Reports, per input set, what Polygraphy-style comparisons report: max abs and
rel diff, cosine similarity, top-1 and top-5 agreement and the smallest
tolerance that would have passed, not just pass/fail. The criteria come from
the format registry (per format and precision); a candidate whose tensor names
differ from the manifest's fails too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tvdeploy.export.inputs import InputSet
from tvdeploy.runtime.manifest import OutputSpec, TensorSpec
from tvdeploy.runtime.postprocess import softmax, top_k_indices
from tvdeploy.runtime.precisions import FP32_CRITERIA, ParityCriteria
from tvdeploy.runtime.records import FailureReason, ParityFailure, ParityReport, SetReport
from tvdeploy.runtime.runners.base import Runner, infer_in_batches, interface_mismatches


def _row_cosine(ref: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """Cosine similarity per row; two all-zero rows are identical (1.0), one all-zero row is 0.0."""
    ref_norm = np.linalg.norm(ref, axis=1)
    cand_norm = np.linalg.norm(cand, axis=1)
    both_zero = (ref_norm == 0) & (cand_norm == 0)
    cosine = np.sum(ref * cand, axis=1) / np.maximum(ref_norm * cand_norm, 1e-300)
    return np.where(both_zero, 1.0, cosine)


def compare_outputs(
    name: str,
    reference: np.ndarray,
    candidate: np.ndarray,
    batch_sizes: list[int],
    criteria: ParityCriteria,
    require_top1: bool,
) -> SetReport:
    """Figures and verdict for two (N, C) output arrays."""
    judged = require_top1 or criteria.judge_noise
    if reference.shape != candidate.shape:
        failure = ParityFailure(
            FailureReason.OUTPUT_SHAPE,
            f"output shapes differ: reference {reference.shape}, candidate {candidate.shape}",
        )
        nan = float("nan")
        return SetReport(
            name, batch_sizes, int(reference.shape[0]), nan, nan, nan, nan, 0.0, 0.0, 0, nan, nan, nan, False, [failure]
        )
    report = _figures(name, reference.astype(np.float64), candidate.astype(np.float64), batch_sizes, criteria)
    failures = _failures(report, reference, candidate, criteria, require_top1)
    report.passed = not failures or not judged
    report.failures = failures if judged else []
    report.judged = judged
    return report


def _figures(
    name: str, ref: np.ndarray, cand: np.ndarray, batch_sizes: list[int], criteria: ParityCriteria
) -> SetReport:
    """The comparison figures of one set (no verdict yet): differences, cosine, top-1 with ties, top-5."""
    diff = np.abs(ref - cand)
    max_abs = float(np.nanmax(diff))
    max_logit = float(np.nanmax(np.abs(ref)))
    limit = criteria.atol_scale * (1.0 + max_logit)
    ref_top1, cand_top1 = ref.argmax(axis=1), cand.argmax(axis=1)
    agree = ref_top1 == cand_top1
    rows = np.arange(ref.shape[0])
    # A flip between two classes the reference scores within tolerance of each other is a tie.
    ties = ~agree & (ref[rows, cand_top1] >= ref[rows, ref_top1] - limit)
    ref_top5 = np.sort(np.argsort(-ref, axis=1, kind="stable")[:, :5], axis=1)
    cand_top5 = np.sort(np.argsort(-cand, axis=1, kind="stable")[:, :5], axis=1)
    return SetReport(
        name=name,
        batch_sizes=batch_sizes,
        samples=int(ref.shape[0]),
        max_abs_diff=max_abs,
        mean_abs_diff=float(np.nanmean(diff)),
        max_rel_diff=float(np.nanmax(diff / np.maximum(np.abs(ref), 1e-6))),
        min_cosine=float(np.nanmin(_row_cosine(ref, cand))),
        top1_agreement=float(agree.mean()),
        top5_agreement=float((ref_top5 == cand_top5).all(axis=1).mean()),
        top1_ties=int(ties.sum()),
        max_abs_logit=max_logit,
        atol_limit=limit,
        min_passing_atol_scale=max_abs / (1.0 + max_logit),
        passed=False,
    )


def _failures(
    report: SetReport, ref: np.ndarray, cand: np.ndarray, criteria: ParityCriteria, require_top1: bool
) -> list[ParityFailure]:
    """Every criterion the set's figures fail."""
    failures = []
    if not (np.isfinite(ref).all() and np.isfinite(cand).all()):
        failures.append(ParityFailure(FailureReason.NON_FINITE, "non-finite values (NaN/inf) in the outputs"))
    if report.max_abs_diff > report.atol_limit:
        failures.append(
            ParityFailure(
                FailureReason.MAX_ABS_DIFF,
                f"max |diff| {report.max_abs_diff:.3g} > {report.atol_limit:.3g} ({criteria.atol_scale:g} * "
                f"(1 + max|logit| {report.max_abs_logit:.3g}))",
            )
        )
    if require_top1 and bool((np.ptp(ref, axis=1) == 0).all()):
        failures.append(
            ParityFailure(
                FailureReason.CONSTANT_REFERENCE,
                "the reference gives every class the same score on every input: "
                "parity cannot tell a correct export from a broken one (check the model's head)",
            )
        )
    if not report.min_cosine >= criteria.min_cosine:
        failures.append(
            ParityFailure(
                FailureReason.MIN_COSINE, f"cosine similarity {report.min_cosine:.6f} < {criteria.min_cosine}"
            )
        )
    agreed = round(report.top1_agreement * report.samples) + report.top1_ties  # ties are not disagreements
    effective_top1 = agreed / max(report.samples, 1)
    if require_top1 and effective_top1 < criteria.min_top1:
        failures.append(
            ParityFailure(
                FailureReason.TOP1_AGREEMENT, f"top-1 agreement {effective_top1:.1%} < {criteria.min_top1:.0%}"
            )
        )
    return failures


def run_sets(
    runner: Runner,
    input_sets: Sequence[InputSet],
    specs: tuple[TensorSpec, OutputSpec] | None = None,
    num_classes: int | None = None,
) -> list[np.ndarray]:
    """A runner's (N, classes) scores for every set (batches concatenated), e.g. to reuse a reference.

    ``specs`` (the manifest's input and output) name the tensors, say which batch sizes the artifact
    admits and whether it takes images (it is then fed the sets' images); without them the runner's own
    first input and output are used. A top-k output comes back as a dense (N, ``num_classes``) array: the k
    probabilities at their class indices, zeros elsewhere (:func:`dense_top_k`).
    """
    input_spec = specs[0] if specs else TensorSpec(runner.inputs[0].name, list(runner.inputs[0].shape))
    output_spec = specs[1] if specs else OutputSpec(runner.outputs[0].name)
    results = []
    for input_set in input_sets:
        parts = []
        for batch in input_set.feeds_for(input_spec.takes_images):
            outputs = infer_in_batches(runner, input_spec, output_spec.names, batch)
            if output_spec.is_top_k:
                if num_classes is None:
                    raise ValueError("a top-k output needs num_classes to be compared")
                parts.append(dense_top_k(outputs[output_spec.name], outputs[output_spec.names[1]], num_classes))
            else:
                parts.append(np.asarray(outputs[output_spec.name], dtype=np.float32))
        results.append(np.concatenate(parts))
    return results


def dense_top_k(probabilities: np.ndarray, indices: np.ndarray, num_classes: int) -> np.ndarray:
    """(N, k) probabilities at (N, k) class indices -> (N, classes), zeros outside the top k."""
    dense = np.zeros((probabilities.shape[0], num_classes), dtype=np.float32)
    np.put_along_axis(dense, indices.astype(np.int64), probabilities.astype(np.float32), axis=1)
    return dense


def reference_top_k(logits: np.ndarray, k: int) -> np.ndarray:
    """The reference's logits in a top-k artifact's terms: softmax, then only its own k best kept (dense)."""
    probabilities = softmax(logits).astype(np.float32)
    best = top_k_indices(probabilities, k)
    return dense_top_k(np.take_along_axis(probabilities, best, axis=1), best, logits.shape[1])


def compare_runners(
    reference: Runner | list[np.ndarray],
    candidate: Runner,
    input_sets: Sequence[InputSet],
    criteria: ParityCriteria = FP32_CRITERIA,
    precision: str = "fp32",
    reference_name: str = "eager",
    expected: tuple[TensorSpec, OutputSpec] | None = None,
) -> ParityReport:
    """Run the candidate (and the reference, unless its outputs are given) on every set and compare.

    ``expected``: the manifest's input and output specs; the candidate's own tensor
    names must match them (the candidate is fed by the manifest's input name).
    """
    if isinstance(reference, Runner):
        reference_name = reference.backend
        reference = run_sets(reference, input_sets)
    interface = interface_mismatches(candidate, *expected) if expected is not None else []
    if interface:
        return ParityReport(
            reference=reference_name,
            candidate=candidate.backend,
            precision=precision,
            criteria=criteria,
            sets=[],
            interface=interface,
        )
    output_spec = expected[1] if expected is not None else None
    if output_spec is not None and output_spec.is_top_k and output_spec.top_k is not None:
        reference = [reference_top_k(logits, output_spec.top_k) for logits in reference]
    candidate_outputs = run_sets(candidate, input_sets, expected, num_classes=reference[0].shape[1])
    reports = [
        compare_outputs(s.name, ref_out, cand_out, s.batch_sizes, criteria, s.require_top1)
        for s, ref_out, cand_out in zip(input_sets, reference, candidate_outputs, strict=False)
    ]
    return ParityReport(
        reference=reference_name, candidate=candidate.backend, precision=precision, criteria=criteria, sets=reports
    )


def format_report(report: ParityReport) -> str:
    """A short human-readable table."""
    lines = [
        f"parity {report.candidate} vs {report.reference} ({report.precision}): {'PASS' if report.passed else 'FAIL'}"
    ]
    lines.extend(f"  FAIL interface: {reason}" for reason in report.interface)
    for s in report.sets:
        judged = "" if s.judged else f" [informational: not judged at {report.precision}]"
        lines.append(
            f"  {s.name:<7}{judged} batches {s.batch_sizes}: max|diff| {s.max_abs_diff:.2e} (limit "
            f"{s.atol_limit:.2e}), mean {s.mean_abs_diff:.2e}, max rel {s.max_rel_diff:.2e}, cos {s.min_cosine:.6f}, "
            f"top-1 {s.top1_agreement:.0%}{f' ({s.top1_ties} tied in the reference)' if s.top1_ties else ''}, "
            f"top-5 {s.top5_agreement:.0%}"
        )
        lines.extend(f"    {'FAIL' if s.judged else 'note'} {failure.detail}" for failure in s.failures)
    return "\n".join(lines)
