"""`tvdeploy serve` against hostile and broken clients: each gets its 4xx in the protocol's error format (or a
closed connection), the server stays up and answers everyone else, and its log holds no traceback."""

from __future__ import annotations

import contextlib
import io
import json
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

tritonclient_http = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

from tests.serve.test_server import Server, post  # noqa: E402

READ_TIMEOUT_S = 2


@pytest.fixture(scope="module")
def hostile(resnet18_artifacts) -> Iterator[Server]:
    """A server with the default options (shared memory off) but a short read timeout and a small pixel budget."""
    srv = Server(
        str(resnet18_artifacts["onnx"]), "--read-timeout", str(READ_TIMEOUT_S), "--max-request-pixels", "2000000",
        "--max-header-kb", "16", "--grpc-port", "0",
    )  # fmt: skip
    srv.wait_ready()
    yield srv
    assert srv.stop() == 0
    log = "".join(srv.stderr)
    assert "Traceback" not in log, log[-4000:]  # every hostile input above was one log line at most
    assert "deprecated" not in log.lower(), log[-4000:]  # KServe's ORJSONResponse warnings are silenced


def _alive(server: Server) -> None:
    assert urllib.request.urlopen(f"http://{server.url}/v2/health/live", timeout=5).status == 200


def _raw(server: Server, data: bytes, timeout: float = 10, close_write: bool = False) -> bytes:
    """Send ``data`` on a fresh connection and return what comes back until the server closes or ``timeout``."""
    with socket.create_connection((server.host, server.port), timeout=timeout) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # answered and closed while we sent
            sock.sendall(data)
        if close_write:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return answer


def _status(answer: bytes) -> int:
    match = re.match(rb"HTTP/1\.1 (\d{3})", answer)
    assert match, answer[:200]
    return int(match.group(1))


