"""``tvdeploy validate ARTIFACT...``: an artifact re-checked against the eager model on photos and noise."""

from __future__ import annotations

import argparse
from pathlib import Path

from tvdeploy.cli.common import add_json_flag, parity_exit, print_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``validate``."""
    from tvdeploy.runtime.providers import PROVIDER_CHOICES

    p.add_argument("artifacts", nargs="+", type=Path, metavar="ARTIFACT")
    p.add_argument("--weights", help="weights of the reference (default: as recorded in the manifest)")
    p.add_argument("--provider", default="cpu", choices=PROVIDER_CHOICES, help="execution provider (default cpu)")
    add_json_flag(p)


def run(args: argparse.Namespace) -> int:
    """Validate each artifact and print its parity report; exit 3 when one failed."""
    from tvdeploy.export.parity import format_report
    from tvdeploy.export.validate import validate_artifact

    results = [validate_artifact(path, provider=args.provider, weights=args.weights) for path in args.artifacts]
    if args.json:
        print_json(results[0].to_dict() if len(results) == 1 else [r.to_dict() for r in results])
    else:
        for result in results:
            print(f"{result.artifact_dir}  [{result.manifest.format}]")
            print(format_report(result.parity))
    return parity_exit(r.passed for r in results)
