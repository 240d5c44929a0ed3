"""Dynamic batching in the server process: concurrent requests are queued and run as one model call.

A request waits at most ``max_queue_delay`` for others to join it, a batch holds at
most ``max_batch_size`` rows, inference runs on worker threads (the event loop
stays free), at most ``instances`` batches at once (a batch is formed when an
instance is free, so requests that arrive while the model is busy join the next
one; several instances' threads may each be placed on their own cores, see
:mod:`tvdeploy.serve.placement`), and the queue is bounded: when ``max_queue``
rows already wait, a new request is refused at once (:class:`QueueFull`, a 503)
instead of waiting without limit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from tvdeploy.serve import metrics
from tvdeploy.serve.placement import instance_thread_initializer

logger = logging.getLogger(__name__)

#: One model call: a batch in, named outputs (rows aligned with the batch) out.
RunBatch = Callable[[np.ndarray], dict[str, np.ndarray]]


class QueueFull(Exception):
    """The batching queue holds its maximum number of rows."""


@dataclass
class _Pending:
    batch: np.ndarray
    future: asyncio.Future[dict[str, np.ndarray]]


class DynamicBatcher:
    """Collects requests of one model into batches; see the module docstring."""

    def __init__(
        self,
        model_name: str,
        run: RunBatch,
        max_batch_size: int,
        max_queue_delay_s: float,
        max_queue: int,
        instances: int = 1,
        place_instances: bool = False,
    ) -> None:
        self.model_name = model_name
        self.run = run
        self.max_batch_size = max_batch_size
        self.max_queue_delay_s = max_queue_delay_s
        self.max_queue = max_queue
        self._queue: asyncio.Queue[_Pending] | None = None
        self._waiting_rows = 0
        self._task: asyncio.Task[None] | None = None
        self.instances = instances
        self._executor = ThreadPoolExecutor(
            max_workers=instances,
            thread_name_prefix=f"tvdeploy-infer-{model_name}",
            initializer=instance_thread_initializer(instances) if place_instances else None,
        )
        self._running: set[asyncio.Task[None]] = set()

    @property
    def waiting_rows(self) -> int:
        """Rows queued and not yet in a model call."""
        return self._waiting_rows

    def _start(self) -> asyncio.Queue[_Pending]:
        if self._queue is None or self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._serve())
        return self._queue

    async def submit(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Queue ``batch`` and wait for its outputs (raises :class:`QueueFull` when the queue is full)."""
        queue = self._start()
        rows = len(batch)
        if self._waiting_rows + rows > self.max_queue:
            raise QueueFull(f"{self._waiting_rows} rows already wait for {self.model_name} (limit {self.max_queue})")
        future: asyncio.Future[dict[str, np.ndarray]] = asyncio.get_running_loop().create_future()
        self._waiting_rows += rows
        metrics.QUEUE_DEPTH.labels(self.model_name).set(self._waiting_rows)
        queue.put_nowait(_Pending(batch, future))
        return await future

    async def _serve(self) -> None:
        assert self._queue is not None
        queue, loop = self._queue, asyncio.get_running_loop()
        slots = asyncio.Semaphore(self.instances)
        carried: _Pending | None = None
        while True:
            await slots.acquire()  # a batch is formed only when an instance is free to run it
            first = carried if carried is not None else await queue.get()
            carried = None
            group, rows = [first], len(first.batch)
            deadline = loop.time() + self.max_queue_delay_s
            while rows < self.max_batch_size:
                # requests already waiting join at once; only an empty queue is waited on, up to the delay (a
                # wait_for per waiting request cost an event-loop turn each while the instance stood idle)
                if queue.qsize():
                    item = queue.get_nowait()
                else:
                    timeout = deadline - loop.time()
                    if timeout <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(queue.get(), timeout)
                    except TimeoutError:
                        break
                if rows + len(item.batch) > self.max_batch_size or item.batch.shape[1:] != first.batch.shape[1:]:
                    carried = item  # it does not fit: this batch goes now, the item starts the next
                    break
                group.append(item)
                rows += len(item.batch)
            task = loop.create_task(self._run(group, slots))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, group: list[_Pending], slots: asyncio.Semaphore) -> None:
        rows = sum(len(p.batch) for p in group)
        self._waiting_rows -= rows
        metrics.QUEUE_DEPTH.labels(self.model_name).set(self._waiting_rows)
        live = [p for p in group if not p.future.done()]  # a request that timed out is not run
        if not live:
            slots.release()
            return
        batches = [p.batch for p in live]
        metrics.BATCH_SIZE.labels(self.model_name).observe(sum(len(b) for b in batches))
        future = asyncio.get_running_loop().run_in_executor(self._executor, self._run_joined, batches)
        # the instance is free as soon as its call returns: the next batch is formed before these answers go out
        future.add_done_callback(lambda _: slots.release())
        try:
            outputs = await future
        except Exception as exc:  # the model failed: every request of the batch gets the error
            logger.exception("inference failed for %s", self.model_name)
            for pending in live:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            return
        start = 0
        for pending in live:
            count = len(pending.batch)
            if not pending.future.done():
                pending.future.set_result({name: value[start : start + count] for name, value in outputs.items()})
            start += count

    def _run_joined(self, batches: list[np.ndarray]) -> dict[str, np.ndarray]:
        """One model call on the requests' rows, joined on the worker thread (not on the event loop)."""
        return self.run(batches[0] if len(batches) == 1 else np.concatenate(batches))

    def close(self) -> None:
        """Stop the batching task and the inference thread."""
        for task in (self._task, *self._running):
            if task is not None:
                task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)
