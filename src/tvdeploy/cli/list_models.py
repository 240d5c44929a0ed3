"""``tvdeploy list [PATTERN]``: torchvision's classifiers and their weights."""

from __future__ import annotations

import argparse

from tvdeploy.cli.common import EXIT_OK, add_json_flag, print_json
from tvdeploy.errors import UserInputError


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``list``."""
    p.add_argument("pattern", nargs="?", help="substring or glob (resnet*)")
    p.add_argument("--all-weights", action="store_true", help="one row per weights entry (default: DEFAULT only)")
    add_json_flag(p)


def run(args: argparse.Namespace) -> int:
    """List the catalog (one row per model, or per weights entry)."""
    from tvdeploy.models.catalog import list_catalog

    models = list_catalog(args.pattern)
    if not models and args.pattern:
        raise UserInputError(f"no model matches {args.pattern!r}", hint="run `tvdeploy list` to see all models")
    if args.json:
        print_json([m.to_dict() for m in models])
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
