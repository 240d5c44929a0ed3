"""The regression gate really fails when a benchmark gets slower, and keeps the old baseline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: A clock the benchmarks below advance themselves: a benchmark "takes" exactly the seconds it says, so the
#: gate's verdicts do not depend on how busy the machine is (each read ticks 1 ns, as pytest-benchmark's precision
#: probe needs a clock that moves).
FAKE_CLOCK = """
_now = 0.0

def now():
    global _now
    _now += 1e-9
    return _now

def spend(seconds):
    global _now
    _now += seconds
"""

SLEEPY_BENCHMARK = """
import os, fake_clock

def test_sleepy(benchmark):
    delay = float(os.environ["SLEEPY_DELAY"])
    benchmark.pedantic(fake_clock.spend, args=(delay,), rounds=5, warmup_rounds=1)
"""


TWO_BENCHMARKS = """
import os, fake_clock

def test_first(benchmark):
    benchmark.pedantic(fake_clock.spend, args=(float(os.environ["FIRST_DELAY"]),), rounds=5, warmup_rounds=1)

def test_second(benchmark):
    benchmark.pedantic(fake_clock.spend, args=(float(os.environ["SECOND_DELAY"]),), rounds=5, warmup_rounds=1)
"""


def _gate(
    tmp_path: Path, delay: float, *extra: str, file: str = "test_sleepy.py", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "fake_clock.py").write_text(FAKE_CLOCK)
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "bench_gate.py"),
            *extra,
            "--path",
            str(tmp_path / file),
            "--storage",
            str(tmp_path / "storage"),
            "--",
            "-q",
            "--rootdir",
            str(tmp_path),
            "-c",
            os.devnull,
            "--benchmark-timer",
            "fake_clock.now",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "SLEEPY_DELAY": str(delay), "PYTHONPATH": str(tmp_path), **(env or {})},
    )


@pytest.mark.slow  # exports a model or runs subprocesses (seconds)
def test_gate_fails_on_a_slower_run_and_keeps_the_baseline(tmp_path: Path) -> None:
    (tmp_path / "test_sleepy.py").write_text(SLEEPY_BENCHMARK)
    first = _gate(tmp_path, 0.02)
    assert first.returncode == 0 and "no baseline yet" in first.stdout, first.stdout + first.stderr
    saved = sorted((tmp_path / "storage").glob("*/*/*.json"))
    assert len(saved) == 1

    slower = _gate(tmp_path, 0.04)  # twice as slow: far past median:15%
    assert slower.returncode != 0, slower.stdout
    assert "FAILED" in slower.stdout and "Performance has regressed" in slower.stdout + slower.stderr
    assert sorted((tmp_path / "storage").glob("*/*/*.json")) == saved  # the regression did not become the baseline

    same = _gate(tmp_path, 0.02)
    assert same.returncode == 0, same.stdout + same.stderr


@pytest.mark.slow  # exports a model or runs subprocesses (seconds)
def test_baselines_are_kept_per_host_and_other_hosts_are_compared_by_ratios(tmp_path: Path) -> None:
    (tmp_path / "test_two.py").write_text(TWO_BENCHMARKS)

    def run(host: str, first: float, second: float) -> subprocess.CompletedProcess[str]:
        delays = {"FIRST_DELAY": str(first), "SECOND_DELAY": str(second)}
        return _gate(tmp_path, 0, "--host", host, file="test_two.py", env=delays)

    assert run("host-a", 0.01, 0.02).returncode == 0
    assert len(list((tmp_path / "storage" / "host-a").glob("*/*.json"))) == 1
    # another host, twice as slow everywhere: absolute medians would fail; the ratios within the run hold
    slower_host = run("host-b", 0.02, 0.04)
    assert slower_host.returncode == 0, slower_host.stdout + slower_host.stderr
    assert "no baseline from this host (host-b)" in slower_host.stdout and "ratios" in slower_host.stdout
    # a third host on which one path got 3x slower relative to the other: that is a regression
    regressed = run("host-c", 0.03, 0.02)
    assert regressed.returncode != 0 and "slower: " in regressed.stdout and "test_first" in regressed.stdout
    assert not (tmp_path / "storage" / "host-c").exists() or not list(
        (tmp_path / "storage" / "host-c").glob("*/*.json")
    )
