"""The benchmark regression gate: compare with the saved baseline, keep the run as the new baseline only if it passed.

    python tools/bench_gate.py                       # benchmarks/, fail on a median 15% slower
    python tools/bench_gate.py --fail median:10%     # another threshold
    python tools/bench_gate.py -- -k resnet50        # extra pytest arguments after --

Baselines are kept per host (``.benchmarks/<host fingerprint>/``: machine, usable cores, CPU model and the CPU
features that decide which kernels run), because the processor changes between sessions and CI runners:

- a baseline from this host: medians are compared as they are (pytest-benchmark's ``--benchmark-compare-fail``);
- baselines from other hosts only: absolute medians say nothing across CPUs, so the gate says so and compares
  ratios measured within each run instead: every benchmark's median over the geometric mean of all benchmarks
  the two runs share, so a host that is uniformly faster or slower cancels out and a path that got slower
  relative to the rest fails (``--fail-ratio``, default 30%: CPUs also differ in which paths they speed up);
- no baseline at all: this run becomes the first one.

A failing run is not saved, so a regression cannot quietly become the next baseline.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def host_fingerprint() -> str:
    """``x86_64-2c-<10 hex>``: the machine, the usable cores, and a hash of the CPU model and feature signature."""
    from tvdeploy.runtime.host import cpu_model, cpu_signature, usable_cores

    digest = hashlib.sha256(f"{cpu_model()}|{cpu_signature()}".encode()).hexdigest()[:10]
    return f"{platform.machine() or 'unknown'}-{usable_cores()}c-{digest}"


def _saved(storage: Path) -> set[Path]:
    return set(storage.glob("*/*.json"))


def _medians(report: Path) -> dict[str, float]:
    data = json.loads(report.read_text())
    return {bench["fullname"]: bench["stats"]["median"] for bench in data["benchmarks"]}


def compare_ratios(baseline: dict[str, float], current: dict[str, float], threshold: float) -> list[str]:
    """The benchmarks that got slower than ``threshold`` relative to the others, comparing each one's median over
    the geometric mean of the shared benchmarks in its own run; empty when none did."""
    shared = sorted(set(baseline) & set(current))
    if len(shared) < 2:
        return []

    def normalised(medians: dict[str, float]) -> dict[str, float]:
        scale = math.exp(sum(math.log(medians[name]) for name in shared) / len(shared))
        return {name: medians[name] / scale for name in shared}

    old, new = normalised(baseline), normalised(current)
    return [
        f"{name}: {new[name] / old[name] - 1:+.0%} relative to the run's other benchmarks"
        for name in shared
        if new[name] / old[name] > 1 + threshold
    ]


def _percent(text: str) -> float:
    return float(text.rstrip("%")) / 100


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default=str(ROOT / "benchmarks"), help="benchmark directory or file")
    parser.add_argument("--storage", default=str(ROOT / ".benchmarks"), help="baselines, one folder per host")
    parser.add_argument("--fail", default="median:15%", help="--benchmark-compare-fail expression (same host)")
    parser.add_argument("--fail-ratio", default="30%", help="relative slowdown that fails across hosts")
    parser.add_argument("--host", default=None, help=argparse.SUPPRESS)  # tests: pretend to be another host
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    root = Path(args.storage)
    host = args.host or host_fingerprint()
    storage = root / host
    before = _saved(storage)
    others = {path for path in root.glob("*/*/*.json") if not path.is_relative_to(storage)}
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "run.json"
        command = [
            sys.executable, "-m", "pytest", args.path, "-p", "no:cacheprovider", "--benchmark-only",
            f"--benchmark-storage=file://{storage}", "--benchmark-autosave", f"--benchmark-json={report}",
            *args.pytest_args,
        ]  # fmt: skip
        if before:
            print(f"bench_gate: comparing with this host's baseline ({host})")
            command += ["--benchmark-compare", f"--benchmark-compare-fail={args.fail}"]
        elif others:
            latest = max(others, key=lambda path: path.stat().st_mtime)
            print(
                f"bench_gate: no baseline from this host ({host}); comparing ratios within the run with the latest "
                f"baseline of another host ({latest.parent.parent.name}), not absolute medians"
            )
        else:
            print(f"bench_gate: no baseline yet; this run becomes the baseline of {host}")
        status = subprocess.run(command, cwd=ROOT).returncode
        if status == 0 and not before and others and report.is_file():
            regressed = compare_ratios(_medians(latest), _medians(report), _percent(args.fail_ratio))
            for line in regressed:
                print(f"bench_gate: slower: {line}")
            status = 1 if regressed else 0
    if status != 0:
        for path in _saved(storage) - before:
            path.unlink()  # a failed run must not become the baseline
        print(f"bench_gate: FAILED (exit {status}); the baseline is unchanged")
    return status


if __name__ == "__main__":
    sys.exit(main())
