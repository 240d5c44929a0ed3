"""Command line: ``tvdeploy list|export|optimize|validate|inspect|predict|bench|serve|export-triton|tune``.

Thin by design: one module per command holds its parser (``add_arguments``) and its handler (``run``), which
parses, calls the library, prints and returns an exit code. :mod:`tvdeploy.cli.main` imports only the command
being run and maps the package's errors to a clear message and an exit code, in one place.
"""

from tvdeploy.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
