"""``tvdeploy predict --engine ray``: classify files and object-storage prefixes on Ray Data, rows to JSON Lines or
Parquet, resumable.

The pipeline is Ray Data's: ``read_binary_files(include_paths=True)`` -> ``map_batches(ArtifactPredictor)`` on an
actor pool -> rows. Local inputs are walked like ``tvdeploy predict`` walks them (recursively, image files only);
URIs that pyarrow's file systems read (``s3://``, ``gs://``, ``abfs://``...) go to Ray as they are, filtered to
image extensions. A ``.jsonl`` output is one file written by the driver as rows stream in (the same objects as
``predict --json``); any other output is a Parquet directory written by Ray's workers.

Resources that cannot deadlock: a 2-CPU local Ray with two 1-CPU actors leaves no CPU for the read tasks and
never makes progress; so does any pool that leaves less than the one CPU each read task asks for (seen here: one
0.5-CPU actor on a 1-CPU node waited forever). Actors here are sized below the cluster: by default
``(cluster CPUs - 1) // CPUs per actor`` actors (at least one), each with ``cluster CPUs // actors`` intra-op
threads, and a pool that would leave less than one CPU free is refused at once.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tvdeploy.batch.predictor import ArtifactPredictor, row_as_prediction, row_schema
from tvdeploy.errors import MissingDependencyError, UserInputError
from tvdeploy.runtime.host import usable_cores
from tvdeploy.runtime.images import DEFAULT_MAX_PIXELS
from tvdeploy.runtime.inputs import IMAGE_EXTENSIONS, collect_inputs
from tvdeploy.runtime.manifest import read_manifest
from tvdeploy.runtime.native_output import dropped_native_lines
from tvdeploy.text import printable

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 16
#: What Ray's C++ core prints for every actor pool of Ray Data (its constructor arguments live in the object store,
#: ray-project/ray#53727): an error line about restarts on every successful job, with no switch but a deprecated one
RAY_NOTICES = ("has constructor arguments in the object store and max_restarts > 0",)


@dataclass(frozen=True)
class RayJob:
    """What ``predict --engine ray`` was asked to do.

    Args:
        artifact: the artifact directory (every worker must be able to read it).
        inputs: local files and directories, and URIs of object storage.
        output: ``*.jsonl`` (one file) or a Parquet directory.
        address: a running Ray cluster (``ray://host:10001`` or ``auto``); None starts a local one sized to this
            machine (or uses the Ray already initialised in this process).
        concurrency: actors (default: cluster CPUs - 1, at least one).
        num_cpus: CPUs per actor (default 1).
        num_gpus: GPUs per actor (for the CUDA provider).
        threads: intra-op threads per actor (default: cluster CPUs // actors).
        batch_size: images per model call.
        resume: skip the images whose rows are already in ``output``.
    """

    artifact: Path
    inputs: Sequence[str]
    output: Path
    address: str | None = None
    concurrency: int | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    threads: int | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    top_k: int = 5
    provider: str | None = None
    decode: str = "exact"
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    resume: bool = False

    def __post_init__(self) -> None:
        if self.concurrency is not None and self.concurrency < 1:
            raise UserInputError("--concurrency must be >= 1")
        if self.num_cpus <= 0 or self.num_gpus < 0 or self.batch_size < 1 or self.top_k < 1:
            raise UserInputError("--num-cpus, --batch-size and --top-k must be positive, --num-gpus >= 0")

    @property
    def writes_jsonl(self) -> bool:
        """Whether the output is one JSON Lines file (else a Parquet directory)."""
        return self.output.suffix == ".jsonl"


@dataclass
class JobSummary:
    """What a job did."""

    images: int = 0
    errors: int = 0
    skipped: int = 0
    seconds: float = 0.0
    actors: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def images_per_s(self) -> float:
        """Images classified (errors included) per second of the job."""
        return self.images / self.seconds if self.seconds else 0.0


def is_uri(text: str) -> bool:
    """Whether an input names object storage (``scheme://...``) rather than a local path."""
    return "://" in text and not text.startswith("file://")


def done_paths(output: Path) -> set[str]:
    """The paths that already have a row in ``output`` (for ``--resume``); empty when there is none yet. An output
    that is not a rows file tvdeploy wrote is a :class:`UserInputError` naming the problem, before any work."""
    if not output.exists():
        return set()
    if output.suffix == ".jsonl":
        return _jsonl_paths(output)
    return {row["path"] for row in _parquet_rows(set(output.glob("*.parquet")))}


def _jsonl_paths(output: Path) -> set[str]:
    way_out = "pass the .jsonl file an earlier job wrote, or another --output without --resume"
    if not output.is_file():
        raise UserInputError(f"{printable(output)} is not a file: a .jsonl output is one file", hint=way_out)
    try:
        text = output.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserInputError(
            f"{printable(output)} is not UTF-8 text (byte {exc.start}): not rows tvdeploy wrote", hint=way_out
        ) from exc
    except OSError as exc:
        raise UserInputError(f"cannot read {printable(output)}: {exc.strerror or exc}", hint=way_out) from exc
    paths = set()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            paths.add(str(json.loads(line)["path"]))
        except (ValueError, KeyError, TypeError):
            logger.warning("%s line %d is not a row (a job cut off mid-line?): it is done again", output, number)
    return paths


def _end_last_line(output: Path) -> None:
    """A JSON Lines file cut off mid-line (a job that died while writing) gets its line ended, so that the rows
    appended on resume start on a line of their own instead of running into the broken one."""
    if output.suffix != ".jsonl" or not output.is_file() or output.stat().st_size == 0:
        return
    with output.open("rb+") as stream:
        stream.seek(-1, os.SEEK_END)
        if stream.read(1) != b"\n":
            stream.write(b"\n")


#: Ray reads this when imported: "0" makes a local instance use the loopback address for every service (GCS, raylet,
#: object store) instead of the machine's network address, where Ray's unauthenticated ports would be open to anyone
#: on the network. It also turns off joining other nodes, which a local instance never does.
_LOOPBACK_ONLY = ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def _ray(local: bool) -> Any:
    if local and "ray" not in sys.modules:
        os.environ.setdefault(*_LOOPBACK_ONLY)
    try:
        import ray
        import ray.data  # Ray Data is the ray[data] part of the extra
    except ImportError as exc:
        raise MissingDependencyError(
            "--engine ray needs Ray Data, which is not installed", hint='pip install "tvdeploy[ray]"'
        ) from exc
    return ray


def display_path(name: str) -> str:
    """A local file's name as a row holds it: as given, with bytes that are not UTF-8 (kept by Python as
    surrogates) written as ``\\xNN`` escapes, so that every name fits a JSON and an Arrow string."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _quiet_ray_data(ray: Any) -> None:
    """Ray Data's progress lines and execution plans off (the job's own summary says what happened)."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    for name in ("ray.data", "ray"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _local_inputs(job: RayJob, done: set[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of the local images to classify (``path`` as a row shows it, ``file``: the name's bytes, read by the
    actor itself so that no name is rewritten on the way), and the given paths that do not exist."""
    local = [given for given in job.inputs if not is_uri(given)]
    files = collect_inputs(local).files if local else []
    present, missing = [], []
    for name in files:
        shown = display_path(name)
        if shown in done:
            continue
        if not Path(name).is_file():
            missing.append(shown)
            continue
        present.append({"path": shown, "bytes": b"", "file": os.fsencode(os.path.abspath(name))})
    return present, missing


def _sizing(ray: Any, job: RayJob) -> tuple[int, int]:
    """Actors and intra-op threads per actor, leaving a whole CPU for Ray Data's read tasks (each asks for one):
    see the module docstring."""
    cluster_cpus = float(ray.cluster_resources().get("CPU", usable_cores()))
    fitting = max(1, int((cluster_cpus - 1) // job.num_cpus))
    actors = job.concurrency or fitting
    if cluster_cpus - actors * job.num_cpus < 1:
        raise UserInputError(
            f"{actors} actor(s) of {job.num_cpus:g} CPU leave less than the one CPU a read task needs on a cluster of "
            f"{cluster_cpus:g}: Ray Data's read tasks would never run",
            hint=f"use --concurrency {fitting} with a smaller --num-cpus, or a cluster with more CPUs"
            if fitting * job.num_cpus <= cluster_cpus - 1
            else "use a smaller --num-cpus (e.g. 0.5), or a cluster with more CPUs",
        )
    threads = job.threads or max(1, int(cluster_cpus) // actors)
    return actors, threads


def run_ray_job(job: RayJob) -> JobSummary:
    """Classify every input on Ray Data and write the rows (see the module docstring)."""
    ray = _ray(local=job.address is None)
    manifest = read_manifest(job.artifact)  # a bad artifact fails here, before any cluster work
    random_weights = manifest.source.random_weights_warning(str(job.artifact))
    if random_weights:  # the actors' own warning stays in their logs
        logger.warning("warning: %s", random_weights)
    if not job.writes_jsonl and job.output.exists() and not job.output.is_dir():
        raise UserInputError(f"{job.output} is a file", hint="name a .jsonl file or a directory for Parquet")
    if job.writes_jsonl and job.output.is_dir():
        raise UserInputError(f"{job.output} is a directory", hint="name a .jsonl file, or a directory without .jsonl")
    if job.output.exists() and not job.resume and (job.writes_jsonl or any(job.output.iterdir())):
        raise UserInputError(f"{job.output} already holds rows", hint="pass --resume to go on, or another --output")
    done = done_paths(job.output) if job.resume else set()
    if job.resume:
        _end_last_line(job.output)
    present, missing = _local_inputs(job, done)
    uris = [given for given in job.inputs if is_uri(given)]
    started_here = not ray.is_initialized()
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}  # Ray's own chatter is not the user's business
    if started_here and job.address:
        ray.init(address=job.address, **quiet)
    elif started_here:  # a local instance on this machine, sized to the cores this process may use
        ray.init(num_cpus=usable_cores(), include_dashboard=False, **quiet)
    _quiet_ray_data(ray)
    try:
        start = time.perf_counter()
        summary = JobSummary(skipped=len(done))
        before = set(job.output.glob("*.parquet")) if not job.writes_jsonl else set()
        if missing:
            _emit(job, [_missing_row(name) for name in missing], summary)
        if present or uris:
            actors, threads = _sizing(ray, job)
            summary.actors = actors
            dataset = _dataset(ray, present, uris, done, job, actors, threads)
            with dropped_native_lines(containing=RAY_NOTICES):
                _write(job, dataset, summary)
        if not job.writes_jsonl:  # Ray's workers wrote the rows: count what this job added
            for row in _parquet_rows(set(job.output.glob("*.parquet")) - before):
                summary.images += 1
                summary.errors += bool(row.get("error"))
        summary.seconds = time.perf_counter() - start
        return summary
    finally:
        if started_here:
            ray.shutdown()


def _missing_row(name: str) -> dict[str, Any]:
    return {"path": name, "labels": [], "indices": [], "probabilities": [], "error": f"{name}: no such file"}


def _dataset(
    ray: Any, local: list[dict[str, Any]], uris: list[str], done: set[str], job: RayJob, actors: int, threads: int
) -> Any:
    """Local files as rows of names (each actor reads its files: a file that is gone or unreadable is an error
    row, and no name passes through Ray's path handling), object storage through Ray's reader."""
    parts = []
    if local:
        parts.append(ray.data.from_items(local))
    if uris:
        extensions = sorted(extension.lstrip(".") for extension in IMAGE_EXTENSIONS)
        remote = ray.data.read_binary_files(uris, include_paths=True, file_extensions=extensions)
        if done:  # object-storage inputs already listed: their bytes are read, but not classified again
            remote = remote.filter(lambda row: row["path"] not in done)
        parts.append(remote.map_batches(_no_local_file, batch_format="pyarrow"))
    dataset = parts[0] if len(parts) == 1 else parts[0].union(*parts[1:])
    settings = {
        "artifact": str(job.artifact.resolve()),
        "top_k": job.top_k,
        "provider": job.provider,
        "threads": threads,
        "decode": job.decode,
        "max_pixels": job.max_pixels,
    }
    return dataset.map_batches(
        ArtifactPredictor,
        fn_constructor_kwargs=settings,
        batch_size=job.batch_size,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=job.num_cpus,
        num_gpus=job.num_gpus or None,
    )


def _no_local_file(batch: Any) -> Any:
    """Rows read from object storage, with the empty ``file`` column local rows fill (one schema for both)."""
    import pyarrow as pa

    return batch.append_column("file", pa.array([b""] * batch.num_rows, type=pa.binary()))


def _write(job: RayJob, dataset: Any, summary: JobSummary) -> None:
    if job.writes_jsonl:
        for batch in dataset.iter_batches(batch_size=job.batch_size, batch_format="pyarrow"):
            _emit(job, batch.to_pylist(), summary)
        return
    dataset.write_parquet(str(job.output))


def _parquet_rows(files: set[Path]) -> Iterator[dict[str, Any]]:
    """The ``path`` and ``error`` of every row of ``files`` (a file that is not a rows file tvdeploy wrote is a
    :class:`UserInputError`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for file in sorted(files):
        try:
            table = pq.read_table(file, columns=["path", "error"])
        except (OSError, pa.ArrowException, KeyError, ValueError) as exc:
            raise UserInputError(
                f"cannot read rows from {printable(file)}: {printable(str(exc), 300)}",
                hint="move files that are not rows of an earlier job out of the output directory, or choose "
                "another --output",
            ) from exc
        yield from table.to_pylist()


def _emit(job: RayJob, rows: list[dict[str, Any]], summary: JobSummary) -> None:
    """Rows the driver has: appended to a JSON Lines output (flushed, so a job cut off keeps what it did) and
    counted, or written as one more Parquet file beside Ray's (counted with them)."""
    if not job.writes_jsonl:
        if rows:  # rows of files that do not exist, next to Ray's Parquet files
            import pyarrow as pa
            import pyarrow.parquet as pq

            job.output.mkdir(parents=True, exist_ok=True)
            table = pa.Table.from_pylist(rows, schema=row_schema())
            pq.write_table(table, job.output / f"missing-{time.time_ns()}.parquet")
        return
    summary.images += len(rows)
    summary.errors += sum(1 for row in rows if row.get("error"))
    job.output.parent.mkdir(parents=True, exist_ok=True)
    with job.output.open("a", encoding="utf-8") as stream:
        for row in rows:
            stream.write(json.dumps(row_as_prediction(row)) + "\n")
        stream.flush()
