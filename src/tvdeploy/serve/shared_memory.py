"""The Open Inference Protocol's system shared memory extension, as Triton serves it: input tensors that a client
on the same host writes into a POSIX shared memory region instead of the request body.

Off unless the server is started with ``--shared-memory`` (as Triton since 26.04 keeps it off unless
``--allow-client-shm=true``): a key names an object in ``/dev/shm``, so the extension trusts every client that
reaches the port with what the server's user may read there. When on, a client creates a region
(``tritonclient.utils.shared_memory``), registers it under a name (``POST
/v2/systemsharedmemory/region/{name}/register`` with its ``key``, ``offset`` and ``byte_size``), writes its tensor
there and sends a request whose input carries only the parameters ``shared_memory_region``,
``shared_memory_byte_size`` and optionally ``shared_memory_offset``: no body to send and parse.

What a key may open: a regular file directly in ``/dev/shm`` (no symbolic link, FIFO, device, socket or directory),
owned by the server's own user, opened ``O_RDONLY | O_NOFOLLOW | O_NONBLOCK`` (so that no open can block), and
large enough for the region at registration. The server never maps a client's object: a mapping of an object that
its owner truncates later faults with SIGBUS on the next read, which would kill the process. Each input is instead
read with ``pread`` into the request's own buffer, off the event loop: a read past a truncated end comes back
short and fails that request alone (a 400); the copy is small beside the body handling it saves (measured in
docs/serving.md). The server never writes into a client's memory, so outputs come back in the response (an
output requested into shared memory is refused with a 400).
"""

from __future__ import annotations

import errno
import logging
import math
import os
import stat
import struct
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from tvdeploy.serve.datatypes import NUMPY_DTYPES
from tvdeploy.serve.options import DEFAULT_MAX_REGIONS

logger = logging.getLogger(__name__)


class SharedMemoryError(ValueError):
    """A registration or a reference to a region that cannot be served: the client's mistake, answered 400.

    (Not KServe's ``InvalidInput``: this module stays importable without KServe, whose protobuf descriptors
    clash with tritonclient.grpc's in one process.)"""


#: Where Linux keeps POSIX shared memory objects (what ``shm_open`` names).
SHM_DIR = Path("/dev/shm")

#: The tensor parameters that point an input (or output) at a registered region.
REGION = "shared_memory_region"
BYTE_SIZE = "shared_memory_byte_size"
OFFSET = "shared_memory_offset"

#: How the server opens a key: read-only, never through a symbolic link, never waiting for a FIFO's writer.
OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)

_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class _OpenObject:
    """An open shared memory object, read with ``pread``; closed once unregistered and no read is running."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._readers = 0
        self._closed = False
        self._lock = threading.Lock()

    def read(self, offset: int, size: int, describe: str) -> bytearray:
        """``size`` bytes from ``offset``; a :class:`SharedMemoryError` where the object ends before them."""
        with self._lock:
            if self._closed:
                raise SharedMemoryError(f"{describe}: the region was unregistered while the request waited")
            self._readers += 1
        try:
            buffer = bytearray(size)
            got = os.preadv(self._fd, [buffer], offset) if size else 0
        finally:
            self._release()
        if got < size:
            raise SharedMemoryError(
                f"{describe}: the shared memory object ends after {offset + got} bytes (truncated since it was "
                "registered); write the tensor again, or register a region that fits"
            )
        return buffer

    def _release(self) -> None:
        with self._lock:
            self._readers -= 1
            if self._closed and self._readers == 0:
                os.close(self._fd)

    def close(self) -> None:
        """Close now, or when the last running read is done."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._readers == 0:
                os.close(self._fd)


@dataclass(frozen=True)
class Region:
    """A registered region: ``byte_size`` bytes from ``offset`` of the shared memory object ``key``."""

    name: str
    key: str
    offset: int
    byte_size: int
    opened: _OpenObject = field(repr=False, compare=False)

    def status(self) -> dict[str, Any]:
        """The region as the extension's status endpoint lists it."""
        return {"name": self.name, "key": self.key, "offset": self.offset, "byte_size": self.byte_size}


def points_at_shared_memory(parameters: Mapping[str, Any] | None) -> bool:
    """Whether a tensor's parameters name a shared memory region (its data is there, not in the request)."""
    return parameters is not None and REGION in parameters


