"""The system shared memory registry on its own: what a region may be, and reading inputs from it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from multiprocessing import shared_memory

import numpy as np
import pytest

pytest.importorskip("fastapi")  # the serve extra; KServe itself is not imported here (see kserve_fields.py)

from tvdeploy.serve.shared_memory import SharedMemoryError, SharedMemoryRegistry, points_at_shared_memory

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


def test_reads_a_tensor_in_place_at_the_region_and_input_offsets(segment) -> None:
    values = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    np.ndarray(values.shape, np.float32, buffer=segment.buf, offset=256 + 64)[:] = values
    registry = SharedMemoryRegistry()
    registry.register("r", "/" + segment.name, offset=256, byte_size=1024)
    assert registry.status() == [{"name": "r", "key": "/" + segment.name, "offset": 256, "byte_size": 1024}]
    got = registry.read("input", "FP32", [2, 3, 4], _params("r", values.nbytes, offset=64))
    np.testing.assert_array_equal(got, values)
    assert not got.flags.writeable  # mapped read-only: the server never writes into the client's memory
    np.ndarray(values.shape, np.float32, buffer=segment.buf, offset=256 + 64)[:] = -values  # the client rewrites
    np.testing.assert_array_equal(got, -values)  # ... and the server sees it: the tensor was not copied


def test_reads_length_prefixed_bytes(segment) -> None:
    encoded = b"".join(len(item).to_bytes(4, "little") + item for item in (b"first image", b"second"))
    segment.buf[: len(encoded)] = encoded
    registry = SharedMemoryRegistry()
    registry.register("images", segment.name, offset=0, byte_size=SIZE)  # a key without the leading slash works too
    got = registry.read("image_bytes", "BYTES", [2], _params("images", len(encoded)))
    assert list(got) == [b"first image", b"second"]
    with pytest.raises(SharedMemoryError, match="holds 2 BYTES items"):
        registry.read("image_bytes", "BYTES", [3], _params("images", len(encoded)))
    with pytest.raises(SharedMemoryError, match="runs past the end"):
        registry.read("image_bytes", "BYTES", [2], _params("images", len(encoded) - 1))


def test_registration_errors_name_the_problem(segment) -> None:
    registry = SharedMemoryRegistry()
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
    registry = SharedMemoryRegistry()
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
    registry = SharedMemoryRegistry()
    for name in ("a", "b", "c"):
        registry.register(name, segment.name, 0, 64)
    registry.unregister("b")
    registry.unregister("never registered")  # not an error, as in Triton
    assert [r["name"] for r in registry.status()] == ["a", "c"]
    with pytest.raises(SharedMemoryError, match="'b' is not registered"):
        registry.status("b")
    registry.unregister()
    assert registry.status() == []
    with pytest.raises(SharedMemoryError, match="--no-shared-memory"):
        SharedMemoryRegistry(enabled=False).register("a", segment.name, 0, 64)


def test_points_at_shared_memory() -> None:
    assert points_at_shared_memory(_params("r", 16))
    assert not points_at_shared_memory(None) and not points_at_shared_memory({"binary_data_size": 16})
