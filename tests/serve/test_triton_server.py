"""The repository `tvdeploy export-triton --ensemble` writes, loaded and served by a real Triton Inference Server
(PyTriton's ``tritonserver`` binary) and called with the stock ``tritonclient``: Triton accepts the ONNX model's
configuration up to its backend (the wheel has no ONNX Runtime backend; a Python-backend stand-in runs model.onnx
under the same configuration), and the ensemble decodes BYTES images like the runtime and answers like it."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.cli_helpers import run_cli
from tests.serve.classification import assert_classification_rows
from tests.serve.tritonserver import INSTALL_HINT, TritonServer, find_install
from tvdeploy.errors import ImageError
from tvdeploy.runtime import load
from tvdeploy.serve.triton import TritonOptions, export_triton

tritonclient_http = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

INSTALL = find_install()
pytestmark = pytest.mark.skipif(INSTALL is None, reason=f"no .triton-env with Triton's server: {INSTALL_HINT}")

STANDIN = Path(__file__).with_name("triton_onnxruntime_standin.py")


@pytest.fixture(scope="module")
def repository(resnet18_artifacts, tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("triton") / "repo"
    export_triton([resnet18_artifacts["onnx"]], repo, TritonOptions(max_batch_size=4, ensemble=True))
    return repo


@contextlib.contextmanager
def _triton(repository: Path, workdir: Path) -> Iterator[tuple[TritonServer, object]]:
    assert INSTALL is not None
    server = TritonServer(INSTALL, repository, workdir)
    server.wait_live()
    client = tritonclient_http.InferenceServerClient(server.url)
    try:
        yield server, client
    finally:
        client.close()  # Triton waits (up to --exit-timeout-secs) for open connections before it exits
        assert server.stop() == 0, "".join(server.log)


@pytest.fixture(scope="module")
def triton(repository, tmp_path_factory) -> Iterator[tuple[TritonServer, object]]:
    with _triton(repository, tmp_path_factory.mktemp("tritonserver")) as server_and_client:
        yield server_and_client


def _stand_in_for_onnxruntime(model: Path) -> None:
    """Switch the ONNX model's one ``backend`` line to the Python backend running the stand-in on its model.onnx."""
    config = (model / "config.pbtxt").read_text()
    assert config.count('backend: "onnxruntime"') == 1
    (model / "config.pbtxt").write_text(config.replace('backend: "onnxruntime"', 'backend: "python"'))
    shutil.copy(STANDIN, model / "1" / "model.py")


def _load_ensemble(server: TritonServer, client, name: str) -> None:
    for model in (f"{name}_preprocess", name, f"{name}_ensemble"):
        client.load_model(model)
        assert client.is_model_ready(model), "".join(server.log)


def _images(paths: list[Path], batched: bool = True):
    """Encoded images as the ensemble takes them: ``[N, 1]`` BYTES where Triton batches, ``[N]`` for a fixed batch."""
    shape = [len(paths), 1] if batched else [len(paths)]
    tensor = tritonclient_http.InferInput("image_bytes", shape, "BYTES")
    tensor.set_data_from_numpy(np.array([p.read_bytes() for p in paths], dtype=np.object_).reshape(shape))
    return tensor


def test_triton_accepts_the_onnx_models_configuration_up_to_its_backend(triton) -> None:
    _, client = triton
    with pytest.raises(InferenceServerException) as failure:
        client.load_model("resnet18")
    # a configuration Triton rejects fails before this (e.g. "failed to read text proto", "'max_batch_size' must be ...")
    assert "unable to find backend library for backend 'onnxruntime'" in str(failure.value)


