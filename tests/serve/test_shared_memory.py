"""The system shared memory registry on its own: what a region may be, and reading inputs from it."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")  # the serve extra; KServe itself is not imported here (see kserve_fields.py)

from tvdeploy.serve.shared_memory import SHM_DIR, SharedMemoryError, SharedMemoryRegistry, points_at_shared_memory

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX shared memory in /dev/shm")

SIZE = 4096


@pytest.fixture
def segment() -> Iterator[shared_memory.SharedMemory]:
    """A shared memory object as a client creates it (tritonclient uses multiprocessing's)."""
    created = shared_memory.SharedMemory(create=True, size=SIZE)
    yield created
    created.close()
    created.unlink()


def _params(region: str, byte_size: int, offset: int | None = None) -> dict[str, object]:
    params: dict[str, object] = {"shared_memory_region": region, "shared_memory_byte_size": byte_size}
    if offset is not None:
        params["shared_memory_offset"] = offset
    return params


def test_reads_a_tensor_at_the_region_and_input_offsets(segment) -> None:
    values = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    np.ndarray(values.shape, np.float32, buffer=segment.buf, offset=256 + 64)[:] = values
    registry = SharedMemoryRegistry(enabled=True)
    registry.register("r", "/" + segment.name, offset=256, byte_size=1024)
    assert registry.status() == [{"name": "r", "key": "/" + segment.name, "offset": 256, "byte_size": 1024}]
    got = registry.read("input", "FP32", [2, 3, 4], _params("r", values.nbytes, offset=64))
    np.testing.assert_array_equal(got, values)
    np.ndarray(values.shape, np.float32, buffer=segment.buf, offset=256 + 64)[:] = -values  # the client rewrites
    np.testing.assert_array_equal(got, values)  # the request's copy is its own (read with pread, never mapped) ...
    again = registry.read("input", "FP32", [2, 3, 4], _params("r", values.nbytes, offset=64))
    np.testing.assert_array_equal(again, -values)  # ... and the next request reads what the client wrote


def test_reads_length_prefixed_bytes(segment) -> None:
    encoded = b"".join(len(item).to_bytes(4, "little") + item for item in (b"first image", b"second"))
    segment.buf[: len(encoded)] = encoded
    registry = SharedMemoryRegistry(enabled=True)
    registry.register("images", segment.name, offset=0, byte_size=SIZE)  # a key without the leading slash works too
    got = registry.read("image_bytes", "BYTES", [2], _params("images", len(encoded)))
    assert list(got) == [b"first image", b"second"]
    with pytest.raises(SharedMemoryError, match="holds 2 BYTES items"):
        registry.read("image_bytes", "BYTES", [3], _params("images", len(encoded)))
    with pytest.raises(SharedMemoryError, match="runs past the end"):
        registry.read("image_bytes", "BYTES", [2], _params("images", len(encoded) - 1))


def test_registration_errors_name_the_problem(segment) -> None:
    registry = SharedMemoryRegistry(enabled=True)
    cases = {
        "../etc/passwd": ("x", "../etc/passwd", 0, 16, "not a POSIX shared memory name"),
        "missing object": ("x", "/tvdeploy_no_such_region", 0, 16, "No such file"),
        "too big": ("x", segment.name, 8, SIZE, "does not fit"),
        "empty": ("x", segment.name, 0, 0, "byte_size > 0"),
    }
    for case, (name, key, offset, byte_size, message) in cases.items():
        with pytest.raises(SharedMemoryError, match=message):
            registry.register(name, key, offset, byte_size)
        assert registry.status() == [], case
    registry.register("x", segment.name, 0, SIZE)
    with pytest.raises(SharedMemoryError, match="already registered"):
        registry.register("x", segment.name, 0, SIZE)


def test_read_errors_name_the_problem(segment) -> None:
    registry = SharedMemoryRegistry(enabled=True)
    registry.register("r", segment.name, 0, 1024)
    with pytest.raises(SharedMemoryError, match="'nope' is not registered"):
        registry.read("input", "FP32", [4], _params("nope", 16))
    with pytest.raises(SharedMemoryError, match="outside region 'r'"):
        registry.read("input", "FP32", [4], _params("r", 16, offset=1020))
    with pytest.raises(SharedMemoryError, match="is 16 bytes, but shared_memory_byte_size is 12"):
        registry.read("input", "FP32", [4], _params("r", 12))
    with pytest.raises(SharedMemoryError, match="not a valid shared_memory_byte_size"):
        registry.read("input", "FP32", [4], {"shared_memory_region": "r"})


def test_unregister_one_or_all_and_a_disabled_registry(segment) -> None:
    registry = SharedMemoryRegistry(enabled=True)
    for name in ("a", "b", "c"):
        registry.register(name, segment.name, 0, 64)
    registry.unregister("b")
    registry.unregister("never registered")  # not an error, as in Triton
    assert [r["name"] for r in registry.status()] == ["a", "c"]
    with pytest.raises(SharedMemoryError, match="'b' is not registered"):
        registry.status("b")
    registry.unregister()
    assert registry.status() == []
    with pytest.raises(SharedMemoryError, match="start the server with --shared-memory"):
        SharedMemoryRegistry(enabled=False).register("a", segment.name, 0, 64)


def test_points_at_shared_memory() -> None:
    assert points_at_shared_memory(_params("r", 16))
    assert not points_at_shared_memory(None) and not points_at_shared_memory({"binary_data_size": 16})


def _key_of(path: Path) -> str:
    return "/" + path.name


@pytest.fixture
def shm_path() -> Iterator[Path]:
    """A name in /dev/shm that the test makes into something other than a shared memory object."""
    path = SHM_DIR / f"tvdeploy_test_{os.getpid()}_{time.monotonic_ns()}"
    yield path
    if path.is_dir() and not path.is_symlink():
        path.rmdir()
    elif path.exists() or path.is_symlink():
        path.unlink()


def test_a_symbolic_link_is_refused_and_never_followed(shm_path, tmp_path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"root-only secret " * 100)
    secret.chmod(0o600)
    shm_path.symlink_to(secret)
    with pytest.raises(SharedMemoryError, match="is a symbolic link"):
        SharedMemoryRegistry(enabled=True).register("r", _key_of(shm_path), 0, 16)


def test_a_fifo_is_refused_at_once(shm_path) -> None:
    os.mkfifo(shm_path)
    outcome: list[BaseException] = []

    def register() -> None:
        try:
            SharedMemoryRegistry(enabled=True).register("r", _key_of(shm_path), 0, 16)
        except BaseException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=register, daemon=True)  # no writer: an open that blocked would hang here,
    caller.start()  # so the test waits a bounded time and fails instead of hanging
    caller.join(timeout=10)
    if caller.is_alive():
        with open(shm_path, "wb"):  # the writer the blocked open waits for: it returns, and the test fails
            pass
        pytest.fail("opening a FIFO blocked: the server would hang on a client's key")
    assert len(outcome) == 1 and isinstance(outcome[0], SharedMemoryError) and "is a FIFO" in str(outcome[0])


