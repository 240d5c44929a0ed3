"""The ``tvdeploy`` entry point: the command table, the parser of the command being run, and the one place where
the package's errors become a message and an exit code."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from tvdeploy import __version__
from tvdeploy.cli.common import EXIT_BROKEN_PIPE, print_json
from tvdeploy.errors import MissingDependencyError, TvdeployError
from tvdeploy.text import printable_lines

logger = logging.getLogger("tvdeploy")

#: What ``tvdeploy --help`` says before the commands.
DESCRIPTION = (
    "Export torchvision classifiers to ONNX, TorchScript, .pt2, OpenVINO IR and ExecuTorch artifacts with a parity "
    "check on real photos; classify, benchmark and serve them (ONNX and OpenVINO without torch)."
)


@dataclass(frozen=True)
class Command:
    """A command: its module (``add_arguments(parser)``, ``run(args) -> int``, optional ``PARSER_OPTIONS``) and
    its one-line help, known without importing the module."""

    module: str
    help: str


@lru_cache(maxsize=1)
def commands() -> dict[str, Command]:
    """Every command, in ``--help`` order (the help lines read the format registry, which imports no backend)."""
    from tvdeploy.runtime.formats import FORMATS, backend_names

    torch_free = " or ".join(name for name, spec in FORMATS.items() if not spec.torch_runtime)
    return {
        "list": Command("list_models", "list torchvision classifiers and their weights"),
        "export": Command("export", "export a model to " + ", ".join(FORMATS) + " with a parity check"),
        "optimize": Command(
            "optimize",
            "derive an artifact from a plain fp32 ONNX artifact (fp16, int8, onnxslim, ORT's optimized graph, "
            "embedded pre/post-processing), with parity",
        ),
        "validate": Command("validate", "re-check an artifact against the eager model on photos and noise"),
        "inspect": Command("inspect", "show an artifact's manifest and check its files"),
        "predict": Command("predict", f"classify images with an artifact (no torch needed for {torch_free})"),
        "bench": Command("bench", "benchmark backends side by side (" + ", ".join(backend_names()) + ")"),
        "serve": Command(
            "serve",
            "serve artifacts on the Open Inference Protocol (KServe v2 / Triton clients), with dynamic batching",
        ),
        "export-triton": Command(
            "export_triton",
            "write a Triton Inference Server model repository from "
            + " and ".join(name for name, spec in FORMATS.items() if spec.triton_backend)
            + " artifacts",
        ),
        "tune": Command(
            "tune",
            "find the fastest deployment of an fp32 ONNX artifact that passes parity on this host (ONNX Runtime "
            "and OpenVINO, fp32/bf16/int8, threads; CUDA and TensorRT where a GPU is present), measured, and write "
            "it with a deployment record",
        ),
    }


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser: every command's arguments, or, given ``command``, that command's alone (the others are listed
    by name and help, their modules not imported)."""
    parser = argparse.ArgumentParser(prog="tvdeploy", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"tvdeploy {__version__}")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
    verbosity.add_argument("-v", "--verbose", action="store_true", help="debug output on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, entry in commands().items():
        if command is not None and name != command:
            sub.add_parser(name, help=entry.help)
            continue
        module = importlib.import_module(f"tvdeploy.cli.{entry.module}")
        options = getattr(module, "PARSER_OPTIONS", None)
        p = sub.add_parser(name, help=entry.help, **(options() if options else {}))
        module.add_arguments(p)
        p.set_defaults(handler=module.run)
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    """The command named in ``argv`` (the first word that is not an option), if it is one."""
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in commands() else None


def _configure_logging(args: argparse.Namespace) -> None:
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("tvdeploy: %(message)s" if level > logging.DEBUG else "%(levelname)s %(name)s: %(message)s")
    )
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False  # some backends (executorch) configure the root logger on import


class Terminated(BaseException):
    """SIGTERM, raised where the process is, so that every ``with`` block and ``finally`` cleans up as on Ctrl-C
    (scratch directories, staging directories, a local Ray instance)."""


#: What a shell reports for a process ended by SIGTERM (128 + 15).
EXIT_TERMINATED = 143


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tvdeploy`` console script; returns the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    command = _command_in(arguments)
    args = build_parser(command).parse_args(arguments)  # without a command: argparse's usage error, exit 2
    args.argv = arguments
    _configure_logging(args)
    if threading.current_thread() is threading.main_thread():  # serve replaces it with its graceful stop
        signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        try:
            return int(args.handler(args))
        except ImportError as exc:
            raise _missing_extra(args.command, exc) from exc
    except TvdeployError as exc:
        return _report(args, exc)
    except BrokenPipeError:  # stdout closed early (`tvdeploy inspect ... | head -3`): stop quietly, as head expects
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush must not raise again
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        sys.stderr.write("tvdeploy: interrupted\n")
        return 130
    except Terminated:
        sys.stderr.write("tvdeploy: terminated\n")
        return EXIT_TERMINATED


def _missing_extra(command: str, exc: ImportError) -> Exception:
    """A :class:`MissingDependencyError` naming the extra for a module of an extra that is not installed; any
    other import error as it was."""
    from tvdeploy.extras import extra_of_module, install_hint

    extra = extra_of_module(exc.name)
    if extra is None:
        return exc
    module = (exc.name or "").split(".")[0]
    return MissingDependencyError(
        f"tvdeploy {command} needs {module}, which is not installed (it comes with the {extra} extra)",
        hint=install_hint(extra),
    )


def _report(args: argparse.Namespace, exc: TvdeployError) -> int:
    """One clear message (and with ``-v`` the chain of causes) for a tvdeploy error; its exit code."""
    if getattr(args, "json", False) is True:
        print_json({"error": exc.message, "hint": exc.hint, "type": type(exc).__name__})
    if args.verbose and (exc.__cause__ or exc.__context__):
        sys.stderr.write("".join(traceback.format_exception(exc)))  # the whole cause chain
    sys.stderr.write(f"tvdeploy: error: {printable_lines(str(exc))}\n")  # no escape sequence from a file reaches it
    return exc.exit_code
