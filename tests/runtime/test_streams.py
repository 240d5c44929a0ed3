"""Parallel streams: a runner that has them runs that many calls at once (on the stream threads, in order, a call
from a stream thread inline), the callers that hold several batches keep them in flight, a runner without them
refuses them, and a tuned record's streams are written, read and applied."""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from tests.runtime.test_manifest import make_manifest
from tvdeploy.bench.run import WINDOW_DEPTH, BenchRow, _Call, in_flight_window
from tvdeploy.bench.stats import LatencyStats
from tvdeploy.errors import ArtifactError, ProviderError
from tvdeploy.runtime import load
from tvdeploy.runtime.deployment import apply_deployment
from tvdeploy.runtime.host import cpu_signature
from tvdeploy.runtime.manifest import Deployment, Manifest, TensorSpec
from tvdeploy.runtime.providers import SessionConfig
from tvdeploy.runtime.runners import runner_for_artifact
from tvdeploy.runtime.runners.base import Runner, TensorInfo, infer_in_batches
from tvdeploy.runtime.runners.openvino import OpenVinoRunner


class _TwoAtOnce(Runner):
    """A model call that returns only once ``concurrency`` calls are inside it together (a barrier), so a runner
    that does not run them at once fails (the barrier breaks) instead of passing slowly."""

    def __init__(self, concurrency: int) -> None:
        super().__init__()
        self._concurrency = concurrency
        self.barrier = threading.Barrier(concurrency, timeout=10)
        self.calls: list[int] = []

    @property
    def concurrency(self) -> int:
        return self._concurrency

    def _load(self) -> None: ...

    def _unload(self) -> None: ...

    @property
    def inputs(self) -> list[TensorInfo]:
        return [TensorInfo("x", (None, 1), "float32")]

    @property
    def outputs(self) -> list[TensorInfo]:
        return [TensorInfo("y", (None, 1), "float32")]

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls.append(len(feeds["x"]))
        if self._concurrency > 1:
            self.barrier.wait()
        return {"y": feeds["x"] * 2}


def _feeds(count: int) -> list[dict[str, np.ndarray]]:
    return [{"x": np.full((1, 1), i, dtype=np.float32)} for i in range(count)]


def test_infer_many_runs_calls_at_once_and_keeps_their_order() -> None:
    runner = _TwoAtOnce(2)
    with runner:
        outputs = runner.infer_many(_feeds(6))  # three pairs, each pair inside the barrier together
    assert [float(o["y"][0, 0]) for o in outputs] == [0, 2, 4, 6, 8, 10]
    assert runner._streams_pool is None  # released with the runner


def test_work_on_the_stream_threads_calls_the_model_inline_instead_of_waiting_on_its_own_pool() -> None:
    runner = _TwoAtOnce(2)
    runner.barrier = threading.Barrier(1)  # the nested calls run one at a time: nothing to meet
    with runner:
        # both stream threads busy with work that itself asks for several calls (predict_stream's batches on an
        # artifact whose batch axis is smaller than the batch): a pool waiting on itself would hang here
        outer = [runner.stream_pool.submit(runner.infer_many, _feeds(3)) for _ in range(2)]
        inner = [future.result(timeout=10) for future in outer]
    assert all([float(o["y"][0, 0]) for o in result] == [0, 2, 4] for result in inner)


def test_one_stream_runs_one_call_at_a_time_on_the_callers_thread() -> None:
    runner = _TwoAtOnce(1)
    with runner:
        assert [float(o["y"][0, 0]) for o in runner.infer_many(_feeds(3))] == [0, 2, 4]
    assert runner._streams_pool is None  # no threads were made


def test_a_dynamic_batch_axis_is_shared_between_streams_in_chunks_of_the_batch_size() -> None:
    spec = TensorSpec(name="x", shape=["batch", 1], dtype="float32")
    batch = np.arange(20, dtype=np.float32).reshape(20, 1)
    streamed = _TwoAtOnce(2)
    with streamed:
        out = infer_in_batches(streamed, spec, ["y"], batch, stream_batch=10)
    assert streamed.calls == [10, 10]  # both inside the barrier together
    np.testing.assert_array_equal(out["y"], batch * 2)
    single = _TwoAtOnce(1)
    with single:
        infer_in_batches(single, spec, ["y"], batch, stream_batch=8)
    assert single.calls == [20]  # one stream: the whole batch in one call, as before


def test_the_window_keeps_the_streams_busy_and_counts_each_call() -> None:
    runner = _TwoAtOnce(2)
    with runner:
        call = _Call(None, "model", lambda: None, window=in_flight_window(runner, _feeds(1)[0]), in_flight=2)  # type: ignore[arg-type]
        call.timed()
        call.timed()
    # two windows of WINDOW_DEPTH calls per stream, two in flight at a time (else the barrier breaks)
    assert len(call.samples) == 2 * WINDOW_DEPTH * 2 and len(call.intervals) == 2
    interval = LatencyStats.from_seconds(call.intervals)
    row = BenchRow("openvino", "ov", None, "model", 8, LatencyStats.from_seconds(call.samples), None, None, None,
                   in_flight=2, interval=interval)  # fmt: skip
    assert row.throughput_ips == pytest.approx(8 / (interval.mean / 1000))  # from the interval, not the latency
    assert row.to_dict()["in_flight"] == 2 and row.to_dict()["interval_ms"]["p50"] == pytest.approx(
        interval.p50, abs=1e-4
    )


