"""``tvdeploy export-triton ARTIFACT... --output REPO``: a Triton Inference Server model repository."""

from __future__ import annotations

import argparse
from pathlib import Path

from tvdeploy.cli.common import EXIT_OK, add_force_flag
from tvdeploy.cli.flags import add_option_flags, options_from_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``export-triton``: every :class:`~tvdeploy.serve.triton.TritonOptions` field."""
    from tvdeploy.serve.triton import TritonOptions

    p.add_argument("artifacts", nargs="+", type=Path, metavar="ARTIFACT")
    p.add_argument("--output", type=Path, required=True, metavar="REPO", help="the model repository directory")
    add_option_flags(p, TritonOptions)
    add_force_flag(p, "models already in the repository (only those export-triton wrote)")


def run(args: argparse.Namespace) -> int:
    """Write the repository; print each model directory."""
    from tvdeploy.serve.triton import TritonOptions, export_triton

    for directory in export_triton(args.artifacts, args.output, options_from_args(TritonOptions, args), args.force):
        print(directory)
    return EXIT_OK
