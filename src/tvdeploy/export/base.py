"""What every format producer shares: the job it gets, the result it returns, and a quiet context for torch's chatter."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tvdeploy.export.options import ExportOptions
from tvdeploy.runtime.formats import FormatSpec
from tvdeploy.runtime.manifest import OptimizedGraph, OutputSpec, PreprocessSpec, TensorSpec

logger = logging.getLogger(__name__)


@dataclass
class ExportResult:
    """Files a producer wrote (relative to the artifact directory, the model file first) and how.

    ``details`` go into the manifest's ``export_info`` (e.g. the delegate a program was lowered to).
    ``input_spec``/``output_spec`` replace the job's when a strategy changes the interface (a fixed batch).
    """

    files: list[str]
    exporter: str
    opset: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    input_spec: TensorSpec | None = None
    output_spec: OutputSpec | None = None
    #: set when the model file is ONNX Runtime's offline-optimized graph
    optimized_graph: OptimizedGraph | None = None


@dataclass(frozen=True)
class ProduceJob:
    """Everything a producer may need; each takes what applies to it.

    Exporters read ``module`` and ``example`` (an input batch for tracing);
    converters read ``source_dir``, the artifact of the format they convert.
    Tensor names and shapes come from ``input_spec`` / ``output_spec``, the
    manifest's own specs, so the file and the manifest cannot disagree.
    """

    spec: FormatSpec
    options: ExportOptions
    input_spec: TensorSpec
    output_spec: OutputSpec
    module: Any = None
    example: Any = None
    source_dir: Path | None = None
    #: int8 calibration data (preprocessed with the artifact's own preprocessing), when the precision needs it
    calibration: Any = None
    #: the artifact's preprocessing (what ``--embed-preprocess`` puts into the graph)
    preprocess: PreprocessSpec | None = None

    @property
    def model_path(self) -> str:
        """The name of the main model file."""
        return self.spec.model_file


class FormatProducer(Protocol):
    """One producer per format. ``strategies`` are tried in order until one succeeds (and passes parity)."""

    strategies: tuple[str, ...]

    def produce(self, job: ProduceJob, out_dir: Path, strategy: str) -> ExportResult:
        """Write the model file(s) into ``out_dir``."""
        ...


def written_files(out_dir: Path, spec: FormatSpec) -> list[str]:
    """The format's files present in ``out_dir``, the model file first."""
    return [name for name in spec.files if (out_dir / name).is_file()]


def torch_batch_dims(job: ProduceJob, bound: int) -> Any:
    """``dynamic_shapes`` for ``torch.export`` of a one-input model: a batch dim up to ``bound``, or ``None``."""
    import torch

    if not job.options.dynamic_batch:
        return None
    return ({0: torch.export.Dim("batch", min=1, max=bound)},)


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
