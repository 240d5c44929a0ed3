"""One execution record: the flags of every command declared once, ``load()``'s arguments, a deployment record
and export-triton all read through :func:`resolve_execution` (with the host check)."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from tests.runtime.test_manifest import make_manifest
from tvdeploy.errors import ProviderError
from tvdeploy.flags import flag_fields
from tvdeploy.runtime.deployment import resolve_execution
from tvdeploy.runtime.execution import Execution
from tvdeploy.runtime.host import cpu_signature
from tvdeploy.runtime.manifest import Deployment
from tvdeploy.runtime.providers import Device, DeviceKind, SessionConfig


def _record(**changes) -> Deployment:
    fields = dict(format="openvino", precision="fp32", provider="cpu", threads=1, streams=2, batch_size=16,
                  objective="throughput", host_cpu="x", host_signature=cpu_signature())  # fmt: skip
    return Deployment(**{**fields, **changes})


def test_every_command_declares_the_execution_flags_once() -> None:
    from tvdeploy.bench.run import BenchConfig
    from tvdeploy.serve.options import ServeOptions

    execution = {f.name: spec for f, spec in flag_fields(Execution)}
    assert set(execution) == {"provider", "threads", "streams", "batch_size"}
    for options in (BenchConfig, ServeOptions):
        for field, spec in flag_fields(options):
            if field.name == "provider":  # the same choices and text as the record's own flag
                assert (spec.choices, spec.help) == (execution["provider"].choices, execution["provider"].help)


def test_an_execution_is_checked_and_names_its_device() -> None:
    assert Execution("cuda", provider_options={"device_id": 1}).device == Device(DeviceKind.NVIDIA_GPU, 1)
    assert Execution("cpu").device == Device(DeviceKind.CPU) and Execution().device is None
    for bad in ({"threads": 0}, {"streams": True}, {"batch_size": -1}):
        with pytest.raises(ProviderError, match="must be a positive integer"):
            Execution(**bad)  # type: ignore[arg-type]
    with pytest.raises(ProviderError, match="unknown provider 'tpu'"):
        Execution("tpu")
    with pytest.raises(ProviderError, match="cuda takes no option 'trt_fp16_enable'"):
        Execution("cuda", provider_options={"trt_fp16_enable": True})
    config = Execution(threads=3, streams=2).session_config(SessionConfig(spin_wait=False, intra_op_threads=9))
    assert (config.intra_op_threads, config.streams, config.spin_wait) == (3, 2, False)


def test_the_record_fills_what_the_caller_left_open_on_the_host_it_was_tuned_on(monkeypatch, caplog) -> None:
    monkeypatch.setattr("tvdeploy.runtime.deployment.usable_cores", lambda: 4)
    manifest = make_manifest(format="openvino", deployment=_record())
    assert manifest.deployment is not None and manifest.deployment.execution == Execution("cpu", 1, 2, 16)
    assert resolve_execution(manifest, Execution()).execution == Execution("cpu", 1, 2, 16)
    assert resolve_execution(manifest, Execution(threads=2, batch_size=4)).execution == Execution("cpu", 2, 2, 4)
    elsewhere = dataclasses.replace(manifest, deployment=_record(host_signature="x86_64:avx"))
    with caplog.at_level(logging.WARNING, logger="tvdeploy"):
        assert resolve_execution(elsewhere, Execution()).execution == Execution("cpu")  # portable settings
    assert "tuned on another CPU" in caplog.text


def test_export_triton_reads_the_record_with_the_host_check(monkeypatch) -> None:
    from tvdeploy.serve.triton import _backend_parameters

    here = make_manifest(format="openvino", deployment=_record(streams=1, threads=1))
    assert _backend_parameters(here, 1)["INFERENCE_NUM_THREADS"] == "1"
    elsewhere = dataclasses.replace(here, deployment=_record(streams=1, threads=1, host_signature="x86_64:avx"))
    assert "INFERENCE_NUM_THREADS" not in _backend_parameters(elsewhere, 1)  # another CPU's threads are not used


def test_a_records_provider_options_are_schema_5_checked_and_applied(monkeypatch) -> None:
    import json

    from tvdeploy.errors import ArtifactError
    from tvdeploy.runtime.manifest import Manifest

    monkeypatch.setattr("tvdeploy.runtime.deployment.recorded_provider", lambda manifest: "cuda")
    record = _record(format="onnx", provider="cuda", streams=1, provider_options={"prefer_nhwc": 1})
    manifest = make_manifest(deployment=record)
    data = manifest.to_dict()
    assert data["schema_version"] == 5 and data["deployment"]["provider_options"] == {"prefer_nhwc": 1}
    assert Manifest.from_dict(json.loads(json.dumps(data))).deployment == record
    plain = make_manifest(deployment=_record(format="onnx", streams=1)).to_dict()
    assert plain["schema_version"] == 3 and "provider_options" not in plain["deployment"]  # older readers read it
    applied = resolve_execution(manifest, Execution()).execution
    assert applied.provider == "cuda" and dict(applied.provider_options) == {"prefer_nhwc": 1}
    mine = resolve_execution(manifest, Execution(provider_options={"prefer_nhwc": 0})).execution
    assert dict(mine.provider_options) == {"prefer_nhwc": 0}  # the caller's own first
    data["deployment"]["provider_options"] = {"trt_fp16_enable": True}
    with pytest.raises(ArtifactError, match="cuda takes no option 'trt_fp16_enable'"):
        Manifest.from_dict(data)
