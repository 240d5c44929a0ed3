"""Run a benchmark: every target interleaved (A B A B ...) per batch size, so drift hits all alike."""

from __future__ import annotations

import functools
import logging
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tvdeploy.bench.coldstart import measure_in_subprocess
from tvdeploy.bench.machine import bench_versions, machine_info
from tvdeploy.bench.stats import LatencyStats
from tvdeploy.bench.targets import BenchTarget
from tvdeploy.errors import UserInputError
from tvdeploy.flags import flag, positive_int, positive_int_list
from tvdeploy.runtime.execution import provider_flag, streams_flag, threads_flag
from tvdeploy.runtime.formats import runs_on_torch
from tvdeploy.runtime.gpu_decode import DECODER_CHOICES, DecoderKind, resolve_decoder
from tvdeploy.runtime.manifest import OutputSpec
from tvdeploy.runtime.memory import check_batches_fit
from tvdeploy.runtime.providers import resolve_provider

logger = logging.getLogger(__name__)


@dataclass
class BenchConfig:
    """How to measure.

    ``iterations`` timed calls per target and batch size, or, with
    ``time_budget_s``, as many interleaved rounds as fit in that many seconds per
    batch size (at least ``min_iterations``). Targets take turns in blocks of
    ``block_size`` timed calls, each block after one untimed settling call.
    """

    batch_sizes: list[int] = flag([1], "batch sizes, e.g. 1,8,32", parse=positive_int_list, metavar="N,N")
    warmup: int = flag(3, "untimed calls per backend first")
    iterations: int | None = flag(20, "timed calls per backend", parse=positive_int)
    time_budget_s: float | None = flag(None, "seconds per batch size instead of a fixed count", name="--time-budget")
    min_iterations: int = 5
    block_size: int = 3
    #: one provider for every target; None: each target's own (a deployment record's, tune's), else ``cpu``
    provider: str | None = provider_flag()
    threads: int | None = threads_flag("intra-op threads for every backend (default: the libraries' own)")
    streams: int | None = streams_flag(
        "parallel streams for every backend that has them (OpenVINO), each on --threads threads; that many calls "
        "are timed in flight at once (default: the tuned deployment's, else 1)",
    )
    e2e: bool = flag(False, "also time the full predict path from image files")
    decoder: str = flag(
        "cpu",
        "with --e2e: gpu or auto also time the path that decodes on the model's GPU (nvImageCodec; an artifact with "
        "--embed-preprocess), as row e2e-gpu beside Pillow's e2e",
        choices=DECODER_CHOICES,
    )
    bare: bool = flag(
        False,
        "also time the backends' own call (session.run, infer_request.infer, ...) without tvdeploy's runner "
        "around it (bench overhead check)",
        aliases=("--bare-ort",),
    )
    cold_start: bool = flag(True, "skip the cold-start / peak-RSS subprocesses", name="--no-cold-start")
    #: fresh processes per torch-free backend whose median is reported (a single start is at the mercy of
    #: whatever else the machine does; torch-backed backends take seconds to start and get one)
    cold_start_runs: int = 3
    images: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise UserInputError("batch sizes must be positive integers, e.g. --batch-sizes 1,8")
        if self.iterations is None and self.time_budget_s is None:
            raise UserInputError("give a number of iterations or a time budget")
        if self.warmup < 0:
            raise UserInputError("warm-up must be >= 0")
        if self.block_size < 1:
            raise UserInputError("block size must be >= 1")