def test_a_directory_is_refused(shm_path) -> None:
    shm_path.mkdir()
    with pytest.raises(SharedMemoryError, match="is a directory"):
        SharedMemoryRegistry(enabled=True).register("r", _key_of(shm_path), 0, 16)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown to another user needs root")
def test_an_object_of_another_user_is_refused(segment) -> None:
    os.chown(SHM_DIR / segment.name, 65534, 65534)  # nobody's, as another process's 0600 object would be
    with pytest.raises(SharedMemoryError, match="belongs to another user"):
        SharedMemoryRegistry(enabled=True).register("r", segment.name, 0, 16)


def test_a_key_with_nul_is_refused() -> None:
    with pytest.raises(SharedMemoryError, match="not a POSIX shared memory name"):
        SharedMemoryRegistry(enabled=True).register("r", "/abc\0def", 0, 16)


def test_a_region_truncated_after_registering_fails_the_read_not_the_process(segment) -> None:
    registry = SharedMemoryRegistry(enabled=True)
    registry.register("r", segment.name, 0, SIZE)
    os.truncate(SHM_DIR / segment.name, 64)  # its owner shrinks it: a mapped read would fault with SIGBUS
    with pytest.raises(SharedMemoryError, match="truncated since it was registered"):
        registry.read("input", "FP32", [1024], _params("r", SIZE))
    np.testing.assert_array_equal(registry.read("input", "FP32", [4], _params("r", 16)), np.zeros(4, np.float32))


