"""The Open Inference Protocol's system shared memory extension, as Triton serves it: input tensors that a client
on the same host writes into a POSIX shared memory region instead of the request body.

A client creates a region (``tritonclient.utils.shared_memory``), registers it under a name
(``POST /v2/systemsharedmemory/region/{name}/register`` with its ``key``, ``offset`` and ``byte_size``), writes
its tensor there and sends a request whose input carries only the parameters ``shared_memory_region``,
``shared_memory_byte_size`` and optionally ``shared_memory_offset``. The server reads the tensor in place: no
body to send, receive and copy, which for a 600 KB image tensor is most of the server's own work per request
(docs/serving.md). Regions are mapped read-only; the server never writes into a client's memory, so outputs
come back in the response (an output requested into shared memory is refused with a 400).
"""

from __future__ import annotations

import logging
import math
import mmap
import os
import struct
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel, ValidationError

from tvdeploy.serve.datatypes import NUMPY_DTYPES

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


@dataclass(frozen=True)
class Region:
    """A registered region: ``byte_size`` bytes from ``offset`` of the shared memory object ``key``."""

    name: str
    key: str
    offset: int
    byte_size: int
    mapping: mmap.mmap

    def status(self) -> dict[str, Any]:
        """The region as the extension's status endpoint lists it."""
        return {"name": self.name, "key": self.key, "offset": self.offset, "byte_size": self.byte_size}


def points_at_shared_memory(parameters: Mapping[str, Any] | None) -> bool:
    """Whether a tensor's parameters name a shared memory region (its data is there, not in the request)."""
    return parameters is not None and REGION in parameters


def _object_path(key: str) -> Path:
    """The file behind a ``shm_open`` key: leading slashes dropped, as glibc does; nothing outside SHM_DIR."""
    name = key.lstrip("/")
    if not name or "/" in name or name in (".", ".."):
        raise SharedMemoryError(f"shared memory key {key!r} is not a POSIX shared memory name (like '/my_region')")
    return SHM_DIR / name


