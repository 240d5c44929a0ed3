"""Command line: ``tvdeploy list|export|optimize|validate|inspect|predict|bench|serve|export-triton|tune``.

Thin by design: each command parses its arguments, calls the library, prints,
and returns an exit code. Only the command being run is imported. One place
(:func:`main`) maps the package's errors to a clear message and an exit code.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tvdeploy import __version__
from tvdeploy.errors import MissingDependencyError, TvdeployError, UserInputError

logger = logging.getLogger("tvdeploy")

#: What ``tvdeploy --help`` says before the commands.
DESCRIPTION = (
    "Export torchvision classifiers to ONNX, TorchScript, .pt2, OpenVINO IR and ExecuTorch artifacts with a parity "
    "check on real photos; classify, benchmark and serve them (ONNX and OpenVINO without torch)."
)

EXIT_OK = 0
EXIT_PARITY_FAILED = 3
#: What a shell reports for a process ended by SIGPIPE (128 + 13): the reader closed the pipe, nothing went wrong.
EXIT_BROKEN_PIPE = 141


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _float_triple(text: str) -> tuple[float, float, float]:
    parts = [p for p in text.replace(" ", "").split(",") if p]
    if len(parts) != 3:
        raise argparse.ArgumentTypeError("expected three comma-separated numbers, e.g. 0.485,0.456,0.406")
    try:
        return (float(parts[0]), float(parts[1]), float(parts[2]))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not numbers: {text}") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1: {text}")
    return value


# ----------------------------------------------------------------------------- list


def cmd_list(args: argparse.Namespace) -> int:
    """``tvdeploy list [PATTERN]``."""
    from tvdeploy.models.catalog import list_catalog

    models = list_catalog(args.pattern)
    if not models and args.pattern:
        raise UserInputError(f"no model matches {args.pattern!r}", hint="run `tvdeploy list` to see all models")
    if args.json:
        _print_json([m.to_dict() for m in models])
        return EXIT_OK
    header = (
        f"{'model':<30} {'weights':<28} {'acc@1':>6} {'acc@5':>6} {'params':>8} {'GFLOPS':>7} {'MB':>7}  preprocess"
    )
    print(header)
    print("-" * len(header))
    for model in models:
        entries = model.weights if args.all_weights else (model.default_weights,)
        for w in entries:
            p = w.preprocess
            print(
                f"{model.name:<30} {w.name + ('*' if w.is_default and args.all_weights else ''):<28} "
                f"{_num(w.acc1):>6} {_num(w.acc5):>6} {w.num_params / 1e6:>7.1f}M {_num(w.gflops):>7} "
                f"{_num(w.file_size_mb, 1):>7}  {p.resize_size[0]}->{p.crop_size[0]} {p.interpolation}"
            )
    total_weights = sum(len(m.weights) for m in models)
    print(
        f"\n{len(models)} models, {total_weights} weights" + ("" if args.all_weights else " (--all-weights lists them)")
    )
    return EXIT_OK


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


# ----------------------------------------------------------------------------- export


def _preprocess_overrides(args: argparse.Namespace) -> Any:
    from tvdeploy.models.loader import PreprocessOverrides

    overrides = PreprocessOverrides(
        resize_size=(args.resize_size,) if args.resize_size else None,
        crop_size=(args.crop_size,) if args.crop_size else None,
        interpolation=args.interpolation,
        mean=args.mean,
        std=args.std,
    )
    return None if overrides == PreprocessOverrides() else overrides


def _export_formats(requested: str, precision: str = "fp32", graph_passes: bool = False) -> list[str]:
    """``all``: every format whose extra is installed, that supports ``precision`` and, with ``graph_passes``,
    takes the ONNX graph transformations (the others are named in the log); else one known format."""
    from tvdeploy.runtime.formats import ALL, FORMATS, exportable_formats, get_format

    if requested.lower() != ALL:
        return [get_format(requested).name]
    available = exportable_formats()
    skipped = [f"{name} ({FORMATS[name].install_hint()})" for name in FORMATS if name not in available]
    if skipped:
        logger.info("--format all: skipping formats whose extras are not installed: %s", "; ".join(skipped))
    chosen = [name for name in available if precision in FORMATS[name].criteria]
    if len(chosen) < len(available):
        logger.info("--format all at %s: only %s support it", precision, ", ".join(chosen))
    if graph_passes:
        chosen = [name for name in chosen if FORMATS[name].graph_passes]
        logger.info("--format all with ONNX graph transformations: only %s take them", ", ".join(chosen))
    return chosen


def _calibration(args: argparse.Namespace) -> Any:
    from tvdeploy.export.options import CalibrationOptions

    if args.calibration is None:
        return None
    return CalibrationOptions(
        source=args.calibration, method=args.calibration_method, max_images=args.calibration_images, seed=args.seed
    )


def _graph_options(args: argparse.Namespace) -> Any:
    from tvdeploy.export.options import GraphOptions

    return GraphOptions(
        simplify=args.simplify,
        optimize=args.optimize,
        embed_preprocess=args.embed_preprocess,
        embed_top_k=args.embed_postprocess,
    )


def _add_graph_arguments(parser: argparse.ArgumentParser) -> None:
    from tvdeploy.export.options import DEFAULT_EMBED_TOP_K
    from tvdeploy.runtime.manifest import OPTIMIZED_GRAPH_LEVELS

    group = parser.add_argument_group("ONNX graph (onnx format; see docs/optimization.md)")
    group.add_argument("--simplify", action="store_true", help="simplify the graph with onnxslim")
    group.add_argument(
        "--optimize",
        nargs="?",
        const="all",
        choices=OPTIMIZED_GRAPH_LEVELS,
        metavar="LEVEL",
        help="save ONNX Runtime's optimized graph (weights memory-mapped) so sessions start fast; LEVEL "
        "all (default: fastest, tied to this CPU and onnxruntime release), extended or basic (portable)",
    )
    group.add_argument(
        "--embed-preprocess",
        action="store_true",
        help="the graph takes uint8 RGB images (N, H, W, 3) of any size and resizes, crops, normalizes itself",
    )
    group.add_argument(
        "--embed-postprocess",
        nargs="?",
        type=_positive_int,
        const=DEFAULT_EMBED_TOP_K,
        metavar="K",
        help=f"end the graph in softmax + top-K (default K {DEFAULT_EMBED_TOP_K}): probabilities and indices out",
    )


def cmd_export(args: argparse.Namespace) -> int:
    """``tvdeploy export --model NAME --format ...``."""
    from tvdeploy.export.options import ExportOptions
    from tvdeploy.export.parity import format_report
    from tvdeploy.export.pipeline import ExportRequest, export_model

    options = ExportOptions(
        opset=args.opset,
        precision=args.precision,
        dynamic_batch=args.static_batch is None,
        batch_size=args.static_batch or 1,
        max_batch=args.max_batch,
        calibration=_calibration(args),
        graph=_graph_options(args),
    )
    request = ExportRequest(
        model=args.model,
        formats=_export_formats(args.format, args.precision, options.graph.active),
        output_is_parent=args.format.lower() == "all",
        weights=args.weights,
        labels_file=args.labels,
        output=args.output,
        options=options,
        force=args.force,
        name=args.name,
        preprocess=_preprocess_overrides(args),
        seed=args.seed,
        progress=not args.json and sys.stderr.isatty(),
    )
    outcomes = export_model(request)
    if args.json:
        _print_json(
            {
                "model": args.model,
                "passed": all(o.passed for o in outcomes),
                "artifacts": [o.to_dict() for o in outcomes],
            }
        )
    else:
        for outcome in outcomes:
            print(
                f"{outcome.artifact_dir}  [{outcome.format}, {outcome.manifest.exporter}, {outcome.export_seconds:.1f}s]"
            )
            print(format_report(outcome.parity))
    return _parity_exit(o.passed for o in outcomes)


def cmd_optimize(args: argparse.Namespace) -> int:
    """``tvdeploy optimize ARTIFACT [--precision fp16|int8] [graph options]``: a derived artifact with its own
    parity."""
    from tvdeploy.export.optimize import OptimizeRequest, optimize_artifact
    from tvdeploy.export.parity import format_report

    outcome = optimize_artifact(
        OptimizeRequest(
            artifact=args.artifact,
            precision=args.precision,
            calibration=_calibration(args),
            graph=_graph_options(args),
            output=args.output,
            force=args.force,
            format=args.format,
        )
    )
    if args.json:
        _print_json(outcome.to_dict())
    else:
        sizes = ", ".join(f"{f.path} {f.bytes / 1e6:.1f} MB" for f in outcome.manifest.files)
        print(f"{outcome.artifact_dir}  [{outcome.manifest.format} {outcome.manifest.precision}, {sizes}]")
        print(format_report(outcome.parity))
    return _parity_exit([outcome.passed])


def _add_calibration_arguments(parser: argparse.ArgumentParser, methods: Sequence[str], default_images: int) -> None:
    group = parser.add_argument_group("int8 calibration")
    group.add_argument(
        "--calibration",
        metavar="DIR|random",
        help="representative images for int8 (preprocessed like the artifact); 'random': noise, speed tests only",
    )
    group.add_argument("--calibration-method", default="minmax", choices=methods, help="default minmax")
    group.add_argument(
        "--calibration-images",
        type=_positive_int,
        default=default_images,
        help=f"images used at most, in sorted order (default {default_images})",
    )


def _parity_exit(passed: Any) -> int:
    return EXIT_OK if all(passed) else EXIT_PARITY_FAILED


# ----------------------------------------------------------------------------- validate / inspect


def cmd_validate(args: argparse.Namespace) -> int:
    """``tvdeploy validate ARTIFACT``."""
    from tvdeploy.export.parity import format_report
    from tvdeploy.export.validate import validate_artifact

    results = [validate_artifact(path, provider=args.provider, weights=args.weights) for path in args.artifacts]
    if args.json:
        _print_json(results[0].to_dict() if len(results) == 1 else [r.to_dict() for r in results])
    else:
        for result in results:
            print(f"{result.artifact_dir}  [{result.manifest.format}]")
            print(format_report(result.parity))
    return _parity_exit(r.passed for r in results)


def cmd_inspect(args: argparse.Namespace) -> int:
    """``tvdeploy inspect ARTIFACT``: the manifest, summarised, with file hashes checked."""
    from tvdeploy.runtime.manifest import check_artifact_files, read_manifest

    manifest = read_manifest(args.artifact)
    checks = check_artifact_files(args.artifact, manifest)
    if args.json:
        data = manifest.to_dict()
        data["file_checks"] = checks
        _print_json(data)
    else:
        parity = manifest.parity or {}
        rows = [
            ("name", manifest.name),
            ("architecture", manifest.architecture),
            ("weights", manifest.weights),
            ("pretrained", manifest.pretrained),
            ("format", manifest.format),
            ("precision", manifest.precision),
            ("exporter", manifest.exporter),
            ("opset", manifest.opset),
            (
                "input",
                f"{manifest.input.name} {manifest.input.shape} {manifest.input.dtype} {manifest.input.layout}"
                + (f" (batch at most {manifest.input.max_batch})" if manifest.input.max_batch else ""),
            ),
            ("output", f"{manifest.output.name} {manifest.output.shape} ({manifest.output.meaning})"),
            ("preprocess", manifest.preprocess.describe()),
            ("classes", f"{manifest.num_classes} ({', '.join(manifest.labels[:3])}, ...)"),
            ("parity", "passed" if parity.get("passed") else ("FAILED" if parity else "not run")),
            *((key, value) for key, value in manifest.export_info.items() if key not in ("attempts", "seconds")),
            *((("deployment", _describe_deployment(manifest.deployment)),) if manifest.deployment else ()),
            ("created", manifest.created),
            ("schema", manifest.schema_version),
        ]
        for key, value in rows:
            print(f"{key:<13} {value}")
        for entry in manifest.files:
            print(
                f"{'file':<13} {entry.path} {entry.bytes / 1e6:.1f} MB sha256 {entry.sha256[:16]}... {checks[entry.path]}"
            )
        print(f"{'versions':<13} " + ", ".join(f"{k} {v}" for k, v in manifest.versions.items()))
    return EXIT_OK if all(v == "ok" for v in checks.values()) else 1


def _describe_deployment(record: Any) -> str:
    figures = ", ".join(f"b{batch} {values['p50_ms']:.1f} ms" for batch, values in record.figures.items())
    return (
        f"{record.runtime} {record.precision} on {record.provider}, {record.threads} threads, batch {record.batch_size} "
        f"(tune, {record.objective}: {figures}; {len(record.candidates)} candidates) on {record.host_cpu}"
    )


# ----------------------------------------------------------------------------- predict


def cmd_predict(args: argparse.Namespace) -> int:
    """``tvdeploy predict ARTIFACT PATH...``: exit 1 when any input failed."""
    if args.engine == "ray":
        return _predict_on_ray(args)
    if args.output or args.resume or args.address:
        raise UserInputError("--output, --resume and --address belong to --engine ray", hint="add --engine ray")
    from tvdeploy.runtime.classifier import load
    from tvdeploy.runtime.inputs import collect_inputs
    from tvdeploy.runtime.providers import SessionConfig

    inputs = collect_inputs(args.paths)
    if not inputs.files:
        raise UserInputError(
            "no images found in " + ", ".join(args.paths), hint="pass image files or directories that hold images"
        )
    classifier = load(
        args.artifact,
        provider=args.provider,
        verify=not args.no_verify,
        session_config=SessionConfig(intra_op_threads=args.threads) if args.threads else None,
        batch_size=args.batch_size,
        exif_transpose=not args.no_exif,
        max_pixels=args.max_pixels,
        decode_workers=args.workers,
        decode=args.decode,
    )
    random_weights = classifier.manifest.source.random_weights_warning(str(args.artifact))
    if random_weights:
        logger.warning("warning: %s", random_weights)
    failed = 0
    with classifier, _progress(len(inputs.files), enabled=not args.quiet) as bar:
        for result in classifier.predict_stream(inputs.files, top_k=args.top_k):
            failed += not result.ok
            if args.json:
                sys.stdout.write(json.dumps(result.to_dict()) + "\n")
                sys.stdout.flush()
            else:
                bar.write(_format_result(result))
            bar.update(1)
    if failed:
        sys.stderr.write(f"tvdeploy: {failed} of {len(inputs.files)} input(s) failed\n")
    return 1 if failed else EXIT_OK


def _predict_on_ray(args: argparse.Namespace) -> int:
    """``predict --engine ray``: the same rows on Ray Data, into ``--output``; exit 1 when any input failed."""
    from tvdeploy.batch.ray_job import DEFAULT_BATCH_SIZE, RayJob, run_ray_job

    if args.output is None:
        raise UserInputError("--engine ray writes its rows to --output", hint="e.g. --output predictions.jsonl")
    summary = run_ray_job(
        RayJob(
            artifact=args.artifact,
            inputs=args.paths,
            output=args.output,
            address=args.address,
            concurrency=args.concurrency,
            num_cpus=args.num_cpus,
            num_gpus=args.num_gpus,
            threads=args.threads,
            batch_size=args.batch_size or DEFAULT_BATCH_SIZE,
            top_k=args.top_k,
            provider=args.provider,
            decode=args.decode,
            max_pixels=args.max_pixels,
            resume=args.resume,
        )
    )
    skipped = f", {summary.skipped} already done" if summary.skipped else ""
    sys.stderr.write(
        f"tvdeploy: {summary.images} image(s) in {summary.seconds:.1f} s ({summary.images_per_s:.1f} img/s, "
        f"{summary.actors} actor(s)), {summary.errors} error(s){skipped} -> {args.output}\n"
    )
    return 1 if summary.errors else EXIT_OK


def _progress(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="img", file=sys.stderr, disable=not (enabled and sys.stderr.isatty()), leave=False)


def _format_result(result: Any) -> str:
    if not result.ok:
        return f"{result.source}\n  error: {result.error}"
    width = max(len(p.label) for p in result.predictions)
    rows = [f"  {p.label:<{width}}  {p.probability * 100:6.2f}%" for p in result.predictions]
    return "\n".join([result.source, *rows])


# ----------------------------------------------------------------------------- bench


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, e.g. 1,8: {text}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"batch sizes must be positive: {text}")
    return values


def cmd_serve(args: argparse.Namespace) -> int:
    """``tvdeploy serve ARTIFACT...``: the Open Inference Protocol on KServe's SDK, until SIGINT/SIGTERM."""
    import importlib.util

    if importlib.util.find_spec("kserve") is None:
        raise MissingDependencyError("tvdeploy serve needs kserve, not installed", hint='pip install "tvdeploy[serve]"')
    from tvdeploy.serve.options import ServeOptions
    from tvdeploy.serve.server import Listening, serve

    options = ServeOptions(
        host=args.host,
        port=args.port,
        grpc_port=args.grpc_port,
        max_batch_size=args.max_batch_size,
        max_queue_delay_ms=args.max_queue_delay_ms,
        max_queue=args.max_queue,
        instances=args.instances,
        pin_instances=args.pin_instances,
        request_timeout_s=args.request_timeout,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        max_pixels=args.max_pixels or None,
        max_request_pixels=args.max_request_pixels or None,
        max_head_bytes=args.max_header_kb * 1024,
        read_timeout_s=args.read_timeout,
        keep_alive_s=args.keep_alive_timeout,
        max_connections=args.max_connections,
        provider=args.provider,
        grace_period_s=args.grace_period,
        shared_memory=args.shared_memory,
    )

    def announce(where: Listening) -> None:
        grpc = f" and grpc://{where.host}:{where.grpc_port}" if where.grpc_port is not None else ""
        print(f"serving on http://{where.host}:{where.http_port}{grpc}", flush=True)

    serve(args.artifacts, options, on_listening=announce)
    return 0