class _Straggler(_TwoAtOnce):
    """Two streams on a clock of their own (no sleeps, no wall time): every call takes 10 ms of its stream's clock
    but the window's last, which takes 200; the barrier pairs the calls, so each stream runs half of them."""

    def __init__(self) -> None:
        super().__init__(2)
        self.count = 0
        self.lock = threading.Lock()
        self.clocks: dict[int, float] = {}

    def perf_counter(self) -> float:
        return self.clocks.get(threading.get_ident(), 0.0)

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self.lock:
            self.count += 1
            last = self.count == WINDOW_DEPTH * 2
        self.barrier.wait()
        self.clocks[threading.get_ident()] = self.perf_counter() + (0.2 if last else 0.01)
        return {"y": feeds["x"]}


def test_the_interval_is_little_s_law_for_busy_streams_not_the_window_over_its_calls(monkeypatch) -> None:
    runner = _Straggler()
    monkeypatch.setattr("tvdeploy.bench.run.time", runner)  # in_flight_window reads the streams' own clocks
    with runner:
        calls = WINDOW_DEPTH * 2
        latencies, interval = in_flight_window(runner, _feeds(1)[0])(calls)
    assert sorted(latencies) == pytest.approx([0.01] * (calls - 1) + [0.2])
    # the straggler's stream stays busy to the end while the other goes idle: that idle tail is the window's,
    # not the streams' (kept fed, the straggler would overlap the other stream's next calls)
    assert interval == pytest.approx(sum(latencies) / (2 * calls))
    window = max(runner.clocks.values()) / calls  # the window's seconds over its calls: the straggler's stream
    assert interval < 0.8 * window


def test_openvino_compiles_streams_with_the_throughput_hint_and_threads_for_all_of_them(tmp_path: Path) -> None:
    one = OpenVinoRunner(tmp_path / "model.xml", config=SessionConfig(intra_op_threads=2))
    assert one.concurrency == 1
    assert one.properties()["PERFORMANCE_HINT"] == "LATENCY" and one.properties()["INFERENCE_NUM_THREADS"] == 2
    assert "NUM_STREAMS" not in one.properties()
    two = OpenVinoRunner(tmp_path / "model.xml", config=SessionConfig(intra_op_threads=1, streams=2))
    assert two.concurrency == 2
    props = two.properties()
    assert (props["PERFORMANCE_HINT"], props["NUM_STREAMS"], props["INFERENCE_NUM_THREADS"]) == ("THROUGHPUT", 2, 2)
    assert (
        "INFERENCE_NUM_THREADS" not in OpenVinoRunner(tmp_path / "m.xml", config=SessionConfig(streams=2)).properties()
    )


@pytest.mark.parametrize("streams", [0, -1, True, 1.5])
def test_streams_must_be_a_positive_integer(streams: object) -> None:
    with pytest.raises(ProviderError, match="streams must be a positive integer"):
        SessionConfig(streams=streams)  # type: ignore[arg-type]


def _record(streams: int) -> Deployment:
    return Deployment(format="openvino", precision="fp32", provider="cpu", threads=1, streams=streams,
                      batch_size=8, objective="throughput", host_cpu="x", host_signature=cpu_signature())  # fmt: skip


def test_a_record_with_streams_is_schema_4_and_one_without_stays_readable_by_schema_3() -> None:
    streamed = make_manifest(format="openvino", deployment=_record(2))
    data = streamed.to_dict()
    assert data["schema_version"] == 4 and data["deployment"]["streams"] == 2
    assert Manifest.from_dict(json.loads(json.dumps(data))).deployment == _record(2)
    single = make_manifest(format="openvino", deployment=_record(1)).to_dict()
    assert single["schema_version"] == 3 and "streams" not in single["deployment"]
    assert Manifest.from_dict(single).deployment == _record(1)
    data["deployment"]["streams"] = "2"
    with pytest.raises(ArtifactError, match=r"deployment.streams must be an integer from 1 to 1024"):
        Manifest.from_dict(data)


def test_the_records_streams_apply_where_the_caller_set_none_and_not_on_another_cpu(monkeypatch) -> None:
    manifest = make_manifest(format="openvino", deployment=_record(2))
    config = apply_deployment(manifest, None, None).session_config
    assert (config.streams, config.intra_op_threads) == (2, 1)
    assert apply_deployment(manifest, SessionConfig(streams=1), None).session_config.streams == 1  # the caller's
    monkeypatch.setattr("tvdeploy.runtime.deployment.cpu_signature", lambda: "x86_64:avx,avx2,fma")
    assert apply_deployment(manifest, None, None).session_config.streams is None  # portable: one stream


