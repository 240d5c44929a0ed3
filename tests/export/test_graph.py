"""ONNX graph transformations: onnxslim, ORT's offline-optimized graph, embedded pre- and post-processing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from tests.cli_helpers import run_cli
from tests.conftest import random_uint8_image
from tvdeploy.errors import ArtifactError, UserInputError
from tvdeploy.export.onnx_graph import preprocess_graph
from tvdeploy.export.options import ExportOptions, GraphOptions
from tvdeploy.export.pipeline import ExportRequest, export_model
from tvdeploy.runtime import load
from tvdeploy.runtime.host import cpu_signature
from tvdeploy.runtime.manifest import IMAGES_INPUT_NAME, PreprocessSpec, read_manifest
from tvdeploy.runtime.precisions import EMBEDDED_PREPROCESS_CRITERIA
from tvdeploy.runtime.preprocess import ImagePreprocessor
from tvdeploy.runtime.runners.onnx import OnnxRunner

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
#: One uint8 level after normalization by the smallest std: the most a Pillow-vs-ONNX rounding flip can move a value.
ONE_LEVEL = 1 / 255 / min(STD) + 1e-6


@pytest.fixture(scope="module")
def embedded(resnet18_artifacts, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """resnet18 with preprocessing, softmax + top-3, onnxslim and ORT's optimized graph, derived by `optimize`."""
    from tvdeploy.cli import main

    out = tmp_path_factory.mktemp("graph") / "embedded"
    argv = ["optimize", str(resnet18_artifacts["onnx"]), "--output", str(out), "--simplify", "--optimize",
            "--embed-preprocess", "--embed-postprocess", "3"]  # fmt: skip
    assert main(argv) == 0
    return out


def _graph_preprocess(spec: PreprocessSpec, image: np.ndarray) -> np.ndarray:
    model = preprocess_graph(spec, "tensor", 18)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {IMAGES_INPUT_NAME: image[None]})[0][0]


@pytest.mark.parametrize(
    ("resize", "crop", "interpolation", "most_differing"),
    [
        ((256,), (224,), "bilinear", 0.01),  # the shorter side resized, as every torchvision preset does
        ((232,), (224,), "bicubic", 0.01),
        ((240, 200), (224, 180), "bilinear", 0.25),  # two scales: the two passes round differently, by one level
    ],
)  # fmt: skip
def test_embedded_preprocessing_matches_pillow_to_one_level(
    photos, resize, crop, interpolation, most_differing
) -> None:
    spec = PreprocessSpec(resize, crop, interpolation, True, MEAN, STD)
    pillow = ImagePreprocessor(spec)
    for name, photo in photos.items():
        for image in (np.asarray(photo), np.asarray(photo.transpose(Image.Transpose.TRANSPOSE))):  # landscape, portrait
            expected = pillow(Image.fromarray(image))
            got = _graph_preprocess(spec, np.ascontiguousarray(image))
            assert got.shape == expected.shape, name
            diff = np.abs(got - expected)
            assert diff.max() <= ONE_LEVEL, (name, interpolation, diff.max())
            assert (diff > 1e-5).mean() < most_differing, (name, interpolation, (diff > 1e-5).mean())


def test_embedded_preprocessing_refuses_what_it_cannot_reproduce() -> None:
    with pytest.raises(UserInputError, match="cannot pad"):
        preprocess_graph(PreprocessSpec((200,), (224,), "bilinear", True, MEAN, STD), "tensor", 18)
    with pytest.raises(UserInputError, match="not nearest"):
        preprocess_graph(PreprocessSpec((256,), (224,), "nearest", True, MEAN, STD), "tensor", 18)


def test_embedded_artifact_manifest_describes_the_new_interface(embedded, resnet18_artifacts) -> None:
    manifest = json.loads((embedded / "tvdeploy.json").read_text())
    plain = json.loads((resnet18_artifacts["onnx"] / "tvdeploy.json").read_text())
    assert plain["schema_version"] == 1 and manifest["schema_version"] == 2
    assert manifest["input"] == {"name": "images", "shape": ["batch", "height", "width", 3], "dtype": "uint8",
                                 "layout": "NHWC", "max_batch": None}  # fmt: skip
    assert manifest["output"] == {"name": "probabilities", "meaning": "top_k", "shape": ["batch", 3],
                                  "indices": "indices"}  # fmt: skip
    assert manifest["optimized_graph"]["level"] == "all" and manifest["optimized_graph"]["host"] == cpu_signature()
    assert [f["path"] for f in manifest["files"]] == ["model.onnx", "model.onnx.data"]
    info = manifest["export_info"]
    assert info["simplified"]["tool"].startswith("onnxslim") and info["embedded_postprocess"]["top_k"] == 3
    assert "center crop [224]" in info["embedded_preprocess"]["steps"]
    parity = manifest["parity"]
    assert parity["passed"] and parity["criteria"]["atol_scale"] == EMBEDDED_PREPROCESS_CRITERIA.atol_scale
    photos = next(s for s in parity["sets"] if s["name"] == "photos")
    assert photos["top1_agreement"] == 1.0 and photos["min_cosine"] > 0.9999
    graph_inputs = [i.name for i in ort.InferenceSession(str(embedded / "model.onnx")).get_inputs()]
    assert graph_inputs == ["images"]


