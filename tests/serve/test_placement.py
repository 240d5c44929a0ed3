"""Where model instance threads run: their share of the cores, below the event loop's priority."""

from __future__ import annotations

import os
import threading

import pytest

from tvdeploy.serve.placement import INSTANCE_NICENESS, instance_cores, instance_thread_initializer


def test_instances_get_equal_shares_of_the_cores_round_robin() -> None:
    assert [instance_cores(i, 2, [0, 1]) for i in range(4)] == [{0}, {1}, {0}, {1}]
    assert [instance_cores(i, 4, [0, 1]) for i in range(4)] == [{0}, {1}, {0}, {1}]  # more instances than cores
    assert [instance_cores(i, 2, list(range(8))) for i in range(2)] == [{0, 1, 2, 3}, {4, 5, 6, 7}]
    assert instance_cores(1, 3, [2, 5, 7]) == {5}  # the usable cores, not 0..n-1


def test_one_instance_is_left_to_the_scheduler() -> None:
    assert instance_thread_initializer(1) is None


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="thread pinning is Linux's")
def test_an_instance_thread_is_pinned_and_below_the_callers_priority() -> None:
    place = instance_thread_initializer(2)
    assert place is not None
    usable = os.sched_getaffinity(0)
    seen: dict[str, object] = {}

    def instance_thread() -> None:
        before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        place()
        seen["cores"] = os.sched_getaffinity(0)
        seen["niceness"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) - before

    thread = threading.Thread(target=instance_thread)
    thread.start()
    thread.join()
    cores = seen["cores"]
    assert isinstance(cores, set) and cores <= usable and len(cores) == max(1, len(usable) // 2)
    assert seen["niceness"] == min(INSTANCE_NICENESS, 19 - os.getpriority(os.PRIO_PROCESS, 0))
    assert os.sched_getaffinity(0) == usable  # the calling thread (the event loop's) is not touched