@dataclass
class BenchRow:
    """One target at one batch size in one mode."""

    backend: str
    name: str
    artifact: str | None
    mode: str
    batch_size: int
    latency: LatencyStats
    cold_start_ms: float | None
    peak_rss_mb: float | None
    file_mb: float | None
    #: importing tvdeploy's runtime and the backend in a fresh process (before ``cold_start_ms``)
    import_ms: float | None = None
    speedup_vs_eager: float | None = None
    #: speedup against the run's baseline (eager, or the first target when eager was not run)
    speedup: float | None = None
    baseline: str | None = None
    #: multiply-accumulates per second achieved (the model's MACs, counted from its ONNX graph) and their share of
    #: this host's peak for the target's precision (:mod:`tvdeploy.bench.peak`)
    macs_per_s: float | None = None
    peak_share: float | None = None
    precision: str = "fp32"
    #: calls timed in flight at once (the runner's streams); above one, ``latency`` is each call's own and
    #: ``interval`` the time per call at that depth with the streams kept busy (:func:`in_flight_window`), the
    #: throughput's measure
    in_flight: int = 1
    interval: LatencyStats | None = None
    #: the execution provider it ran on (its peak is that device's)
    provider: str = "cpu"
    #: why there is no share of peak (a GPU not in the datasheet table, an unknown CPU frequency)
    peak_note: str | None = None

    @property
    def throughput_ips(self) -> float:
        """Images per second: at the mean latency, or, with calls in flight at once, at the mean interval."""
        return self.batch_size / ((self.interval or self.latency).mean / 1000.0)

    def to_dict(self) -> dict[str, Any]:
        """One entry of the JSON report's ``results``."""
        return {
            "backend": self.backend,
            "name": self.name,
            "artifact": self.artifact,
            "mode": self.mode,
            "batch_size": self.batch_size,
            "latency_ms": self.latency.to_dict(),
            "iterations": self.latency.samples,
            "throughput_ips": round(self.throughput_ips, 3),
            "import_ms": None if self.import_ms is None else round(self.import_ms, 1),
            "cold_start_ms": None if self.cold_start_ms is None else round(self.cold_start_ms, 1),
            "peak_rss_mb": None if self.peak_rss_mb is None else round(self.peak_rss_mb, 1),
            "file_mb": None if self.file_mb is None else round(self.file_mb, 2),
            "speedup_vs_eager": None if self.speedup_vs_eager is None else round(self.speedup_vs_eager, 3),
            "speedup": None if self.speedup is None else round(self.speedup, 3),
            "baseline": self.baseline,
            "precision": self.precision,
            "macs_per_s": None if self.macs_per_s is None else round(self.macs_per_s, 1),
            "peak_share": None if self.peak_share is None else round(self.peak_share, 4),
            "in_flight": self.in_flight,
            "interval_ms": None if self.interval is None else self.interval.to_dict(),
            "provider": self.provider,
            "peak_note": self.peak_note,
        }