def _object_path(key: str) -> Path:
    """The file behind a ``shm_open`` key: leading slashes dropped, as glibc does; nothing outside SHM_DIR."""
    name = key.lstrip("/")
    if not name or "/" in name or "\0" in name or name in (".", ".."):
        raise SharedMemoryError(f"shared memory key {key!r} is not a POSIX shared memory name (like '/my_region')")
    return SHM_DIR / name


def open_object(key: str, needed: int) -> _OpenObject:
    """Open the shared memory object ``key`` for reads, refusing anything but a regular file of this process's
    user that holds at least ``needed`` bytes (see the module docstring). Never blocks: call it off the loop
    anyway, as every file system call."""
    path = _object_path(key)
    try:
        fd = os.open(path, OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW on a symbolic link
            raise SharedMemoryError(
                f"shared memory key {key!r} is a symbolic link: only shared memory objects themselves are served"
            ) from exc
        raise SharedMemoryError(
            f"cannot open shared memory object {key!r}: {exc.strerror}; create it first "
            "(tritonclient.utils.shared_memory.create_shared_memory_region)"
        ) from exc
    try:
        info = os.fstat(fd)
        kind = next((name for test, name in _FILE_KINDS if test(info.st_mode)), None)
        if kind is not None or not stat.S_ISREG(info.st_mode):
            raise SharedMemoryError(
                f"shared memory key {key!r} is {kind or 'not a regular file'}: only shared memory objects are served"
            )
        if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
            raise SharedMemoryError(
                f"shared memory object {key!r} belongs to another user (uid {info.st_uid}): this server reads only "
                "objects its own user created"
            )
        if needed > info.st_size:
            raise SharedMemoryError(
                f"the region ({needed} bytes from the object's start) does not fit in shared memory object {key!r} of "
                f"{info.st_size} bytes"
            )
    except BaseException:
        os.close(fd)
        raise
    return _OpenObject(fd)


#: Descriptors kept free for everything but regions and connections: model files, threads' pipes, logs, gRPC.
RESERVED_DESCRIPTORS = 64


def descriptor_budget(max_connections: int) -> int:
    """How many regions this process can hold without starving new connections of descriptors: its soft
    descriptor limit, less what is open now, less the descriptors the connections may take (at most half the
    limit) and a reserve (:data:`RESERVED_DESCRIPTORS`); never below zero."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return DEFAULT_MAX_REGIONS
    if soft == getattr(resource, "RLIM_INFINITY", -1) or soft <= 0:
        return DEFAULT_MAX_REGIONS
    try:
        open_now = len(os.listdir("/proc/self/fd"))
    except OSError:
        open_now = RESERVED_DESCRIPTORS
    return max(0, soft - open_now - min(max_connections, soft // 2) - RESERVED_DESCRIPTORS)


class SharedMemoryRegistry:
    """The server's registered regions, shared by every model and both protocols.

    The registry's table changes on the event loop only; objects are opened and read on worker threads.
    Unregistering closes an object once the reads running on it are done. No read takes more than
    ``max_read_bytes`` (the body limit: a region is no way around it). At most ``max_regions`` regions are held
    (registrations being opened count), each one open descriptor: past that a registration is a 400, so that no
    number of registrations can take the descriptors new connections need.
    """

    def __init__(
        self, enabled: bool = False, max_read_bytes: int = 32 * 1024 * 1024, max_regions: int = DEFAULT_MAX_REGIONS
    ) -> None:
        self.enabled = enabled
        self.max_read_bytes = max_read_bytes
        self.max_regions = max_regions
        self._regions: dict[str, Region] = {}
        self._opening = 0

    def _check_enabled(self) -> None:
        if not self.enabled:
            raise SharedMemoryError(
                "system shared memory is off on this server: send tensors in the request body, or start the server "
                "with --shared-memory (clients on this host only; see docs/serving.md#security)"
            )
        if not sys.platform.startswith("linux"):
            raise SharedMemoryError(f"system shared memory is served on Linux only, not on {sys.platform}")

    def _check_new(self, name: str, offset: int, byte_size: int) -> None:
        self._check_enabled()
        if name in self._regions:
            raise SharedMemoryError(
                f"shared memory region '{name}' is already registered: unregister it first, or use another name"
            )
        if offset < 0 or byte_size <= 0:
            raise SharedMemoryError(
                f"region '{name}': offset must be >= 0 and byte_size > 0 (got {offset}, {byte_size})"
            )
        if len(self._regions) + self._opening >= self.max_regions:
            raise SharedMemoryError(
                f"region '{name}': this server holds at most {self.max_regions} shared memory regions and has "
                f"{len(self._regions)}; unregister regions you no longer use (or start the server with a larger "
                "--max-shm-regions and descriptor limit, ulimit -n)"
            )

    def register(self, name: str, key: str, offset: int, byte_size: int) -> None:
        """Register ``byte_size`` bytes from ``offset`` of the shared memory object ``key`` under ``name`` (this
        thread opens it; the server calls :meth:`register_async`)."""
        self._check_new(name, offset, byte_size)
        self._add(name, key, offset, byte_size, self._open(name, key, offset, byte_size))

    async def register_async(self, name: str, key: str, offset: int, byte_size: int) -> None:
        """:meth:`register` with the object opened on a worker thread, off the event loop."""
        self._check_new(name, offset, byte_size)
        self._opening += 1  # counted against max_regions while its descriptor is being opened
        try:
            opened = await run_in_threadpool(self._open, name, key, offset, byte_size)
        finally:
            self._opening -= 1
        if name in self._regions:  # registered by another request while this one opened
            opened.close()
            self._check_new(name, offset, byte_size)
        self._add(name, key, offset, byte_size, opened)

    @staticmethod
    def _open(name: str, key: str, offset: int, byte_size: int) -> _OpenObject:
        try:
            return open_object(key, offset + byte_size)
        except SharedMemoryError as exc:
            raise SharedMemoryError(f"region '{name}': {exc}") from exc

    def _add(self, name: str, key: str, offset: int, byte_size: int, opened: _OpenObject) -> None:
        self._regions[name] = Region(name, key, offset, byte_size, opened)
        logger.info("registered shared memory region %s (%r, %d bytes from %d)", name, key, byte_size, offset)

    def unregister(self, name: str | None = None) -> None:
        """Forget region ``name`` (every region when None); unknown names are not an error, as in Triton."""
        self._check_enabled()
        for region_name in list(self._regions) if name is None else [name]:
            region = self._regions.pop(region_name, None)
            if region is not None:
                region.opened.close()
                logger.info("unregistered shared memory region %s", region_name)

    def status(self, name: str | None = None) -> list[dict[str, Any]]:
        """Every registered region, or the one named (400 when it is not registered)."""
        self._check_enabled()
        if name is None:
            return [region.status() for region in self._regions.values()]
        return [self._region(name).status()]

    def _region(self, name: str) -> Region:
        self._check_enabled()
        region = self._regions.get(name)
        if region is None:
            raise SharedMemoryError(
                f"shared memory region '{name}' is not registered: register it first "
                f"(POST /v2/systemsharedmemory/region/{name}/register)"
            )
        return region

    def read(self, tensor_name: str, datatype: str, shape: list[int], parameters: Mapping[str, Any]) -> np.ndarray:
        """The input ``tensor_name`` from the region its parameters name, read into a buffer of its own (this
        thread reads; the server calls :meth:`read_async`)."""
        region, offset, byte_size = self._locate(tensor_name, datatype, shape, parameters)
        return self._decode(region, offset, byte_size, tensor_name, datatype, shape)

    async def read_async(
        self, tensor_name: str, datatype: str, shape: list[int], parameters: Mapping[str, Any]
    ) -> np.ndarray:
        """:meth:`read` with the bytes read on a worker thread, off the event loop."""
        region, offset, byte_size = self._locate(tensor_name, datatype, shape, parameters)
        return await run_in_threadpool(self._decode, region, offset, byte_size, tensor_name, datatype, shape)

    def _locate(
        self, tensor_name: str, datatype: str, shape: list[int], parameters: Mapping[str, Any]
    ) -> tuple[Region, int, int]:
        """The region and the checked extent of an input in it (everything but the read itself)."""
        region = self._region(str(parameters[REGION]))
        try:
            byte_size = _integer(parameters[BYTE_SIZE])
            offset = _integer(parameters.get(OFFSET, 0))
        except (KeyError, TypeError, ValueError) as exc:
            raise SharedMemoryError(
                f"input '{tensor_name}' names region '{region.name}' but not a valid {BYTE_SIZE} / {OFFSET}"
            ) from exc
        if offset < 0 or byte_size < 0 or offset + byte_size > region.byte_size:
            raise SharedMemoryError(
                f"input '{tensor_name}': {byte_size} bytes from offset {offset} are outside region "
                f"'{region.name}' of {region.byte_size} bytes"
            )
        if byte_size > self.max_read_bytes:
            raise SharedMemoryError(
                f"input '{tensor_name}': {byte_size} bytes are more than this server reads for one request "
                f"({self.max_read_bytes}); send fewer rows, or start the server with a larger --max-body-mb"
            )
        if datatype != "BYTES":
            dtype = NUMPY_DTYPES.get(datatype)
            if dtype is None:
                raise SharedMemoryError(f"input '{tensor_name}': datatype {datatype} cannot be read from shared memory")
            expected = math.prod(shape) * np.dtype(dtype).itemsize  # math.prod: np.prod costs ~10x on a short list
            if byte_size != expected:
                raise SharedMemoryError(
                    f"input '{tensor_name}' ({datatype} {shape}) is {expected} bytes, but {BYTE_SIZE} is {byte_size}"
                )
        return region, region.offset + offset, byte_size

    @staticmethod
    def _decode(
        region: Region, offset: int, byte_size: int, tensor_name: str, datatype: str, shape: list[int]
    ) -> np.ndarray:
        data = region.opened.read(offset, byte_size, f"input '{tensor_name}' in region '{region.name}'")
        if datatype == "BYTES":
            items = _length_prefixed(memoryview(data), tensor_name, region.name)
            if items.size != math.prod(shape):
                raise SharedMemoryError(
                    f"input '{tensor_name}' has shape {shape}, but region '{region.name}' holds {items.size} BYTES items"
                )
            return items.reshape(shape)
        return np.frombuffer(data, dtype=NUMPY_DTYPES[datatype]).reshape(shape)


def _integer(value: Any) -> int:
    """A parameter that must be an integer (REST: a JSON number; gRPC: an ``InferParameter``)."""
    value = getattr(value, "int64_param", value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"not an integer: {value!r}")
    return value


def _length_prefixed(data: memoryview, tensor_name: str, region_name: str) -> np.ndarray:
    """BYTES items as the protocol lays them out: each a 4-byte little-endian length, then that many bytes."""
    items, offset = [], 0
    while offset < len(data):
        if offset + 4 > len(data):
            raise SharedMemoryError(f"input '{tensor_name}': region '{region_name}' ends inside a BYTES length")
        (length,) = struct.unpack_from("<I", data, offset)
        if offset + 4 + length > len(data):
            raise SharedMemoryError(
                f"input '{tensor_name}': a BYTES item runs past the end of the {len(data)} bytes read from region "
                f"'{region_name}'"
            )
        items.append(bytes(data[offset + 4 : offset + 4 + length]))
        offset += 4 + length
    return np.array(items, dtype=np.object_)


class RegisterRequest(BaseModel):
    """The body of a registration, as tritonclient's ``register_system_shared_memory`` sends it."""

    key: str
    offset: int = 0
    byte_size: int


#: The extension's HTTP endpoints (Triton's paths).
STATUS_ROUTES = ("/v2/systemsharedmemory/status", "/v2/systemsharedmemory/region/{name}/status")
UNREGISTER_ROUTES = ("/v2/systemsharedmemory/unregister", "/v2/systemsharedmemory/region/{name}/unregister")
REGISTER_ROUTE = "/v2/systemsharedmemory/region/{name}/register"


def add_routes(app: FastAPI, registry: SharedMemoryRegistry) -> None:
    """The extension's status, register and unregister endpoints on the server's app (the server answers
    :class:`SharedMemoryError` with a 400 in the protocol's error format)."""

    async def status(name: str | None = None) -> list[dict[str, Any]]:
        return registry.status(name)

    async def register(name: str, request: Request) -> Response:
        # tritonclient sends the JSON body without a content type, so it is parsed here, not by FastAPI
        try:
            body = RegisterRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
            raise SharedMemoryError(
                f"malformed registration for region '{name}' ({problems}); send "
                '{"key": "/shm_key", "offset": 0, "byte_size": N}'
            ) from exc
        await registry.register_async(name, body.key, body.offset, body.byte_size)
        return Response(status_code=200)

    async def unregister(name: str | None = None) -> Response:
        registry.unregister(name)
        return Response(status_code=200)

    for path in STATUS_ROUTES:
        app.add_api_route(path, status, methods=["GET"])
    for path in UNREGISTER_ROUTES:
        app.add_api_route(path, unregister, methods=["POST"])
    app.add_api_route(REGISTER_ROUTE, register, methods=["POST"])
