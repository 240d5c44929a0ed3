"""``POST /v2/models/{name}/infer`` as a plain ASGI route: KServe's data plane without FastAPI's layers.

The request goes through the same steps as KServe's own route (``V2Endpoints.infer``, called in
:func:`~tvdeploy.serve.kserve_compat.infer_through`): the data plane decodes it (JSON, or the binary tensor data
extension), runs the model (``Model.__call__``: tvdeploy's ``predict`` and its dynamic batcher) and encodes the
response. What it skips is FastAPI's routing, dependency solving and request-model validation (their cost is
measured in docs/serving.md). Other routes stay KServe's.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson

from tvdeploy.serve.asgi import Receive, Scope, Send, send_bytes
from tvdeploy.serve.errors import error_answer
from tvdeploy.serve.kserve_compat import infer_through

logger = logging.getLogger(__name__)

#: The infer path, with or without a model version; its first group is the model name.
INFER_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/[^/]+)?/infer$")

JSON = b"application/json"
OCTET_STREAM = b"application/octet-stream"


class InferRoute:
    """ASGI middleware that answers infer requests itself and passes everything else on."""

    def __init__(self, app: Any, dataplane: Any) -> None:
        self.app = app
        self.dataplane = dataplane

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = INFER_PATH.match(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away: the middleware counts the request as closed by the client
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
        try:
            body, extra = await self._infer(match.group(1), b"".join(chunks), headers)
        except Exception as exc:
            status, payload, extra = error_answer(exc, f"POST {scope['path']}")
            await send_bytes(send, status, payload, JSON, extra)
            return
        if isinstance(body, bytes):
            await send_bytes(send, 200, body, OCTET_STREAM, extra)
        else:
            await send_bytes(send, 200, orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), JSON, extra)

    async def _infer(self, model_name: str, body: bytes, headers: dict[str, str]) -> tuple[Any, list[Any]]:
        response, extra = await infer_through(self.dataplane, model_name, body, headers)
        return response, [
            (key.encode(), str(value).encode())
            for key, value in extra.items()
            if key.lower() not in ("content-length", "content-type")
        ]
