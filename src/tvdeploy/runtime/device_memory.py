"""Memory on the device and pinned memory on the host, through the CUDA runtime (``libcudart``) and ctypes.

ONNX Runtime's Python API copies a host array to the device with a pageable, synchronous copy
(``OrtValue.update_inplace``) and has no pinned host buffers and no device-to-device copy. What the device path
needs beyond it lives here, torch-free:

- **pinned staging**: host buffers allocated with ``cudaHostAlloc`` that a caller fills (a batch of images stacked
  in place), copied to the device with ``cudaMemcpyAsync`` on a non-blocking stream of the calling thread, so that
  the copy runs at the bus's speed and overlaps another thread's compute;
- **device-to-device copies**: decoded images gathered into one batch buffer on the device.

:class:`HostStandIn` implements the same interface on host memory: the tests run every path through it with the
CPU standing in for the device (``ctypes.memmove`` for the copies).
"""

from __future__ import annotations

import ctypes
import functools
import glob
import importlib.util
import logging
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

logger = logging.getLogger(__name__)

#: The CUDA runtime's names, newest first (onnxruntime-gpu's CUDA 13 build, then 12).
CUDART_NAMES = ("libcudart.so.13", "libcudart.so.12", "libcudart.so")
_COPY_DEFAULT = 4  # cudaMemcpyDefault: the direction from the pointers (unified addressing)
_STREAM_NON_BLOCKING = 1  # cudaStreamNonBlocking: no implicit ordering with the legacy default stream


class DeviceMemoryError(RuntimeError):
    """A CUDA runtime call failed (its name and CUDA's error code)."""


class DeviceMemory(Protocol):
    """What the device path needs of a device's memory."""

    #: what the copies run on, as a person calls it (``CUDA runtime 13.0``, ``host stand-in``)
    name: str

    def pinned(self, nbytes: int) -> np.ndarray:
        """``nbytes`` of page-locked host memory as a flat uint8 array (freed when the array is)."""
        ...

    def copy(self, destination: int, source: int, nbytes: int) -> None:
        """Copy ``nbytes`` between two addresses (host or device, either way) on this thread's stream and wait."""
        ...

    def copy_rows(self, destination: int, source: int, row_bytes: int, rows: int, source_pitch: int) -> None:
        """Copy ``rows`` rows of ``row_bytes`` from rows ``source_pitch`` apart to packed rows, and wait (an image
        whose rows are padded into a batch)."""
        ...


@dataclass
class _Stream:
    handle: ctypes.c_void_p
    device: int


class CudaMemory:
    """:class:`DeviceMemory` through the CUDA runtime library (the one ONNX Runtime's CUDA provider loads)."""

    def __init__(self, library: ctypes.CDLL, device: int = 0) -> None:
        self._cuda = library
        self.device = device
        self._local = threading.local()
        version = ctypes.c_int(0)
        self._check(self._cuda.cudaRuntimeGetVersion(ctypes.byref(version)), "cudaRuntimeGetVersion")
        self.name = f"CUDA runtime {version.value // 1000}.{version.value % 1000 // 10}"
        count = ctypes.c_int(0)
        self._check(self._cuda.cudaGetDeviceCount(ctypes.byref(count)), "cudaGetDeviceCount")
        if device >= count.value:
            raise DeviceMemoryError(f"no CUDA device {device} (the CUDA runtime sees {count.value})")

    def _check(self, status: int, call: str) -> None:
        if status != 0:
            self._cuda.cudaGetErrorString.restype = ctypes.c_char_p
            text = (self._cuda.cudaGetErrorString(status) or b"").decode(errors="replace")
            raise DeviceMemoryError(f"{call} failed: CUDA error {status} ({text})")

    def _stream(self) -> _Stream:
        """This thread's non-blocking stream on the device (one per thread: streams of a runner overlap)."""
        stream = getattr(self._local, "stream", None)
        if stream is None:
            self._check(self._cuda.cudaSetDevice(self.device), "cudaSetDevice")
            handle = ctypes.c_void_p()
            self._check(
                self._cuda.cudaStreamCreateWithFlags(ctypes.byref(handle), _STREAM_NON_BLOCKING),
                "cudaStreamCreateWithFlags",
            )
            stream = self._local.stream = _Stream(handle, self.device)
        return stream

    def pinned(self, nbytes: int) -> np.ndarray:
        pointer = ctypes.c_void_p()
        self._check(self._cuda.cudaHostAlloc(ctypes.byref(pointer), ctypes.c_size_t(nbytes), 0), "cudaHostAlloc")
        address = pointer.value or 0
        array = np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(address))
        weakref.finalize(array, self._cuda.cudaFreeHost, ctypes.c_void_p(address))
        return array

    def copy(self, destination: int, source: int, nbytes: int) -> None:
        stream = self._stream()
        self._check(
            self._cuda.cudaMemcpyAsync(
                ctypes.c_void_p(destination), ctypes.c_void_p(source), ctypes.c_size_t(nbytes), _COPY_DEFAULT,
                stream.handle,
            ),
            "cudaMemcpyAsync",
        )  # fmt: skip
        self._check(self._cuda.cudaStreamSynchronize(stream.handle), "cudaStreamSynchronize")

    def copy_rows(self, destination: int, source: int, row_bytes: int, rows: int, source_pitch: int) -> None:
        stream = self._stream()
        size = ctypes.c_size_t
        self._check(
            self._cuda.cudaMemcpy2DAsync(
                ctypes.c_void_p(destination), size(row_bytes), ctypes.c_void_p(source), size(source_pitch),
                size(row_bytes), size(rows), _COPY_DEFAULT, stream.handle,
            ),
            "cudaMemcpy2DAsync",
        )  # fmt: skip
        self._check(self._cuda.cudaStreamSynchronize(stream.handle), "cudaStreamSynchronize")


