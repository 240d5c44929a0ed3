"""The server: KServe's REST server and data plane around tvdeploy's models, on a socket we bind ourselves.

KServe's ``RESTServer`` builds uvicorn with host 0.0.0.0 (it is made for a pod);
``RESTServer.run(sockets=...)`` serves on sockets we bind, which is how
``--host`` (127.0.0.1 by default) is honoured. What tvdeploy adds to KServe's
app: server readiness that waits for every model to be loaded and warmed up,
503 + ``Retry-After`` when a queue is full, 504 on the request timeout, 413 for
bodies over the limit, request metrics and access logs, and an image upload
endpoint, ``POST /tvdeploy/models/{name}/classify``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from kserve.errors import ModelNotFound, ModelNotReady, ServerNotReady
from starlette.exceptions import HTTPException

from tvdeploy.errors import TvdeployError, UserInputError
from tvdeploy.serve import metrics
from tvdeploy.serve.asgi import ASGIApp, Message, Receive, Scope, Send, send_bytes
from tvdeploy.serve.datatypes import CLASSIFY_ROUTE
from tvdeploy.serve.errors import CLIENT_CLOSED, ERROR_STATUSES, error_answer
from tvdeploy.serve.failures import BodyTooLarge, InvalidRequest, Refused
from tvdeploy.serve.http_protocol import bounded_protocol
from tvdeploy.serve.infer_route import JSON, InferRoute
from tvdeploy.serve.kserve_compat import data_plane, kserve_app, rest_server
from tvdeploy.serve.model import ServedClassifier
from tvdeploy.serve.options import ServeOptions
from tvdeploy.serve.request import parse_binary_request
from tvdeploy.serve.shared_memory import SharedMemoryRegistry, add_routes, descriptor_budget

logger = logging.getLogger(__name__)


def _route_kind(path: str) -> str:
    if path.startswith("/v2/health"):
        return "health"
    if path.endswith("/infer"):
        return "infer"
    if path.endswith("/classify"):
        return "classify"
    if path.startswith("/v2"):
        return "metadata"
    return "metrics" if path == "/metrics" else "other"


#: Bytes of an over-limit body read and dropped so that the client, still sending, sees the 413 rather than a
#: reset; a body declared (or found, chunked) larger than the limit plus this is not read: 413 and the connection
#: is closed.
DISCARD_BYTES = 64 * 1024 * 1024


async def _discard_body(receive: Receive, budget: int) -> bool:
    """Read and drop the rest of a request body, at most ``budget`` bytes; whether it was all read."""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return False
        budget -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return True
        if budget < 0:
            return False


def _too_large_message(max_body_bytes: int) -> str:
    return (
        f"the request body is larger than this server's limit of {max_body_bytes} bytes; send fewer or smaller "
        "images, or start the server with a larger --max-body-mb"
    )


def _declared_length(scope: Scope) -> int | None:
    """The request's ``Content-Length`` (the HTTP parser has checked that it is a number)."""
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class ServerMiddleware:
    """Body size limit (413), request metrics and the access log, as one ASGI middleware."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.too_large_message = _too_large_message(max_body_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        kind = _route_kind(scope["path"])
        status = 500
        started = disconnected = False

        async def tracking_send(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = int(message["status"]), True
            await send(message)

        received = 0

        async def limited_receive() -> Message:
            nonlocal received, disconnected
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnected = True
            elif message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    drained = not message.get("more_body", False) or await _discard_body(receive, DISCARD_BYTES)
                    raise BodyTooLarge(self.too_large_message, drained)
            return message

        length = _declared_length(scope)
        try:
            if length is not None and length > self.max_body_bytes:
                # answered from the header; a body within reach is read (not kept) so that the client sees the answer
                drained = length <= self.max_body_bytes + DISCARD_BYTES and await _discard_body(receive, length)
                raise BodyTooLarge(self.too_large_message, drained)
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge as exc:
            if not started:  # the 413 as every route answers it (the server's error table)
                code, body, headers = error_answer(exc, f"{scope.get('method', '')} {scope['path']}")
                await send_bytes(tracking_send, code, body, JSON, headers)
        finally:
            if disconnected and not started:
                status = CLIENT_CLOSED
            client = scope.get("client") or ("-", 0)
            metrics.record_request(
                kind, scope.get("method", ""), str(status), time.perf_counter() - start, client[0], scope["path"]
            )


def _install_routes(app: Any, repository: Any, options: ServeOptions, shared_memory: SharedMemoryRegistry) -> None:
    """tvdeploy's routes on KServe's app, before KServe adds its own (the first route of a path wins)."""

    async def classify(model_name: str, request: Request, top_k: int = 5) -> dict[str, Any]:
        """Classify uploaded images: a raw image body, or multipart form files; the runtime's top-k JSON."""
        model = repository.get_model(model_name)
        if model is None:
            raise ModelNotFound(model_name)
        if not model.ready:
            raise ModelNotReady(model_name)
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            form = await request.form(max_files=options.max_batch_size + 1, max_fields=options.max_batch_size + 1)
            uploads = [
                (getattr(v, "filename", key), await v.read()) for key, v in form.multi_items() if hasattr(v, "read")
            ]
        else:
            uploads = [("body", await request.body())]
        if not uploads or not all(data for _, data in uploads):
            raise InvalidRequest("send an image: the raw bytes as the body, or multipart form files")
        predictions = await model.core.classify([data for _, data in uploads], top_k)
        return {
            "model": model_name,
            "results": [
                {"source": name, "predictions": [p.to_dict() for p in rows]}
                for (name, _), rows in zip(uploads, predictions, strict=True)
            ],
        }

    async def repository_index() -> list[dict[str, str]]:
        """Triton's model repository index: every model served, its version and state."""
        return [_index_entry(model) for model in repository.get_models().values()]

    async def refuse_load(model_name: str) -> None:
        raise Refused(
            f"this server serves the artifacts it was started with; models are not loaded or unloaded through the "
            f"API ({model_name!r}): restart tvdeploy serve with the artifacts to serve"
        )

    app.add_api_route(CLASSIFY_ROUTE, classify, methods=["POST"])
    app.add_api_route(REPOSITORY_INDEX_ROUTE, repository_index, methods=["POST"])
    for action in ("load", "unload"):
        app.add_api_route(f"/v2/repository/models/{{model_name}}/{action}", refuse_load, methods=["POST"])
    add_routes(app, shared_memory)


