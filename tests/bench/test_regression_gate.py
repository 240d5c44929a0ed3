"""The regression gate really fails when a benchmark gets slower, and keeps the old baseline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SLEEPY_BENCHMARK = """
import os, time

def test_sleepy(benchmark):
    delay = float(os.environ["SLEEPY_DELAY"])
    benchmark.pedantic(time.sleep, args=(delay,), rounds=5, warmup_rounds=1)
"""


def _gate(tmp_path: Path, delay: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "bench_gate.py"),
            "--path",
            str(tmp_path / "test_sleepy.py"),
            "--storage",
            str(tmp_path / "storage"),
            "--",
            "-q",
            "--rootdir",
            str(tmp_path),
            "-c",
            os.devnull,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "SLEEPY_DELAY": str(delay)},
    )


def test_gate_fails_on_a_slower_run_and_keeps_the_baseline(tmp_path: Path) -> None:
    (tmp_path / "test_sleepy.py").write_text(SLEEPY_BENCHMARK)
    first = _gate(tmp_path, 0.02)
    assert first.returncode == 0 and "no baseline yet" in first.stdout, first.stdout + first.stderr
    saved = sorted((tmp_path / "storage").glob("*/*.json"))
    assert len(saved) == 1

    slower = _gate(tmp_path, 0.04)  # twice as slow: far past median:15%
    assert slower.returncode != 0, slower.stdout
    assert "FAILED" in slower.stdout and "Performance has regressed" in slower.stdout + slower.stderr
    assert sorted((tmp_path / "storage").glob("*/*.json")) == saved  # the regression did not become the baseline

    same = _gate(tmp_path, 0.02)
    assert same.returncode == 0, same.stdout + same.stderr
