"""The dynamic batcher on its own: batches formed while the model is busy, and instances running side by side."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

pytest.importorskip("prometheus_client")

from tvdeploy.runtime.classifier import usable_cores
from tvdeploy.serve.batching import DynamicBatcher, QueueFull
from tvdeploy.serve.options import ServeOptions


class SlowModel:
    """Records each call's batch size and how many calls overlapped; each call takes ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.sizes: list[int] = []
        self.running = 0
        self.most_at_once = 0
        self.lock = threading.Lock()

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        with self.lock:
            self.sizes.append(len(batch))
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        time.sleep(self.seconds)
        with self.lock:
            self.running -= 1
        return {"twice": batch * 2}


def _rows(count: int, value: float) -> np.ndarray:
    return np.full((count, 2), value, dtype=np.float32)


async def _submit_all(batcher: DynamicBatcher, values: list[float], gap_s: float = 0.0) -> list[np.ndarray]:
    tasks = []
    for value in values:
        tasks.append(asyncio.create_task(batcher.submit(_rows(1, value))))
        await asyncio.sleep(gap_s)
    return [outputs["twice"] for outputs in await asyncio.gather(*tasks)]


def test_requests_that_arrive_while_the_model_is_busy_form_the_next_batch() -> None:
    model = SlowModel(0.2)
    batcher = DynamicBatcher("m", model, max_batch_size=8, max_queue_delay_s=0.0, max_queue=64)

    async def scenario() -> list[np.ndarray]:
        first = asyncio.create_task(batcher.submit(_rows(1, 1.0)))
        await asyncio.sleep(0.05)  # the first call is running now
        rest = await _submit_all(batcher, [2.0, 3.0, 4.0])
        return [(await first)["twice"], *rest]

    try:
        outputs = asyncio.run(scenario())
    finally:
        batcher.close()
    assert model.sizes == [1, 3]
    assert [float(o[0, 0]) for o in outputs] == [2.0, 4.0, 6.0, 8.0]  # each request gets its own rows back


@pytest.mark.parametrize("instances", [1, 2])
def test_instances_bound_the_model_calls_that_run_at_once(instances: int) -> None:
    model = SlowModel(0.1)
    batcher = DynamicBatcher("m", model, max_batch_size=1, max_queue_delay_s=0.0, max_queue=64, instances=instances)
    try:
        start = time.perf_counter()
        outputs = asyncio.run(_submit_all(batcher, [float(v) for v in range(6)]))
        elapsed = time.perf_counter() - start
    finally:
        batcher.close()
    assert model.most_at_once == instances
    assert sorted(float(o[0, 0]) for o in outputs) == [2.0 * v for v in range(6)]
    assert elapsed < 6 * 0.1 / instances + 0.25  # side by side, not one after another


def test_a_full_queue_refuses_at_once() -> None:
    model = SlowModel(0.2)
    batcher = DynamicBatcher("m", model, max_batch_size=1, max_queue_delay_s=0.0, max_queue=2)

    async def scenario() -> None:
        running = asyncio.create_task(batcher.submit(_rows(1, 0.0)))
        await asyncio.sleep(0.05)
        waiting = [asyncio.create_task(batcher.submit(_rows(1, 1.0))) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(QueueFull):
            await batcher.submit(_rows(1, 2.0))
        await asyncio.gather(running, *waiting)

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
