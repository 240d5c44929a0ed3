"""The Open Inference Protocol over gRPC: KServe's servicer on tvdeploy's address, with tvdeploy's status codes.

KServe's ``GRPCServer`` listens on ``[::]:port`` (every interface, as in a pod); this one uses KServe's
``InferenceServicer`` (the protocol, on the same data plane as HTTP) on the address ``--host`` names. Errors get
the gRPC codes of the server's one error table (a full queue ``UNAVAILABLE``, the request timeout
``DEADLINE_EXCEEDED``, as Triton answers them), a client's mistake is logged as one line without a traceback, and
every call is counted in the same Prometheus metrics and access log as HTTP requests.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from grpc import StatusCode, aio
from grpc_interceptor.exceptions import GrpcException
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor
from kserve.protocol.grpc.servicer import InferenceServicer

from tvdeploy.errors import UserInputError
from tvdeploy.serve import metrics
from tvdeploy.serve.errors import log_error, message_of, status_of

logger = logging.getLogger(__name__)

#: The protocol's gRPC methods by the route kind that the HTTP metrics use.
_ROUTE_KINDS = {"ModelInfer": "infer", "ServerLive": "health", "ServerReady": "health", "ModelReady": "health"}


class StatusInterceptor(ExceptionToStatusInterceptor):
    """Errors answered by the server's one table (:mod:`tvdeploy.serve.errors`); metrics and an access log line."""

    async def handle_exception(self, ex: Exception, request_or_iterator: Any, context: Any, method_name: str) -> Any:
        if isinstance(ex, GrpcException):  # already a status (grpc_interceptor's own exceptions)
            return await super().handle_exception(ex, request_or_iterator, context, method_name)
        status = status_of(ex)
        message = message_of(ex)
        log_error(status, message, f"gRPC {method_name.rsplit('/', 1)[-1]}", ex)
        await context.abort(getattr(StatusCode, status.grpc), message)

    async def intercept(self, method: Any, request_or_iterator: Any, context: Any, method_name: str) -> Any:
        start = time.perf_counter()
        try:
            return await super().intercept(method, request_or_iterator, context, method_name)
        finally:
            name = method_name.rsplit("/", 1)[-1]
            code = (context.code() or StatusCode.OK).name
            kind = _ROUTE_KINDS.get(name, "metadata")
            metrics.record_request(kind, "gRPC", code, time.perf_counter() - start, context.peer(), name)


class GrpcServer:
    """The protocol's gRPC service on ``host:port`` (0: any free port)."""

    def __init__(self, host: str, port: int, dataplane: Any, repository_extension: Any, max_message_bytes: int) -> None:
        self.host = host
        self.port = port
        self.dataplane = dataplane
        self.repository_extension = repository_extension
        self.max_message_bytes = max_message_bytes
        self._server: Any = None

    async def start(self) -> int:
        """Bind and start serving (in the running event loop); the port it listens on."""
        self._server = aio.server(
            ThreadPoolExecutor(max_workers=4, thread_name_prefix="tvdeploy-grpc"),
            interceptors=(StatusInterceptor(),),
            options=[
                ("grpc.max_send_message_length", self.max_message_bytes),
                ("grpc.max_receive_message_length", self.max_message_bytes),
                ("grpc.so_reuseport", 0),  # a taken port is an error, not a second listener
            ],
        )
        servicer = InferenceServicer(self.dataplane, self.repository_extension)
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, self._server)
        address = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        try:
            port = self._server.add_insecure_port(address)
        except RuntimeError as exc:  # grpc raises when it cannot bind
            raise UserInputError(
                f"cannot listen for gRPC on {address}", hint="choose another --grpc-port (0 picks a free one)"
            ) from exc
        await self._server.start()
        return int(port)

    async def stop(self, grace_s: float) -> None:
        """Stop taking calls; calls in flight get up to ``grace_s`` seconds to finish."""
        if self._server is not None:
            await self._server.stop(grace=grace_s)
