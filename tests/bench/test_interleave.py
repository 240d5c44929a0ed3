"""The timing loop: interleaved, alternating order, one settling call per turn, exact sample counts."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tvdeploy.bench.run import BenchConfig, _Call, _time_interleaved
from tvdeploy.errors import UserInputError


def _recording_calls(log: list[str], names: str) -> list[_Call]:
    return [_Call(SimpleNamespace(name=n), "model", (lambda n=n: log.append(n))) for n in names]


def test_turns_alternate_and_each_starts_with_an_untimed_settling_call() -> None:
    log: list[str] = []
    calls = _recording_calls(log, "AB")
    _time_interleaved(calls, BenchConfig(iterations=6, warmup=1, block_size=3))
    assert [len(c.samples) for c in calls] == [6, 6]
    # warm-up A, B; round 1: A x (1 settle + 3 timed), B x 4; round 2 reversed: B x 4, A x 4
    assert "".join(log) == "AB" + "AAAA" + "BBBB" + "BBBB" + "AAAA"


def test_partial_last_block_gives_exactly_the_requested_samples() -> None:
    log: list[str] = []
    calls = _recording_calls(log, "AB")
    _time_interleaved(calls, BenchConfig(iterations=4, warmup=0, block_size=3))
    assert [len(c.samples) for c in calls] == [4, 4]


def test_time_budget_still_takes_the_minimum_samples() -> None:
    log: list[str] = []
    calls = _recording_calls(log, "ABC")
    _time_interleaved(calls, BenchConfig(iterations=None, time_budget_s=0.0, min_iterations=5, warmup=0, block_size=2))
    assert all(len(c.samples) >= 5 for c in calls)


@pytest.mark.parametrize(
    "kwargs", [{"batch_sizes": []}, {"batch_sizes": [0]}, {"iterations": None}, {"warmup": -1}, {"block_size": 0}]
)
def test_bad_configs_are_user_errors(kwargs: dict) -> None:
    with pytest.raises(UserInputError):
        BenchConfig(**kwargs)