def cmd_export_triton(args: argparse.Namespace) -> int:
    """``tvdeploy export-triton ARTIFACT... --output REPO``: a Triton model repository."""
    from tvdeploy.serve.triton import TritonOptions, export_triton

    options = TritonOptions(
        max_batch_size=args.max_batch_size,
        max_queue_delay_us=args.max_queue_delay_us,
        instances=args.instances,
        kind=args.kind,
        ensemble=args.ensemble,
    )
    for directory in export_triton(args.artifacts, args.output, options, force=args.force):
        print(directory)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """``tvdeploy bench``: backends side by side in one run."""
    from tvdeploy.bench import report as output
    from tvdeploy.bench.run import BenchConfig, run_benchmark
    from tvdeploy.bench.targets import (
        artifact_target,
        default_cache_dir,
        eager_target_for,
        model_targets,
        parse_backends,
    )
    from tvdeploy.export.inputs import photo_paths

    if bool(args.model) == bool(args.artifacts):
        raise UserInputError("give either --model NAME or one or more ARTIFACT directories")
    if args.model:
        targets = model_targets(
            args.model, args.weights, parse_backends(args.backends), args.cache_dir or default_cache_dir()
        )
    else:
        artifacts = [artifact_target(path) for path in args.artifacts]
        if len({t.name for t in artifacts}) < len(artifacts):
            for target, path in zip(artifacts, args.artifacts, strict=False):
                target.name = str(path)
        wanted = parse_backends(args.backends, allowed=[t.backend for t in artifacts])
        targets = [t for t in artifacts if t.backend in wanted]
        if not targets:
            raise UserInputError(
                f"none of the artifacts is of the backends {', '.join(wanted)}",
                hint="the artifacts are " + ", ".join(f"{t.name} ({t.backend})" for t in artifacts),
            )
        if "eager" in wanted and artifacts[0].manifest is not None:
            targets.insert(0, eager_target_for(artifacts[0].manifest))
    images = [Path(p) for p in args.images] if args.images else photo_paths()
    config = BenchConfig(
        batch_sizes=args.batch_sizes,
        warmup=args.warmup,
        iterations=None if args.time_budget else args.iterations,
        time_budget_s=args.time_budget,
        provider=args.provider,
        threads=args.threads,
        e2e=args.e2e,
        bare=args.bare,
        cold_start=not args.no_cold_start,
        images=images,
    )
    report = run_benchmark(targets, config)
    report.command = "tvdeploy " + " ".join(args.argv)
    print(output.format_table(report))
    if args.json:
        output.write_json(report, args.json)
    if args.markdown:
        args.markdown.write_text(output.format_markdown(report), encoding="utf-8")
    if args.plot:
        output.write_plot(report, args.plot)
    return EXIT_OK


