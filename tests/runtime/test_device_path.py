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
    buffer = runner._device_state()["inputs"][name][1]
    np.testing.assert_allclose(runner.infer({name: second})["logits"], plain.infer({name: second})["logits"], atol=1e-5)
    assert runner._device_state()["inputs"][name][1] is buffer  # refreshed in place, not made again
    third = rng.standard_normal((3, 3, 224, 224), dtype=np.float32)  # another batch size: a buffer of its own
    np.testing.assert_allclose(runner.infer({name: third})["logits"], plain.infer({name: third})["logits"], atol=1e-5)
    assert runner._device_state()["inputs"][name][1] is not buffer


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
