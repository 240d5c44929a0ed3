"""What several commands share: exit codes, JSON output, and the calibration and ONNX graph flag groups."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tvdeploy.flags import positive_int

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_PARITY_FAILED = 3
#: What a shell reports for a process ended by SIGPIPE (128 + 13): the reader closed the pipe, nothing went wrong.
EXIT_BROKEN_PIPE = 141


def print_json(data: Any) -> None:
    """``data`` as indented JSON on stdout."""
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    """``--json``: the same flag in every command: JSON on stdout instead of the text (errors too)."""
    parser.add_argument("--json", action="store_true", help="machine-readable JSON on stdout instead of text")


def add_report_files(parser: argparse.ArgumentParser, plot: str) -> None:
    """``--save-json FILE``, ``--markdown FILE`` and ``--plot FILE.png``: the report written to files."""
    parser.add_argument("--save-json", type=Path, metavar="FILE", help="also write the JSON report to FILE")
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="write a Markdown table")
    parser.add_argument("--plot", type=Path, metavar="FILE.png", help=plot)


def check_report_files(args: argparse.Namespace) -> None:
    """Before the work: the report files asked for can be written, and ``--plot`` has matplotlib."""
    import importlib.util

    from tvdeploy.errors import MissingDependencyError
    from tvdeploy.files import check_file_output

    for flag in ("save_json", "markdown", "plot"):
        path = getattr(args, flag)
        if path is not None:
            check_file_output(path, "--" + flag.replace("_", "-"))
    if args.plot is not None and importlib.util.find_spec("matplotlib") is None:
        raise MissingDependencyError(
            "--plot needs matplotlib, which is not installed (it comes with the bench extra)",
            hint='pip install "tvdeploy[bench]", or leave out --plot',
        )


def write_report_files(args: argparse.Namespace, report: Any, output: Any) -> None:
    """Write the files :func:`add_report_files` asked for with a report module's writers (bench's, tune's)."""
    if args.save_json:
        output.write_json(report, args.save_json)
    if args.markdown:
        args.markdown.write_text(output.format_markdown(report), encoding="utf-8")
    if args.plot:
        output.write_plot(report, args.plot)


def add_force_flag(parser: argparse.ArgumentParser, what: str = "an existing output directory") -> None:
    """``--force``."""
    parser.add_argument("--force", action="store_true", help=f"overwrite {what}")


def parity_exit(passed: Iterable[bool]) -> int:
    """0 when every parity check passed, else :data:`EXIT_PARITY_FAILED`."""
    return EXIT_OK if all(passed) else EXIT_PARITY_FAILED


def progress_enabled(args: argparse.Namespace) -> bool:
    """A progress bar only for a person at a terminal (not with ``--json``, ``-q`` or a redirected stderr)."""
    return not getattr(args, "json", False) and not args.quiet and sys.stderr.isatty()


def add_calibration_arguments(parser: argparse.ArgumentParser) -> None:
    """The int8 calibration group (export, optimize, tune)."""
    from tvdeploy.export.options import CALIBRATION_METHODS, DEFAULT_CALIBRATION_IMAGES

    group = parser.add_argument_group("int8 calibration")
    group.add_argument(
        "--calibration",
        metavar="DIR|random",
        help="representative images for int8 (preprocessed like the artifact); 'random': noise, speed tests only",
    )
    group.add_argument("--calibration-method", default="minmax", choices=CALIBRATION_METHODS, help="default minmax")
    group.add_argument(
        "--calibration-images",
        type=positive_int,
        default=DEFAULT_CALIBRATION_IMAGES,
        help=f"images used at most, in sorted order (default {DEFAULT_CALIBRATION_IMAGES})",
    )
    group.add_argument("--seed", type=int, default=0, help="seed of random init, parity noise and --calibration random")


def calibration_options(args: argparse.Namespace) -> Any:
    """The ``CalibrationOptions`` of :func:`add_calibration_arguments`' flags (None without ``--calibration``)."""
    from tvdeploy.export.options import CalibrationOptions

    if args.calibration is None:
        return None
    return CalibrationOptions(
        source=args.calibration, method=args.calibration_method, max_images=args.calibration_images, seed=args.seed
    )


def add_graph_arguments(parser: argparse.ArgumentParser) -> None:
    """The ONNX graph transformations group (export, optimize)."""
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
        type=positive_int,
        const=DEFAULT_EMBED_TOP_K,
        metavar="K",
        help=f"end the graph in softmax + top-K (default K {DEFAULT_EMBED_TOP_K}): probabilities and indices out",
    )


def graph_options(args: argparse.Namespace) -> Any:
    """The ``GraphOptions`` of :func:`add_graph_arguments`' flags."""
    from tvdeploy.export.options import GraphOptions

    return GraphOptions(
        simplify=args.simplify,
        optimize=args.optimize,
        embed_preprocess=args.embed_preprocess,
        embed_top_k=args.embed_postprocess,
    )
