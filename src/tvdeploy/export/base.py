"""What every format exporter shares: the result type and a quiet context for torch's chatter."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Protocol

logger = logging.getLogger(__name__)


@dataclass
class ExportResult:
    """Files an exporter wrote (relative to the artifact directory) and how."""

    files: list[str]
    exporter: str
    opset: int | None = None
    notes: list[str] = field(default_factory=list)


class FormatExporter(Protocol):
    """One exporter per format. ``strategies`` are tried in order until one succeeds (and passes parity)."""

    format: str
    filename: str
    strategies: tuple[str, ...]

    def export(self, module: Any, example: Any, out_dir: Path, strategy: str, opset: int) -> ExportResult:
        """Write the model file(s) into ``out_dir``."""
        ...


@contextlib.contextmanager
def quiet_torch() -> Iterator[None]:
    """Route torch's progress prints and warnings to the debug log instead of stdout (which --json owns)."""
    captured = io.StringIO()
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(captured):
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for line in captured.getvalue().splitlines():
                if line.strip():
                    logger.debug("%s", line)
            for warning in caught:
                logger.debug("warning: %s", warning.message)
