"""``tvdeploy bench``: backends side by side in one interleaved run."""

from __future__ import annotations

import argparse
from pathlib import Path

from tvdeploy.cli.common import (
    EXIT_OK,
    add_json_flag,
    add_report_files,
    check_report_files,
    print_json,
    write_report_files,
)
from tvdeploy.cli.flags import add_option_flags, options_from_args
from tvdeploy.errors import UserInputError

#: BenchConfig's fields that take turns (a count or a time budget, not both).
_BUDGET = ("iterations", "time_budget_s")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``bench`` (the timing ones from :class:`~tvdeploy.bench.run.BenchConfig`)."""
    from tvdeploy.bench.run import BenchConfig
    from tvdeploy.runtime.formats import backend_names

    p.add_argument("artifacts", nargs="*", type=Path, metavar="ARTIFACT", help="artifact directories to compare")
    p.add_argument("--model", help="benchmark a catalog model (exports what it needs into the cache first)")
    p.add_argument("--weights", default="DEFAULT", help="weights for --model (default DEFAULT; none for random init)")
    p.add_argument(
        "--backends",
        help=f"comma-separated: {', '.join(backend_names())} "
        "(default with --model: eager and every format whose extra is installed)",
    )
    add_option_flags(p, BenchConfig, exclude=_BUDGET)
    add_option_flags(p.add_mutually_exclusive_group(), BenchConfig, only=_BUDGET)
    p.add_argument("--images", nargs="+", type=Path, help="image files for --e2e (default: the parity photos)")
    p.add_argument("--cache-dir", type=Path, help="where --model keeps its exports (default ~/.cache/tvdeploy/bench)")
    add_json_flag(p)
    add_report_files(p, plot="plot latency and throughput against batch size")


def run(args: argparse.Namespace) -> int:
    """Time the targets, print the table (``--json``: the report) and write the report files asked for."""
    from tvdeploy.bench import report as output
    from tvdeploy.bench.run import BenchConfig, run_benchmark
    from tvdeploy.bench.targets import artifact_targets, default_cache_dir, model_targets, parse_backends
    from tvdeploy.export.inputs import photo_paths

    if bool(args.model) == bool(args.artifacts):
        raise UserInputError("give either --model NAME or one or more ARTIFACT directories")
    check_report_files(args)
    if args.model:
        cache = args.cache_dir or default_cache_dir()
        targets = model_targets(args.model, args.weights, parse_backends(args.backends), cache)
    else:
        targets = artifact_targets(args.artifacts, args.backends)
    budgeted = args.time_budget_s is not None
    config = options_from_args(
        BenchConfig, args, iterations=None if budgeted else args.iterations, images=args.images or photo_paths()
    )
    report = run_benchmark(targets, config)
    report.command = "tvdeploy " + " ".join(args.argv)
    if args.json:
        print_json(report.to_dict())
    else:
        print(output.format_table(report))
    write_report_files(args, report, output)
    return EXIT_OK
