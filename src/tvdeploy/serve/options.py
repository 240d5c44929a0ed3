"""Typed server options: what ``tvdeploy serve`` carries from the command line to the server."""

from __future__ import annotations

from dataclasses import dataclass

from tvdeploy.errors import UserInputError
from tvdeploy.flags import finite_float, flag, positive_int
from tvdeploy.runtime.execution import provider_flag
from tvdeploy.runtime.gpu_decode import DECODER_CHOICES, DECODER_HELP
from tvdeploy.runtime.host import usable_cores
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
#: Pixels the images of one request may hold, read from their headers before any is decoded: eight 12 Mpx phone
#: photos fit; sixteen 9000x9000 PNGs (99 KB each, 5.5-7 s of decoding) do not.
DEFAULT_MAX_REQUEST_PIXELS = 128_000_000
#: Request line plus headers: Triton's and nginx's defaults are 8-16 KB; tritonclient sends ~200 bytes.
DEFAULT_MAX_HEAD_BYTES = 64 * 1024
#: A whole request (head and body) must arrive within this many seconds of its first byte.
DEFAULT_READ_TIMEOUT_S = 30.0
#: Connections (and requests in progress) at most: beyond, uvicorn answers 503 at once.
DEFAULT_MAX_CONNECTIONS = 1024
#: Shared memory regions a server holds at most by default (each holds one open descriptor).
DEFAULT_MAX_REGIONS = 256
#: Seconds an idle keep-alive connection stays open (KServe's choice: longer than cloud load balancers' 60 s).
DEFAULT_KEEP_ALIVE_S = 65
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
        max_request_pixels: a request whose images hold more pixels in all (read from their headers, before any is
            decoded) gets 400; None: no budget.
        max_head_bytes: a request line and headers larger than this get 431.
        read_timeout_s: a request (head and body) must arrive within this many seconds of its first byte, else 408.
        keep_alive_s: seconds an idle keep-alive connection stays open.
        max_connections: open connections (and requests in progress) at most; more get 503 at once.
        provider: the execution provider of every model (``None``: each one's deployment record's, else ``cpu``).
        grace_period_s: on SIGTERM/SIGINT, how long in-flight requests may take to finish.
        shared_memory: serve the system shared memory extension (inputs read from POSIX shared memory objects
            that clients on this host register; off by default: see docs/serving.md#security).
    """

    host: str = flag(DEFAULT_HOST, "address to bind (the default: this machine only)")
    port: int = flag(DEFAULT_PORT, "HTTP port (0: any free)")
    grpc_port: int | None = flag(None, "also serve the protocol over gRPC on this port (0: any free)")
    max_batch_size: int = flag(
        DEFAULT_MAX_BATCH_SIZE,
        "rows per model call; concurrent requests are batched up to it, 1 turns batching off",
        parse=positive_int,
    )
    max_queue_delay_ms: float = flag(
        DEFAULT_MAX_QUEUE_DELAY_MS, "how long a request waits for others to join its batch"
    )
    max_queue: int = flag(
        DEFAULT_MAX_QUEUE, "rows that may wait per model; more get 503 + Retry-After", parse=positive_int
    )
    instances: int = flag(
        DEFAULT_INSTANCES,
        "model calls that run at once, each on cores/instances threads; on a CPU, 2 with --max-batch-size "
        "= clients/2 keeps the cores busy while requests are parsed",
        parse=positive_int,
    )
    pin_instances: bool = flag(
        True,
        "with --instances > 1, leave the instance threads to the scheduler (by default each is pinned to its "
        "share of the cores, below the event loop's priority)",
        name="--no-pin-instances",
    )
    request_timeout_s: float = flag(
        DEFAULT_REQUEST_TIMEOUT_S, "seconds before an unanswered request gets 504", name="--request-timeout"
    )
    max_body_bytes: int = flag(
        int(DEFAULT_MAX_BODY_MB * 1024 * 1024), "larger bodies get 413", name="--max-body-mb", unit=1024 * 1024,
        parse=finite_float,
    )  # fmt: skip
    max_pixels: int | None = flag(DEFAULT_MAX_PIXELS, "larger images get 400", zero_is_none=True)
    max_request_pixels: int | None = flag(
        DEFAULT_MAX_REQUEST_PIXELS,
        "pixels the images of one request may hold in all, read from their headers before any is decoded",
        zero_is_none=True,
    )
    max_head_bytes: int = flag(
        DEFAULT_MAX_HEAD_BYTES, "larger request heads (request line + headers) get 431", name="--max-header-kb",
        unit=1024, parse=positive_int,
    )  # fmt: skip
    read_timeout_s: float = flag(
        DEFAULT_READ_TIMEOUT_S, "seconds a request may take to arrive, head and body, before 408", name="--read-timeout"
    )
    keep_alive_s: int = flag(
        DEFAULT_KEEP_ALIVE_S, "seconds an idle keep-alive connection stays open", name="--keep-alive-timeout"
    )
    max_connections: int = flag(
        DEFAULT_MAX_CONNECTIONS, "open connections at most; more get 503 at once", parse=positive_int
    )
    provider: str | None = provider_flag()
    decoder: str = flag("cpu", DECODER_HELP, choices=DECODER_CHOICES)
    grace_period_s: int = flag(30, "seconds in-flight requests may take on shutdown", name="--grace-period")
    shared_memory: bool = flag(
        False,
        "serve Triton's system shared memory extension: clients that reach the port may register POSIX shared "
        "memory objects of this server's user and send input tensors through them (off by default; same host, "
        "trusted clients only: see docs/serving.md#security)",
    )
    max_shm_regions: int = flag(
        DEFAULT_MAX_REGIONS,
        "shared memory regions the server holds at most (each holds a file descriptor; lowered at start to what "
        "the descriptor limit leaves beside --max-connections); more registrations get 400",
        parse=positive_int,
    )

    def __post_init__(self) -> None:
        for port in (self.port, self.grpc_port):
            if port is not None and not 0 <= port <= 65535:
                raise UserInputError(f"port {port} is out of range", hint="use 1-65535, or 0 for any free port")
        counts = (self.max_batch_size, self.max_queue, self.instances, self.max_connections, self.max_shm_regions)
        if min(counts) < 1:
            raise UserInputError(
                "--max-batch-size, --max-queue, --instances, --max-connections and --max-shm-regions must be >= 1"
            )
        limits = (self.request_timeout_s, self.max_body_bytes, self.max_head_bytes, self.read_timeout_s)
        if self.max_queue_delay_ms < 0 or min(limits) <= 0 or self.keep_alive_s < 0:
            raise UserInputError("--max-queue-delay-ms must be >= 0; timeouts and limits must be positive")
        if (self.max_pixels is not None and self.max_pixels < 1) or (
            self.max_request_pixels is not None and self.max_request_pixels < 1
        ):
            raise UserInputError("--max-pixels and --max-request-pixels must be positive (0 on the command line: none)")

    def session_config(self) -> SessionConfig:
        """ONNX Runtime settings of a served model: threads per instance, and no spin-waiting between calls
        (the cores that spinning would hold are the ones that parse the next requests)."""
        threads = None if self.instances == 1 else max(1, usable_cores() // self.instances)
        return SessionConfig(intra_op_threads=threads, spin_wait=False)