class HostStandIn:
    """:class:`DeviceMemory` on host memory: the CPU standing in for the device in tests (and counting its
    copies, so that a test can tell which path a call took)."""

    name = "host stand-in"

    def __init__(self) -> None:
        self.copies = 0
        self.pinned_bytes = 0

    def pinned(self, nbytes: int) -> np.ndarray:
        self.pinned_bytes += nbytes
        return np.empty(nbytes, dtype=np.uint8)

    def copy(self, destination: int, source: int, nbytes: int) -> None:
        self.copies += 1
        ctypes.memmove(destination, source, nbytes)

    def copy_rows(self, destination: int, source: int, row_bytes: int, rows: int, source_pitch: int) -> None:
        self.copies += 1
        for row in range(rows):
            ctypes.memmove(destination + row * row_bytes, source + row * source_pitch, row_bytes)


def _cudart_candidates() -> list[str]:
    """Where the CUDA runtime may be: its sonames (already loaded by ONNX Runtime's CUDA provider, or on the
    loader's path), then the ``nvidia`` wheels' own lib folders (pip's CUDA 12 and 13 layouts)."""
    found = list(CUDART_NAMES)
    spec = importlib.util.find_spec("nvidia") if importlib.util.find_spec is not None else None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        found.extend(sorted(glob.glob(str(Path(folder) / "*" / "lib" / "libcudart.so.*")), reverse=True))
    return found


@functools.cache
def cuda_memory(device: int = 0) -> CudaMemory | None:
    """The CUDA runtime's memory functions for ``device``, or None where no CUDA runtime loads here (the device
    path then copies through ONNX Runtime alone; logged once)."""
    for candidate in _cudart_candidates():
        try:
            library = ctypes.CDLL(candidate)
            return CudaMemory(library, device)
        except (OSError, AttributeError, DeviceMemoryError) as exc:
            logger.debug("CUDA runtime %s: %s", candidate, exc)
    logger.info(
        "no CUDA runtime library loads here (%s): host arrays go to the device through ONNX Runtime's pageable copy, "
        "without pinned staging", ", ".join(CUDART_NAMES),
    )  # fmt: skip
    return None


@dataclass(frozen=True)
class DeviceArray:
    """An array in device memory as GPU libraries describe theirs (``__cuda_array_interface__``, version 3): what
    the device path hands a runner so that it binds the memory where it lies."""

    address: int
    shape: tuple[int, ...]
    dtype: np.dtype[Any]

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.address, False), "version": 3}

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize


def device_address(array: Any) -> int:
    """The device address of anything with ``__cuda_array_interface__`` (a decoder's image, CuPy, torch)."""
    return int(array.__cuda_array_interface__["data"][0])


def is_contiguous_on_device(array: Any) -> bool:
    """Whether a ``__cuda_array_interface__`` array is C-contiguous (no strides, or the packed ones)."""
    interface = array.__cuda_array_interface__
    strides = interface.get("strides")
    if strides is None:
        return True
    itemsize = np.dtype(interface["typestr"]).itemsize
    expected, packed = itemsize, []
    for size in reversed(interface["shape"]):
        packed.append(expected)
        expected *= size
    return tuple(strides) == tuple(reversed(packed))
