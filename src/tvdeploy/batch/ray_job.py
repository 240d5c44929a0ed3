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

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 16


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
    """The paths that already have a row in ``output`` (for ``--resume``); empty when there is none yet."""
    if not output.exists():
        return set()
    if output.suffix == ".jsonl":
        paths = set()
        for number, line in enumerate(output.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                paths.add(json.loads(line)["path"])
            except (ValueError, KeyError, TypeError):
                logger.warning("%s line %d is not a row (a job cut off mid-line?): it is done again", output, number)
        return paths
    return {row["path"] for row in _parquet_rows(set(output.glob("*.parquet")))}


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


def _local_inputs(job: RayJob, done: set[str]) -> tuple[list[str], list[str], dict[str, str]]:
    """Local images to read (absolute paths), the given paths that do not exist, and absolute -> as given."""
    local = [given for given in job.inputs if not is_uri(given)]
    files = collect_inputs(local).files if local else []
    original: dict[str, str] = {}
    present, missing = [], []
    for name in files:
        if name in done:
            continue
        if not Path(name).is_file():
            missing.append(name)
            continue
        absolute = os.path.abspath(name)
        original[absolute] = name
        present.append(absolute)
    return present, missing, original


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
    read_manifest(job.artifact)  # a bad artifact fails here, before any cluster work
    if not job.writes_jsonl and job.output.exists() and not job.output.is_dir():
        raise UserInputError(f"{job.output} is a file", hint="name a .jsonl file or a directory for Parquet")
    if job.output.exists() and not job.resume and (job.writes_jsonl or any(job.output.iterdir())):
        raise UserInputError(f"{job.output} already holds rows", hint="pass --resume to go on, or another --output")
    done = done_paths(job.output) if job.resume else set()
    if job.resume:
        _end_last_line(job.output)
    present, missing, original = _local_inputs(job, done)
    uris = [given for given in job.inputs if is_uri(given)]
    started_here = not ray.is_initialized()
    if started_here and job.address:
        ray.init(address=job.address, log_to_driver=False)
    elif started_here:  # a local instance on this machine, sized to the cores this process may use
        ray.init(num_cpus=usable_cores(), include_dashboard=False, log_to_driver=False)
    try:
        start = time.perf_counter()
        summary = JobSummary(skipped=len(done))
        before = set(job.output.glob("*.parquet")) if not job.writes_jsonl else set()
        if missing:
            _emit(job, [_missing_row(name) for name in missing], summary)
        if present or uris:
            actors, threads = _sizing(ray, job)
            summary.actors = actors
            dataset = _dataset(ray, present + uris, done, job, actors, threads)
            _write(job, dataset, original, summary)
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


def _dataset(ray: Any, paths: list[str], done: set[str], job: RayJob, actors: int, threads: int) -> Any:
    extensions = sorted(extension.lstrip(".") for extension in IMAGE_EXTENSIONS)
    dataset = ray.data.read_binary_files(
        paths, include_paths=True, file_extensions=extensions if any(is_uri(p) for p in paths) else None
    )
    if done:  # object-storage inputs already listed: their bytes are read, but not classified again
        dataset = dataset.filter(lambda row: row["path"] not in done)
    return dataset.map_batches(
        ArtifactPredictor,
        fn_constructor_kwargs={
            "artifact": str(job.artifact.resolve()),
            "top_k": job.top_k,
            "provider": job.provider,
            "threads": threads,
            "decode": job.decode,
            "max_pixels": job.max_pixels,
        },
        batch_size=job.batch_size,
        concurrency=actors,
        num_cpus=job.num_cpus,
        num_gpus=job.num_gpus or None,
    )


def _write(job: RayJob, dataset: Any, original: dict[str, str], summary: JobSummary) -> None:
    if job.writes_jsonl:
        for batch in dataset.iter_batches(batch_size=job.batch_size, batch_format="pyarrow"):
            _emit(job, [_as_given(row, original) for row in batch.to_pylist()], summary)
        return
    restored = dataset.map_batches(_restore_paths, fn_kwargs={"original": original}, batch_format="pyarrow")
    restored.write_parquet(str(job.output))


def _as_given(row: dict[str, Any], original: dict[str, str]) -> dict[str, Any]:
    """A row with its path as the user gave it (Ray reads local files by absolute path), in its error too."""
    path = str(row["path"])
    given = original.get(path, path)
    error = row.get("error")
    return {**row, "path": given, "error": error.replace(path, given, 1) if error else error}


def _restore_paths(batch: Any, original: dict[str, str]) -> Any:
    """:func:`_as_given` over a batch, for the Parquet writers."""
    import pyarrow as pa

    return pa.Table.from_pylist([_as_given(row, original) for row in batch.to_pylist()], schema=row_schema())


def _parquet_rows(files: set[Path]) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    for file in sorted(files):
        yield from pq.read_table(file, columns=["path", "error"]).to_pylist()


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
