"""Running the CLI in-process and as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tvdeploy.cli import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``tvdeploy ARGV`` in this process; returns (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_cli_process(
    *argv: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``python -m tvdeploy ARGV`` in a subprocess (to see exactly what a user sees)."""
    return subprocess.run(
        [sys.executable, "-m", "tvdeploy", *map(str, argv)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=timeout,
    )
