"""``tvdeploy export --model NAME --format FORMAT``: an artifact with its parity check."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tvdeploy.cli.common import (
    add_calibration_arguments,
    add_force_flag,
    add_graph_arguments,
    add_json_flag,
    calibration_options,
    graph_options,
    parity_exit,
    print_json,
    progress_enabled,
)
from tvdeploy.flags import float_triple, positive_int


def PARSER_OPTIONS() -> dict[str, Any]:  # the name main.py looks up
    """The epilog listing the formats."""
    from tvdeploy.runtime.formats import ALL, FORMATS

    return {
        "formatter_class": argparse.RawDescriptionHelpFormatter,
        "epilog": "formats:\n"
        + "\n".join(f"  {name:<12} {spec.summary} [{spec.extra} extra]" for name, spec in FORMATS.items())
        + f"\n  {ALL:<12} every format whose extra is installed",
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``export``."""
    from tvdeploy.export.options import DEFAULT_MAX_BATCH, DEFAULT_OPSET
    from tvdeploy.runtime.formats import ALL, FORMATS
    from tvdeploy.runtime.manifest import INTERPOLATIONS
    from tvdeploy.runtime.precisions import PRECISIONS

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
    p.add_argument("--opset", type=positive_int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.add_argument(
        "--precision",
        default="fp32",
        choices=PRECISIONS,
        help="numeric precision (default fp32): onnx fp16, int8; openvino fp16, bf16 (CPUs with AVX512_BF16/AMX), "
        "int8; int8 needs --calibration",
    )
    p.add_argument(
        "--static-batch", type=positive_int, metavar="N", help="fix the batch axis to N (default: a dynamic batch axis)"
    )
    p.add_argument(
        "--max-batch",
        type=positive_int,
        default=DEFAULT_MAX_BATCH,
        help=f"largest batch of formats that plan memory for one, i.e. executorch (default {DEFAULT_MAX_BATCH})",
    )
    add_force_flag(p)
    add_json_flag(p)
    g = p.add_argument_group("preprocessing overrides (default: the weights' own transforms)")
    g.add_argument("--resize-size", type=positive_int)
    g.add_argument("--crop-size", type=positive_int)
    g.add_argument("--interpolation", choices=INTERPOLATIONS)
    g.add_argument("--mean", type=float_triple, help="R,G,B")
    g.add_argument("--std", type=float_triple, help="R,G,B")
    add_calibration_arguments(p)
    add_graph_arguments(p)


def run(args: argparse.Namespace) -> int:
    """Export, print each artifact with its parity report; exit 3 when a parity check failed."""
    from tvdeploy.export.format_choice import formats_to_export
    from tvdeploy.export.options import ExportOptions
    from tvdeploy.export.parity import format_report
    from tvdeploy.export.pipeline import ExportRequest, export_model
    from tvdeploy.runtime.formats import ALL

    options = ExportOptions(
        opset=args.opset,
        precision=args.precision,
        dynamic_batch=args.static_batch is None,
        batch_size=args.static_batch or 1,
        max_batch=args.max_batch,
        calibration=calibration_options(args),
        graph=graph_options(args),
    )
    request = ExportRequest(
        model=args.model,
        formats=formats_to_export(args.format, args.precision, options.graph.active),
        output_is_parent=args.format.lower() == ALL,
        weights=args.weights,
        labels_file=args.labels,
        output=args.output,
        options=options,
        force=args.force,
        name=args.name,
        preprocess=_preprocess_overrides(args),
        seed=args.seed,
        progress=progress_enabled(args),
    )
    outcomes = export_model(request)
    if args.json:
        print_json(
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
    return parity_exit(o.passed for o in outcomes)


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
