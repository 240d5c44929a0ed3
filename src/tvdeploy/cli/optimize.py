"""``tvdeploy optimize ARTIFACT``: an artifact derived from a plain fp32 ONNX one, with its own parity."""

from __future__ import annotations

import argparse
from pathlib import Path

from tvdeploy.cli.common import (
    add_calibration_arguments,
    add_force_flag,
    add_graph_arguments,
    add_json_flag,
    calibration_options,
    graph_options,
    parity_exit,
    print_json,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``optimize``."""
    from tvdeploy.export.producers import PRODUCERS
    from tvdeploy.runtime.precisions import PRECISIONS

    p.add_argument("artifact", type=Path, metavar="ARTIFACT")
    p.add_argument(
        "--precision", default="fp32", choices=PRECISIONS, help="precision of the new artifact (default fp32)"
    )
    p.add_argument(
        "--format",
        choices=[name for name, spec in PRODUCERS.items() if spec.source],
        help="convert to this format at --precision (openvino: fp32, fp16, bf16 or int8 from an fp32 ONNX artifact)",
    )
    p.add_argument("--output", type=Path, help="the new artifact (default: ARTIFACT-<what changed> beside it)")
    p.add_argument("--name", help="model name of the new artifact (what serve serves it as; default: the source's)")
    add_force_flag(p)
    add_json_flag(p)
    add_calibration_arguments(p)
    add_graph_arguments(p)


def run(args: argparse.Namespace) -> int:
    """Derive the artifact and print it with its parity report; exit 3 when parity failed."""
    from tvdeploy.export.optimize import OptimizeRequest, optimize_artifact
    from tvdeploy.export.parity import format_report

    outcome = optimize_artifact(
        OptimizeRequest(
            artifact=args.artifact,
            precision=args.precision,
            calibration=calibration_options(args),
            graph=graph_options(args),
            output=args.output,
            force=args.force,
            format=args.format,
            name=args.name,
        )
    )
    if args.json:
        print_json(outcome.to_dict())
    else:
        sizes = ", ".join(f"{f.path} {f.bytes / 1e6:.1f} MB" for f in outcome.manifest.files)
        print(f"{outcome.artifact_dir}  [{outcome.manifest.format} {outcome.manifest.precision}, {sizes}]")
        print(format_report(outcome.parity))
    return parity_exit([outcome.passed])
