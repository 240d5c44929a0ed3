"""uvicorn's HTTP protocol with the limits a server facing hostile clients needs before any ASGI code runs.

uvicorn (with httptools, what KServe's install brings) parses request heads of any size: one 64 MB header took
4.6 s of the event loop and delayed every other client, liveness probes included. This protocol refuses:

- a request head (request line and headers) over ``max_head_bytes``: 431, the connection closed;
- a request whose head and body do not arrive within ``read_timeout_s`` of its first byte (a slow client holding
  a connection open a byte at a time): 408, the connection closed.

Idle keep-alive connections are uvicorn's own ``timeout_keep_alive``; a declared ``Content-Length`` over the body
limit is answered 413 from the header by :class:`~tvdeploy.serve.server.ServerMiddleware`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tvdeploy.serve import metrics
from tvdeploy.serve.options import DEFAULT_MAX_HEAD_BYTES, DEFAULT_READ_TIMEOUT_S

logger = logging.getLogger(__name__)


_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


def bounded_protocol(max_head_bytes: int, read_timeout_s: float) -> type[asyncio.Protocol]:
    """The protocol class uvicorn builds per connection, with these limits."""

    class BoundedHttpToolsProtocol(_BoundedHttpToolsProtocol):
        pass

    BoundedHttpToolsProtocol.max_head_bytes = max_head_bytes
    BoundedHttpToolsProtocol.read_timeout_s = read_timeout_s
    return BoundedHttpToolsProtocol


class _HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing a head over the limit."""


class _BoundedHttpToolsProtocol(HttpToolsProtocol):
    """See the module docstring; the limits are class attributes set by :func:`bounded_protocol`."""

    max_head_bytes = DEFAULT_MAX_HEAD_BYTES
    read_timeout_s = DEFAULT_READ_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0  # bytes of chunks that ended inside the head
        self._parsed_head = 0  # bytes of the request line and headers httptools handed over
        self._heads_completed = 0
        self._in_head = True  # between the end of the previous request and the end of this one's headers
        self._read_deadline: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        """uvicorn's ``data_received`` with the head limit and the read deadline."""
        self._unset_keepalive_if_required()
        if self._in_head and self._read_deadline is None and data:
            self._read_deadline = self.loop.call_later(self.read_timeout_s, self._read_timed_out)
        began_in_head, heads_before = self._in_head, self._heads_completed
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if self._parsed_head > self.max_head_bytes:  # _count_head stopped the parser from a callback
                self._refuse(431, self._head_limit_message())
            else:
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")
            return
        # the chunk began inside a head and no head ended in it: all of it was head (a chunk in which a head or a
        # body ends holds other bytes too, and is not counted); catches one endless header before httptools hands
        # any of it over
        if began_in_head and self._heads_completed == heads_before and self.parser is not None:
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self._refuse(431, self._head_limit_message())

    def _head_limit_message(self) -> str:
        return f"the request head is larger than this server's limit of {self.max_head_bytes} bytes"

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._count_head(len(name) + len(value) + 4)

    def _count_head(self, size: int) -> None:
        """Exact accounting of what httptools hands over (many headers within one chunk): over the limit, parsing
        stops (the exception ends ``feed_data``) and :meth:`data_received` answers 431."""
        self._parsed_head += size
        if self._parsed_head > self.max_head_bytes:
            raise _HeadTooLarge

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._heads_completed += 1
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._cancel_deadline()
        self._in_head, self._head_bytes, self._parsed_head = True, 0, 0
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def _cancel_deadline(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _read_timed_out(self) -> None:
        self._read_deadline = None
        if self.cycle is not None and self.cycle.response_started:
            return  # the application answers (a request it did not read to the end); its answer goes out
        self._refuse(408, f"the request did not arrive within {self.read_timeout_s:g} s")

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` in the protocol's error format and close the connection."""
        self._cancel_deadline()
        if self.transport.is_closing():
            return
        if self.cycle is not None and self.cycle.response_started:
            self.transport.close()
            return
        body = orjson.dumps({"error": message})
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status, _REASONS[status], len(body), body)
        )
        self.transport.close()
        if self.cycle is not None:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        client = self.client[0] if self.client else "-"
        metrics.record_request("other", "-", str(status), 0.0, client, message)
