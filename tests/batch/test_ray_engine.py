"""`tvdeploy predict --engine ray` on a real local Ray instance (one per test session, shut down after): the rows
equal `tvdeploy predict --json`, bad files are error rows, both outputs read back, --resume skips done images."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.cli_helpers import run_cli

# before Ray is imported: every service of the test instance on the loopback address, not the machine's network one
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ray = pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One 2-CPU local Ray for these tests (Ray's start-up is the slow part)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    assert {node["NodeManagerAddress"] for node in ray.nodes()} == {"127.0.0.1"}
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def folder(photo_files, tmp_path_factory) -> Path:
    """Photos in a tree, a corrupt JPEG and a text file among them."""
    root = tmp_path_factory.mktemp("batch") / "images"
    (root / "nested").mkdir(parents=True)
    for i, photo in enumerate(photo_files):
        shutil.copy(photo, (root / "nested" if i % 2 else root) / photo.name)
    (root / "nested" / "corrupt.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def local_rows(resnet18_artifacts, folder) -> dict[str, dict]:
    from tests.cli_helpers import run_cli_process

    proc = run_cli_process("-q", "predict", resnet18_artifacts["onnx"], folder, "--json", "--top-k", "3")
    assert proc.stdout, proc.stderr
    return {row["path"]: row for row in map(json.loads, proc.stdout.splitlines())}


def _rows(path: Path) -> dict[str, dict]:
    return {row["path"]: row for row in map(json.loads, path.read_text().splitlines())}


def test_jsonl_rows_equal_the_local_predict(local_ray, resnet18_artifacts, folder, local_rows, tmp_path, capsys):
    out = tmp_path / "rows.jsonl"
    code, _, err = run_cli(capsys, "predict", resnet18_artifacts["onnx"], folder, tmp_path / "missing.jpg",
                           "--engine", "ray", "--output", out, "--top-k", "3", "--batch-size", "4")  # fmt: skip
    assert code == 1  # some inputs failed: as `predict`, exit 1, and the others are done
    rows = _rows(out)
    assert set(rows) == set(local_rows) | {str(tmp_path / "missing.jpg")}
    for path, expected in local_rows.items():
        if "error" in expected:
            assert rows[path] == expected, path  # the same error, naming the file
            continue
        got = rows[path]["predictions"]
        assert [p["index"] for p in got] == [p["index"] for p in expected["predictions"]], path
        np.testing.assert_allclose([p["probability"] for p in got], [p["probability"] for p in expected["predictions"]],
                                   rtol=1e-6)  # fmt: skip
    assert "not an image Pillow can decode" in rows[str(folder / "nested" / "corrupt.jpg")]["error"]
    assert str(folder / "notes.txt") not in rows  # a directory's non-image files are skipped, as by predict
    assert f"{len(rows)} image(s)" in err and "2 error(s)" in err


def test_parquet_rows_read_back_and_resume_skips_done_images(local_ray, resnet18_artifacts, folder, local_rows,
                                                             tmp_path, capsys) -> None:  # fmt: skip
    out = tmp_path / "rows"
    first = sorted(local_rows)[0]
    out.mkdir()
    sentinel = {"path": [first], "labels": [["SENTINEL"]], "indices": [[0]], "probabilities": [[1.0]], "error": [None]}
    import pyarrow as pa

    from tvdeploy.batch.predictor import row_schema

    pq.write_table(pa.Table.from_pydict(sentinel, schema=row_schema()), out / "earlier.parquet")
    code, _, err = run_cli(capsys, "predict", resnet18_artifacts["onnx"], folder, "--engine", "ray", "--output", out,
                           "--top-k", "3", "--resume")  # fmt: skip
    assert code == 1 and "1 already done" in err
    table = pq.read_table(out)
    assert table.column_names == ["path", "labels", "indices", "probabilities", "error"]
    rows = {row["path"]: row for row in table.to_pylist()}
    assert len(table) == len(local_rows) and set(rows) == set(local_rows)  # each image once
    assert rows[first]["labels"] == ["SENTINEL"]  # done before: not classified again
    for path, expected in local_rows.items():
        if path != first and "predictions" in expected:
            assert rows[path]["indices"] == [p["index"] for p in expected["predictions"]]
    code, _, err = run_cli(capsys, "predict", resnet18_artifacts["onnx"], folder, "--engine", "ray", "--output", out)
    assert code == 2 and "--resume" in err  # rows already there are never overwritten by accident


def test_actors_that_would_starve_the_reads_are_refused(local_ray, resnet18_artifacts, folder, tmp_path, capsys):
    code, _, err = run_cli(capsys, "predict", resnet18_artifacts["onnx"], folder, "--engine", "ray", "--output",
                           tmp_path / "x.jsonl", "--concurrency", "2")  # fmt: skip
    assert code == 2 and "read tasks would never run" in err and "--concurrency 1" in err


def test_the_predictor_composes_without_the_cli(resnet18_artifacts, photo_files) -> None:
    from tvdeploy.batch.predictor import ArtifactPredictor

    predictor = ArtifactPredictor(str(resnet18_artifacts["onnx"]), top_k=2)
    batch = {"bytes": np.array([photo_files[0].read_bytes(), b"junk"], dtype=object),
             "path": np.array(["a.jpg", "b.jpg"], dtype=object)}  # fmt: skip
    rows = predictor(batch).to_pylist()
    assert [r["path"] for r in rows] == ["a.jpg", "b.jpg"] and len(rows[0]["labels"]) == 2 and rows[0]["error"] is None
    assert rows[1]["labels"] == [] and rows[1]["error"].startswith("b.jpg: ")


def test_a_jsonl_cut_off_mid_line_resumes_on_a_line_of_its_own(tmp_path) -> None:
    from tvdeploy.batch.ray_job import _end_last_line, done_paths

    out = tmp_path / "rows.jsonl"
    out.write_text('{"path": "a.jpg", "predictions": []}\n{"path": "b.j')  # the job died while writing b's row
    assert done_paths(out) == {"a.jpg"}  # b is done again
    _end_last_line(out)
    with out.open("a") as stream:
        stream.write('{"path": "b.jpg", "predictions": []}\n')
    assert done_paths(out) == {"a.jpg", "b.jpg"}
    _end_last_line(out)  # a file that ends its last line is left alone
    assert out.read_text().count("\n") == 3


def test_odd_file_names_and_a_file_deleted_mid_job_fail_alone(
    local_ray, resnet18_artifacts, photo_files, tmp_path, capsys, monkeypatch
) -> None:
    from tvdeploy.batch import ray_job

    root = tmp_path / "odd"
    root.mkdir()
    names = ["new\nline.jpg", "carriage\rreturn.jpg", "tab\there.jpg", "plain.jpg", "gone.jpg"]
    for name in names:
        shutil.copy(photo_files[0], root / name)
    undecodable = os.fsdecode(b"latin1-\xe9.jpg")  # not UTF-8: Python keeps the byte as a surrogate
    shutil.copy(photo_files[1], os.path.join(root, undecodable))
    listed = ray_job._local_inputs

    def delete_after_listing(job, done):  # the file vanishes between the listing and the actor's read
        found = listed(job, done)
        (root / "gone.jpg").unlink()
        return found

    monkeypatch.setattr(ray_job, "_local_inputs", delete_after_listing)
    out = tmp_path / "rows.jsonl"
    code, _, err = run_cli(capsys, "predict", resnet18_artifacts["onnx"], root, "--engine", "ray", "--output", out)
    assert code == 1 and "6 image(s)" in err and "1 error(s)" in err
    rows = _rows(out)
    expected = {str(root / name) for name in names} | {str(root) + "/latin1-\\xe9.jpg"}
    assert set(rows) == expected
    gone = rows.pop(str(root / "gone.jpg"))
    assert gone["error"].startswith(str(root / "gone.jpg")) and "predictions" not in gone
    assert all(len(row["predictions"]) == 5 for row in rows.values())  # the odd names were read as they are
    # resume: every file has its row (the error row too), so nothing is done twice
    shutil.copy(photo_files[0], root / "gone.jpg")
    monkeypatch.setattr(ray_job, "_local_inputs", listed)
    code, _, err = run_cli(capsys, "predict", resnet18_artifacts["onnx"], root, "--engine", "ray", "--output", out,
                           "--resume")  # fmt: skip
    assert code == 0 and "6 already done" in err and "0 image(s)" in err
    assert len(out.read_text().splitlines()) == 6 and "Traceback" not in err and "concurrency" not in err


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b"\xff\xfe not utf-8\n"), "is not UTF-8 text"),
        (lambda p: p.mkdir(), "is a directory"),
    ],
    ids=["not UTF-8", "a directory"],
)
def test_resume_on_a_jsonl_that_is_not_rows_is_refused_before_the_job(
    resnet18_artifacts, photo_files, tmp_path, capsys, make, message: str
) -> None:
    out = tmp_path / "x.jsonl"
    make(out)
    code, _, err = run_cli(capsys, "predict", resnet18_artifacts["onnx"], photo_files[0], "--engine", "ray",
                           "--output", out, "--resume")  # fmt: skip
    assert code == 2 and message in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"PAR1 not really parquet", "cannot read rows from"), (None, "cannot read rows from")],
    ids=["corrupt", "no path column"],
)
def test_resume_on_parquet_that_is_not_rows_is_refused(resnet18_artifacts, photo_files, tmp_path, capsys, content,
                                                       message: str) -> None:  # fmt: skip
    import pyarrow as pa

    out = tmp_path / "rows"
    out.mkdir()
    if content is None:
        pq.write_table(pa.table({"file": ["a.jpg"]}), out / "other.parquet")
    else:
        (out / "bad.parquet").write_bytes(content)
    code, _, err = run_cli(capsys, "predict", resnet18_artifacts["onnx"], photo_files[0], "--engine", "ray",
                           "--output", out, "--resume")  # fmt: skip
    assert code == 2 and message in err and "Traceback" not in err


def test_a_ray_job_prints_only_tvdeploys_own_lines(resnet18_artifacts, photo_files, tmp_path) -> None:
    from tests.cli_helpers import run_cli_process

    proc = run_cli_process("predict", resnet18_artifacts["onnx"], *photo_files[:2], "--engine", "ray", "--output",
                           tmp_path / "rows.jsonl", timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines and all(line.startswith("tvdeploy: ") for line in lines), proc.stderr  # no Ray notices
    assert "2 image(s)" in lines[-1]