def test_reads_are_bounded_by_the_body_limit(segment) -> None:
    registry = SharedMemoryRegistry(enabled=True, max_read_bytes=1024)
    registry.register("r", segment.name, 0, SIZE)
    with pytest.raises(SharedMemoryError, match="more than this server reads for one request"):
        registry.read("input", "FP32", [1024], _params("r", SIZE))


def test_off_by_default(segment) -> None:
    registry = SharedMemoryRegistry()
    for call in (
        lambda: registry.register("r", segment.name, 0, 16),
        registry.status,
        lambda: registry.read("input", "FP32", [4], _params("r", 16)),
    ):
        with pytest.raises(SharedMemoryError, match="system shared memory is off"):
            call()


@pytest.mark.slow
def test_registrations_cannot_exhaust_the_servers_descriptors(resnet18_artifacts) -> None:
    """A server under a low descriptor limit holds a bounded number of regions; any number of registration
    attempts later it still accepts new clients and infers, and each refusal is one log line."""
    import http.client
    import json as json_module
    import re
    import resource
    import subprocess
    import sys

    from tests.serve.server_process import collect_lines, wait_until_ok

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    key = f"/tvdeploy_test_fd_{os.getpid()}"
    path = SHM_DIR / key.lstrip("/")
    path.write_bytes(b"\0" * 4096)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tvdeploy", "serve", str(resnet18_artifacts["onnx"]), "--port", "0", "--shared-memory"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=low_limit,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        match = re.search(r"http://([\d.]+):(\d+)", proc.stdout.readline())
        assert match, "the server printed no address"
        host, port = match.group(1), int(match.group(2))
        log = collect_lines(proc.stderr)
        wait_until_ok(f"http://{host}:{port}/v2/health/ready", proc, log)
        connection = http.client.HTTPConnection(host, port, timeout=30)
        statuses = []
        body = json_module.dumps({"key": key, "offset": 0, "byte_size": 4096})
        for index in range(600):  # more than the descriptors the process may open
            connection.request("POST", f"/v2/systemsharedmemory/region/r{index}/register", body=body)
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
        held = statuses.count(200)
        print(f"\nregions held under ulimit -n 256: {held} of 600 registrations")
        assert 0 < held < 256 and statuses.count(400) == 600 - held
        assert statuses[held:] == [400] * (600 - held)  # the first ones fit, every later one is refused
        connection.request("GET", "/v2/systemsharedmemory/region/r0/status")
        response = connection.getresponse()
        assert response.status == 200 and json_module.loads(response.read())[0]["name"] == "r0"
        for _ in range(20):  # new clients are still answered
            fresh = http.client.HTTPConnection(host, port, timeout=10)
            fresh.request("GET", "/v2/health/ready")
            assert fresh.getresponse().status == 200
            fresh.close()
        payload = json_module.dumps({"inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32",
                                                 "data": [0.0] * (3 * 224 * 224)}]})  # fmt: skip
        connection.request("POST", "/v2/models/resnet18/infer", body=payload)
        response = connection.getresponse()
        assert response.status == 200 and "outputs" in json_module.loads(response.read())
        connection.request("POST", "/v2/systemsharedmemory/unregister")
        assert connection.getresponse().status == 200
        time.sleep(0.5)  # the log lines of the last requests
        refusals = [line for line in log if "holds at most" in line]
        assert len(refusals) == 600 - held, "".join(log[-5:])  # one line per refused call, not two
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        path.unlink(missing_ok=True)
