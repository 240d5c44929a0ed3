"""`tvdeploy serve` as a user runs it: a real server process on a free loopback port, and the stock tritonclient."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

tritonclient_http = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException, serialize_byte_tensor, serialized_byte_size  # noqa: E402

from tests.serve.classification import assert_classification_rows  # noqa: E402
from tests.serve.server_process import collect_lines, wait_until_ok  # noqa: E402
from tvdeploy.runtime import load  # noqa: E402


class Server:
    """A `tvdeploy serve` subprocess; ``url`` is host:port."""

    def __init__(self, *argv: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tvdeploy", "serve", *argv, "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # "serving on http://127.0.0.1:PORT"
        match = re.search(r"http://([\d.]+):(\d+)", line)
        assert match, f"no address in {line!r}; stderr: {self.proc.stderr.read() if self.proc.stderr else ''}"
        self.host, self.port = match.group(1), int(match.group(2))
        self.url = f"{self.host}:{self.port}"
        grpc = re.search(r"grpc://([\d.]+:\d+)", line)
        self.grpc_url = grpc.group(1) if grpc else None
        self.started = time.perf_counter()
        self.stderr = collect_lines(self.proc.stderr)

    def wait_ready(self, timeout: float = 60) -> float:
        wait_until_ok(f"http://{self.url}/v2/health/ready", self.proc, self.stderr, timeout)
        return time.perf_counter() - self.started

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


def post(url: str, body: bytes | Iterable[bytes], content_type: str = "application/json") -> tuple[int, dict, dict]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), {k.lower(): v for k, v in exc.headers.items()}


@pytest.fixture(scope="module")
def server(resnet18_artifacts) -> Iterator[Server]:
    srv = Server(
        str(resnet18_artifacts["onnx"]), "--max-pixels", "1000000", "--max-body-mb", "8", "--instances", "2",
        "--grpc-port", "0", "--shared-memory",
    )  # fmt: skip
    srv.wait_ready()
    yield srv
    assert srv.stop() == 0


@pytest.fixture(scope="module")
def offline(resnet18_artifacts):
    return load(resnet18_artifacts["onnx"])


@pytest.fixture
def client(server):
    return tritonclient_http.InferenceServerClient(server.url, concurrency=8)


def _tensor_input(batch: np.ndarray, binary: bool = True):
    tensor = tritonclient_http.InferInput("input", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch, binary_data=binary)
    return tensor


def _image_input(paths: list[Path]):
    data = np.array([p.read_bytes() for p in paths], dtype=np.object_)
    tensor = tritonclient_http.InferInput("image_bytes", [len(paths)], "BYTES")
    tensor.set_data_from_numpy(data)
    return tensor


def test_health_and_metadata(client, server) -> None:
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("resnet18")
    assert server.host == "127.0.0.1"  # loopback unless asked
    metadata = client.get_model_metadata("resnet18")
    assert metadata["inputs"] == [
        {"name": "input", "datatype": "FP32", "shape": [-1, 3, 224, 224]},
        {"name": "image_bytes", "datatype": "BYTES", "shape": [-1]},
    ]
    assert metadata["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 1000]}]
    assert "name" in client.get_server_metadata()


@pytest.mark.parametrize("binary", [True, False])
def test_infer_equals_offline_onnx_runtime(client, offline, binary) -> None:
    rows = 3 if binary else 1  # JSON spells each float out: a batch of 3 is ~9 MB
    batch = np.random.default_rng(1).standard_normal((rows, 3, 224, 224), dtype=np.float32)
    result = client.infer("resnet18", [_tensor_input(batch, binary)])
    np.testing.assert_allclose(result.as_numpy("logits"), offline.infer(batch), atol=1e-5)


def test_classification_extension_and_image_bytes(client, offline, photo_files) -> None:
    requested = tritonclient_http.InferRequestedOutput("logits", class_count=3)
    result = client.infer("resnet18", [_image_input(photo_files[:2])], outputs=[requested])
    rows = result.as_numpy("logits")
    assert rows.shape == (2, 3)
    expected = offline.predict(photo_files[:2], top_k=3)
    logits = offline.infer(np.stack([offline.preprocess(p) for p in photo_files[:2]]))
    assert_classification_rows(rows, expected, logits)


def test_grpc_serves_the_same_protocol(server, offline, photo_files) -> None:
    grpc = pytest.importorskip("tritonclient.grpc")
    client = grpc.InferenceServerClient(server.grpc_url)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("resnet18")
    assert [i.name for i in client.get_model_metadata("resnet18").inputs] == ["input", "image_bytes"]
    batch = np.random.default_rng(3).standard_normal((2, 3, 224, 224), dtype=np.float32)
    tensor = grpc.InferInput("input", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch)
    result = client.infer("resnet18", [tensor])
    np.testing.assert_allclose(result.as_numpy("logits"), offline.infer(batch), atol=1e-5)
    images = grpc.InferInput("image_bytes", [1], "BYTES")
    images.set_data_from_numpy(np.array([photo_files[0].read_bytes()], dtype=np.object_))
    top = client.infer("resnet18", [images], outputs=[grpc.InferRequestedOutput("logits", class_count=2)])
    expected = offline.predict(photo_files[0], top_k=2)[0]
    assert [int(item.decode().split(":")[1]) for item in top.as_numpy("logits")[0]] == [p.index for p in expected]
    wrong = grpc.InferInput("pixels", [1, 3, 224, 224], "FP32")
    wrong.set_data_from_numpy(batch[:1])
    with pytest.raises(InferenceServerException, match="unknown input 'pixels'") as raised:
        client.infer("resnet18", [wrong])
    assert raised.value.status() == "StatusCode.INVALID_ARGUMENT"
    with pytest.raises(InferenceServerException) as raised:
        client.infer("nope", [tensor])
    assert raised.value.status() == "StatusCode.NOT_FOUND"
    text = urllib.request.urlopen(f"http://{server.url}/metrics", timeout=5).read().decode()
    assert re.search(r'tvdeploy_requests_total\{method="gRPC",route="infer",status="OK"\} [1-9]', text)
    assert re.search(r'tvdeploy_requests_total\{method="gRPC",route="infer",status="INVALID_ARGUMENT"\} [1-9]', text)


def test_system_shared_memory_inputs_with_the_stock_client(server, client, offline, photo_files) -> None:
    """Triton's system shared memory extension as tritonclient's own shared memory helpers drive it."""
    shm = pytest.importorskip("tritonclient.utils.shared_memory")
    batch = np.random.default_rng(4).standard_normal((2, 3, 224, 224), dtype=np.float32)
    images = serialize_byte_tensor(np.array([photo_files[0].read_bytes()], dtype=np.object_))  # length-prefixed
    region = shm.create_shared_memory_region("tvdeploy_test", "/tvdeploy_test", batch.nbytes + 2**20)
    try:
        shm.set_shared_memory_region(region, [batch])
        shm.set_shared_memory_region(region, [images], offset=batch.nbytes)
        client.register_system_shared_memory("tvdeploy_test", "/tvdeploy_test", batch.nbytes + 2**20)
        assert client.get_system_shared_memory_status() == [
            {"name": "tvdeploy_test", "key": "/tvdeploy_test", "offset": 0, "byte_size": batch.nbytes + 2**20}
        ]
        tensor = tritonclient_http.InferInput("input", list(batch.shape), "FP32")
        tensor.set_shared_memory("tvdeploy_test", batch.nbytes)
        result = client.infer("resnet18", [tensor])
        np.testing.assert_allclose(result.as_numpy("logits"), offline.infer(batch), atol=1e-5)

        encoded = tritonclient_http.InferInput("image_bytes", [1], "BYTES")
        encoded.set_shared_memory("tvdeploy_test", serialized_byte_size(images), offset=batch.nbytes)
        top = client.infer(
            "resnet18", [encoded], outputs=[tritonclient_http.InferRequestedOutput("logits", class_count=2)]
        )
        expected = offline.predict(photo_files[0], top_k=2)[0]
        assert [int(item.decode().split(":")[1]) for item in top.as_numpy("logits")[0]] == [p.index for p in expected]

        into_shm = tritonclient_http.InferRequestedOutput("logits")
        into_shm.set_shared_memory("tvdeploy_test", 8000)
        with pytest.raises(InferenceServerException, match="shared memory is for inputs"):
            client.infer("resnet18", [tensor], outputs=[into_shm])
        with pytest.raises(InferenceServerException, match="does not fit"):
            client.register_system_shared_memory("too_big", "/tvdeploy_test", batch.nbytes + 2**20 + 1)

        grpc = pytest.importorskip("tritonclient.grpc")  # a region registered over HTTP serves gRPC requests too
        grpc_tensor = grpc.InferInput("input", list(batch.shape), "FP32")
        grpc_tensor.set_shared_memory("tvdeploy_test", batch.nbytes)
        grpc_result = grpc.InferenceServerClient(server.grpc_url).infer("resnet18", [grpc_tensor])
        np.testing.assert_allclose(grpc_result.as_numpy("logits"), offline.infer(batch), atol=1e-5)

        client.unregister_system_shared_memory("tvdeploy_test")
        assert client.get_system_shared_memory_status() == []
        with pytest.raises(InferenceServerException, match="'tvdeploy_test' is not registered"):
            client.infer("resnet18", [tensor])
    finally:
        client.unregister_system_shared_memory()
        shm.destroy_shared_memory_region(region)


def test_shared_memory_refuses_what_is_not_a_clients_region(server, client, tmp_path) -> None:
    """Hostile keys against the real server (started with --shared-memory): each a 400 at once, nothing read
    through them, and a region its owner truncates after registering fails that request, not the process."""
    import os
    from multiprocessing import shared_memory as posix_shm

    assert "system_shared_memory" in client.get_server_metadata()["extensions"]
    secret = tmp_path / "secret"
    secret.write_bytes(b"secret" * 1000)
    secret.chmod(0o600)
    base = Path("/dev/shm") / f"tvdeploy_hostile_{os.getpid()}"
    made = {"link": base.with_name(base.name + "_link"), "fifo": base.with_name(base.name + "_fifo"),
            "dir": base.with_name(base.name + "_dir")}  # fmt: skip
    made["link"].symlink_to(secret)
    os.mkfifo(made["fifo"])
    made["dir"].mkdir()
    try:
        for kind, message in (("link", "symbolic link"), ("fifo", "is a FIFO"), ("dir", "is a directory")):
            start = time.perf_counter()
            with pytest.raises(InferenceServerException, match=message) as raised:
                client.register_system_shared_memory(kind, "/" + made[kind].name, 16)
            assert raised.value.status() == "400" and time.perf_counter() - start < 1, kind
        assert client.get_system_shared_memory_status() == []

        segment = posix_shm.SharedMemory(create=True, size=3 * 224 * 224 * 4)
        try:
            if os.geteuid() == 0:  # another user's object (a 0600 object of another process)
                os.chown(f"/dev/shm/{segment.name}", 65534, 65534)
                with pytest.raises(InferenceServerException, match="belongs to another user"):
                    client.register_system_shared_memory("other", "/" + segment.name, segment.size)
                os.chown(f"/dev/shm/{segment.name}", 0, 0)
            client.register_system_shared_memory("shrinks", "/" + segment.name, segment.size)
            os.truncate(f"/dev/shm/{segment.name}", 1024)  # a mapping of it would now SIGBUS on read
            tensor = tritonclient_http.InferInput("input", [1, 3, 224, 224], "FP32")
            tensor.set_shared_memory("shrinks", segment.size)
            with pytest.raises(InferenceServerException, match="truncated since it was registered") as raised:
                client.infer("resnet18", [tensor])
            assert raised.value.status() == "400"
            assert client.is_server_live() and client.is_model_ready("resnet18")  # the server is still up
        finally:
            client.unregister_system_shared_memory()
            segment.close()
            segment.unlink()
    finally:
        made["link"].unlink()
        made["fifo"].unlink()
        made["dir"].rmdir()


def test_image_upload_returns_the_runtimes_top_k(server, offline, photo_files) -> None:
    status, body, _ = post(f"http://{server.url}/tvdeploy/models/resnet18/classify?top_k=2",
                           photo_files[0].read_bytes(), "image/jpeg")  # fmt: skip
    assert status == 200
    expected = [p.to_dict() for p in offline.predict(photo_files[0], top_k=2)[0]]
    got = body["results"][0]["predictions"]
    assert [p["index"] for p in got] == [p["index"] for p in expected]
    assert [p["probability"] for p in got] == pytest.approx([p["probability"] for p in expected], abs=1e-5)


def _big_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (1200, 1000), (10, 20, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_bad_requests_get_4xx_in_the_protocols_error_format(server, client) -> None:
    infer = f"http://{server.url}/v2/models/resnet18/infer"
    tensor = {"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": [0.0] * (3 * 224 * 224)}
    cases = {
        "malformed json": (b'{"inputs": [', 400, "malformed"),
        "wrong name": (json.dumps({"inputs": [{**tensor, "name": "pixels"}]}).encode(), 400, "unknown input 'pixels'"),
        "wrong shape": (json.dumps({"inputs": [{**tensor, "shape": [1, 3, 200, 224]}]}).encode(), 400, "has shape"),
        "wrong datatype": (json.dumps({"inputs": [{**tensor, "datatype": "INT32"}]}).encode(), 400, "takes FP32"),
        "short data": (json.dumps({"inputs": [{**tensor, "data": [1.0, 2.0]}]}).encode(), 400, "does not match"),
        "too many rows": (
            json.dumps({"inputs": [{**tensor, "shape": [9, 3, 224, 224], "data": [0.0] * (9 * 3 * 224 * 224)}]}).encode(),
            400, "max batch size 8",
        ),
    }  # fmt: skip
    for name, (body, status, message) in cases.items():
        got_status, got, _ = post(infer, body)
        assert (got_status, message in got.get("error", "")) == (status, True), (name, got_status, got)
    classify = f"http://{server.url}/tvdeploy/models/resnet18/classify"
    status, got, _ = post(classify, b"not an image", "image/jpeg")
    assert status == 400 and "not an image" in got["error"]
    status, got, _ = post(classify, _big_png(), "image/png")
    assert status == 400 and "pixels" in got["error"]
    status, got, _ = post(classify, b"\0" * (9 * 1024 * 1024), "image/jpeg")
    assert status == 413 and "--max-body-mb" in got["error"]
    for url in (classify, infer):  # chunked: no Content-Length, so the limit is found while reading
        status, got, _ = post(url, iter([b"\0" * (1024 * 1024)] * 9), "application/octet-stream")
        assert status == 413 and "--max-body-mb" in got["error"], url
    with pytest.raises(InferenceServerException, match="nope"):
        client.get_model_metadata("nope")
    assert client.is_server_live()


def _infer_requests(server) -> dict[str, float]:
    """The server's count of infer requests by status."""
    text = urllib.request.urlopen(f"http://{server.url}/metrics", timeout=5).read().decode()
    return {
        status: float(count)
        for status, count in re.findall(
            r'tvdeploy_requests_total\{method="POST",route="infer",status="(\d+)"\} (\S+)', text
        )
    }