def _error(answer: bytes) -> str:
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header says ``width`` x ``height`` and whose data is cut off: any decode of it fails, so an
    answer about its size proves that only its header was read."""
    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()[:64]


def test_server_metadata_names_the_extensions_served(hostile) -> None:
    client = tritonclient_http.InferenceServerClient(hostile.url)
    extensions = client.get_server_metadata()["extensions"]
    assert "classification" in extensions and "model_repository" in extensions
    assert "system_shared_memory" not in extensions  # off unless --shared-memory
    assert client.get_model_repository_index() == [{"name": "resnet18", "version": "1", "state": "READY", "reason": ""}]
    for action in ("load", "unload"):
        with pytest.raises(InferenceServerException, match="not loaded or unloaded through the API") as raised:
            getattr(client, f"{action}_model")("resnet18")
        assert raised.value.status() == "400"
    assert client.is_model_ready("resnet18")  # an unload request did not take the model away


def test_shared_memory_is_off_by_default(hostile, tmp_path) -> None:
    client = tritonclient_http.InferenceServerClient(hostile.url)
    with pytest.raises(InferenceServerException, match="system shared memory is off") as raised:
        client.register_system_shared_memory("r", "/tvdeploy_any", 16)
    assert raised.value.status() == "400"
    tensor = tritonclient_http.InferInput("input", [1, 3, 224, 224], "FP32")
    tensor.set_shared_memory("r", 3 * 224 * 224 * 4)
    with pytest.raises(InferenceServerException, match="system shared memory is off"):
        client.infer("resnet18", [tensor])


def test_images_over_the_batch_or_pixel_budget_are_refused_before_decoding(hostile) -> None:
    client = tritonclient_http.InferenceServerClient(hostile.url)
    images = tritonclient_http.InferInput("image_bytes", [16], "BYTES")
    images.set_data_from_numpy(np.array([_png_header_only(9000, 9000)] * 16, dtype=np.object_))
    with pytest.raises(InferenceServerException, match="16 rows is larger than this server's max batch size 8"):
        client.infer("resnet18", [images])
    two = tritonclient_http.InferInput("image_bytes", [2], "BYTES")
    two.set_data_from_numpy(np.array([_png_header_only(1000, 1500)] * 2, dtype=np.object_))
    with pytest.raises(InferenceServerException, match="3,000,000 pixels, more than this server decodes") as raised:
        client.infer("resnet18", [two])
    assert raised.value.status() == "400"
    upload = f"http://{hostile.url}/tvdeploy/models/resnet18/classify"
    status, body, _ = post(upload, _png_header_only(2000, 1500), "image/png")
    assert status == 400 and "--max-request-pixels" in body["error"]
    grpc = pytest.importorskip("tritonclient.grpc")
    grpc_images = grpc.InferInput("image_bytes", [16], "BYTES")
    grpc_images.set_data_from_numpy(np.array([_png_header_only(9000, 9000)] * 16, dtype=np.object_))
    with pytest.raises(InferenceServerException, match="max batch size 8") as raised:
        grpc.InferenceServerClient(hostile.grpc_url).infer("resnet18", [grpc_images])
    assert raised.value.status() == "StatusCode.INVALID_ARGUMENT"


def test_malformed_requests_are_4xx_in_the_protocols_error_format(hostile) -> None:
    infer = f"http://{hostile.url}/v2/models/resnet18/infer"
    tensor = {"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": [0.0] * (3 * 224 * 224)}
    cases = {
        "shape with a string": {"inputs": [{**tensor, "shape": ["a", 3, 224, 224]}]},
        "shape a number": {"inputs": [{**tensor, "shape": 5}]},
        "outputs not a list": {"inputs": [tensor], "outputs": "logits"},
        "outputs not objects": {"inputs": [tensor], "outputs": [5]},
        "BYTES data not strings": {"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES",
                                               "data": [20000000000]}]},  # today: bytes(2e10), 20 GB
        "id not a string": {"id": {"a": 1}, "inputs": [tensor]},
        "inputs not a list": {"inputs": {"name": "input"}},
        "not an object": [1, 2, 3],
        "unknown datatype": {"inputs": [{**tensor, "datatype": "FLOAT"}]},
    }  # fmt: skip
    for name, request in cases.items():
        status, body, _ = post(infer, json.dumps(request).encode())
        assert status == 400 and isinstance(body.get("error"), str) and body["error"], (name, status, body)
    for header in ("²", "9" * 5000, "-1"):
        req = urllib.request.Request(
            infer, data=b"{}", method="POST", headers={"Inference-Header-Content-Length": header}
        )
        try:
            urllib.request.urlopen(req, timeout=10)
            raise AssertionError(f"header {header[:10]!r} accepted")
        except urllib.error.HTTPError as exc:
            assert exc.code == 400 and "Inference-Header-Content-Length" in json.loads(exc.read())["error"]
    register = f"http://{hostile.url}/v2/systemsharedmemory/region/r/register"
    status, body, _ = post(register, json.dumps({"key": "/abc\u0000def", "byte_size": 16}).encode())
    assert status == 400 and "error" in body
    for url, method in ((f"http://{hostile.url}/nowhere", "GET"), (f"http://{hostile.url}/v2/models/nope", "GET")):
        try:
            urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10)
            raise AssertionError(f"{url} answered 200")
        except urllib.error.HTTPError as exc:
            assert exc.code == 404 and isinstance(json.loads(exc.read())["error"], str), url
    _alive(hostile)


def test_a_huge_header_gets_431_and_others_are_served_meanwhile(hostile) -> None:
    head = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (8 * 1024 * 1024) + b"\r\n\r\n"
    answer = _raw(hostile, head)
    assert _status(answer) == 431 and "16384 bytes" in _error(answer)
    many = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(3000)) + b"\r\n"
    assert _status(_raw(hostile, many)) == 431  # many small headers add up too
    _alive(hostile)


def test_a_declared_body_over_the_limit_is_answered_from_the_header(hostile) -> None:
    head = b"POST /v2/models/resnet18/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n"
    start = time.monotonic()
    answer = _raw(hostile, head, timeout=10)  # no body follows: the answer must not wait for one
    assert _status(answer) == 413 and "--max-body-mb" in _error(answer)
    assert b"connection: close" in answer.lower()
    assert time.monotonic() - start < READ_TIMEOUT_S  # answered at once, not by the read timeout
    _alive(hostile)


def test_a_slow_client_is_cut_off_by_the_read_timeout(hostile) -> None:
    with socket.create_connection((hostile.host, hostile.port), timeout=READ_TIMEOUT_S * 5) as sock:
        sock.sendall(b"POST /v2/models/resnet18/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        answer = sock.recv(65536)  # nothing more is sent
    assert _status(answer) == 408 and f"within {READ_TIMEOUT_S} s" in _error(answer)
    _alive(hostile)


def test_access_log_escapes_control_characters_and_counts_disconnects(hostile) -> None:
    _raw(hostile, b"GET /forged%0atvdeploy:%20fake%20line HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    # a client that goes away in the middle of its body
    _raw(hostile, b"POST /v2/models/resnet18/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{",
         timeout=0.5, close_write=True)  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any("forged" in line for line in hostile.stderr):
        time.sleep(0.05)
    assert any("/forged\\ntvdeploy: fake line" in line for line in hostile.stderr)
    assert not any(line.startswith("tvdeploy: fake line") for line in hostile.stderr)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = urllib.request.urlopen(f"http://{hostile.url}/metrics", timeout=5).read().decode()
        if re.search(r'tvdeploy_requests_total\{method="POST",route="infer",status="499"\} [1-9]', text):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("a client that went away mid-body was not counted as 499")
    assert not re.search(r'tvdeploy_requests_total\{method="POST",route="infer",status="500"\}', text)


def test_expected_errors_log_one_line_without_a_traceback(hostile, photo_files) -> None:
    upload = f"http://{hostile.url}/tvdeploy/models/resnet18/classify"
    assert post(upload, b"not an image", "image/jpeg")[0] == 400
    assert post(f"http://{hostile.url}/tvdeploy/models/nope/classify", b"x", "image/jpeg")[0] == 404
    with pytest.raises(InferenceServerException, match="nope"):
        tritonclient_http.InferenceServerClient(hostile.url).get_model_metadata("nope")
    log = "".join(hostile.stderr)
    assert "Traceback" not in log and "not an image Pillow can decode" in log


def test_a_model_that_fails_to_load_leaves_the_server_live_and_not_ready(resnet18_artifacts, tmp_path) -> None:
    import shutil

    artifact = tmp_path / "tampered"
    shutil.copytree(resnet18_artifacts["onnx"], artifact)
    with (artifact / "model.onnx").open("r+b") as model:
        model.seek(100)
        model.write(b"tampered")
    srv = Server(str(artifact))
    try:
        url = f"http://{srv.url}/v2/health/ready"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any("failed to load" in line for line in srv.stderr):
            time.sleep(0.05)
        for _ in range(5):  # probes keep answering 503, one access line each
            with pytest.raises(urllib.error.HTTPError) as raised:
                urllib.request.urlopen(url, timeout=5)
            assert raised.value.code == 503 and "not ready" in json.loads(raised.value.read())["error"]
        _alive(srv)
        [entry] = tritonclient_http.InferenceServerClient(srv.url).get_model_repository_index()
        assert entry["state"] == "UNAVAILABLE" and "sha256" in entry["reason"]
    finally:
        srv.stop()
    log = "".join(srv.stderr)
    assert log.count('/v2/health/ready" 503') >= 5 and "Traceback" not in log and "ServerNotReady" not in log, log
