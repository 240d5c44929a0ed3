"""Typed server options: what ``tvdeploy serve`` carries from the command line to the server."""

from __future__ import annotations

from dataclasses import dataclass

from tvdeploy.errors import UserInputError
from tvdeploy.runtime.classifier import usable_cores
from tvdeploy.runtime.images import DEFAULT_MAX_PIXELS
from tvdeploy.runtime.providers import SessionConfig

#: Loopback: a server is reachable from elsewhere only when asked (``--host 0.0.0.0`` in a container).
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_BATCH_SIZE = 8
DEFAULT_MAX_QUEUE_DELAY_MS = 2.0
DEFAULT_MAX_QUEUE = 64
DEFAULT_INSTANCES = 1
DEFAULT_REQUEST_TIMEOUT_S = 30.0
DEFAULT_MAX_BODY_MB = 32.0
#: Seconds a 503 tells the client to wait (``Retry-After``).
RETRY_AFTER_S = 1


@dataclass(frozen=True)
class ServeOptions:
    """How to serve.

    Args:
        host: address to bind (loopback by default).
        port: HTTP port (0: any free port).
        grpc_port: also serve the protocol over gRPC on this port (0: any free port); None: HTTP only.
        max_batch_size: the most rows one model call takes; concurrent requests are batched up to it
            (1 turns dynamic batching off). A request bigger than this is refused (400), as Triton does.
        max_queue_delay_ms: how long the first waiting request waits for others to join its batch.
        max_queue: rows that may wait at most; beyond that requests get 503 with ``Retry-After``.
        instances: model calls of one model that may run at once (Triton's ``instance_group`` count); with
            more than one, each call gets ``usable cores / instances`` threads, so that calls run side by side
            instead of splitting every operator across all cores.
        pin_instances: with more than one instance, pin each instance's thread to its share of the cores and run
            it below the event loop's priority (:mod:`tvdeploy.serve.placement`).
        request_timeout_s: a request that has not been answered by then gets 504.
        max_body_bytes: larger request bodies get 413.
        max_pixels: larger images get 400 (decompression bombs).
        provider: the execution provider of every model.
        grace_period_s: on SIGTERM/SIGINT, how long in-flight requests may take to finish.
        shared_memory: serve the system shared memory extension (inputs read in place from regions that clients
            on this host register); False refuses registrations.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    grpc_port: int | None = None
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    max_queue_delay_ms: float = DEFAULT_MAX_QUEUE_DELAY_MS
    max_queue: int = DEFAULT_MAX_QUEUE
    instances: int = DEFAULT_INSTANCES
    pin_instances: bool = True
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    max_body_bytes: int = int(DEFAULT_MAX_BODY_MB * 1024 * 1024)
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    provider: str = "cpu"
    grace_period_s: int = 30
    shared_memory: bool = True

    def __post_init__(self) -> None:
        for port in (self.port, self.grpc_port):
            if port is not None and not 0 <= port <= 65535:
                raise UserInputError(f"port {port} is out of range", hint="use 1-65535, or 0 for any free port")
        if self.max_batch_size < 1 or self.max_queue < 1 or self.instances < 1:
            raise UserInputError("--max-batch-size, --max-queue and --instances must be >= 1")
        if self.max_queue_delay_ms < 0 or self.request_timeout_s <= 0 or self.max_body_bytes <= 0:
            raise UserInputError("--max-queue-delay-ms must be >= 0; timeouts and limits must be positive")

    def session_config(self) -> SessionConfig:
        """ONNX Runtime settings of a served model: threads per instance, and no spin-waiting between calls
        (the cores that spinning would hold are the ones that parse the next requests)."""
        threads = None if self.instances == 1 else max(1, usable_cores() // self.instances)
        return SessionConfig(intra_op_threads=threads, spin_wait=False)
