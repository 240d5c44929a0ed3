"""``tvdeploy predict ARTIFACT PATH...``: classify images here, or past one machine on Ray Data."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from tvdeploy.cli.common import EXIT_FAILED, EXIT_OK
from tvdeploy.errors import UserInputError
from tvdeploy.flags import finite_float, positive_int

logger = logging.getLogger("tvdeploy")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``predict``."""
    from tvdeploy.cli.flags import add_option_flags
    from tvdeploy.runtime.execution import Execution
    from tvdeploy.runtime.gpu_decode import DECODER_CHOICES, DECODER_HELP
    from tvdeploy.runtime.images import DECODE_MODES, DEFAULT_MAX_PIXELS

    p.add_argument("artifact", type=Path, metavar="ARTIFACT")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files and directories (walked recursively)")
    p.add_argument("--top-k", type=positive_int, default=5, help="predictions per image (default 5)")
    add_option_flags(p, Execution)  # --provider, --threads, --streams, --batch-size: the one execution record
    p.add_argument("--workers", type=positive_int, help="decoding threads (default: one per usable core)")
    p.add_argument(
        "--max-pixels",
        type=positive_int,
        default=DEFAULT_MAX_PIXELS,
        help=f"refuse larger images as decompression bombs (default {DEFAULT_MAX_PIXELS})",
    )
    p.add_argument("--no-exif", action="store_true", help="ignore EXIF orientation")
    p.add_argument(
        "--decode",
        default="exact",
        choices=DECODE_MODES,
        help="exact (default, matches torchvision to 1e-5) or fast: JPEGs decoded at reduced scale, large images "
        "box-reduced before the resize (much faster on phone photos, slightly different tensors)",
    )
    p.add_argument("--decoder", default="cpu", choices=DECODER_CHOICES, help=DECODER_HELP)
    p.add_argument("--no-verify", action="store_true", help="skip the sha256 check of the model file")
    p.add_argument("--json", action="store_true", help="JSON on stdout: one line per input, as soon as it is done")
    ray = p.add_argument_group("Ray Data (--engine ray: past one machine; docs/batch.md)")
    ray.add_argument("--engine", choices=["local", "ray"], default="local", help="local (default) or ray")
    ray.add_argument("--output", type=Path, metavar="OUT", help="rows: OUT.jsonl (one file) or a Parquet directory")
    ray.add_argument("--address", help="a running Ray cluster (ray://HOST:10001, auto); default: a local one")
    ray.add_argument("--concurrency", type=positive_int, help="actors (default: cluster CPUs - 1, at least 1)")
    ray.add_argument("--num-cpus", type=finite_float, default=1.0, help="CPUs per actor (default 1)")
    ray.add_argument("--num-gpus", type=finite_float, default=0.0, help="GPUs per actor (with --provider cuda)")
    ray.add_argument("--resume", action="store_true", help="skip the images whose rows are already in OUT")


def run(args: argparse.Namespace) -> int:
    """Classify every image; exit 1 when any input failed (the others are still answered)."""
    if args.engine == "ray":
        return _on_ray(args)
    if args.output or args.resume or args.address:
        raise UserInputError("--output, --resume and --address belong to --engine ray", hint="add --engine ray")
    from tvdeploy.cli.flags import options_from_args
    from tvdeploy.runtime.classifier import load
    from tvdeploy.runtime.execution import Execution
    from tvdeploy.runtime.inputs import collect_inputs
    from tvdeploy.runtime.manifest import read_manifest

    read_manifest(args.artifact)  # a missing or broken artifact is said before the inputs are walked
    inputs = collect_inputs(args.paths)
    if not inputs.files:
        raise UserInputError(
            "no images found in " + ", ".join(args.paths), hint="pass image files or directories that hold images"
        )
    execution = options_from_args(Execution, args)
    classifier = load(
        args.artifact,
        provider=execution.provider,
        verify=not args.no_verify,
        session_config=execution.session_config() if execution.threads or execution.streams else None,
        batch_size=execution.batch_size,
        exif_transpose=not args.no_exif,
        max_pixels=args.max_pixels,
        decode_workers=args.workers,
        decode=args.decode,
        decoder=args.decoder,
    )
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
    pipeline = classifier.device_pipeline
    if pipeline is not None and pipeline.decoder.pillow_fallbacks:
        sys.stderr.write(
            f"tvdeploy: {pipeline.decoder.pillow_fallbacks} of {len(inputs.files)} image(s) decoded by Pillow "
            "(nvImageCodec does not decode them), the rest on the GPU\n"
        )
    if failed:
        sys.stderr.write(f"tvdeploy: {failed} of {len(inputs.files)} input(s) failed\n")
    return EXIT_FAILED if failed else EXIT_OK


def _on_ray(args: argparse.Namespace) -> int:
    """``predict --engine ray``: the same rows on Ray Data, into ``--output``; exit 1 when any input failed."""
    from tvdeploy.batch.ray_job import DEFAULT_BATCH_SIZE, RayJob, run_ray_job

    if args.decoder != "cpu":
        raise UserInputError(
            f"--decoder {args.decoder} applies to the local engine; Ray's actors decode with Pillow",
            hint="drop --decoder, or run without --engine ray",
        )
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
    return EXIT_FAILED if summary.errors else EXIT_OK


def _progress(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="img", file=sys.stderr, disable=not (enabled and sys.stderr.isatty()), leave=False)


def _format_result(result: Any) -> str:
    """One input's lines for a terminal (a file name, error or label with control characters is escaped)."""
    from tvdeploy.text import printable

    source = printable(result.source, limit=None)
    if not result.ok:
        return f"{source}\n  error: {printable(result.error, limit=None)}"
    labels = [printable(p.label) for p in result.predictions]
    width = max(len(label) for label in labels)
    rows = [
        f"  {label:<{width}}  {p.probability * 100:6.2f}%" for label, p in zip(labels, result.predictions, strict=True)
    ]
    return "\n".join([source, *rows])