#: Triton's model repository extension: the index (load and unload are refused: the artifacts are fixed at start).
REPOSITORY_INDEX_ROUTE = "/v2/repository/index"


def _index_entry(model: Any) -> dict[str, str]:
    """One model in the repository index, in Triton's terms (``READY``, ``LOADING``, ``UNAVAILABLE``)."""
    if model.ready:
        return {"name": model.name, "version": "1", "state": "READY", "reason": ""}
    failed = getattr(model, "load_error", None)
    return {"name": model.name, "version": "1", "state": "UNAVAILABLE" if failed else "LOADING", "reason": failed or ""}


def _install_error_handlers(app: Any) -> None:
    """One handler for every error on KServe's app (after KServe added its own, which log a traceback for each
    client mistake): the status and the protocol's error body from the server's one table."""

    async def protocol_error(request: Request, exc: Exception) -> Response:
        status, body, headers = error_answer(exc, f"{request.method} {request.url.path}")
        return Response(body, status, {k.decode(): v.decode() for k, v in headers}, media_type=JSON.decode())

    async def malformed(request: Request, exc: Exception) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error.get('loc', ()))}: {error.get('msg')}"
            for error in getattr(exc, "errors", list)()
        )
        return await protocol_error(request, InvalidRequest(f"malformed request: {problems or exc}"))

    for kind in {kind for kind, _ in ERROR_STATUSES} | {Exception, HTTPException, ServerNotReady}:
        app.add_exception_handler(kind, protocol_error)
    app.add_exception_handler(RequestValidationError, malformed)


def _outer_app(app: Any, dataplane: Any, options: ServeOptions) -> ASGIApp:
    """What uvicorn runs: tvdeploy's middleware around KServe's app, outside FastAPI's own middleware stack.

    Every request is limited, counted and logged by :class:`ServerMiddleware`; unversioned infer requests are
    answered by :class:`InferRoute` before FastAPI's middleware stack (server errors, telemetry, body limit,
    exception handlers, routing), whose cost under load is measured in docs/serving.md.
    """
    return ServerMiddleware(InferRoute(app, dataplane), options.max_body_bytes)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UserInputError(
            f"cannot listen on {host}:{port}: {exc.strerror}", hint="choose another --port (0 picks a free one)"
        ) from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class Listening(NamedTuple):
    """Where a started server listens: host, HTTP port, and the gRPC port when gRPC is served."""

    host: str
    http_port: int
    grpc_port: int | None


def _models(
    artifacts: Sequence[Path], options: ServeOptions, shared_memory: SharedMemoryRegistry
) -> list[ServedClassifier]:
    models = [ServedClassifier(Path(a), options, shared_memory) for a in artifacts]  # manifests read: fail early
    names = [m.name for m in models]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UserInputError(
            f"two artifacts have the name {duplicates[0]!r}", hint="export them with different --name values"
        )
    return models


