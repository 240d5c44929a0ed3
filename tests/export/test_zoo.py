"""The model-zoo sweep: every torchvision classifier to every format, with parity.

Behind the ``zoo`` marker (hours on two cores): ``pytest -m zoo tests/export/test_zoo.py``.
The formats are every format of the registry whose extra is installed, or
``$TVDEPLOY_ZOO_FORMATS`` (comma-separated); ``$TVDEPLOY_ZOO_MODELS`` limits the
models. Each model appends its rows to ``$TVDEPLOY_ZOO_RESULTS`` (default
``docs/coverage.jsonl``); ``python tools/render_coverage.py`` turns them into
``docs/coverage.md``.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
from pathlib import Path

import pytest

from tvdeploy.export.pipeline import ExportRequest, PartialExportError, export_model
from tvdeploy.export.producers import exportable_formats
from tvdeploy.models.catalog import list_catalog
from tvdeploy.runtime.formats import get_format

RESULTS = Path(os.environ.get("TVDEPLOY_ZOO_RESULTS", Path(__file__).parents[2] / "docs" / "coverage.jsonl"))
MODELS = [
    m
    for m in sorted(list_catalog(), key=lambda m: m.default_weights.num_params)
    if not os.environ.get("TVDEPLOY_ZOO_MODELS") or m.name in os.environ["TVDEPLOY_ZOO_MODELS"].split(",")
]
FORMATS = [
    get_format(name).name for name in os.environ.get("TVDEPLOY_ZOO_FORMATS", "").split(",") if name
] or exportable_formats()


def _row(model: str, outcome) -> dict:
    sets = {s["name"]: s for s in outcome.parity.to_dict()["sets"]}
    return {
        "model": model,
        "format": outcome.format,
        "exporter": outcome.manifest.exporter,
        "passed": outcome.passed,
        "export_seconds": round(outcome.export_seconds, 1),
        "photos_max_abs_diff": sets["photos"]["max_abs_diff"],
        "photos_atol_limit": sets["photos"]["atol_limit"],
        "photos_top1": sets["photos"]["top1_agreement"],
        "photos_top5": sets["photos"]["top5_agreement"],
        "photos_min_cosine": sets["photos"]["min_cosine"],
        "random_max_abs_diff": sets["random"]["max_abs_diff"],
        "random_min_cosine": sets["random"]["min_cosine"],
        "max_abs_logit": sets["photos"]["max_abs_logit"],
        "attempts": [a.to_dict() for a in outcome.attempts],
        "failures": [str(f) for f in outcome.parity.failures],
    }


@pytest.mark.zoo
@pytest.mark.parametrize("model", [m.name for m in MODELS])
def test_zoo_model_exports_to_every_format_with_parity(model: str, tmp_path: Path) -> None:
    rows = []
    try:
        outcomes = export_model(ExportRequest(model, FORMATS, weights="none", output=tmp_path, progress=False))
        rows = [_row(model, o) for o in outcomes]
    except PartialExportError as exc:  # the formats written keep their rows; the others get an error row each
        rows = [_row(model, o) for o in exc.outcomes] + [
            {"model": model, "format": fmt, "passed": False, "error": reason[:500]}
            for fmt, reason in exc.failed.items()
        ]
    except Exception as exc:  # recorded in the table, then the test fails
        error = f"{type(exc).__name__}: {exc}"[:500]
        rows = [{"model": model, "format": "all", "formats": FORMATS, "passed": False, "error": error}]
        raise
    finally:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with RESULTS.open("a", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
        shutil.rmtree(tmp_path, ignore_errors=True)
        gc.collect()
    failed = [r["format"] for r in rows if not r["passed"]]
    assert not failed, f"{model}: parity failed for {failed}"
