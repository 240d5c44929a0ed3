"""A Ray Data ``map_batches`` callable class: one tvdeploy artifact per actor, encoded images in, top-k rows out.

```python
import ray
from tvdeploy.batch.predictor import ArtifactPredictor

ds = ray.data.read_binary_files("s3://bucket/photos/", include_paths=True)
rows = ds.map_batches(ArtifactPredictor, fn_constructor_kwargs={"artifact": "artifacts/resnet50-onnx"},
                      batch_size=16, concurrency=4, num_cpus=1)
rows.write_parquet("s3://bucket/predictions/")
```

Each batch holds ``bytes`` (the encoded files) and ``path``; each row that comes back has ``path``, the top-k
``labels``, ``indices`` and ``probabilities``, and ``error`` (None, or why that file could not be classified: it
fails alone, the job goes on). Decoding and preprocessing are the runtime's own (``ImageDecoder``, exact or
``decode="fast"``), so the answers are those of ``tvdeploy predict`` on the same files.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from tvdeploy.runtime.classifier import PredictionResult, load
from tvdeploy.runtime.images import DEFAULT_MAX_PIXELS
from tvdeploy.runtime.providers import SessionConfig

#: The columns of a result row, in order.
ROW_COLUMNS = ("path", "labels", "indices", "probabilities", "error")


class ArtifactPredictor:
    """Loads ``artifact`` once (per Ray actor) and classifies batches of encoded images; see the module docstring.

    Args:
        artifact: the artifact directory (on a path every worker can read).
        top_k: predictions per image.
        provider: the execution provider (``cuda`` for GPU actors, with ``num_gpus`` in ``map_batches``); ``None``: the
            artifact's deployment record's, else ``cpu``.
        threads: intra-op threads of the model, and threads that decode ahead of it (default: all cores of the
            worker).
        decode: ``exact`` or ``fast``, as ``tvdeploy predict --decode``.
        max_pixels: larger images are error rows (decompression bombs).
    """

    def __init__(
        self,
        artifact: str,
        top_k: int = 5,
        provider: str | None = None,
        threads: int | None = None,
        decode: str = "exact",
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.top_k = top_k
        self.classifier = load(
            artifact,
            provider=provider,
            # one stream per actor: the actors are the job's parallel streams, each on its share of the cores
            session_config=SessionConfig(intra_op_threads=threads, streams=1),
            max_pixels=max_pixels,
            decode=decode,
            decode_workers=threads,  # as many decoding threads as model threads: the actor's share of the cores
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> Any:
        """One batch of ``bytes`` + ``path`` as a ``pyarrow.Table`` of result rows (see :func:`row_schema`). A
        batch may also carry ``file``: a local file's name as bytes, which this actor reads itself where it is not
        empty (a file gone or unreadable is that row's error)."""
        import pyarrow as pa

        paths = [str(path) for path in batch["path"]]
        files = batch.get("file")
        images: list[Any] = [
            os.fsdecode(bytes(file)) if files is not None and len(file) else bytes(data)
            for data, file in zip(batch["bytes"], files if files is not None else [b""] * len(paths), strict=True)
        ]
        results = self.classifier.predict_stream(images, top_k=self.top_k)
        return pa.Table.from_pydict(rows_of(paths, list(results), images), schema=row_schema())


def row_schema() -> Any:
    """The Arrow schema of result rows: plain lists and strings, so Parquet readers everywhere read them."""
    import pyarrow as pa

    return pa.schema(
        [
            ("path", pa.string()),
            ("labels", pa.list_(pa.string())),
            ("indices", pa.list_(pa.int64())),
            ("probabilities", pa.list_(pa.float64())),
            ("error", pa.string()),
        ]
    )


def rows_of(
    paths: list[str], results: list[PredictionResult], sources: list[Any] | None = None
) -> dict[str, list[Any]]:
    """Result rows as columns: the path each result belongs to, its top-k, or its error (with empty top-k), the
    error naming the row's path where the runtime named the file it read (``sources``)."""
    columns: dict[str, list[Any]] = {name: [] for name in ROW_COLUMNS}
    for index, (path, result) in enumerate(zip(paths, results, strict=True)):
        source = sources[index] if sources is not None else None
        if isinstance(source, str) and result.error and result.error.startswith(source):
            result = PredictionResult(result.source, error=path + result.error[len(source) :])
        predictions = result.predictions or []
        columns["path"].append(path)
        columns["labels"].append([p.label for p in predictions])
        columns["indices"].append([p.index for p in predictions])
        columns["probabilities"].append([p.probability for p in predictions])
        columns["error"].append(None if result.ok else _utf8(_named(result.error or "", path)))
    return columns


def _utf8(text: str) -> str:
    """``text`` as valid UTF-8 (a file name's undecodable bytes, kept by Python as surrogates, as ``\\xNN``)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _named(error: str, path: str) -> str:
    """The runtime names an input given as bytes ``<N bytes>``; a row names its file."""
    return error.replace(error.split(":", 1)[0], path, 1) if error.startswith("<") else error


def row_as_prediction(row: dict[str, Any]) -> dict[str, Any]:
    """A result row as ``tvdeploy predict --json`` prints it: ``{"path", "predictions": [...]}`` or
    ``{"path", "error"}``."""
    if row.get("error"):
        return {"path": row["path"], "error": row["error"]}
    predictions = [
        {"label": label, "index": int(index), "probability": float(probability)}
        for label, index, probability in zip(row["labels"], row["indices"], row["probabilities"], strict=True)
    ]
    return {"path": row["path"], "predictions": predictions}
