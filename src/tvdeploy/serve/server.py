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
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from kserve import InferInput, InferRequest
from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady
from kserve.protocol.infer_type import RequestedOutput

from tvdeploy.errors import UserInputError
from tvdeploy.serve import metrics
from tvdeploy.serve.asgi import ASGIApp, Message, Receive, Scope, Send, send_bytes
from tvdeploy.serve.infer_route import JSON, InferRoute, error_answer
from tvdeploy.serve.model import Overloaded, RequestTimeout, ServedClassifier
from tvdeploy.serve.options import ServeOptions
from tvdeploy.serve.shared_memory import SharedMemoryError, SharedMemoryRegistry, add_routes, points_at_shared_memory

logger = logging.getLogger(__name__)

#: Where the image upload endpoint lives (outside the protocol's /v2 namespace).
CLASSIFY_ROUTE = "/tvdeploy/models/{model_name}/classify"


def _kserve_app() -> Any:
    """KServe's module-level FastAPI app. Its module parses ``sys.argv`` when imported, so it is imported with
    an empty command line (ours is not KServe's)."""
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        import kserve.model_server
    finally:
        sys.argv = saved
    return kserve.model_server.app


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


async def _discard_body(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


class _BodyTooLarge(Exception):
    pass


def _too_large_body(max_body_bytes: int) -> bytes:
    """The 413 answer's body, in the protocol's error format."""
    return (
        f'{{"error": "the request body is larger than this server\'s limit of {max_body_bytes} bytes; '
        f'send fewer or smaller images, or start the server with a larger --max-body-mb"}}'
    ).encode()


class ServerMiddleware:
    """Body size limit (413), request metrics and the access log, as one ASGI middleware."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.too_large = _too_large_body(max_body_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        kind = _route_kind(scope["path"])
        status = 500
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = int(message["status"]), True
            await send(message)

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    if message.get("more_body", False):
                        await _discard_body(receive)  # read (not kept): the client sees the 413, not a reset
                    raise _BodyTooLarge
            return message

        length = dict(scope.get("headers", [])).get(b"content-length")
        try:
            if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
                await _discard_body(receive)  # read (not kept), so that the client sees the answer, not a reset
                await send_bytes(tracking_send, 413, self.too_large, JSON)
            else:
                await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await send_bytes(tracking_send, 413, self.too_large, JSON)
        finally:
            client = scope.get("client") or ("-", 0)
            metrics.record_request(
                kind, scope.get("method", ""), str(status), time.perf_counter() - start, client[0], scope["path"]
            )


def _install(
    app: Any, repository: Any, dataplane: Any, options: ServeOptions, shared_memory: SharedMemoryRegistry
) -> None:
    """tvdeploy's handlers, routes and middleware on KServe's app (before it starts)."""

    async def protocol_error(_: Request, exc: Exception) -> Response:
        status, body, headers = error_answer(exc)
        return Response(body, status, {k.decode(): v.decode() for k, v in headers}, media_type=JSON.decode())

    async def malformed(_: Request, exc: Exception) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error.get('loc', ()))}: {error.get('msg')}"
            for error in getattr(exc, "errors", list)()
        )
        return JSONResponse(status_code=400, content={"error": f"malformed request: {problems or exc}"})

    app.add_exception_handler(Overloaded, protocol_error)
    app.add_exception_handler(RequestTimeout, protocol_error)
    app.add_exception_handler(SharedMemoryError, protocol_error)
    app.add_exception_handler(RequestValidationError, malformed)

    async def too_large(_: Request, exc: Exception) -> Response:  # a chunked body over the limit, read by a route
        return Response(_too_large_body(options.max_body_bytes), 413, media_type=JSON.decode())

    app.add_exception_handler(_BodyTooLarge, too_large)

    async def classify(model_name: str, request: Request, top_k: int = 5) -> dict[str, Any]:
        """Classify uploaded images: a raw image body, or multipart form files; the runtime's top-k JSON."""
        model = repository.get_model(model_name)
        if model is None:
            raise ModelNotFound(model_name)
        if not model.ready:
            raise ModelNotReady(model_name)
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            form = await request.form()
            uploads = [
                (getattr(v, "filename", key), await v.read()) for key, v in form.multi_items() if hasattr(v, "read")
            ]
        else:
            uploads = [("body", await request.body())]
        if not uploads or not all(data for _, data in uploads):
            raise InvalidInput("send an image: the raw bytes as the body, or multipart form files")
        predictions = await model.classify([data for _, data in uploads], top_k)
        return {
            "model": model_name,
            "results": [
                {"source": name, "predictions": [p.to_dict() for p in rows]}
                for (name, _), rows in zip(uploads, predictions, strict=True)
            ],
        }

    app.add_api_route(CLASSIFY_ROUTE, classify, methods=["POST"])
    add_routes(app, shared_memory)


def _outer_app(app: Any, dataplane: Any, options: ServeOptions) -> ASGIApp:
    """What uvicorn runs: tvdeploy's middleware around KServe's app, outside FastAPI's own middleware stack.

    Every request is limited, counted and logged by :class:`ServerMiddleware`; unversioned infer requests are
    answered by :class:`InferRoute` before FastAPI's middleware stack (server errors, telemetry, body limit,
    exception handlers, routing), about 7% of the event loop's samples under load (py-spy).
    """
    return ServerMiddleware(InferRoute(app, dataplane), options.max_body_bytes)


def parse_binary_request(body: bytes, headers: dict[str, str], model_name: str) -> Any:
    """A request in the binary tensor data extension (what tritonclient sends by default) as an InferRequest.

    KServe's own parser turns binary BYTES tensors into UTF-8 strings, which fails for encoded images; this one
    keeps them as bytes, and names what is wrong with a malformed request.
    """
    header = headers.get("inference-header-content-length")
    if header is None:  # a JSON request sent without a JSON content type
        header = str(len(body))
    if not header.isdigit() or int(header) > len(body):
        raise InvalidInput(
            f"the Inference-Header-Content-Length header ({header!r}) must be a length within the body "
            f"of {len(body)} bytes"
        )
    json_length = int(header)
    try:
        request = orjson.loads(body[:json_length])
        inputs = request["inputs"]
        if not isinstance(inputs, list):
            raise TypeError("'inputs' is not a list")
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise InvalidInput(f"malformed inference request header: {exc}") from exc
    start = json_length
    infer_inputs = []
    for entry in inputs:
        try:
            tensor = InferInput(name=entry["name"], shape=entry["shape"], datatype=entry["datatype"],
                                parameters=entry.get("parameters"))  # fmt: skip
        except (KeyError, TypeError) as exc:
            raise InvalidInput(f"malformed input in the request: {exc}") from exc
        size = (entry.get("parameters") or {}).get("binary_data_size")
        if points_at_shared_memory(entry.get("parameters")):
            pass  # the model reads it from the region (the system shared memory extension)
        elif "data" in entry:
            tensor.data = entry["data"]
        elif isinstance(size, int) and size >= 0:
            if start + size > len(body):
                raise InvalidInput(
                    f"input '{tensor.name}' announces {size} bytes of binary data but the body holds "
                    f"{len(body) - start}"
                )
            tensor._raw_data = memoryview(body)[start : start + size]  # not copied
            start += size
        else:
            raise InvalidInput(
                f"input '{tensor.name}' has neither 'data', a binary_data_size nor a shared_memory_region"
            )
        infer_inputs.append(tensor)
    outputs = request.get("outputs")
    requested = [RequestedOutput(name=o["name"], parameters=o.get("parameters")) for o in outputs] if outputs else None
    return InferRequest(
        model_name=model_name,
        request_id=request.get("id"),
        parameters=request.get("parameters"),
        infer_inputs=infer_inputs,
        request_outputs=requested,
    )


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


def _dataplane(repository: Any) -> Any:
    """KServe's data plane, ready once every model is, with binary requests parsed keeping BYTES as bytes."""
    from kserve.protocol.dataplane import DataPlane

    class TvdeployDataPlane(DataPlane):
        async def ready(self) -> bool:
            return all(m.ready for m in repository.get_models().values())

        def decode_inference_request(self, body: Any, headers: dict[str, str], model_name: str) -> Any:
            if isinstance(body, bytes):
                return parse_binary_request(body, headers, model_name)
            return super().decode_inference_request(body, headers, model_name)

    return TvdeployDataPlane(model_registry=repository)


def _load_in_background(models: Sequence[ServedClassifier]) -> None:
    def load_all() -> None:
        for model in models:
            start = time.perf_counter()
            try:
                model.load()
            except Exception:
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
    from kserve.protocol.rest.server import RESTServer

    shared_memory = SharedMemoryRegistry(enabled=options.shared_memory)
    models = _models(artifacts, options, shared_memory)
    repository = ModelRepository()
    for model in models:
        repository.update(model)
    dataplane = _dataplane(repository)
    extension = ModelRepositoryExtension(model_registry=repository)
    _install(_kserve_app(), repository, dataplane, options, shared_memory)

    class TvdeployRESTServer(RESTServer):
        """KServe's REST server without its ``TimingMiddleware``: that middleware only trace-logs latencies
        (tvdeploy's middleware measures and logs them), and its two ``getrusage`` calls per request were a
        quarter of the event loop's time under load."""

        def _add_middlewares(self, app: Any) -> None:
            pass

    rest = TvdeployRESTServer(
        "kserve.model_server:app", dataplane, extension, http_port=options.port, grace_period=options.grace_period_s
    )
    rest.create_application()
    rest.config.app = _outer_app(_kserve_app(), dataplane, options)
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