def test_embedded_artifact_predicts_like_the_plain_one(embedded, resnet18_artifacts, photo_files, tmp_path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(photo_files[0].read_bytes()[:200])
    plain = load(resnet18_artifacts["onnx"]).predict(photo_files, top_k=3)
    with load(embedded) as clf:
        assert clf.runner.session.get_session_options().graph_optimization_level == (
            ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the graph is already optimized: no work at load
        )
        got = clf.predict(photo_files, top_k=3)
        stream = list(clf.predict_stream([photo_files[0], broken, photo_files[1]], top_k=2))
    assert [[p.index for p in row] for row in got] == [[p.index for p in row] for row in plain]
    for row, plain_row in zip(got, plain, strict=True):
        assert np.allclose([p.probability for p in row], [p.probability for p in plain_row], atol=1e-4)
    assert [r.ok for r in stream] == [True, False, True] and "broken.jpg" in (stream[1].error or "")
    assert [p.index for p in stream[2].predictions or []] == [p.index for p in plain[1][:2]]


def test_more_classes_than_the_graph_keeps_is_a_clear_error(embedded, photo_files, capsys) -> None:
    code, _, err = run_cli(capsys, "predict", embedded, photo_files[0], "--top-k", "4")
    assert code == 2 and "ends in a top-3" in err and "--embed-postprocess 4" in err


def test_an_all_level_graph_is_refused_on_another_host(embedded, tmp_path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(embedded, copy)
    manifest_path = copy / "tvdeploy.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["optimized_graph"]["host"] = "x86_64:avx512f"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="avx512f") as caught:
        load(copy)
    assert "tvdeploy optimize" in (caught.value.hint or "")
    manifest["optimized_graph"]["level"] = "extended"  # a portable level runs anywhere
    manifest_path.write_text(json.dumps(manifest))
    assert load(copy).predict(random_uint8_image(0, (300, 200)), top_k=1)[0][0].index >= 0


def test_bench_measures_the_cold_start_of_an_optimized_graph(resnet18_artifacts, embedded, tmp_path, capsys) -> None:
    report = tmp_path / "bench.json"
    code, out, _ = run_cli(capsys, "bench", resnet18_artifacts["onnx"], embedded, "--iterations", "3", "--warmup", "1",
                           "--save-json", report)  # fmt: skip
    assert code == 0 and "import ms" in out
    rows = {r["name"]: r for r in json.loads(report.read_text())["results"]}
    plain, optimized = rows[resnet18_artifacts["onnx"].name], rows[embedded.name]
    assert plain["import_ms"] > 0 and optimized["cold_start_ms"] > 0 and plain["cold_start_ms"] > 0
    # why it starts faster (the figures are docs/optimization.md's, from `tvdeploy bench`): its sessions skip
    # ONNX Runtime's optimization passes, which the plain artifact's sessions run at level all
    manifest = read_manifest(embedded)
    assert OnnxRunner.for_artifact(embedded, manifest, "cpu").config.graph_optimization == "disable"
    plain_manifest = read_manifest(resnet18_artifacts["onnx"])
    assert OnnxRunner.for_artifact(resnet18_artifacts["onnx"], plain_manifest, "cpu").config.graph_optimization is None


def test_optimize_refuses_derived_artifacts_and_empty_requests(embedded, resnet18_artifacts, capsys) -> None:
    code, _, err = run_cli(capsys, "optimize", embedded, "--precision", "fp16")
    assert code == 2 and "already derived" in err and "embedded preprocessing" in err
    code, _, err = run_cli(capsys, "optimize", resnet18_artifacts["onnx"])
    assert code == 2 and "nothing to do" in err
    code, _, err = run_cli(capsys, "optimize", resnet18_artifacts["torchscript"], "--simplify")
    assert code == 2 and "transforms ONNX graphs" in err


def test_export_refuses_graph_flags_for_other_formats_and_old_opsets(tmp_path, capsys) -> None:
    code, _, err = run_cli(capsys, "export", "--model", "resnet18", "--weights", "none", "--format", "torchscript",
                           "--embed-preprocess", "--output", tmp_path)  # fmt: skip
    assert code == 2 and "--embed-preprocess transforms ONNX graphs; torchscript artifacts take none" in err
    options = ExportOptions(graph=GraphOptions(simplify=True, optimize="all"))
    with pytest.raises(UserInputError, match="--simplify --optimize all transforms ONNX graphs; pt2"):
        export_model(ExportRequest("resnet18", ["onnx", "pt2"], weights="none", output=tmp_path, options=options))
    code, _, err = run_cli(capsys, "export", "--model", "resnet18", "--weights", "none", "--opset", "17",
                           "--embed-preprocess", "--output", tmp_path / "a")  # fmt: skip
    assert code == 2 and "opset 18" in err
    assert not (tmp_path / "a").exists()


def test_embedded_artifact_runs_without_torch(embedded, photo_files) -> None:
    from tests.runtime.test_no_torch import _run_blocked

    proc = _run_blocked(
        """
        import sys
        from tvdeploy.runtime import load
        print(load(sys.argv[1]).predict(sys.argv[2], top_k=1)[0][0].index)
        """,
        str(embedded),
        str(photo_files[0]),
    )
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.strip()) == load(embedded).predict(photo_files[0], top_k=1)[0][0].index
