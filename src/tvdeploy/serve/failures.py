"""What a request can fail with, protocol-neutral: the serving core raises these, and the one error table
(:mod:`tvdeploy.serve.errors`) answers them in HTTP and gRPC terms."""

from __future__ import annotations


class InvalidRequest(Exception):
    """The client's request is wrong (a shape, a datatype, an image, too many rows): answered 400."""


class Overloaded(Exception):
    """A model's queue is full: answered 503 with ``Retry-After``."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RequestTimeout(Exception):
    """A request was not answered within the server's request timeout: answered 504."""


class BodyTooLarge(Exception):
    """A request body over the server's limit: answered 413; ``drained``: the rest of the body was read (else the
    connection is closed after the answer)."""

    def __init__(self, message: str, drained: bool) -> None:
        super().__init__(message)
        self.drained = drained


class Refused(Exception):
    """A request the server does not serve by design (e.g. loading models through the API): answered 400."""
