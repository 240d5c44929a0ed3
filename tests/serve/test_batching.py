"""The dynamic batcher on its own: batches formed while the model is busy, and instances running side by side."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

pytest.importorskip("prometheus_client")

from tvdeploy.runtime.host import usable_cores
from tvdeploy.serve.batching import DynamicBatcher, QueueFull
from tvdeploy.serve.options import ServeOptions


class GatedModel:
    """Records each call's batch size and how many calls overlapped; each call waits until the test releases it
    (no sleeps: what the batcher does while a call runs is decided by the test, not by the machine's speed)."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.running = 0
        self.most_at_once = 0
        self.lock = threading.Lock()
        self.started = threading.Semaphore(0)  # one release per call that began
        self.release = threading.Event()

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        with self.lock:
            self.sizes.append(len(batch))
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        self.started.release()
        self.release.wait(timeout=30)
        with self.lock:
            self.running -= 1
        return {"twice": batch * 2}

    async def calls_started(self, count: int) -> None:
        """Wait (off the event loop) until ``count`` more calls are running."""
        for _ in range(count):
            assert await asyncio.to_thread(self.started.acquire, timeout=30), "the model call never started"


def _rows(count: int, value: float) -> np.ndarray:
    return np.full((count, 2), value, dtype=np.float32)


def _submit(batcher: DynamicBatcher, values: list[float]) -> list[asyncio.Task[dict[str, np.ndarray]]]:
    return [asyncio.create_task(batcher.submit(_rows(1, value))) for value in values]


async def _queued(batcher: DynamicBatcher, rows: int) -> None:
    """Yield to the event loop until ``rows`` rows wait in the batcher's queue."""
    for _ in range(1000):
        if batcher.waiting_rows >= rows:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{batcher.waiting_rows} rows queued, expected {rows}")


def test_requests_that_arrive_while_the_model_is_busy_form_the_next_batch() -> None:
    model = GatedModel()
    batcher = DynamicBatcher("m", model, max_batch_size=8, max_queue_delay_s=0.0, max_queue=64)

    async def scenario() -> list[np.ndarray]:
        first = _submit(batcher, [1.0])
        await model.calls_started(1)  # the first call is running now
        rest = _submit(batcher, [2.0, 3.0, 4.0])
        await _queued(batcher, 3)
        model.release.set()
        return [outputs["twice"] for outputs in await asyncio.gather(*first, *rest)]

    try:
        outputs = asyncio.run(scenario())
    finally:
        batcher.close()
    assert model.sizes == [1, 3]
    assert [float(o[0, 0]) for o in outputs] == [2.0, 4.0, 6.0, 8.0]  # each request gets its own rows back


@pytest.mark.parametrize("instances", [1, 2])
def test_instances_bound_the_model_calls_that_run_at_once(instances: int) -> None:
    model = GatedModel()
    batcher = DynamicBatcher("m", model, max_batch_size=1, max_queue_delay_s=0.0, max_queue=64, instances=instances)

    async def scenario() -> list[np.ndarray]:
        tasks = _submit(batcher, [float(v) for v in range(6)])
        await model.calls_started(instances)  # as many calls as instances run side by side ...
        await _queued(batcher, 6 - instances)  # ... and the rest wait for a free instance
        assert model.running == instances
        model.release.set()
        return [outputs["twice"] for outputs in await asyncio.gather(*tasks)]

    try:
        outputs = asyncio.run(scenario())
    finally:
        batcher.close()
    assert model.most_at_once == instances and model.sizes == [1] * 6
    assert sorted(float(o[0, 0]) for o in outputs) == [2.0 * v for v in range(6)]


def test_a_full_queue_refuses_at_once() -> None:
    model = GatedModel()
    batcher = DynamicBatcher("m", model, max_batch_size=1, max_queue_delay_s=0.0, max_queue=2)

    async def scenario() -> None:
        running = _submit(batcher, [0.0])
        await model.calls_started(1)
        waiting = _submit(batcher, [1.0, 1.0])
        await _queued(batcher, 2)
        with pytest.raises(QueueFull):
            await batcher.submit(_rows(1, 2.0))
        model.release.set()
        await asyncio.gather(*running, *waiting)

    try:
        asyncio.run(scenario())
    finally:
        batcher.close()


def test_served_models_split_the_cores_between_instances_and_do_not_spin() -> None:
    one, two = ServeOptions().session_config(), ServeOptions(instances=2).session_config()
    assert one.intra_op_threads is None  # ONNX Runtime's default: every core for the one call
    assert two.intra_op_threads == max(1, usable_cores() // 2)
    options = two.session_options()
    assert options.intra_op_num_threads == two.intra_op_threads
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