def test_ensemble_in_real_triton_answers_like_the_runtime(triton, repository, resnet18_artifacts, photo_files) -> None:
    server, client = triton
    _stand_in_for_onnxruntime(repository / "resnet18")
    _load_ensemble(server, client, "resnet18")
    runtime = load(resnet18_artifacts["onnx"])
    paths = photo_files[:3]

    # the preprocessing step alone: the runtime's decoding and preprocessing, bit for bit
    batch = np.stack([runtime.preprocess(p) for p in paths])
    result = client.infer("resnet18_preprocess", [_images(paths)])
    np.testing.assert_array_equal(result.as_numpy("input"), batch)

    # images in, logits out, and Triton's classification extension with the labels file export-triton wrote
    logits = runtime.infer(batch)
    result = client.infer("resnet18_ensemble", [_images(paths)])
    np.testing.assert_allclose(result.as_numpy("logits"), logits, rtol=1e-4, atol=1e-4)
    requested = tritonclient_http.InferRequestedOutput("logits", class_count=3)
    rows = client.infer("resnet18_ensemble", [_images(paths)], outputs=[requested]).as_numpy("logits")
    assert_classification_rows(rows, runtime.predict(paths, top_k=3), logits)

    # 8 concurrent requests, one with an undecodable image: Triton's dynamic batcher runs them through the Python
    # model in batches, the bad one fails alone with the runtime's message and the other 7 answer like the runtime
    before = _executions(client, "resnet18_preprocess")
    concurrent = tritonclient_http.InferenceServerClient(server.url, concurrency=8)
    try:
        bad = tritonclient_http.InferInput("image_bytes", [1, 1], "BYTES")
        bad.set_data_from_numpy(np.array([[b"not an image"]], dtype=np.object_))
        inputs = [bad if i == 3 else _images([photo_files[i % len(photo_files)]]) for i in range(8)]
        pending = [concurrent.async_infer("resnet18_ensemble", [tensor]) for tensor in inputs]
        answers = []
        for request in pending:
            try:
                answers.append(request.get_result().as_numpy("logits"))
            except InferenceServerException as exc:
                answers.append(str(exc))
    finally:
        concurrent.close()
    with pytest.raises(ImageError) as offline_failure:
        runtime.preprocess(b"not an image")
    assert isinstance(answers[3], str) and offline_failure.value.message in answers[3]  # "<12 bytes>: not an image ..."
    good = [i for i in range(8) if i != 3]
    expected = runtime.infer(np.stack([runtime.preprocess(photo_files[i % len(photo_files)]) for i in good]))
    np.testing.assert_allclose(np.concatenate([answers[i] for i in good]), expected, rtol=1e-4, atol=1e-4)
    (ran, executed), (ran_before, executed_before) = _executions(client, "resnet18_preprocess"), before
    requests, executions = ran - ran_before, executed - executed_before
    assert requests == 8 and executions < requests, "Triton formed no batch"


def _executions(client, model: str) -> tuple[int, int]:
    """Triton's statistics extension: requests the model ran (successes and failures) and model executions."""
    stats = client.get_inference_statistics(model)["model_stats"][0]
    ran = stats["inference_stats"]["success"]["count"] + stats["inference_stats"]["fail"]["count"]
    return ran, stats["execution_count"]


def test_top_k_and_fixed_batch_artifacts_in_real_triton(resnet18_artifacts, tmp_path, capsys, photo_files) -> None:
    """The other shapes export-triton writes: an artifact ending in softmax + top-k (two outputs, no labels file)
    and one with a fixed batch (``max_batch_size: 0``, full dims, no dynamic batching, ``[N]`` images)."""
    top_k, fixed = tmp_path / "top3", tmp_path / "fixed"
    assert (
        run_cli(capsys, "optimize", resnet18_artifacts["onnx"], "--embed-postprocess", "3", "--output", top_k)[0] == 0
    )
    code, _, err = run_cli(capsys, "export", "--model", "mobilenet_v3_small", "--weights", "none", "--format", "onnx",
                           "--static-batch", "2", "--output", fixed)  # fmt: skip
    assert code == 0, err
    repo = tmp_path / "repo"
    export_triton([top_k, fixed], repo, TritonOptions(ensemble=True))
    paths = photo_files[:2]
    with _triton(repo, tmp_path / "tritonserver") as (server, client):
        for name in ("resnet18", "mobilenet_v3_small"):
            _stand_in_for_onnxruntime(repo / name)
            _load_ensemble(server, client, name)

        runtime = load(top_k)
        result = client.infer("resnet18_ensemble", [_images(paths)])
        expected = runtime.predict(paths, top_k=3)
        np.testing.assert_array_equal(result.as_numpy("indices"), [[p.index for p in row] for row in expected])
        np.testing.assert_allclose(
            result.as_numpy("probabilities"), [[p.probability for p in row] for row in expected], atol=1e-5
        )

        runtime = load(fixed)
        assert runtime.manifest.input.fixed_batch == 2
        result = client.infer("mobilenet_v3_small_ensemble", [_images(paths, batched=False)])
        logits = runtime.infer(np.stack([runtime.preprocess(p) for p in paths]))
        np.testing.assert_allclose(result.as_numpy("logits"), logits, rtol=1e-4, atol=1e-4)