class SharedMemoryRegistry:
    """The server's registered regions, shared by every model and both protocols.

    Registration, lookups and unregistration all happen on the event loop. Unregistering drops the registry's
    mapping; a request still reading from it keeps it alive until it is done (the memory is unmapped by the
    garbage collector, never under a running model call).
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._regions: dict[str, Region] = {}

    def _check_enabled(self) -> None:
        if not self.enabled:
            raise SharedMemoryError(
                "system shared memory is off on this server (started with --no-shared-memory): send tensors in "
                "the request body"
            )
        if not sys.platform.startswith("linux"):
            raise SharedMemoryError(f"system shared memory is served on Linux only, not on {sys.platform}")

    def register(self, name: str, key: str, offset: int, byte_size: int) -> None:
        """Map ``byte_size`` bytes from ``offset`` of the shared memory object ``key`` under ``name``."""
        self._check_enabled()
        if name in self._regions:
            raise SharedMemoryError(
                f"shared memory region '{name}' is already registered: unregister it first, or use another name"
            )
        if offset < 0 or byte_size <= 0:
            raise SharedMemoryError(
                f"region '{name}': offset must be >= 0 and byte_size > 0 (got {offset}, {byte_size})"
            )
        path = _object_path(key)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise SharedMemoryError(
                f"cannot open shared memory object {key!r} for region '{name}': {exc.strerror}; create it first "
                f"(tritonclient.utils.shared_memory.create_shared_memory_region)"
            ) from exc
        try:
            size = os.fstat(fd).st_size
            if offset + byte_size > size:
                raise SharedMemoryError(
                    f"region '{name}' ({byte_size} bytes from offset {offset}) does not fit in shared memory "
                    f"object {key!r} of {size} bytes"
                )
            mapping = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        self._regions[name] = Region(name, key, offset, byte_size, mapping)
        logger.info("registered shared memory region %s (%s, %d bytes from %d)", name, key, byte_size, offset)

    def unregister(self, name: str | None = None) -> None:
        """Forget region ``name`` (every region when None); unknown names are not an error, as in Triton."""
        for region_name in list(self._regions) if name is None else [name]:
            if self._regions.pop(region_name, None) is not None:
                logger.info("unregistered shared memory region %s", region_name)

    def status(self, name: str | None = None) -> list[dict[str, Any]]:
        """Every registered region, or the one named (400 when it is not registered)."""
        if name is None:
            return [region.status() for region in self._regions.values()]
        return [self._region(name).status()]

    def _region(self, name: str) -> Region:
        region = self._regions.get(name)
        if region is None:
            raise SharedMemoryError(
                f"shared memory region '{name}' is not registered: register it first "
                f"(POST /v2/systemsharedmemory/region/{name}/register)"
            )
        return region

    def read(self, tensor_name: str, datatype: str, shape: list[int], parameters: Mapping[str, Any]) -> np.ndarray:
        """The input ``tensor_name`` from the region its parameters name, without copying a numeric tensor."""
        region = self._region(str(parameters[REGION]))
        try:
            byte_size = int(parameters[BYTE_SIZE])
            offset = int(parameters.get(OFFSET, 0))
        except (KeyError, TypeError, ValueError) as exc:
            raise SharedMemoryError(
                f"input '{tensor_name}' names region '{region.name}' but not a valid {BYTE_SIZE} / {OFFSET}"
            ) from exc
        if offset < 0 or byte_size < 0 or offset + byte_size > region.byte_size:
            raise SharedMemoryError(
                f"input '{tensor_name}': {byte_size} bytes from offset {offset} are outside region "
                f"'{region.name}' of {region.byte_size} bytes"
            )
        data = memoryview(region.mapping)[region.offset + offset : region.offset + offset + byte_size]
        if datatype == "BYTES":
            items = _length_prefixed(data, tensor_name, region.name)
            if items.size != math.prod(shape):
                raise SharedMemoryError(
                    f"input '{tensor_name}' has shape {shape}, but region '{region.name}' holds {items.size} BYTES items"
                )
            return items.reshape(shape)
        dtype = NUMPY_DTYPES.get(datatype)
        if dtype is None:
            raise SharedMemoryError(f"input '{tensor_name}': datatype {datatype} cannot be read from shared memory")
        expected = math.prod(shape) * np.dtype(dtype).itemsize  # math.prod: np.prod costs ~10x on a short list
        if byte_size != expected:
            raise SharedMemoryError(
                f"input '{tensor_name}' ({datatype} {shape}) is {expected} bytes, but {BYTE_SIZE} is {byte_size}"
            )
        return np.frombuffer(data, dtype=dtype).reshape(shape)


def _length_prefixed(data: memoryview, tensor_name: str, region_name: str) -> np.ndarray:
    """BYTES items as the protocol lays them out: each a 4-byte little-endian length, then that many bytes."""
    items, offset = [], 0
    while offset < len(data):
        if offset + 4 > len(data):
            raise SharedMemoryError(f"input '{tensor_name}': region '{region_name}' ends inside a BYTES length")
        (length,) = struct.unpack_from("<I", data, offset)
        if offset + 4 + length > len(data):
            raise SharedMemoryError(
                f"input '{tensor_name}': a BYTES item of {length} bytes runs past the end of region '{region_name}'"
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
        registry.register(name, body.key, body.offset, body.byte_size)
        return Response(status_code=200)

    async def unregister(name: str | None = None) -> Response:
        registry.unregister(name)
        return Response(status_code=200)

    for path in STATUS_ROUTES:
        app.add_api_route(path, status, methods=["GET"])
    for path in UNREGISTER_ROUTES:
        app.add_api_route(path, unregister, methods=["POST"])
    app.add_api_route(REGISTER_ROUTE, register, methods=["POST"])