def cmd_tune(args: argparse.Namespace) -> int:
    """``tvdeploy tune ARTIFACT --output DIR``: the fastest correct deployment on this host, measured."""
    from tvdeploy.tune import report as output
    from tvdeploy.tune.tuner import TuneRequest, tune

    report = tune(
        TuneRequest(
            artifact=args.artifact,
            output=args.output,
            calibration=_calibration(args),
            batch_sizes=tuple(args.batch_sizes),
            objective=args.objective,
            budget_s=args.budget_s,
            force=args.force,
            progress=not args.quiet and sys.stderr.isatty(),
        )
    )
    print(output.format_table(report))
    print(f"\nwrote {args.output} ({report.winner.candidate.name})")
    if args.json:
        output.write_json(report, args.json)
    if args.markdown:
        args.markdown.write_text(output.format_markdown(report), encoding="utf-8")
    if args.plot:
        output.write_plot(report, args.plot)
    return EXIT_OK


def _add_tune_parser(sub: Any) -> None:
    from tvdeploy.export.options import CALIBRATION_METHODS, DEFAULT_CALIBRATION_IMAGES
    from tvdeploy.tune.tuner import DEFAULT_BUDGET_S, OBJECTIVES

    p = sub.add_parser(
        "tune",
        help="find the fastest deployment of an fp32 ONNX artifact that passes parity on this host (ONNX Runtime "
        "and OpenVINO, fp32/bf16/int8, threads; CUDA and TensorRT where a GPU is present), measured, and write it "
        "with a deployment record",
    )
    p.add_argument("artifact", type=Path, metavar="ARTIFACT", help="a plain fp32 ONNX artifact")
    p.add_argument("--output", type=Path, required=True, metavar="DIR", help="the tuned artifact to write")
    p.add_argument("--batch-sizes", type=_int_list, default=[1, 8], help="batch sizes to time (default 1,8)")
    p.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default="latency",
        help="latency: lowest p50 at the smallest batch size (default); throughput: most img/s at the largest",
    )
    p.add_argument(
        "--budget-s",
        type=float,
        default=DEFAULT_BUDGET_S,
        help=f"seconds of interleaved timing per batch size (default {DEFAULT_BUDGET_S:g})",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of --calibration random (default 0)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output directory")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the JSON report")
    p.add_argument("--markdown", type=Path, metavar="FILE", help="write a Markdown table")
    p.add_argument("--plot", type=Path, metavar="FILE.png", help="plot speed against fidelity")
    _add_calibration_arguments(p, CALIBRATION_METHODS, DEFAULT_CALIBRATION_IMAGES)
    p.set_defaults(handler=cmd_tune)


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command (choices and help read the format registry)."""
    from tvdeploy.export.options import (
        CALIBRATION_METHODS,
        DEFAULT_CALIBRATION_IMAGES,
        DEFAULT_MAX_BATCH,
        DEFAULT_OPSET,
    )
    from tvdeploy.runtime.formats import ALL, FORMATS, PRECISIONS, backend_names
    from tvdeploy.runtime.images import DECODE_MODES
    from tvdeploy.runtime.manifest import INTERPOLATIONS
    from tvdeploy.runtime.providers import PROVIDER_CHOICES

    parser = argparse.ArgumentParser(prog="tvdeploy", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"tvdeploy {__version__}")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
    verbosity.add_argument("-v", "--verbose", action="store_true", help="debug output on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("list", help="list torchvision classifiers and their weights")
    p.add_argument("pattern", nargs="?", help="substring or glob (resnet*)")
    p.add_argument("--all-weights", action="store_true", help="one row per weights entry (default: DEFAULT only)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=cmd_list)

    p = sub.add_parser(
        "export",
        help="export a model to " + ", ".join(FORMATS) + " with a parity check",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="formats:\n"
        + "\n".join(f"  {name:<12} {spec.summary} [{spec.extra} extra]" for name, spec in FORMATS.items())
        + f"\n  {ALL:<12} every format whose extra is installed",
    )
    p.add_argument("--model", required=True, help="torchvision model name (see `tvdeploy list`)")
    p.add_argument("--format", default="onnx", help=f"{', '.join(FORMATS)} or {ALL} (default: onnx)")
    p.add_argument(
        "--weights",
        default="DEFAULT",
        help="DEFAULT, a weights name (IMAGENET1K_V2), none (seeded random init) or a checkpoint PATH",
    )
    p.add_argument("--labels", type=Path, help="class labels, one per line (for checkpoints)")
    p.add_argument(
        "--output",
        type=Path,
        help="artifact directory (default ./artifacts/<name>-<format>); with --format all, the parent",
    )
    p.add_argument("--name", help="artifact name (default: the model name)")
    p.add_argument("--opset", type=_positive_int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.add_argument(
        "--precision",
        default="fp32",
        choices=PRECISIONS,
        help="numeric precision (default fp32): onnx fp16, int8; openvino fp16, bf16 (CPUs with AVX512_BF16/AMX), "
        "int8; int8 needs --calibration",
    )
    p.add_argument(
        "--static-batch",
        type=_positive_int,
        metavar="N",
        help="fix the batch axis to N (default: a dynamic batch axis)",
    )
    p.add_argument(
        "--max-batch",
        type=_positive_int,
        default=DEFAULT_MAX_BATCH,
        help=f"largest batch of formats that plan memory for one, i.e. executorch (default {DEFAULT_MAX_BATCH})",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of random init and parity noise (default 0)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output directory")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    g = p.add_argument_group("preprocessing overrides (default: the weights' own transforms)")
    g.add_argument("--resize-size", type=_positive_int)
    g.add_argument("--crop-size", type=_positive_int)
    g.add_argument("--interpolation", choices=INTERPOLATIONS)
    g.add_argument("--mean", type=_float_triple, help="R,G,B")
    g.add_argument("--std", type=_float_triple, help="R,G,B")
    _add_calibration_arguments(p, CALIBRATION_METHODS, DEFAULT_CALIBRATION_IMAGES)
    _add_graph_arguments(p)
    p.set_defaults(handler=cmd_export)

    p = sub.add_parser(
        "optimize",
        help="derive an artifact from a plain fp32 ONNX artifact (fp16, int8, onnxslim, ORT's optimized graph, "
        "embedded pre/post-processing), with parity",
    )
    p.add_argument("artifact", type=Path, metavar="ARTIFACT")
    p.add_argument(
        "--precision", default="fp32", choices=PRECISIONS, help="precision of the new artifact (default fp32)"
    )
    p.add_argument(
        "--format",
        choices=[name for name, spec in FORMATS.items() if spec.producer.source],
        help="convert to this format at --precision (openvino: fp32, fp16, bf16 or int8 from an fp32 ONNX artifact)",
    )
    p.add_argument("--output", type=Path, help="the new artifact (default: ARTIFACT-<what changed> beside it)")
    p.add_argument("--seed", type=int, default=0, help="seed of --calibration random (default 0)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output directory")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _add_calibration_arguments(p, CALIBRATION_METHODS, DEFAULT_CALIBRATION_IMAGES)
    _add_graph_arguments(p)
    p.set_defaults(handler=cmd_optimize)

    p = sub.add_parser("validate", help="re-check an artifact against the eager model on photos and noise")
    p.add_argument("artifacts", nargs="+", type=Path, metavar="ARTIFACT")
    p.add_argument("--weights", help="weights of the reference (default: as recorded in the manifest)")
    p.add_argument("--provider", default="cpu", choices=PROVIDER_CHOICES, help="execution provider (default cpu)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=cmd_validate)

    p = sub.add_parser("inspect", help="show an artifact's manifest and check its files")
    p.add_argument("artifact", type=Path, metavar="ARTIFACT")
    p.add_argument("--json", action="store_true", help="the whole manifest as JSON")
    p.set_defaults(handler=cmd_inspect)

    p = sub.add_parser(
        "predict",
        help="classify images with an artifact (no torch needed for "
        + " or ".join(n for n, f in FORMATS.items() if not f.torch_runtime)
        + ")",
    )
    p.add_argument("artifact", type=Path, metavar="ARTIFACT")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files and directories (walked recursively)")
    p.add_argument("--top-k", type=_positive_int, default=5, help="predictions per image (default 5)")
    p.add_argument(
        "--batch-size", type=_positive_int, help="images per model call (default: the tuned deployment's, else 8)"
    )
    p.add_argument(
        "--provider",
        choices=PROVIDER_CHOICES,
        help="execution provider (default: the tuned deployment's where the artifact has one, else cpu)",
    )
    p.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: all cores)")
    p.add_argument("--workers", type=_positive_int, help="decoding threads (default: one per usable core)")
    p.add_argument(
        "--max-pixels",
        type=_positive_int,
        default=89_478_485,
        help="refuse larger images as decompression bombs (default 89478485)",
    )
    p.add_argument("--no-exif", action="store_true", help="ignore EXIF orientation")
    p.add_argument(
        "--decode",
        default="exact",
        choices=DECODE_MODES,
        help="exact (default, matches torchvision to 1e-5) or fast: JPEGs decoded at reduced scale, large images "
        "box-reduced before the resize (much faster on phone photos, slightly different tensors)",
    )
    p.add_argument("--no-verify", action="store_true", help="skip the sha256 check of the model file")
    p.add_argument("--json", action="store_true", help="one JSON line per input, as soon as it is done")
    ray = p.add_argument_group("Ray Data (--engine ray: past one machine; docs/batch.md)")
    ray.add_argument("--engine", choices=["local", "ray"], default="local", help="local (default) or ray")
    ray.add_argument("--output", type=Path, metavar="OUT", help="rows: OUT.jsonl (one file) or a Parquet directory")
    ray.add_argument("--address", help="a running Ray cluster (ray://HOST:10001, auto); default: a local one")
    ray.add_argument("--concurrency", type=_positive_int, help="actors (default: cluster CPUs - 1, at least 1)")
    ray.add_argument("--num-cpus", type=float, default=1.0, help="CPUs per actor (default 1)")
    ray.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per actor (with --provider cuda)")
    ray.add_argument("--resume", action="store_true", help="skip the images whose rows are already in OUT")
    p.set_defaults(handler=cmd_predict)

    p = sub.add_parser("bench", help="benchmark backends side by side (" + ", ".join(backend_names()) + ")")
    p.add_argument("artifacts", nargs="*", type=Path, metavar="ARTIFACT", help="artifact directories to compare")
    p.add_argument("--model", help="benchmark a catalog model (exports what it needs into the cache first)")
    p.add_argument("--weights", default="DEFAULT", help="weights for --model (default DEFAULT; none for random init)")
    p.add_argument(
        "--backends",
        help=f"comma-separated: {', '.join(backend_names())} "
        "(default with --model: eager and every format whose extra is installed)",
    )
    p.add_argument(
        "--provider",
        choices=PROVIDER_CHOICES,
        help="execution provider (default: the tuned deployment's where the artifact has one, else cpu)",
    )
    p.add_argument("--batch-sizes", type=_int_list, default=[1], help="e.g. 1,8,32 (default 1)")
    p.add_argument("--threads", type=int, help="intra-op threads for every backend (default: the libraries' own)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per backend first (default 3)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--iterations", type=_positive_int, default=20, help="timed calls per backend (default 20)")
    budget.add_argument("--time-budget", type=float, help="seconds per batch size instead of a fixed count")
    p.add_argument("--e2e", action="store_true", help="also time the full predict path from image files")
    p.add_argument("--images", nargs="+", help="image files for --e2e (default: the parity photos)")
    p.add_argument(
        "--bare",
        "--bare-ort",
        dest="bare",
        action="store_true",
        help="also time the backends' own call (session.run, infer_request.infer, ...) without tvdeploy's "
        "runner around it (bench overhead check)",
    )
    p.add_argument("--no-cold-start", action="store_true", help="skip the cold-start / peak-RSS subprocesses")
    p.add_argument("--cache-dir", type=Path, help="where --model keeps its exports (default ~/.cache/tvdeploy/bench)")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the JSON report")
    p.add_argument("--markdown", type=Path, metavar="FILE", help="write a Markdown table")
    p.add_argument("--plot", type=Path, metavar="FILE.png", help="plot latency and throughput against batch size")
    p.set_defaults(handler=cmd_bench)

    _add_serve_parser(sub)
    _add_tune_parser(sub)
    return parser


def _add_serve_parser(sub: Any) -> None:
    from tvdeploy.runtime.images import DEFAULT_MAX_PIXELS
    from tvdeploy.runtime.providers import PROVIDER_CHOICES
    from tvdeploy.serve.options import (
        DEFAULT_HOST,
        DEFAULT_INSTANCES,
        DEFAULT_KEEP_ALIVE_S,
        DEFAULT_MAX_BATCH_SIZE,
        DEFAULT_MAX_BODY_MB,
        DEFAULT_MAX_CONNECTIONS,
        DEFAULT_MAX_HEAD_BYTES,
        DEFAULT_MAX_QUEUE,
        DEFAULT_MAX_QUEUE_DELAY_MS,
        DEFAULT_MAX_REQUEST_PIXELS,
        DEFAULT_PORT,
        DEFAULT_READ_TIMEOUT_S,
        DEFAULT_REQUEST_TIMEOUT_S,
    )

    p = sub.add_parser(
        "serve",
        help="serve artifacts on the Open Inference Protocol (KServe v2 / Triton clients), with dynamic batching",
    )
    p.add_argument("artifacts", nargs="+", type=Path, metavar="ARTIFACT", help="artifacts to serve (by manifest name)")
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST}: this machine only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"HTTP port (default {DEFAULT_PORT}; 0: any free)")
    p.add_argument(
        "--grpc-port", type=int, default=None, help="also serve the protocol over gRPC on this port (0: any free)"
    )
    p.add_argument(
        "--max-batch-size",
        type=_positive_int,
        default=DEFAULT_MAX_BATCH_SIZE,
        help=f"rows per model call; concurrent requests are batched up to it, 1 turns batching off "
        f"(default {DEFAULT_MAX_BATCH_SIZE})",
    )
    p.add_argument(
        "--max-queue-delay-ms",
        type=float,
        default=DEFAULT_MAX_QUEUE_DELAY_MS,
        help=f"how long a request waits for others to join its batch (default {DEFAULT_MAX_QUEUE_DELAY_MS})",
    )
    p.add_argument(
        "--max-queue",
        type=_positive_int,
        default=DEFAULT_MAX_QUEUE,
        help=f"rows that may wait per model; more get 503 + Retry-After (default {DEFAULT_MAX_QUEUE})",
    )
    p.add_argument(
        "--instances",
        type=_positive_int,
        default=DEFAULT_INSTANCES,
        help="model calls that run at once, each on cores/instances threads; on a CPU, 2 with --max-batch-size "
        f"= clients/2 keeps the cores busy while requests are parsed (default {DEFAULT_INSTANCES})",
    )
    p.add_argument(
        "--no-pin-instances",
        dest="pin_instances",
        action="store_false",
        help="with --instances > 1, leave the instance threads to the scheduler (by default each is pinned to its "
        "share of the cores, below the event loop's priority)",
    )
    p.add_argument(
        "--request-timeout",
        type=float,
        default=DEFAULT_REQUEST_TIMEOUT_S,
        help=f"seconds before an unanswered request gets 504 (default {DEFAULT_REQUEST_TIMEOUT_S:g})",
    )
    p.add_argument(
        "--max-body-mb",
        type=float,
        default=DEFAULT_MAX_BODY_MB,
        help=f"larger bodies get 413 (default {DEFAULT_MAX_BODY_MB:g})",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help=f"larger images get 400 (default {DEFAULT_MAX_PIXELS}; 0: no limit)",
    )
    p.add_argument(
        "--provider",
        choices=PROVIDER_CHOICES,
        help="execution provider (default: the tuned deployment's where the artifact has one, else cpu)",
    )
    p.add_argument(
        "--grace-period", type=int, default=30, help="seconds in-flight requests may take on shutdown (default 30)"
    )
    p.add_argument(
        "--max-request-pixels",
        type=int,
        default=DEFAULT_MAX_REQUEST_PIXELS,
        help="pixels the images of one request may hold in all, read from their headers before any is decoded "
        f"(default {DEFAULT_MAX_REQUEST_PIXELS}; 0: no budget)",
    )
    p.add_argument(
        "--max-header-kb",
        type=_positive_int,
        default=DEFAULT_MAX_HEAD_BYTES // 1024,
        help=f"larger request heads (request line + headers) get 431 (default {DEFAULT_MAX_HEAD_BYTES // 1024})",
    )
    p.add_argument(
        "--read-timeout",
        type=float,
        default=DEFAULT_READ_TIMEOUT_S,
        help=f"seconds a request may take to arrive, head and body, before 408 (default {DEFAULT_READ_TIMEOUT_S:g})",
    )
    p.add_argument(
        "--keep-alive-timeout",
        type=int,
        default=DEFAULT_KEEP_ALIVE_S,
        help=f"seconds an idle keep-alive connection stays open (default {DEFAULT_KEEP_ALIVE_S})",
    )
    p.add_argument(
        "--max-connections",
        type=_positive_int,
        default=DEFAULT_MAX_CONNECTIONS,
        help=f"open connections at most; more get 503 at once (default {DEFAULT_MAX_CONNECTIONS})",
    )
    p.add_argument(
        "--shared-memory",
        action="store_true",
        help="serve Triton's system shared memory extension: clients that reach the port may register POSIX shared "
        "memory objects of this server's user and send input tensors through them (off by default; same host, "
        "trusted clients only: see docs/serving.md#security)",
    )
    p.set_defaults(handler=cmd_serve)

    p = sub.add_parser("export-triton", help="write a Triton Inference Server model repository from ONNX artifacts")
    p.add_argument("artifacts", nargs="+", type=Path, metavar="ARTIFACT")
    p.add_argument("--output", type=Path, required=True, metavar="REPO", help="the model repository directory")
    p.add_argument(
        "--max-batch-size", type=_positive_int, default=DEFAULT_MAX_BATCH_SIZE, help="Triton's max_batch_size"
    )
    p.add_argument("--max-queue-delay-us", type=int, default=2000, help="dynamic batching's queue delay (default 2000)")
    p.add_argument("--instances", type=_positive_int, default=1, help="model instances (default 1)")
    p.add_argument("--kind", default="KIND_CPU", choices=["KIND_CPU", "KIND_GPU"], help="instance kind (default CPU)")
    p.add_argument(
        "--ensemble",
        action="store_true",
        help="also write NAME_preprocess (Triton's Python backend decoding BYTES images with tvdeploy's runtime) "
        "and NAME_ensemble (images in, the model's outputs out)",
    )
    p.add_argument("--force", action="store_true", help="replace models already in the repository")
    p.set_defaults(handler=cmd_export_triton)


def _configure_logging(args: argparse.Namespace) -> None:
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("tvdeploy: %(message)s" if level > logging.DEBUG else "%(levelname)s %(name)s: %(message)s")
    )
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False  # some backends (executorch) configure the root logger on import


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tvdeploy`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    _configure_logging(args)
    try:
        try:
            return int(args.handler(args))
        except ImportError as exc:
            raise _missing_extra(args.command, exc) from exc
    except TvdeployError as exc:
        return _report(args, exc)
    except BrokenPipeError:  # stdout closed early (`tvdeploy inspect ... | head -3`): stop quietly, as head expects
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush must not raise again
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        sys.stderr.write("tvdeploy: interrupted\n")
        return 130


def _missing_extra(command: str, exc: ImportError) -> Exception:
    """A :class:`MissingDependencyError` naming the extra for a module of an extra that is not installed; any
    other import error as it was."""
    from tvdeploy.extras import extra_of_module, install_hint

    extra = extra_of_module(exc.name)
    if extra is None:
        return exc
    module = (exc.name or "").split(".")[0]
    return MissingDependencyError(
        f"tvdeploy {command} needs {module}, which is not installed (it comes with the {extra} extra)",
        hint=install_hint(extra),
    )


def _report(args: argparse.Namespace, exc: TvdeployError) -> int:
    """One clear message (and with ``-v`` the chain of causes) for a tvdeploy error; its exit code."""
    if getattr(args, "json", None) is True:
        _print_json({"error": exc.message, "hint": exc.hint, "type": type(exc).__name__})
    if args.verbose and (exc.__cause__ or exc.__context__):
        sys.stderr.write("".join(traceback.format_exception(exc)))  # the whole cause chain
    sys.stderr.write(f"tvdeploy: error: {exc}\n")
    return exc.exit_code