def test_load_8_clients_zero_errors(server, offline) -> None:
    batch = np.random.default_rng(2).standard_normal((1, 3, 224, 224), dtype=np.float32)
    expected = offline.infer(batch)
    before = _infer_requests(server)

    def client_thread(_: int) -> list[float]:  # one client per thread: tritonclient.http's are not thread-safe
        own = tritonclient_http.InferenceServerClient(server.url)
        latencies = []
        for _ in range(50):
            start = time.perf_counter()
            result = own.infer("resnet18", [_tensor_input(batch)])
            latencies.append(time.perf_counter() - start)
            np.testing.assert_allclose(result.as_numpy("logits"), expected, atol=1e-5)
        return latencies

    start = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        latencies = [t for per_client in pool.map(client_thread, range(8)) for t in per_client]  # raises on errors
    elapsed = time.perf_counter() - start
    p50, p99 = np.percentile(latencies, [50, 99]) * 1000
    print(f"\n8 clients x 50 requests: {400 / elapsed:.1f} req/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    after = _infer_requests(server)
    counted = {status: after[status] - before.get(status, 0.0) for status in after}
    assert counted.get("200") == 400  # the server answered every request, and only these, with 200
    assert not {status: n for status, n in counted.items() if status != "200" and n}, counted


def test_metrics_count_requests_batches_and_queue(server, client) -> None:
    client.infer("resnet18", [_tensor_input(np.zeros((1, 3, 224, 224), np.float32))])
    text = urllib.request.urlopen(f"http://{server.url}/metrics", timeout=5).read().decode()
    assert re.search(r'tvdeploy_requests_total\{method="POST",route="infer",status="200"\} [1-9]', text)
    assert re.search(r'tvdeploy_requests_total\{method="POST",route="infer",status="400"\} [1-9]', text)
    assert re.search(r'tvdeploy_batch_size_count\{model="resnet18"\} [1-9]', text)
    assert 'tvdeploy_queue_depth{model="resnet18"} 0.0' in text
    assert "tvdeploy_request_duration_seconds_bucket" in text


def test_overload_answers_503_and_recovers(resnet18_artifacts) -> None:
    srv = Server(
        str(resnet18_artifacts["onnx"]), "--max-queue", "1", "--max-batch-size", "1", "--max-queue-delay-ms", "0",
        "--grpc-port", "0",
    )  # fmt: skip
    try:
        srv.wait_ready()
        url = f"http://{srv.url}/v2/models/resnet18/infer"
        body = json.dumps({"inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32",
                                       "data": [0.0] * (3 * 224 * 224)}]}).encode()  # fmt: skip
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda _: post(url, body), range(32)))
        statuses = [status for status, _, _ in results]
        assert 503 in statuses and 200 in statuses and set(statuses) <= {200, 503}
        refused = next(r for r in results if r[0] == 503)
        assert refused[2].get("retry-after") == "1" and "overloaded" in refused[1]["error"]
        assert post(url, body)[0] == 200  # still up, serving again

        grpc = pytest.importorskip("tritonclient.grpc")
        client = grpc.InferenceServerClient(srv.grpc_url)
        tensor = grpc.InferInput("input", [1, 3, 224, 224], "FP32")
        tensor.set_data_from_numpy(np.zeros((1, 3, 224, 224), np.float32))

        def call(_: int) -> str:
            try:
                client.infer("resnet18", [tensor])
                return "OK"
            except InferenceServerException as exc:
                return f"{exc.status()} {exc.message()}"

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(call, range(32)))
        assert "OK" in answers
        assert any(a.startswith("StatusCode.UNAVAILABLE") and "overloaded" in a for a in answers), answers
    finally:
        assert srv.stop() == 0


