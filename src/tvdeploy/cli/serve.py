"""``tvdeploy serve ARTIFACT...``: the Open Inference Protocol on KServe's SDK, until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
from pathlib import Path

from tvdeploy.cli.common import EXIT_OK
from tvdeploy.cli.flags import add_option_flags, options_from_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``serve``: every :class:`~tvdeploy.serve.options.ServeOptions` field."""
    from tvdeploy.serve.options import ServeOptions

    p.add_argument("artifacts", nargs="+", type=Path, metavar="ARTIFACT", help="artifacts to serve (by manifest name)")
    add_option_flags(p, ServeOptions)


def run(args: argparse.Namespace) -> int:
    """Serve until a signal; print the address once listening (port 0: the one chosen)."""
    from tvdeploy.serve.options import ServeOptions
    from tvdeploy.serve.server import Listening, serve

    def announce(where: Listening) -> None:
        grpc = f" and grpc://{where.host}:{where.grpc_port}" if where.grpc_port is not None else ""
        print(f"serving on http://{where.host}:{where.http_port}{grpc}", flush=True)

    serve(args.artifacts, options_from_args(ServeOptions, args), on_listening=announce)
    return EXIT_OK
