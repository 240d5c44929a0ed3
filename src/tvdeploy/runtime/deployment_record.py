"""The records of a manifest that say how its model file is best run: ONNX Runtime's offline-optimized graph
(:class:`OptimizedGraph`) and the deployment ``tvdeploy tune`` measured and chose (:class:`Deployment`), every field
checked where it is decoded."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from tvdeploy.errors import ArtifactError, ProviderError
from tvdeploy.runtime.formats import FORMATS
from tvdeploy.runtime.precisions import PRECISIONS
from tvdeploy.text import printable

#: ONNX Runtime graph optimization levels an artifact can be saved at (``--optimize``).
OPTIMIZED_GRAPH_LEVELS = ("basic", "extended", "all")


@dataclass(frozen=True)
class OptimizedGraph:
    """The model file is ONNX Runtime's own offline-optimized graph (``tvdeploy export --optimize``).

    Sessions load it with graph optimization off, which is what makes them start
    fast. ``level`` ``all`` includes the CPU layout transformations of the host it
    was made on (``host``, e.g. AVX-512 vs AVX2 blocking) and ONNX Runtime's own
    kernels of ``onnxruntime``: such a graph runs only where both match.
    """

    level: str
    onnxruntime: str
    host: str

    def __post_init__(self) -> None:
        if self.level not in OPTIMIZED_GRAPH_LEVELS:
            raise ArtifactError(
                f"unknown optimized graph level {self.level!r}", hint=f"one of {', '.join(OPTIMIZED_GRAPH_LEVELS)}"
            )

    @property
    def host_specific(self) -> bool:
        """Whether the graph holds layout transformations for one CPU (level ``all``)."""
        return self.level == "all"


#: What ``tvdeploy tune`` optimizes for: the lowest p50 at the smallest batch size, or the most images per second.
OBJECTIVES = ("latency", "throughput")
#: Bounds of a deployment record's numbers: more threads or streams than any host has cores, or a batch whose
#: arrays no memory holds, is not a record tune wrote.
MAX_DEPLOYMENT_THREADS = 1024
MAX_DEPLOYMENT_BATCH = 65536
#: The longest text field of a deployment record (a CPU model name, a feature signature, a date).
MAX_DEPLOYMENT_TEXT = 512


#: The JSON key of :attr:`Deployment.format` (what schema-3 and 4 readers read).
FORMAT_KEY = "runtime"


@dataclass(frozen=True)
class Deployment:
    """How ``tvdeploy tune`` found this artifact best run on the host it measured, and what it beat there.

    ``load()``, ``predict``, ``serve`` and ``bench`` apply ``threads``, ``streams`` and ``batch_size``; where this
    host's CPU features (``host_signature``) differ they warn and run portable settings instead (all cores on one
    stream, and fp32 arithmetic where the host cannot compute in the tuned precision).
    """

    #: the artifact's format (its JSON key is ``runtime``, as schema-3 readers read it)
    format: str
    precision: str
    provider: str
    threads: int | None
    batch_size: int
    objective: str
    host_cpu: str
    host_signature: str
    #: parallel streams the model runs on, ``threads`` threads each (schema 4; written only when above one)
    streams: int = 1
    #: the winner's measured figures (p50 ms and img/s per batch size, MAC/s where counted)
    figures: dict[str, Any] = field(default_factory=dict)
    #: the provider's options it was measured with (schema 5; written only when there are any)
    provider_options: dict[str, Any] = field(default_factory=dict)
    #: every candidate tune tried: name, format, precision, threads, parity, figures, why it lost or was refused
    candidates: list[dict[str, Any]] = field(default_factory=list)
    tuned: str = ""

    def __post_init__(self) -> None:
        from tvdeploy.runtime.providers import PROVIDER_NAMES, get_provider

        if not isinstance(self.format, str) or self.format not in FORMATS:
            raise ArtifactError(
                f"unknown deployment format {printable(repr(self.format), 60)} (its key: runtime)",
                hint=f"one of {', '.join(FORMATS)}",
            )
        if not isinstance(self.precision, str) or self.precision not in PRECISIONS:
            raise ArtifactError(
                f"unknown deployment precision {printable(repr(self.precision), 60)}",
                hint=f"one of {', '.join(PRECISIONS)}",
            )
        if not isinstance(self.provider, str) or self.provider not in PROVIDER_NAMES:
            raise ArtifactError(
                f"unknown deployment provider {printable(repr(self.provider), 60)}",
                hint=f"one of {', '.join(PROVIDER_NAMES)}",
            )
        if self.provider not in FORMATS[self.format].providers:
            raise ArtifactError(
                f"deployment provider {self.provider!r} does not run {self.format} artifacts",
                hint=f"{self.format} runs on {', '.join(FORMATS[self.format].providers)}",
            )
        if self.threads is not None:
            _bounded_int(self.threads, "threads", MAX_DEPLOYMENT_THREADS)
        _bounded_int(self.batch_size, "batch_size", MAX_DEPLOYMENT_BATCH)
        _bounded_int(self.streams, "streams", MAX_DEPLOYMENT_THREADS)
        if self.objective not in OBJECTIVES:
            raise ArtifactError(
                f"unknown deployment objective {printable(repr(self.objective), 60)}",
                hint=f"one of {', '.join(OBJECTIVES)}",
            )
        for name in ("host_cpu", "host_signature", "tuned"):
            value = getattr(self, name)
            if not isinstance(value, str) or len(value) > MAX_DEPLOYMENT_TEXT or not value.isprintable():
                raise ArtifactError(
                    f"deployment.{name} must be one line of printable text of at most {MAX_DEPLOYMENT_TEXT} "
                    f"characters, got {printable(value, 40)!r}",
                    hint="re-tune the artifact (tvdeploy tune), or restore the record tune wrote",
                )
        if not isinstance(self.provider_options, dict):
            raise ArtifactError("deployment.provider_options must be an object")
        try:
            get_provider(self.provider).check_options(self.provider_options, "deployment.provider_options")
        except ProviderError as exc:
            raise ArtifactError(exc.message, hint=exc.hint) from exc
        if not isinstance(self.figures, dict):
            raise ArtifactError("deployment.figures must be an object")
        if not isinstance(self.candidates, list) or not all(isinstance(c, dict) for c in self.candidates):
            raise ArtifactError("deployment.candidates must be a list of objects")

    def to_dict(self) -> dict[str, Any]:
        """The record as the manifest holds it (the format under its JSON key; unset optional fields left out)."""
        data = asdict(self)
        data[FORMAT_KEY] = data.pop("format")
        if self.streams == 1:
            del data["streams"]  # what a schema-3 reader reads
        if not self.provider_options:
            del data["provider_options"]  # what a schema-3 or 4 reader reads
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Deployment:
        """The record as the manifest holds it (every field checked by the constructor)."""
        fields = dict(data)
        if FORMAT_KEY in fields:
            fields["format"] = fields.pop(FORMAT_KEY)
        return cls(**fields)

    @property
    def execution(self) -> Any:
        """The :class:`~tvdeploy.runtime.execution.Execution` this record measured (provider, threads, streams,
        batch size), as it was on the host it was tuned on (``resolve_execution`` applies it to this one)."""
        return _record_execution(self)


def _record_execution(record: Deployment) -> Any:
    from tvdeploy.runtime.execution import Execution

    return Execution(record.provider, record.threads, record.streams, record.batch_size, dict(record.provider_options))


def _bounded_int(value: object, name: str, most: int) -> None:
    """A deployment field that must be an integer from 1 to ``most`` (a hand-edited 10**18 would hang a load)."""
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= most:
        raise ArtifactError(
            f"deployment.{name} must be an integer from 1 to {most}, got {printable(value, 40)}",
            hint="re-tune the artifact (tvdeploy tune), or restore the record tune wrote",
        )