@dataclass
class BenchReport:
    """All rows of a run plus where it ran."""

    rows: list[BenchRow]
    config: BenchConfig
    machine: dict[str, Any]
    versions: dict[str, str]
    command: str = ""
    #: the providers the targets ran on (``config.provider`` resolved, or each target's own), comma-separated
    provider: str = ""
    #: multiply-accumulates per image of the model, counted from its ONNX graph (None: not counted)
    macs_per_image: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON report."""
        return {
            "command": self.command,
            "macs_per_image": self.macs_per_image,
            "results": [row.to_dict() for row in self.rows],
            "machine": self.machine,
            "versions": self.versions,
            "config": {
                "batch_sizes": self.config.batch_sizes,
                "warmup": self.config.warmup,
                "iterations": self.config.iterations,
                "time_budget_s": self.config.time_budget_s,
                "provider": self.config.provider,
                "resolved_provider": self.provider,
                "threads": self.config.threads,
                "streams": self.config.streams,
                "e2e": self.config.e2e,
            },
        }


#: Calls per stream in one timed window of a runner with parallel streams.
WINDOW_DEPTH = 8


@dataclass
class _Call:
    target: BenchTarget
    mode: str
    fn: Callable[[], Any]
    samples: list[float] = field(default_factory=list)
    #: with calls in flight at once: a window of ``n`` of them -> (each call's seconds, seconds per call of the
    #: streams kept busy)
    window: Callable[[int], tuple[list[float], float]] | None = None
    in_flight: int = 1
    #: seconds per call of each window (calls in flight at once)
    intervals: list[float] = field(default_factory=list)

    def timed(self) -> None:
        """One timed call, or with calls in flight at once, one window of :data:`WINDOW_DEPTH` calls per stream."""
        if self.window is None:
            start = time.perf_counter()
            self.fn()
            self.samples.append(time.perf_counter() - start)
            return
        latencies, interval = self.window(WINDOW_DEPTH * self.in_flight)
        self.samples.extend(latencies)
        self.intervals.append(interval)


def in_flight_window(runner: Any, feeds: dict[str, Any]) -> Callable[[int], tuple[list[float], float]]:
    """``n`` calls of ``runner.infer(feeds)`` kept ``runner.concurrency`` deep in flight on its stream threads
    (each starts as one finishes): each call's seconds, and the seconds per call of streams kept busy.

    That interval is each stream's busy span (its first call's start to its last call's end: its calls and the
    hand-offs between them) summed over the streams and divided by streams x calls, Little's law for a depth of
    ``concurrency``. The window's tail, where streams go idle one by one as the last calls finish, is left out:
    a caller that keeps the streams fed (a server, ``predict`` on a folder, OpenVINO's benchmark_app over its whole
    run) does not pay it, and counting it (the window's seconds over its calls) cost a 2-stream resnet50 about
    15% at 4 calls per stream (docs/benchmarks.md)."""

    def one(_: int) -> tuple[int, float, float]:
        start = time.perf_counter()
        runner.infer(feeds)
        return threading.get_ident(), start, time.perf_counter()

    def window(calls: int) -> tuple[list[float], float]:
        spans = list(runner.stream_pool.map(one, range(calls)))
        busy: dict[int, tuple[float, float]] = {}
        for stream, start, end in spans:
            first, last = busy.get(stream, (start, end))
            busy[stream] = (min(first, start), max(last, end))
        streams_seconds = sum(last - first for first, last in busy.values())
        return [end - start for _, start, end in spans], streams_seconds / (len(busy) * calls)

    return window


def _calls_for(
    target: BenchTarget, runner: Any, batch_size: int, config: BenchConfig, files: Sequence[bytes]
) -> list[_Call]:
    feeds = {target.input_spec.name: target.input_spec.example(batch_size, seed=batch_size)}
    if runner.concurrency > 1:
        window = in_flight_window(runner, feeds)
        streams = runner.concurrency
        calls = [_Call(target, "model", lambda: window(streams), window=window, in_flight=streams)]
    else:
        calls = [_Call(target, "model", lambda: runner.infer(feeds))]
    bare = runner.bare_call(feeds) if config.bare else None
    if bare is not None:
        calls.append(_Call(target, "bare", bare))
    if config.e2e:
        batch_files = [files[i % len(files)] for i in range(batch_size)]
        for mode, decoder in _e2e_paths(target, runner, config.decoder):
            calls.append(
                _Call(target, mode, functools.partial(target.end_to_end(runner, decoder=decoder), batch_files))
            )
    return calls


def _e2e_paths(target: BenchTarget, runner: Any, decoder: str) -> list[tuple[str, str]]:
    """The end-to-end rows of a target: Pillow's always, the GPU decoder's beside it where asked for and it can
    run (``gpu`` where it cannot is an error naming why; ``auto`` logs why and leaves it out)."""
    paths = [("e2e", DecoderKind.CPU.value)]
    if decoder != DecoderKind.CPU and target.manifest is not None:
        takes_images = target.manifest.input.takes_images
        kind = resolve_decoder(decoder, takes_images, runner.memory, str(getattr(runner, "provider", "cpu")))
        if kind == DecoderKind.GPU:
            paths.append(("e2e-gpu", DecoderKind.GPU.value))
    return paths


def _time_interleaved(calls: list[_Call], config: BenchConfig) -> None:
    """Rounds of A B ... then ... B A; in each, one untimed settling call and a block of timed ones per target.

    The settling call matters: after a call, ONNX Runtime's and torch's thread
    pools keep spinning for a while, and the next backend timed straight after
    pays for it (docs/benchmarks.md, "Interleaving needs a settling call"). One
    untimed call lets the other pool go quiet.
    """
    for call in calls:
        for _ in range(config.warmup):
            call.fn()
    deadline = None if config.time_budget_s is None else time.perf_counter() + config.time_budget_s
    rounds = 0
    while True:
        order = calls if rounds % 2 == 0 else calls[::-1]  # alternate the order so no call always goes first
        for call in order:
            call.fn()  # settle (untimed)
            for _ in range(config.block_size):
                if deadline is None and len(call.samples) >= (config.iterations or 0):
                    break
                call.timed()
        rounds += 1
        if deadline is None:
            if all(len(c.samples) >= (config.iterations or 0) for c in calls):
                break
        elif time.perf_counter() >= deadline and all(len(c.samples) >= config.min_iterations for c in calls):
            break


def interleaved_samples(functions: Sequence[Callable[[], Any]], config: BenchConfig) -> list[list[float]]:
    """Seconds per call of each function, timed the way ``tvdeploy bench`` times backends (interleaved, settled)."""
    calls = [_Call(None, "model", function) for function in functions]  # type: ignore[arg-type]  # no target: not a report row
    _time_interleaved(calls, config)
    return [call.samples for call in calls]


def _cold_start(target: BenchTarget, config: BenchConfig, provider: str) -> dict[str, float]:
    spec = {
        "backend": target.backend,
        "artifact": str(target.artifact) if target.artifact else None,
        "provider": provider,
        "threads": config.threads,
        "batch_size": config.batch_sizes[0],
        "source": target.source,
    }
    runs = 1 if runs_on_torch(target.backend) else config.cold_start_runs
    try:
        samples = [measure_in_subprocess(spec) for _ in range(runs)]
        return {key: statistics.median(sample[key] for sample in samples) for key in samples[0]}
    except (RuntimeError, OSError) as exc:
        logger.warning("cold start of %s not measured: %s", target.name, exc)
        return {}


def run_benchmark(targets: Sequence[BenchTarget], config: BenchConfig) -> BenchReport:
    """Measure every target at every batch size; returns the rows with speedups against eager.

    Every target runs on the run's provider, resolved once for all of them; where the run names none, each on its
    own (tune's candidates, an artifact's deployment record), else the CPU.
    """
    for target in targets:  # before any runner loads: a batch whose arrays cannot fit is refused with the figure
        output = target.manifest.output if target.manifest is not None else OutputSpec(target.output_name)
        check_batches_fit(target.input_spec, output, len(target.labels), list(config.batch_sizes))
    providers = _providers(targets, config.provider)
    if config.threads is not None and any(runs_on_torch(t.backend) for t in targets):
        import torch

        torch.set_num_threads(config.threads)
    files = [path.read_bytes() for path in config.images]
    if config.e2e and not files:
        raise UserInputError("--e2e needs image files")
    cold = {t.name: _cold_start(t, config, providers[t.name]) for t in targets} if config.cold_start else {}
    runners = {t.name: t.runner(providers[t.name], config.threads, config.streams).activate() for t in targets}
    rows: list[BenchRow] = []
    try:
        for batch_size in config.batch_sizes:
            fitting = [t for t in targets if t.runs_batch(batch_size)]
            for target in targets:
                if target not in fitting:
                    logger.warning(
                        "%s: batch %d is over the artifact's largest batch (%s); not timed",
                        target.name,
                        batch_size,
                        target.input_spec.max_batch,
                    )
            logger.info("batch size %d: timing %s interleaved", batch_size, ", ".join(t.name for t in fitting))
            calls = [c for t in fitting for c in _calls_for(t, runners[t.name], batch_size, config, files)]
            _time_interleaved(calls, config)
            for call in calls:
                target = call.target
                rows.append(
                    BenchRow(
                        backend=target.backend,
                        name=target.name,
                        artifact=str(target.artifact) if target.artifact else None,
                        mode=call.mode,
                        batch_size=batch_size,
                        latency=LatencyStats.from_seconds(call.samples),
                        cold_start_ms=cold.get(target.name, {}).get("cold_start_ms"),
                        import_ms=cold.get(target.name, {}).get("import_ms"),
                        peak_rss_mb=cold.get(target.name, {}).get("peak_rss_mb"),
                        file_mb=target.file_mb,
                        precision=target.manifest.precision if target.manifest is not None else "fp32",
                        in_flight=call.in_flight,
                        interval=LatencyStats.from_seconds(call.intervals) if call.intervals else None,
                        provider=providers[target.name],
                    )
                )
    finally:
        for runner in runners.values():
            runner.deactivate()
    _add_speedups(rows)
    macs = model_macs(targets)
    _add_macs(rows, macs)
    provider = ", ".join(dict.fromkeys(providers.values()))
    return BenchReport(
        rows, config, machine_info(config.threads), bench_versions(), provider=provider, macs_per_image=macs
    )


def _providers(targets: Sequence[BenchTarget], requested: str | None) -> dict[str, str]:
    """Each target's resolved provider: the run's (one for all), else the target's own, else the CPU."""
    if requested is not None:
        provider = resolve_provider(requested, [t.backend for t in targets])
        return {t.name: provider for t in targets}
    return {t.name: resolve_provider(t.provider or "cpu", [t.backend]) for t in targets}


def _add_speedups(rows: list[BenchRow]) -> None:
    """Speedup (the ratio of images per second) against eager in the same mode and batch size, where eager was
    measured, and against the baseline: eager, or the first target when eager was not run (``bench fp32 int8
    fp16`` compares with fp32)."""
    baseline = "eager" if any(r.backend == "eager" for r in rows) else (rows[0].name if rows else "")
    for row in rows:
        eager = next(
            (r for r in rows if r.backend == "eager" and r.mode == row.mode and r.batch_size == row.batch_size), None
        )
        if eager is not None:
            row.speedup_vs_eager = row.throughput_ips / eager.throughput_ips
        base = next(
            (r for r in rows if r.name == baseline and r.mode == row.mode and r.batch_size == row.batch_size), None
        )
        if base is not None:
            row.speedup = row.throughput_ips / base.throughput_ips
            row.baseline = baseline


def model_macs(targets: Sequence[BenchTarget]) -> int | None:
    """MACs per image of the model the targets run, counted from the first ONNX artifact among them (or the ONNX
    artifact one was derived from); None where there is none or ``onnx`` (the export extra) is not installed."""
    for target in targets:
        manifest = target.manifest
        if manifest is None or target.artifact is None:
            continue
        derived = manifest.export_info.derived_from
        source = derived.artifact if derived is not None else None
        path: Path | None = target.artifact / manifest.model_file.path if manifest.format == "onnx" else None
        if path is None and source:
            path = Path(source) / "model.onnx"
        if path is None or not path.is_file():
            continue
        try:
            from tvdeploy.export.macs import count_macs

            return count_macs(path)
        except Exception as exc:  # no onnx, or shapes that do not infer: rows go without MAC figures
            logger.debug("MACs not counted from %s: %s", path, exc)
            return None
    return None


def _add_macs(rows: list[BenchRow], macs: int | None) -> None:
    from tvdeploy.bench.peak import provider_peak

    if not macs:
        return
    for row in rows:
        if row.mode != "model":
            continue
        row.macs_per_s = macs * row.throughput_ips
        top, row.peak_note = provider_peak(row.provider, row.precision)
        if top is not None:
            row.peak_share = row.macs_per_s / top