def test_more_streams_than_cores_are_refused_when_asked_for_and_set_aside_when_recorded(
    ten_class_exports, monkeypatch, caplog
) -> None:
    pytest.importorskip("openvino")
    outcome = ten_class_exports["openvino"]
    monkeypatch.setattr("tvdeploy.runtime.runners.usable_cores", lambda: 2)
    with pytest.raises(ProviderError, match="1000000000 streams asked for; this host has 2 usable cores") as info:
        runner_for_artifact(outcome.artifact_dir, outcome.manifest, config=SessionConfig(streams=10**9))
    assert info.value.hint == "use at most 2 streams"
    # a smaller host's (or a hand-edited) record: one stream, said so; nothing sized by the record's number
    record = dataclasses.replace(_record(64), precision=outcome.manifest.precision, threads=64)
    hostile = dataclasses.replace(outcome.manifest, deployment=record)
    monkeypatch.setattr("tvdeploy.runtime.deployment.usable_cores", lambda: 2)
    with caplog.at_level("WARNING", logger="tvdeploy"):
        config = apply_deployment(hostile, None, None).session_config
    assert config.streams is None and "tuned for 64 streams" in caplog.text
    assert config.intra_op_threads == 2 and "tuned for 64 threads" in caplog.text  # threads bounded the same way
    # a number no host has is not a record tune wrote: refused where the manifest is read
    with pytest.raises(ArtifactError, match=r"deployment.streams must be an integer from 1 to 1024, got 1000000000"):
        _record(10**9)


def test_a_format_without_streams_refuses_them_and_names_the_formats_that_have_them(ten_class_exports) -> None:
    outcome = ten_class_exports["onnx"]
    manifest = dataclasses.replace(outcome.manifest)
    with pytest.raises(ProviderError, match="onnx artifacts do not run on parallel streams") as info:
        runner_for_artifact(outcome.artifact_dir, manifest, config=SessionConfig(streams=2))
    assert "openvino" in (info.value.hint or "")


def test_openvino_on_two_streams_answers_as_on_one(ten_class_exports, photo_files, tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    artifact = ten_class_exports["openvino"].artifact_dir
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    sources = [*photo_files, broken, *photo_files]
    with (
        load(artifact, session_config=SessionConfig(streams=1), batch_size=2) as one,
        load(artifact, session_config=SessionConfig(streams=2), batch_size=2) as two,
    ):
        assert two.runner.concurrency == 2
        batch = np.stack([one.preprocess(path) for path in photo_files])
        np.testing.assert_allclose(two.infer(batch), one.infer(batch), rtol=0, atol=1e-5)
        listed = [[p.index for p in top] for top in two.predict(photo_files * 3)]  # three batches of 2 per chunk
        assert listed == [[p.index for p in top] for top in one.predict(photo_files * 3)]
        expected = [r.to_dict() for r in one.predict_stream(sources)]
        streamed = [r.to_dict() for r in two.predict_stream(sources)]
    assert [r["path"] for r in streamed] == [r["path"] for r in expected]  # in order
    assert "error" in streamed[len(photo_files)] and sum("error" in r for r in streamed) == 1  # it fails alone
    for got, want in zip(streamed, expected, strict=True):
        if "predictions" in want:
            assert [p["index"] for p in got["predictions"]] == [p["index"] for p in want["predictions"]]


def test_bench_times_streams_in_flight_where_the_format_has_them(ten_class_exports, tmp_path: Path, capsys) -> None:
    pytest.importorskip("openvino")
    from tests.cli_helpers import run_cli

    ov, onnx = ten_class_exports["openvino"].artifact_dir, ten_class_exports["onnx"].artifact_dir
    code, out, err = run_cli(capsys, "bench", ov, onnx, "--streams", "2", "--threads", "1", "--batch-sizes", "2",
                             "--iterations", "4", "--no-cold-start", "--save-json", tmp_path / "b.json")  # fmt: skip
    assert code == 0, err
    rows = {r["backend"]: r for r in json.loads((tmp_path / "b.json").read_text())["results"]}
    assert rows["openvino"]["in_flight"] == 2 and rows["openvino"]["interval_ms"]["p50"] > 0
    assert rows["onnx"]["in_flight"] == 1 and rows["onnx"]["interval_ms"] is None  # --streams passes it by
    assert "model x2" in out


def test_the_server_runs_a_batch_per_stream_of_a_tuned_openvino_artifact(ten_class_exports, tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    from tvdeploy.runtime.manifest import read_manifest, write_manifest
    from tvdeploy.serve.core import ModelCore
    from tvdeploy.serve.options import ServeOptions

    tuned = tmp_path / "tuned"
    shutil.copytree(ten_class_exports["openvino"].artifact_dir, tuned)
    manifest = read_manifest(tuned)
    write_manifest(dataclasses.replace(manifest, deployment=dataclasses.replace(_record(2), precision="fp32")), tuned)
    core = ModelCore(tuned, ServeOptions())  # --instances left at 1
    core.load()
    try:
        assert core.classifier is not None and core.classifier.runner.concurrency == 2
        assert core.batcher is not None and core.batcher.instances == 2
    finally:
        core.stop()
