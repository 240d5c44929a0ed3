"""The benchmark regression gate: compare with the saved baseline, keep the run as the new baseline only if it passed.

    python tools/bench_gate.py                       # benchmarks/, fail on a median 15% slower
    python tools/bench_gate.py --fail median:10%     # another threshold
    python tools/bench_gate.py -- -k resnet50        # extra pytest arguments after --

The first run (no baseline) just saves one. A failing run is not saved, so a
regression cannot quietly become the next baseline.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _saved(storage: Path) -> set[Path]:
    return set(storage.glob("*/*.json"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default=str(ROOT / "benchmarks"), help="benchmark directory or file")
    parser.add_argument("--storage", default=str(ROOT / ".benchmarks"), help="pytest-benchmark storage")
    parser.add_argument("--fail", default="median:15%", help="--benchmark-compare-fail expression")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    storage = Path(args.storage)
    before = _saved(storage)
    command = [
        sys.executable,
        "-m",
        "pytest",
        args.path,
        "-p",
        "no:cacheprovider",
        "--benchmark-only",
        f"--benchmark-storage=file://{storage}",
        "--benchmark-autosave",
        *args.pytest_args,
    ]
    if before:
        command += ["--benchmark-compare", f"--benchmark-compare-fail={args.fail}"]
    else:
        print("bench_gate: no baseline yet; this run becomes the baseline")
    status = subprocess.run(command, cwd=ROOT).returncode
    if status != 0:
        for path in _saved(storage) - before:
            path.unlink()  # a failed run must not become the baseline
        print(f"bench_gate: FAILED (exit {status}); the baseline is unchanged")
    return status


if __name__ == "__main__":
    sys.exit(main())
