"""``tvdeploy tune``: the fastest correct deployment of an fp32 ONNX artifact on the host it runs on, measured.

1. plan the candidates this host can run (:mod:`tvdeploy.tune.candidates`);
2. derive each candidate's artifact from the fp32 ONNX artifact with ``optimize``'s own conversions, each with
   its parity record against the fp32 eager model (a candidate that fails parity is reported, never chosen);
3. time the rest interleaved in one process (``tvdeploy bench``'s timing: A B C ... C B A, settled blocks) at each
   batch size;
4. choose by the objective (``latency``: the lowest p50 at the smallest batch size; ``throughput``: the most
   images per second at the largest) and write the winner as an artifact whose manifest holds a ``deployment``
   record: runtime, precision, threads, streams, batch size, the host's CPU and features, the figures, the
   candidates. Candidates on parallel streams (throughput objective) are timed with that many calls in flight.

The fp32 ONNX artifact is always a candidate, so the winner is never slower than it in the same run.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tvdeploy.bench.peak import provider_peak
from tvdeploy.bench.run import BenchConfig, BenchReport, run_benchmark
from tvdeploy.bench.targets import artifact_target
from tvdeploy.errors import TvdeployError, UserInputError
from tvdeploy.export.artifact import check_output, staged_directory
from tvdeploy.export.macs import count_macs
from tvdeploy.export.manifests import tuned_manifest
from tvdeploy.export.optimize import OptimizeRequest, derivations, optimize_artifact
from tvdeploy.export.options import CalibrationOptions
from tvdeploy.export.validate import reference_model
from tvdeploy.flags import flag, positive_int_list
from tvdeploy.models.loader import LoadedModel
from tvdeploy.runtime.host import cpu_flags, cpu_model, cpu_signature
from tvdeploy.runtime.manifest import (
    OBJECTIVES,
    Deployment,
    Manifest,
    check_model_name,
    read_manifest,
    verify_artifact_files,
    write_manifest,
)
from tvdeploy.runtime.memory import check_batches_fit
from tvdeploy.runtime.precisions import Precision
from tvdeploy.runtime.providers import on_gpu
from tvdeploy.runtime.records import ParityReport
from tvdeploy.runtime.tensorrt_cache import CACHE_FOLDER
from tvdeploy.text import a
from tvdeploy.tune.candidates import Candidate, Skipped, plan
from tvdeploy.tune.trial import run_trial, trial_in_child

logger = logging.getLogger(__name__)

#: Batch sizes timed where the request gives none: on CPUs, and for a GPU's latency.
DEFAULT_BATCH_SIZES = (1, 8)
#: Batch sizes timed for the throughput objective where a candidate runs on a GPU.
GPU_THROUGHPUT_BATCH_SIZES = (1, 64, 256)
#: Seconds of interleaved timing per batch size by default (resnet50's whole tune stays under 5 minutes on 2 cores).
DEFAULT_BUDGET_S = 20.0


@dataclass(frozen=True)
class TuneRequest:
    """What ``tvdeploy tune`` was asked to do."""

    artifact: Path
    output: Path
    calibration: CalibrationOptions | None = None
    batch_sizes: tuple[int, ...] = flag(
        (),
        "batch sizes to time (default 1,8; with --objective throughput where a GPU candidate runs, 1,64,256)",
        parse=positive_int_list,
        metavar="N,N",
        show_default=False,
    )
    objective: str = flag(
        "latency",
        "latency: lowest p50 at the smallest batch size; throughput: most img/s at the largest (and OpenVINO on "
        "parallel streams is tried too)",
        choices=OBJECTIVES,
    )
    budget_s: float = flag(DEFAULT_BUDGET_S, "seconds of interleaved timing per batch size")
    force: bool = flag(False, "overwrite an existing tvdeploy artifact at --output", show_default=False)
    name: str | None = flag(None, "model name of the tuned artifact (what serve serves it as; default: the source's)")
    progress: bool = False

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise UserInputError(f"unknown objective {self.objective!r}", hint=f"choose one of {', '.join(OBJECTIVES)}")
        if self.batch_sizes and min(self.batch_sizes) < 1:
            raise UserInputError("batch sizes must be positive, e.g. --batch-sizes 1,8")
        if self.budget_s <= 0:
            raise UserInputError("--budget-s must be positive")
        if self.name is not None:
            check_model_name(self.name, "--name")

    @property
    def deciding_batch(self) -> int:
        """The batch size the objective is judged at."""
        sizes = self.batch_sizes or DEFAULT_BATCH_SIZES
        return min(sizes) if self.objective == "latency" else max(sizes)

    def with_batch_sizes_for(self, candidates: list[Candidate]) -> TuneRequest:
        """The request with its batch sizes decided where it gave none: :data:`GPU_THROUGHPUT_BATCH_SIZES` for the
        throughput objective where a candidate runs on a GPU (a GPU's throughput needs large batches), else
        :data:`DEFAULT_BATCH_SIZES`."""
        if self.batch_sizes:
            return self
        gpu = self.objective == "throughput" and any(on_gpu(c.provider) for c in candidates)
        return dataclasses.replace(self, batch_sizes=GPU_THROUGHPUT_BATCH_SIZES if gpu else DEFAULT_BATCH_SIZES)


@dataclass
class CandidateResult:
    """One candidate: its artifact, parity and figures per batch size."""

    candidate: Candidate
    artifact: Path | None = None
    parity: ParityReport | None = None
    refused: str | None = None
    #: batch size -> {"p50_ms", "throughput_ips", "macs_per_s", "peak_share"}
    figures: dict[int, dict[str, float]] = field(default_factory=dict)

    @property
    def parity_passed(self) -> bool:
        """Whether the candidate's artifact passed its precision's parity against the fp32 eager model."""
        return self.parity is not None and self.parity.passed

    @property
    def photo_cosine(self) -> float | None:
        """The smallest cosine similarity to the fp32 eager model on the real photos."""
        photos = self.parity.photo_set() if self.parity else None
        return photos.min_cosine if photos else None

    @property
    def photo_top1(self) -> float | None:
        """Top-1 agreement with the fp32 eager model on the real photos."""
        photos = self.parity.photo_set() if self.parity else None
        return photos.top1_agreement if photos else None

    def to_dict(self) -> dict[str, Any]:
        """The candidate as the report and the deployment record list it."""
        return {
            "name": self.candidate.name,
            "format": self.candidate.format,
            "precision": self.candidate.precision,
            "threads": self.candidate.threads,
            "streams": self.candidate.streams,
            "provider": self.candidate.provider,
            "provider_options": dict(self.candidate.options),
            "parity_passed": self.parity_passed,
            "photos_min_cosine": self.photo_cosine,
            "photos_top1": self.photo_top1,
            "refused": self.refused,
            "figures": {str(batch): values for batch, values in self.figures.items()},
        }


@dataclass
class TuneReport:
    """Everything tune measured, the winner, and why it won."""

    request: TuneRequest
    results: list[CandidateResult]
    skipped: list[Skipped]
    winner: CandidateResult
    macs: int | None
    machine: dict[str, Any]
    bench: BenchReport | None = None

    @property
    def baseline(self) -> CandidateResult:
        """The fp32 ONNX artifact as it was given (the first candidate)."""
        return self.results[0]

    def why(self) -> str:
        """One paragraph: what won, by how much, at what fidelity, and what came next."""
        batch, objective = self.request.deciding_batch, self.request.objective
        key = "p50_ms" if objective == "latency" else "throughput_ips"
        unit = "ms" if objective == "latency" else "img/s"
        ranked = _ranked([r for r in self.results if batch in r.figures], batch, objective)
        won = self.winner.figures[batch][key]
        base = self.baseline.figures.get(batch, {}).get(key)
        ratio = (base / won if objective == "latency" else won / base) if base else None
        text = (
            f"{self.winner.candidate.name} won on {objective} at batch {batch}: {won:.1f} {unit}"
            + (
                f", {ratio:.2f}x ONNX Runtime fp32 ({base:.1f} {unit})"
                if ratio and self.winner is not self.baseline
                else ""
            )
            + f"; on the photos its top-1 agreement with eager fp32 is {(self.winner.photo_top1 or 0):.0%} and its"
            f" smallest cosine {(self.winner.photo_cosine or 0):.5f}."
        )
        if len(ranked) > 1:
            second = ranked[1]
            text += f" Next: {second.candidate.name} at {second.figures[batch][key]:.1f} {unit}."
        failed = [r.candidate.name for r in self.results if not r.parity_passed]
        if failed:
            text += f" Failed parity (not chosen): {', '.join(failed)}."
        tried = {r.candidate.precision for r in self.results if r.candidate.provider == "cpu"}
        return text + " " + _host_note(tried_int8=Precision.INT8 in tried, tried_bf16=Precision.BF16 in tried)

    def to_dict(self) -> dict[str, Any]:
        """The JSON report."""
        return {
            "artifact": str(self.request.artifact),
            "output": str(self.request.output),
            "objective": self.request.objective,
            "batch_sizes": list(self.request.batch_sizes),
            "macs_per_image": self.macs,
            "winner": self.winner.candidate.name,
            "why": self.why(),
            "candidates": [r.to_dict() for r in self.results],
            "skipped": [dataclasses.asdict(s) for s in self.skipped],
            "machine": self.machine,
        }


def _host_note(tried_int8: bool, tried_bf16: bool = False) -> str:
    """What this CPU's features mean for the CPU candidates (int8 and bf16 explained only where they were tried)."""
    flags = cpu_flags()
    if not tried_int8:
        if tried_bf16 and flags.intersection(("amx_bf16", "avx512_bf16")):
            return "This CPU computes bf16 natively (AVX512_BF16 or AMX): OpenVINO runs bf16 convolutions on it."
        return "Both runtimes run fp32 on this CPU's FMA units."
    if "amx_int8" in flags:
        return (
            "This CPU has AMX: OpenVINO runs int8 and bf16 convolutions on its tiles; ONNX Runtime runs these int8"
            " convolutions (symmetric int8 weights) on its AVX-512 VNNI kernels, not on the tiles."
        )
    if flags.intersection(("avx512_vnni", "avx_vnni")):
        return (
            "This CPU has VNNI (int8 dot products) but no AMX: both runtimes compute int8 with the same instructions."
        )
    return (
        "This CPU has neither VNNI nor AMX: int8 gains only from moving less data, bf16 is not computed here, and"
        " both runtimes run fp32 on the same FMA units."
    )


def _ranked(results: list[CandidateResult], batch: int, objective: str) -> list[CandidateResult]:
    if objective == "latency":
        return sorted(results, key=lambda r: r.figures[batch]["p50_ms"])
    return sorted(results, key=lambda r: -r.figures[batch]["throughput_ips"])


def _check_source(artifact: Path) -> Manifest:
    manifest = read_manifest(artifact)
    verify_artifact_files(artifact, manifest)
    if manifest.format != "onnx" or derivations(manifest):
        raise UserInputError(
            f"{artifact} is {a(manifest.format)} {manifest.precision} artifact; tune starts from a plain fp32 ONNX one",
            hint=f"tvdeploy export --model {manifest.architecture} --format onnx",
        )
    return manifest


def _derive(
    request: TuneRequest, manifest: Manifest, model: LoadedModel, key: tuple[str, str], work: Path
) -> tuple[Path, ParityReport | None]:
    """The artifact of one (format, precision) and its parity record against ``model`` (the source itself for
    onnx fp32)."""
    fmt, precision = key
    if key == ("onnx", Precision.FP32):
        return request.artifact, manifest.parity
    outcome = optimize_artifact(
        OptimizeRequest(
            artifact=request.artifact,
            precision=precision,
            calibration=request.calibration,
            output=work / f"{fmt}-{precision}",
            format=fmt if fmt != manifest.format else None,
        ),
        model,
    )
    return outcome.artifact_dir, outcome.manifest.parity


def tune(request: TuneRequest) -> TuneReport:
    """Run the whole tune (see the module docstring) and write the winner to ``request.output``."""
    from tqdm import tqdm

    manifest = _check_source(request.artifact)
    check_output(request.output, request.force, [request.artifact])
    candidates, skipped = plan(request.calibration is not None, objective=request.objective)
    request = request.with_batch_sizes_for(candidates)
    check_batches_fit(manifest.input, manifest.output, manifest.num_classes, list(request.batch_sizes))
    keys = list(dict.fromkeys(c.artifact_key for c in candidates))
    results = {c: CandidateResult(c) for c in candidates}
    with (
        tempfile.TemporaryDirectory(prefix="tvdeploy-tune-") as scratch,
        tqdm(total=len(keys) + 1, unit="step", disable=not request.progress, leave=False) as bar,
    ):
        derived: dict[tuple[str, str], tuple[Path, ParityReport | None] | str] = {}
        model = reference_model(manifest)  # the eager fp32 model every candidate's parity is against, built once
        for key in keys:
            bar.set_description(f"deriving {key[0]} {key[1]}")
            derived[key] = _derive_or_reason(request, manifest, model, key, Path(scratch))
            bar.update(1)
        for candidate, result in results.items():
            made = derived[candidate.artifact_key]
            if isinstance(made, str):
                result.refused = made
                continue
            result.artifact, result.parity = made
            if not result.parity_passed:
                result.refused = "failed parity"
            else:
                result.refused = _trial(result, request)
        timed = [r for r in results.values() if r.refused is None]
        bar.set_description(f"timing {len(timed)} candidates interleaved")
        bench = _time_surviving(timed, request)
        timed = [r for r in timed if r.refused is None]
        bar.update(1)
        if bench is None or not timed:
            raise TvdeployError(
                "no candidate could run on this host: "
                + "; ".join(f"{r.candidate.name}: {r.refused}" for r in results.values()),
                hint="check the source artifact with tvdeploy validate, and the providers with --provider cpu",
            )
        macs = _macs(request.artifact, manifest)
        _fill_figures(timed, bench, macs)
        winner = _ranked(timed, request.deciding_batch, request.objective)[0]
        report = TuneReport(request, list(results.values()), skipped, winner, macs, bench.machine, bench)
        _write_winner(report, manifest)
    return report


def _derive_or_reason(
    request: TuneRequest, manifest: Manifest, model: LoadedModel, key: tuple[str, str], work: Path
) -> tuple[Path, ParityReport | None] | str:
    """:func:`_derive`, or why it failed (one candidate's failure is a row of the report, not the tune's end)."""
    try:
        return _derive(request, manifest, model, key, work)
    except (TvdeployError, Exception) as exc:
        logger.debug("deriving %s %s failed", *key, exc_info=True)
        return f"failed to derive: {_reason(exc)}"


def _reason(exc: BaseException) -> str:
    text = exc.message if isinstance(exc, TvdeployError) else f"{type(exc).__name__}: {exc}"
    return text.strip().splitlines()[0][:300] if text.strip() else type(exc).__name__


def _trial(result: CandidateResult, request: TuneRequest) -> str | None:
    """Why the candidate cannot run at the batch sizes it will be timed at (None: it ran). Candidates on a device
    are tried in a child process first (a crash there is a failed row); CPU candidates here."""
    assert result.artifact is not None
    candidate = result.candidate
    if on_gpu(candidate.provider):
        return trial_in_child(result.artifact, candidate.provider, request.batch_sizes, dict(candidate.options))
    try:
        run_trial(result.artifact, candidate.provider, request.batch_sizes[:1])
    except Exception as exc:
        return f"failed to start: {_reason(exc)}"
    return None


def _time_surviving(timed: list[CandidateResult], request: TuneRequest) -> BenchReport | None:
    """:func:`_time` over every candidate; where the joint run fails, each is timed alone to find the ones that
    fail (refused with the reason), and the rest are timed together again."""
    try:
        return _time(timed, request)
    except Exception as exc:
        logger.warning("tune: the joint timing failed (%s); timing each candidate alone to find which", _reason(exc))
    for result in timed:
        try:
            _time([result], dataclasses.replace(request, budget_s=min(request.budget_s, 1.0)))
        except Exception as exc:
            result.refused = f"failed while timed: {_reason(exc)}"
    return _time([r for r in timed if r.refused is None], request)


def _time(timed: list[CandidateResult], request: TuneRequest) -> BenchReport:
    targets = []
    for result in timed:
        assert result.artifact is not None
        target = artifact_target(result.artifact)
        target.name, target.threads = result.candidate.name, result.candidate.threads
        target.provider, target.streams = result.candidate.provider, result.candidate.streams
        target.provider_options = dict(result.candidate.options)
        targets.append(target)
    config = BenchConfig(
        batch_sizes=list(request.batch_sizes), warmup=2, iterations=None, time_budget_s=request.budget_s,
        cold_start=False,
    )  # fmt: skip
    return run_benchmark(targets, config)


def _macs(artifact: Path, manifest: Manifest) -> int | None:
    try:
        return count_macs(artifact / manifest.model_file.path)
    except Exception as exc:  # a graph whose shapes do not infer: the report goes without MAC figures
        logger.warning("MACs not counted: %s", exc)
        return None


def _fill_figures(timed: list[CandidateResult], bench: BenchReport, macs: int | None) -> None:
    rows = {(row.name, row.batch_size): row for row in bench.rows if row.mode == "model"}
    for result in timed:
        # the peak of the device the candidate ran on: the CPU's, or the GPU's datasheet figure
        top, _ = provider_peak(result.candidate.provider, result.candidate.precision)
        for (name, batch), row in rows.items():
            if name != result.candidate.name:
                continue
            # images per second at the p50 of one call's time, or with calls in flight at once, of the interval
            ips = batch / ((row.interval or row.latency).p50 / 1000)
            figures = {"p50_ms": round(row.latency.p50, 3), "throughput_ips": round(ips, 2)}
            if macs:
                figures["macs_per_s"] = round(macs * ips, 1)
                if top is not None:
                    figures["peak_macs_per_s"] = round(top, 1)
                    figures["peak_share"] = round(macs * ips / top, 4)
            result.figures[batch] = figures


def _links(folder: str, names: list[str]) -> list[str]:
    """The links among ``names`` (left behind when caches are copied: only files TensorRT wrote travel)."""
    return [name for name in names if os.path.islink(os.path.join(folder, name))]


def _write_winner(report: TuneReport, source_manifest: Manifest) -> None:
    """The winner's artifact, copied to the output with the deployment record in its manifest."""
    winner = report.winner
    assert winner.artifact is not None
    manifest = read_manifest(winner.artifact)
    record = Deployment(
        format=winner.candidate.format,
        precision=winner.candidate.precision,
        provider=winner.candidate.provider,
        provider_options=dict(winner.candidate.options),
        threads=winner.candidate.threads,
        streams=winner.candidate.streams,
        batch_size=report.request.deciding_batch,
        objective=report.request.objective,
        host_cpu=cpu_model(),
        host_signature=cpu_signature(),
        figures={str(batch): values for batch, values in winner.figures.items()},
        candidates=[r.to_dict() for r in report.results],
        tuned=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    )
    tuned = tuned_manifest(manifest, record, report.request.name or source_manifest.name)
    with staged_directory(report.request.output, report.request.force, [report.request.artifact]) as staging:
        for entry in manifest.files:
            target = staging / entry.path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(entry.location(winner.artifact), target)
        engines = winner.artifact / CACHE_FOLDER
        if engines.is_dir() and not engines.is_symlink():  # TensorRT engines built while timing: no rebuild
            shutil.copytree(engines, staging / CACHE_FOLDER, ignore=_links)
        write_manifest(tuned, staging)
    logger.info("wrote %s (%s)", report.request.output, winner.candidate.name)
