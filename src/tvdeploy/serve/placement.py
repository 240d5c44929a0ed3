"""Where a model instance's thread runs when several instances share the CPU: its own cores, below the event loop.

With ``--instances N`` (N > 1) each instance calls the model on its own thread. Left to the scheduler, those threads
and the event loop trade places on the same cores: a thread woken by the loop is often queued on the loop's
core while another core idles, and the loop, whose short work (reading requests, answering) is what feeds the
instances, waits behind a model call. So instance k is pinned to its share of the usable cores and runs at a
lower priority (nice +10) than the event loop (what it gains, measured: docs/serving.md, "instances").
``--no-pin-instances`` turns it off (several servers sharing one machine's cores, say).
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)

#: How much lower an instance thread's priority is than the event loop's (Linux nice levels).
INSTANCE_NICENESS = 10

#: Instances numbered across every model of the server, so that several models' instances spread over the cores.
_next_instance = itertools.count()
_lock = threading.Lock()


def instance_cores(index: int, instances: int, cores: list[int]) -> set[int]:
    """The cores of instance ``index`` of ``instances``: an equal share of ``cores``, round-robin past the end."""
    share = max(1, len(cores) // instances)
    start = (index * share) % len(cores)
    return {cores[(start + offset) % len(cores)] for offset in range(share)}


def instance_thread_initializer(instances: int) -> Callable[[], None] | None:
    """A thread initializer that places each new instance thread (None when there is one instance, or the
    platform cannot pin threads: the scheduler places it)."""
    if instances < 2 or not hasattr(os, "sched_setaffinity"):
        return None

    def place() -> None:
        with _lock:
            index = next(_next_instance)
        cores = sorted(os.sched_getaffinity(0))
        chosen = instance_cores(index, instances, cores)
        try:
            os.sched_setaffinity(0, chosen)  # 0: the calling thread
            thread = threading.get_native_id()
            os.setpriority(
                os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + INSTANCE_NICENESS)
            )
        except OSError as exc:  # a restricted container, say: run unplaced, but say so
            logger.warning("could not place model instance thread on cores %s: %s", sorted(chosen), exc)
            return
        logger.debug("model instance thread %d on cores %s at nice +%d", index, sorted(chosen), INSTANCE_NICENESS)

    return place