def _queued_rows(srv: Server, model: str) -> float:
    with urllib.request.urlopen(f"http://{srv.url}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = re.search(r'^tvdeploy_queue_depth\{model="' + model + r'"\} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_graceful_shutdown_finishes_in_flight_requests(resnet18_artifacts, photo_files) -> None:
    # a long batching delay holds the four requests in the queue, so SIGTERM certainly finds them in flight
    srv = Server(str(resnet18_artifacts["onnx"]), "--max-batch-size", "8", "--max-queue-delay-ms", "2000")
    srv.wait_ready()
    url = f"http://{srv.url}/tvdeploy/models/resnet18/classify"
    with ThreadPoolExecutor(4) as pool:
        futures = [
            pool.submit(post, url, photo_files[i % len(photo_files)].read_bytes(), "image/jpeg") for i in range(4)
        ]
        deadline = time.monotonic() + 30
        while _queued_rows(srv, "resnet18") < 4:
            assert time.monotonic() < deadline and not any(f.done() for f in futures), "requests never queued"
            time.sleep(0.02)
        srv.proc.send_signal(signal.SIGTERM)
        statuses = [f.result()[0] for f in futures]
    assert statuses == [200] * 4
    assert srv.proc.wait(timeout=30) == 0


def test_cold_server_is_ready_fast(resnet18_artifacts) -> None:
    srv = Server(str(resnet18_artifacts["onnx"]))
    try:
        seconds = srv.wait_ready()
        print(f"\nresnet18 server ready {seconds:.2f} s after it listened")
        assert seconds < 10  # generous on a shared machine; docs/serving.md has resnet50 measured quietly
        client = tritonclient_http.InferenceServerClient(srv.url)
        with pytest.raises(InferenceServerException, match="start the server with --shared-memory"):
            client.register_system_shared_memory("r", "/tvdeploy_unused", 16)
    finally:
        srv.stop()
