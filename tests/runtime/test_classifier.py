"""The high-level API: load(artifact).predict(images)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from tvdeploy.errors import ArtifactError, ProviderError
from tvdeploy.runtime import SessionConfig, load
from tvdeploy.runtime.providers import available_providers


def test_predict_is_independent_of_batch_size(resnet18_artifacts, photo_files) -> None:
    with load(resnet18_artifacts["onnx"], batch_size=1) as one, load(resnet18_artifacts["onnx"], batch_size=4) as four:
        a, b = one.predict(photo_files, top_k=5), four.predict(photo_files, top_k=5)
    assert len(a) == len(photo_files)
    assert [[p.index for p in row] for row in a] == [[p.index for p in row] for row in b]
    for row_a, row_b in zip(a, b, strict=False):
        assert [p.probability for p in row_a] == pytest.approx([p.probability for p in row_b], abs=1e-6)
        assert row_a[0].probability >= row_a[-1].probability


def test_single_image_and_preprocess(resnet18_artifacts, photo_files) -> None:
    clf = load(resnet18_artifacts["onnx"])
    assert clf.preprocess(photo_files[0]).shape == (3, 224, 224)
    result = clf.predict(photo_files[0], top_k=3)
    assert len(result) == 1 and len(result[0]) == 3 and result[0][0].label == clf.labels[result[0][0].index]


@pytest.mark.parametrize("fmt", ["torchscript", "pt2"])
def test_torch_formats_run_behind_the_same_api(resnet18_artifacts, photo_files, fmt: str) -> None:
    onnx = load(resnet18_artifacts["onnx"]).predict(photo_files[:2])
    other = load(resnet18_artifacts[fmt]).predict(photo_files[:2])
    assert [[p.index for p in row] for row in onnx] == [[p.index for p in row] for row in other]


def test_tampered_model_is_refused_unless_verification_is_off(resnet18_artifacts, tmp_path: Path, photo_files) -> None:
    copy = tmp_path / "art"
    shutil.copytree(resnet18_artifacts["onnx"], copy)
    manifest = json.loads((copy / "tvdeploy.json").read_text())
    manifest["files"][0]["sha256"] = "0" * 64
    (copy / "tvdeploy.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="does not match the sha256"):
        load(copy)
    assert load(copy, verify=False).predict(photo_files[0])


def test_missing_model_file_and_newer_schema(resnet18_artifacts, tmp_path: Path) -> None:
    copy = tmp_path / "art"
    shutil.copytree(resnet18_artifacts["onnx"], copy)
    (copy / "model.onnx").unlink()
    with pytest.raises(ArtifactError, match="missing"):
        load(copy)
    manifest = json.loads((copy / "tvdeploy.json").read_text())
    manifest["schema_version"] = 99
    (copy / "tvdeploy.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="newer"):
        load(copy)


def test_unavailable_providers_are_errors_listing_the_available_ones(resnet18_artifacts) -> None:
    missing = [p for p in ("cuda", "tensorrt", "openvino") if p not in available_providers()]
    assert missing, "this test expects a CPU-only onnxruntime"
    for provider in missing:
        with pytest.raises(ProviderError) as info:
            load(resnet18_artifacts["onnx"], provider=provider)
        assert "available: cpu" in str(info.value) and info.value.hint
    with pytest.raises(ProviderError, match="choose one of cpu, cuda, tensorrt, openvino, auto"):
        load(resnet18_artifacts["onnx"], provider="tpu")


def test_auto_provider_logs_its_choice(resnet18_artifacts, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="tvdeploy"):
        clf = load(resnet18_artifacts["onnx"], provider="auto")
    assert clf.runner.provider == "cpu"
    assert any("provider auto: chose cpu" in r.getMessage() for r in caplog.records)


def test_session_options_are_applied(resnet18_artifacts) -> None:
    clf = load(resnet18_artifacts["onnx"], session_config=SessionConfig(intra_op_threads=1, graph_optimization="basic"))
    options = clf.runner.session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert int(options.graph_optimization_level) == 1
    with pytest.raises(ProviderError, match="graph optimization"):
        SessionConfig(graph_optimization="max")


def test_stream_reports_bad_inputs_and_goes_on(resnet18_artifacts, photo_files, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    clf = load(resnet18_artifacts["onnx"], batch_size=2)
    sources = [str(photo_files[0]), str(bad), str(photo_files[1]), str(tmp_path / "missing.png"), str(photo_files[2])]
    results = list(clf.predict_stream(sources, top_k=3))
    assert [r.source for r in results] == sources
    assert [r.ok for r in results] == [True, False, True, False, True]
    expected = clf.predict([photo_files[0], photo_files[1], photo_files[2]], top_k=3)
    assert [p.index for p in results[2].predictions] == [p.index for p in expected[1]]
    assert "not an image" in results[1].error and "no such file" in results[3].error


def test_concurrent_predict_calls_share_one_decode_pool(resnet18_artifacts, photo_files, monkeypatch) -> None:
    """A server calls predict from many threads at once: one pool must be made, and every answer be right."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from tvdeploy.runtime import classifier as classifier_module

    created = []

    class SlowToCreatePool(ThreadPoolExecutor):
        def __init__(self, *args, **kwargs) -> None:
            created.append(self)
            time.sleep(0.05)  # widen the window in which an unlocked lazy pool is created twice
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(classifier_module, "ThreadPoolExecutor", SlowToCreatePool)
    with load(resnet18_artifacts["onnx"]) as clf:
        expected = [[p.index for p in row] for row in clf.predict(photo_files[:3])]  # batch 3: uses the pool
        created.clear()
        clf._pool = None
        results: dict[int, list] = {}
        start = threading.Barrier(8)

        def worker(i: int) -> None:
            start.wait()
            results[i] = [[p.index for p in row] for row in clf.predict(photo_files[:3])]

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(created) == 1
    assert all(results[i] == expected for i in range(8))
