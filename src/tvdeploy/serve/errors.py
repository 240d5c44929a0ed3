"""The one table from an error to its HTTP status and gRPC code, for every route of both protocols.

What a client can get wrong is a 4xx (a gRPC code other than INTERNAL) with the protocol's ``{"error": "..."}``
body and one log line; only a failure of the server itself is a 500 with a traceback in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
from kserve.errors import (
    InferenceError,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    ServerNotLive,
    ServerNotReady,
    UnsupportedProtocol,
)
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from tvdeploy.errors import TvdeployError
from tvdeploy.serve.failures import BodyTooLarge, InvalidRequest, Overloaded, Refused, RequestTimeout
from tvdeploy.serve.shared_memory import SharedMemoryError
from tvdeploy.text import printable

logger = logging.getLogger(__name__)

#: nginx's status for a client that closed the connection before the answer (no response is sent).
CLIENT_CLOSED = 499


@dataclass(frozen=True)
class ErrorStatus:
    """How an error is answered: the HTTP status and the gRPC code's name (``grpc.StatusCode``)."""

    http: int
    grpc: str

    @property
    def expected(self) -> bool:
        """The client's doing (or a state it can wait out), not a fault of the server: no traceback."""
        return self.http < 500 or self.http in (503, 504, 501)


#: Errors by how they are answered, the first match wins (subclasses before their bases).
ERROR_STATUSES: Sequence[tuple[type[BaseException], ErrorStatus]] = (
    (InvalidRequest, ErrorStatus(400, "INVALID_ARGUMENT")),
    (InvalidInput, ErrorStatus(400, "INVALID_ARGUMENT")),
    (SharedMemoryError, ErrorStatus(400, "INVALID_ARGUMENT")),
    (Refused, ErrorStatus(400, "INVALID_ARGUMENT")),
    (TvdeployError, ErrorStatus(400, "INVALID_ARGUMENT")),  # e.g. an image the runtime refuses
    (ModelNotFound, ErrorStatus(404, "NOT_FOUND")),
    (BodyTooLarge, ErrorStatus(413, "RESOURCE_EXHAUSTED")),
    (ClientDisconnect, ErrorStatus(CLIENT_CLOSED, "CANCELLED")),
    (ModelNotReady, ErrorStatus(503, "UNAVAILABLE")),
    (ServerNotReady, ErrorStatus(503, "UNAVAILABLE")),
    (ServerNotLive, ErrorStatus(503, "UNAVAILABLE")),
    (Overloaded, ErrorStatus(503, "UNAVAILABLE")),
    (RequestTimeout, ErrorStatus(504, "DEADLINE_EXCEEDED")),
    (NotImplementedError, ErrorStatus(501, "UNIMPLEMENTED")),
    (UnsupportedProtocol, ErrorStatus(501, "UNIMPLEMENTED")),
    (InferenceError, ErrorStatus(500, "INTERNAL")),
)
INTERNAL = ErrorStatus(500, "INTERNAL")


def status_of(exc: BaseException) -> ErrorStatus:
    """How ``exc`` is answered (an HTTP exception of the framework keeps its own status)."""
    if isinstance(exc, HTTPException):
        return ErrorStatus(exc.status_code, "NOT_FOUND" if exc.status_code == 404 else "INVALID_ARGUMENT")
    return next((status for kind, status in ERROR_STATUSES if isinstance(exc, kind)), INTERNAL)


def message_of(exc: BaseException) -> str:
    """The text a client gets for ``exc``."""
    if isinstance(exc, HTTPException):
        return str(exc.detail)
    if isinstance(exc, ServerNotReady):
        return "the server is not ready: its models are still loading and warming up"
    if isinstance(exc, TvdeployError):
        return exc.message
    text = str(exc)
    return text if status_of(exc).expected else f"{type(exc).__name__} : {text}"


def error_answer(exc: BaseException, where: str = "") -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """The HTTP status, the protocol's ``{"error": ...}`` body and extra headers for ``exc``, logged as one line
    (a traceback only for a failure of the server itself)."""
    status = status_of(exc)
    message = message_of(exc)
    log_error(status, message, where, exc)
    headers = []
    if isinstance(exc, Overloaded):
        headers.append((b"retry-after", str(exc.retry_after_s).encode()))
    if isinstance(exc, BodyTooLarge) and not exc.drained:
        headers.append((b"connection", b"close"))
    return status.http, orjson.dumps({"error": message}), headers


def log_error(status: ErrorStatus, message: str, where: str, exc: BaseException) -> None:
    """One log line for an expected error (readiness probes while models load: debug only); the traceback for
    anything else."""
    if status.expected:
        level = logging.DEBUG if isinstance(exc, (ServerNotReady, ModelNotReady)) else logging.INFO
        logger.log(level, "%s %s: %s", status.http, printable(where), printable(message, 2000))
    else:
        logger.error("%s failed", printable(where) or "request", exc_info=exc)
