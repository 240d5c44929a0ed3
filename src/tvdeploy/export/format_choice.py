"""Which formats an export request means: one named format, or ``all`` of those that can be made here."""

from __future__ import annotations

import logging

from tvdeploy.export.producers import PRODUCERS, criteria_of, exportable_formats
from tvdeploy.runtime.formats import ALL, FORMATS, get_format
from tvdeploy.runtime.precisions import Precision

logger = logging.getLogger(__name__)


def formats_to_export(requested: str, precision: str = Precision.FP32, graph_passes: bool = False) -> list[str]:
    """``all``: every format whose extra is installed, that supports ``precision`` and, with ``graph_passes``,
    takes the ONNX graph transformations (the others are named in the log); else the one known format named."""
    if requested.lower() != ALL:
        return [get_format(requested).name]
    available = exportable_formats()
    skipped = [f"{name} ({FORMATS[name].install_hint()})" for name in FORMATS if name not in available]
    if skipped:
        logger.info("--format all: skipping formats whose extras are not installed: %s", "; ".join(skipped))
    chosen = [name for name in available if precision in criteria_of(name)]
    if len(chosen) < len(available):
        logger.info("--format all at %s: only %s support it", precision, ", ".join(chosen))
    if graph_passes:
        chosen = [name for name in chosen if PRODUCERS[name].graph_passes]
        logger.info("--format all with ONNX graph transformations: only %s take them", ", ".join(chosen))
    return chosen