def _region_limit(options: ServeOptions) -> int:
    """``--max-shm-regions``, lowered (and said so) to what the process's descriptor limit leaves."""
    budget = descriptor_budget(options.max_connections)
    if options.shared_memory and budget < options.max_shm_regions:
        logger.warning(
            "shared memory: at most %d regions (not %d): the descriptor limit (ulimit -n) leaves no more beside "
            "%d connections",
            budget, options.max_shm_regions, options.max_connections,
        )  # fmt: skip
    return min(budget, options.max_shm_regions)


def served_extensions(options: ServeOptions) -> list[str]:
    """The protocol extensions this server serves, as ``GET /v2`` names them (Triton's names)."""
    extensions = ["binary_tensor_data", "classification", "model_repository"]
    if options.shared_memory:
        extensions.append("system_shared_memory")
    return extensions


def _dataplane(repository: Any, options: ServeOptions) -> Any:
    """KServe's data plane, ready once every model is, with binary requests parsed keeping BYTES as bytes, and
    server metadata that names the extensions served."""
    from tvdeploy import __version__

    return data_plane(
        repository,
        ready=lambda: all(m.ready for m in repository.get_models().values()),
        metadata=lambda: {"name": "tvdeploy", "version": __version__, "extensions": served_extensions(options)},
        parse_binary=parse_binary_request,
    )


def _load_in_background(models: Sequence[ServedClassifier]) -> None:
    def load_all() -> None:
        for model in models:
            start = time.perf_counter()
            try:
                model.load()
            except TvdeployError as exc:  # a tampered artifact, a provider not here, ...: said in one line
                logger.error("model %s failed to load; the server stays not ready: %s", model.name, exc)
                continue
            except Exception:  # the core keeps the reason for the repository index
                logger.exception("model %s failed to load; the server stays not ready", model.name)
                continue
            logger.info("model %s loaded and warmed up in %.2f s", model.name, time.perf_counter() - start)

    threading.Thread(target=load_all, name="tvdeploy-load", daemon=True).start()


def serve(
    artifacts: Sequence[Path], options: ServeOptions, on_listening: Callable[[Listening], None] | None = None
) -> None:
    """Serve the artifacts until SIGINT/SIGTERM; models load in the background once the sockets listen, and
    the server reports ready once every one of them is loaded and warmed up."""
    import uvicorn
    from kserve.model_repository import ModelRepository
    from kserve.protocol.model_repository_extension import ModelRepositoryExtension

    shared_memory = SharedMemoryRegistry(
        enabled=options.shared_memory, max_read_bytes=options.max_body_bytes, max_regions=_region_limit(options)
    )
    models = _models(artifacts, options, shared_memory)
    repository = ModelRepository()
    for model in models:
        repository.update(model)
    dataplane = _dataplane(repository, options)
    extension = ModelRepositoryExtension(model_registry=repository)
    app = kserve_app()
    _install_routes(app, repository, options, shared_memory)

    rest = rest_server(dataplane, extension, options.port, options.grace_period_s)
    rest.create_application()
    _install_error_handlers(app)
    rest.config.app = _outer_app(app, dataplane, options)
    rest.config.http = bounded_protocol(options.max_head_bytes, options.read_timeout_s)
    rest.config.timeout_keep_alive = options.keep_alive_s
    rest.config.limit_concurrency = options.max_connections
    http = uvicorn.Server(rest.config)
    sock = bind_socket(options.host, options.port)
    host, http_port = sock.getsockname()[:2]

    async def run() -> None:
        grpc = None
        grpc_port = None
        if options.grpc_port is not None:
            from tvdeploy.serve.grpc_server import GrpcServer

            grpc = GrpcServer(options.host, options.grpc_port, dataplane, extension, options.max_body_bytes)
            grpc_port = await grpc.start()
        listening = Listening(host, http_port, grpc_port)
        grpc_text = f", gRPC on {host}:{grpc_port}" if grpc_port is not None else ""
        logger.info("listening on http://%s:%d%s (models loading: %s)", host, http_port, grpc_text,
                    ", ".join(m.name for m in models))  # fmt: skip
        if on_listening is not None:
            on_listening(listening)
        _load_in_background(models)
        try:
            await http.serve(sockets=[sock])  # until SIGINT/SIGTERM, then in-flight requests finish
        finally:
            if grpc is not None:
                await grpc.stop(options.grace_period_s)

    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again with the handler it found; a
    # handler that does nothing makes that graceful stop an ordinary exit (status 0)
    signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        with asyncio.Runner(loop_factory=rest.config.get_loop_factory()) as runner:
            runner.run(run())
    finally:
        for model in models:
            model.stop()
        sock.close()
