"""Parsing an inference request body (JSON, or the binary tensor data extension) into KServe's ``InferRequest``,
with every field a client controls checked before anything is allocated for it.

KServe's own parser turns binary BYTES tensors into UTF-8 strings, which fails for encoded images; this one keeps
them as bytes. JSON BYTES data are strings (taken as their UTF-8 bytes) or ``{"b64": "..."}`` objects (base64,
for binary data such as images in a JSON request).
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Iterator
from typing import Any

import orjson
from kserve import InferInput, InferRequest
from kserve.protocol.infer_type import RequestedOutput

from tvdeploy.serve.failures import InvalidRequest
from tvdeploy.serve.kserve_compat import attach_raw_data
from tvdeploy.serve.shared_memory import points_at_shared_memory

#: The datatypes of the Open Inference Protocol.
PROTOCOL_DATATYPES = frozenset(
    ("BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES")
)
#: Digits a length header may have (a 20-digit length is already past any body this server takes).
_MAX_LENGTH_DIGITS = 20


def parse_binary_request(body: bytes, headers: dict[str, str], model_name: str) -> InferRequest:
    """A request body as an :class:`InferRequest`; an :class:`InvalidRequest` that names the field otherwise."""
    header = headers.get("inference-header-content-length")
    if header is None:  # a JSON request
        header = str(len(body))
    if not (header.isascii() and header.isdigit() and len(header) <= _MAX_LENGTH_DIGITS) or int(header) > len(body):
        shown = header if len(header) <= 40 else header[:40] + "..."
        raise InvalidRequest(
            f"the Inference-Header-Content-Length header ({shown!r}) must be a length within the body "
            f"of {len(body)} bytes"
        )
    json_length = int(header)
    try:
        request = orjson.loads(body[:json_length])
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"malformed inference request: not JSON ({exc})") from exc
    if not isinstance(request, dict):
        raise InvalidRequest("malformed inference request: the JSON must be an object with 'inputs'")
    inputs = request.get("inputs")
    if not isinstance(inputs, list):
        raise InvalidRequest("malformed inference request: 'inputs' must be a list of tensors")
    start = json_length
    infer_inputs = []
    for index, entry in enumerate(inputs):
        tensor, used = _input(entry, index, memoryview(body), start)
        infer_inputs.append(tensor)
        start += used
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidRequest(f"the request 'id' must be a string, got {type(request_id).__name__}")
    return InferRequest(
        model_name=model_name,
        request_id=request_id,
        parameters=_parameters(request.get("parameters"), "the request"),
        infer_inputs=infer_inputs,
        request_outputs=_outputs(request.get("outputs")),
    )


def _input(entry: Any, index: int, body: memoryview, start: int) -> tuple[InferInput, int]:
    """Input ``index`` of the request, and how many bytes of binary data after ``start`` it takes."""
    if not isinstance(entry, dict):
        raise InvalidRequest(f"input {index} of the request is not an object with name, shape and datatype")
    name, shape, datatype = entry.get("name"), entry.get("shape"), entry.get("datatype")
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"input {index} of the request has no 'name' string")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise InvalidRequest(f"input '{name}': 'shape' must be a list of non-negative integers, got {_short(shape)}")
    if datatype not in PROTOCOL_DATATYPES:
        raise InvalidRequest(
            f"input '{name}': unknown datatype {_short(datatype)} (one of {', '.join(sorted(PROTOCOL_DATATYPES))})"
        )
    parameters = _parameters(entry.get("parameters"), f"input '{name}'")
    tensor = InferInput(name=name, shape=shape, datatype=datatype, parameters=parameters)
    size = (parameters or {}).get("binary_data_size")
    if points_at_shared_memory(parameters):
        return tensor, 0  # the model reads it from the region (the system shared memory extension)
    if "data" in entry:
        tensor.data = _bytes_items(entry["data"], name, shape) if datatype == "BYTES" else entry["data"]
        return tensor, 0
    if isinstance(size, int) and not isinstance(size, bool) and size >= 0:
        if start + size > len(body):
            raise InvalidRequest(
                f"input '{name}' announces {size} bytes of binary data but the body holds {len(body) - start}"
            )
        attach_raw_data(tensor, body[start : start + size])  # not copied
        return tensor, size
    raise InvalidRequest(f"input '{name}' has neither 'data', a binary_data_size nor a shared_memory_region")


def _parameters(value: Any, where: str) -> dict[str, Any] | None:
    if value is not None and not isinstance(value, dict):
        raise InvalidRequest(f"the 'parameters' of {where} must be an object, got {type(value).__name__}")
    return value


def _outputs(value: Any) -> list[RequestedOutput] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidRequest(f"'outputs' must be a list of objects with a 'name', got {type(value).__name__}")
    requested = []
    for index, entry in enumerate(value):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise InvalidRequest(f"output {index} of the request is not an object with a 'name' string")
        parameters = _parameters(entry.get("parameters"), f"output '{entry['name']}'")
        requested.append(RequestedOutput(name=entry["name"], parameters=parameters))
    return requested or None


def _bytes_items(data: Any, name: str, shape: list[int]) -> list[bytes]:
    """JSON BYTES data as bytes: strings (their UTF-8 bytes) or ``{"b64": ...}`` objects, as many as the shape."""
    items = []
    for item in _flat(data):
        if isinstance(item, str):
            items.append(item.encode())
        elif isinstance(item, dict) and isinstance(item.get("b64"), str) and len(item) == 1:
            try:
                items.append(base64.b64decode(item["b64"], validate=True))
            except (binascii.Error, ValueError) as exc:
                raise InvalidRequest(f"input '{name}': a 'b64' item is not valid base64 ({exc})") from exc
        else:
            raise InvalidRequest(
                f'input \'{name}\': BYTES data must be strings or {{"b64": "..."}} objects, got {_short(item)}'
            )
    if len(items) != math.prod(shape):
        raise InvalidRequest(f"input '{name}' has shape {shape} but {len(items)} BYTES items")
    return items


def _flat(data: Any) -> Iterator[Any]:
    """The items of nested JSON lists, depth first (a scalar is one item); iterative, as a client sets the depth."""
    stack = [iter([data])]
    while stack:
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
        elif isinstance(item, list):
            stack.append(iter(item))
        else:
            yield item


_END = object()


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."
