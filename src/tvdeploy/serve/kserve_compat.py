"""Every use of KServe's SDK beyond its public model API, in one module, so that a KServe release that changes
them breaks this file alone (the pin in pyproject.toml is bounded above for the same reason; its tests are
``tests/serve``).

What is reached into, and why:

- ``kserve.model_server``'s module-level FastAPI app: the module parses ``sys.argv`` when imported, so it is
  imported with an empty command line (:func:`kserve_app`);
- ``RESTServer._add_middlewares``: overridden to drop KServe's ``TimingMiddleware``, whose two ``getrusage`` calls
  per request only trace-log timings (their cost under load: docs/serving.md) (:func:`rest_server`);
- ``InferInput._raw_data``: a binary request's tensor bytes are attached without a copy (:func:`attach_raw_data`);
- the data plane's ``decode`` / ``infer`` / ``encode`` steps, in the order KServe's own infer route calls them,
  for tvdeploy's ASGI infer route (:func:`infer_through`), and a ``DataPlane`` subclass with tvdeploy's readiness,
  server metadata and binary request parser (:func:`data_plane`).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from typing import Any

from kserve.constants.constants import PredictorProtocol
from kserve.errors import ModelNotReady

#: The KServe releases this module was written against (pyproject.toml's pin).
KSERVE_SUPPORTED = ">=0.21,<0.22"


def kserve_app() -> Any:
    """KServe's module-level FastAPI app, imported with an empty command line (ours is not KServe's). KServe
    answers with FastAPI's deprecated ``ORJSONResponse``, which warns on every response: silenced here."""
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        import kserve.model_server
    finally:
        sys.argv = saved
    return kserve.model_server.app


def rest_server(dataplane: Any, extension: Any, http_port: int, grace_period_s: int) -> Any:
    """KServe's REST server on its module-level app, without its ``TimingMiddleware`` (tvdeploy's middleware
    measures and logs latencies itself)."""
    from kserve.protocol.rest.server import RESTServer

    class TvdeployRESTServer(RESTServer):
        def _add_middlewares(self, app: Any) -> None:
            pass

    return TvdeployRESTServer(
        "kserve.model_server:app", dataplane, extension, http_port=http_port, grace_period=grace_period_s
    )


def attach_raw_data(tensor: Any, data: memoryview) -> None:
    """Give a request's input its binary tensor data as KServe's own binary parser does (not copied)."""
    tensor._raw_data = data


def data_plane(
    repository: Any, ready: Callable[[], bool], metadata: Callable[[], dict[str, Any]], parse_binary: Callable
) -> Any:
    """KServe's data plane over ``repository``, ready when ``ready()`` says, answering server metadata with
    ``metadata()``, and parsing binary (tensor data extension) bodies with ``parse_binary(body, headers,
    model_name)`` so that BYTES tensors stay bytes."""
    from kserve.protocol.dataplane import DataPlane

    class TvdeployDataPlane(DataPlane):
        async def ready(self) -> bool:
            return ready()

        def metadata(self) -> dict[str, Any]:
            return metadata()

        def decode_inference_request(self, body: Any, headers: dict[str, str], model_name: str) -> Any:
            if isinstance(body, bytes):
                return parse_binary(body, headers, model_name)
            return super().decode_inference_request(body, headers, model_name)

    return TvdeployDataPlane(model_registry=repository)


async def infer_through(
    dataplane: Any, model_name: str, body: bytes, headers: dict[str, str]
) -> tuple[Any, dict[str, Any]]:
    """One REST infer request through the data plane, the steps of KServe's ``V2Endpoints.infer``: the encoded
    response (bytes or a JSON-ready dict) and its headers."""
    if not await dataplane.model_ready(model_name, True):  # raises ModelNotFound for an unknown name
        raise ModelNotReady(model_name)
    request, _ = dataplane.decode(
        body, headers, protocol_version=PredictorProtocol.REST_V2.value, model_name=model_name
    )
    response, response_headers = await dataplane.infer(model_name=model_name, request=request, headers=headers)
    response, encoded_headers = dataplane.encode(
        model_name=model_name, response=response, headers=headers, req_attributes={}
    )
    return response, {**response_headers, **encoded_headers}
