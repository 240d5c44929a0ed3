"""The ONNX runner's device path (CUDA, TensorRT), exercised here with the CPU standing in for the device: inputs
go into per-thread buffers made once per shape and refreshed in place, arrays that expose
``__cuda_array_interface__`` are bound where they lie, and the answers are those of a plain ``session.run``."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from tvdeploy.runtime.manifest import read_manifest
from tvdeploy.runtime.runners import runner_for_artifact


class _DeviceArray:
    """An array that says where its memory is the way GPU arrays do (the memory here is the host's)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = np.ascontiguousarray(array)
        self.__cuda_array_interface__ = {
            "shape": self.array.shape, "typestr": self.array.dtype.str, "data": (self.array.ctypes.data, False),
            "version": 3,
        }  # fmt: skip


@pytest.fixture
def device_runner(resnet18_artifacts, monkeypatch):
    artifact = resnet18_artifacts["onnx"]
    manifest = read_manifest(artifact)
    plain = runner_for_artifact(artifact, manifest).activate()
    monkeypatch.setattr("tvdeploy.runtime.runners.onnx.on_gpu", lambda provider: True)  # the CPU as the device
    runner = runner_for_artifact(artifact, manifest).activate()
    yield plain, runner, manifest.input.name
    runner.deactivate()
    plain.deactivate()


def test_the_device_path_answers_as_session_run_and_reuses_its_buffers(device_runner) -> None:
    plain, runner, name = device_runner
    rng = np.random.default_rng(0)
    first, second = (rng.standard_normal((2, 3, 224, 224), dtype=np.float32) for _ in range(2))
    np.testing.assert_allclose(runner.infer({name: first})["logits"], plain.infer({name: first})["logits"], atol=1e-5)
    buffers = runner._device_state()["inputs"][name]
    (buffer,) = buffers.values()
    np.testing.assert_allclose(runner.infer({name: second})["logits"], plain.infer({name: second})["logits"], atol=1e-5)
    assert list(buffers.values()) == [buffer]  # refreshed in place, not made again
    third = rng.standard_normal((3, 3, 224, 224), dtype=np.float32)  # another batch size: a buffer of its own
    np.testing.assert_allclose(runner.infer({name: third})["logits"], plain.infer({name: third})["logits"], atol=1e-5)
    assert len(buffers) == 2 and next(iter(buffers.values())) is buffer
    for size in range(4, 8):  # shapes beyond the few kept: the least recently used buffers go
        runner.infer({name: np.zeros((size, 3, 224, 224), dtype=np.float32)})
    assert len(buffers) == 4 and buffer not in buffers.values()


def test_arrays_already_on_the_device_are_bound_where_they_lie(device_runner) -> None:
    plain, runner, name = device_runner
    batch = np.random.default_rng(1).standard_normal((2, 3, 224, 224), dtype=np.float32)
    got = runner.infer({name: _DeviceArray(batch)})["logits"]
    np.testing.assert_allclose(got, plain.infer({name: batch})["logits"], atol=1e-5)
    assert name not in runner._device_state()["inputs"]  # no copy was made


def test_each_thread_keeps_its_own_binding(device_runner) -> None:
    _, runner, name = device_runner
    batch = np.zeros((1, 3, 224, 224), dtype=np.float32)
    bindings = []

    def call() -> None:
        runner.infer({name: batch})
        bindings.append(runner._device_state()["binding"])

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(bindings) == 2 and bindings[0] is not bindings[1]


def test_on_a_device_the_runner_runs_streams_each_with_its_own_binding(resnet18_artifacts, monkeypatch) -> None:
    from tvdeploy.errors import ProviderError
    from tvdeploy.runtime.providers import SessionConfig

    artifact = resnet18_artifacts["onnx"]
    manifest = read_manifest(artifact)
    with pytest.raises(ProviderError, match="do not run on parallel streams on cpu"):
        runner_for_artifact(artifact, manifest, config=SessionConfig(streams=2))  # the CPU's threads are its streams
    monkeypatch.setattr("tvdeploy.runtime.runners.onnx.on_gpu", lambda provider: True)  # the CPU as the device
    plain = runner_for_artifact(artifact, manifest, config=SessionConfig(streams=1)).activate()
    with runner_for_artifact(artifact, manifest, config=SessionConfig(streams=2)) as runner:
        assert runner.concurrency == 2
        feeds = [{manifest.input.name: np.full((1, 3, 224, 224), i, dtype=np.float32)} for i in range(4)]
        many = runner.infer_many(feeds)  # two at a time on the stream threads
        for feed, got in zip(feeds, many, strict=True):
            np.testing.assert_allclose(got["logits"], plain.infer(feed)["logits"], atol=1e-4)
    plain.deactivate()


def test_the_callers_arrays_are_never_the_device_buffers(device_runner) -> None:
    _, runner, name = device_runner
    first = np.ones((1, 3, 224, 224), dtype=np.float32)
    runner.infer({name: first})
    runner.infer({name: np.zeros((1, 3, 224, 224), dtype=np.float32)})
    assert (first == 1).all()  # refreshing the buffer did not write into the first caller's array


@pytest.fixture
def stand_in(monkeypatch):
    """The host standing in for the device's memory (pinned staging and device copies through ``memmove``)."""
    from tvdeploy.runtime.device_memory import HostStandIn

    memory = HostStandIn()
    monkeypatch.setattr("tvdeploy.runtime.runners.onnx.device_memory", lambda index: memory)
    return memory


def test_a_batch_filled_in_pinned_staging_is_copied_on_the_threads_stream(device_runner, stand_in) -> None:
    plain, runner, name = device_runner
    images = np.random.default_rng(2).standard_normal((2, 3, 224, 224), dtype=np.float32)
    staging = runner.staging(name, images.shape, np.float32)
    assert staging is not None and stand_in.pinned_bytes == images.nbytes
    np.copyto(staging, images)  # the caller fills it in place (the classifier stacks its batch there)
    got = runner.infer({name: staging})["logits"]
    np.testing.assert_allclose(got, plain.infer({name: images})["logits"], atol=1e-5)
    assert stand_in.copies == 1  # the pinned copy, not ONNX Runtime's pageable one
    runner.infer({name: images})  # an ordinary array: ONNX Runtime's copy
    assert stand_in.copies == 1
    smaller = runner.staging(name, (1, 3, 224, 224), np.float32)  # a smaller batch reuses the buffer
    assert smaller is not None and stand_in.pinned_bytes == images.nbytes


def test_a_device_input_filled_on_the_device_is_bound_without_a_copy(device_runner, stand_in) -> None:
    plain, runner, name = device_runner
    images = np.random.default_rng(3).standard_normal((2, 3, 224, 224), dtype=np.float32)
    target = runner.device_input(name, images.shape, np.float32)
    for row in range(2):  # as a decoder gathers its images into the batch
        stand_in.copy(target.address + row * images[row].nbytes, images[row].ctypes.data, images[row].nbytes)
    got = runner.infer({name: target})["logits"]
    np.testing.assert_allclose(got, plain.infer({name: images})["logits"], atol=1e-5)
    assert stand_in.copies == 2  # the gathering alone


def test_under_cuda_graphs_every_call_of_a_shape_runs_on_the_same_buffers(device_runner, stand_in, monkeypatch) -> None:
    from tvdeploy.runtime.runners import onnx

    plain, runner, name = device_runner
    monkeypatch.setattr(onnx.OnnxRunner, "cuda_graph", property(lambda self: True))
    monkeypatch.setattr(onnx, "_MAX_GRAPHS", 2)
    rng = np.random.default_rng(4)
    first, second = (rng.standard_normal((2, 3, 224, 224), dtype=np.float32) for _ in range(2))
    np.testing.assert_allclose(runner.infer({name: first})["logits"], plain.infer({name: first})["logits"], atol=1e-5)
    state = runner._device_state()
    (outputs,) = state["outputs"].values()
    addresses = {key: value.data_ptr() for key, value in outputs.items()}
    elsewhere = _DeviceArray(second)  # a device array elsewhere is copied into the captured input buffer
    np.testing.assert_allclose(
        runner.infer({name: elsewhere})["logits"], plain.infer({name: second})["logits"], atol=1e-5
    )
    assert stand_in.copies == 1
    assert {key: value.data_ptr() for key, value in state["outputs"][((2, 3, 224, 224),)].items()} == addresses
    other_thread = threading.Thread(target=runner.infer, args=({name: first},))
    other_thread.start()
    other_thread.join()
    assert runner._device_state() is state  # one state for every thread: the graph's addresses are the runner's
    for size in (1, 3, 4):  # another batch: another graph, up to the limit; beyond it, none
        runner.infer({name: np.zeros((size, 3, 224, 224), dtype=np.float32)})
    ids = {shapes: o.get_run_config_entry("gpu_graph_id") for shapes, o in state["graphs"].items()}
    assert ids == {((2, 3, 224, 224),): "1", ((1, 3, 224, 224),): "2", None: "-1"}
    assert len(state["graph_inputs"][name]) == 2  # the buffers kept for good: the graphs' alone


def test_cuda_graphs_on_parallel_streams_are_refused(tmp_path) -> None:
    from tvdeploy.errors import ProviderError
    from tvdeploy.runtime.providers import SessionConfig
    from tvdeploy.runtime.runners.onnx import OnnxRunner

    config = SessionConfig(streams=2, provider_options={"enable_cuda_graph": 1})
    with pytest.raises(ProviderError, match="CUDA graphs run one call at a time"):
        OnnxRunner(tmp_path / "model.onnx", "cuda", config)
