"""``tvdeploy tune ARTIFACT --output DIR``: the fastest correct deployment on this host, measured."""

from __future__ import annotations

import argparse
from pathlib import Path

from tvdeploy.cli.common import (
    EXIT_OK,
    add_calibration_arguments,
    add_json_flag,
    add_report_files,
    calibration_options,
    check_report_files,
    print_json,
    progress_enabled,
    write_report_files,
)
from tvdeploy.cli.flags import add_option_flags, options_from_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``tune``: :class:`~tvdeploy.tune.tuner.TuneRequest`'s, the calibration group, reports."""
    from tvdeploy.tune.tuner import TuneRequest

    p.add_argument("artifact", type=Path, metavar="ARTIFACT", help="a plain fp32 ONNX artifact")
    p.add_argument("--output", type=Path, required=True, metavar="DIR", help="the tuned artifact to write")
    add_option_flags(p, TuneRequest)
    add_json_flag(p)
    add_report_files(p, plot="plot speed against fidelity")
    add_calibration_arguments(p)


def run(args: argparse.Namespace) -> int:
    """Tune, write the winner, print the report (``--json``: as JSON) and write the report files asked for."""
    from tvdeploy.tune import report as output
    from tvdeploy.tune.tuner import TuneRequest, tune

    check_report_files(args)
    request = options_from_args(
        TuneRequest,
        args,
        artifact=args.artifact,
        output=args.output,
        calibration=calibration_options(args),
        progress=progress_enabled(args),
    )
    report = tune(request)
    if args.json:
        print_json(report.to_dict())
    else:
        print(output.format_table(report))
    write_report_files(args, report, output)
    return EXIT_OK
