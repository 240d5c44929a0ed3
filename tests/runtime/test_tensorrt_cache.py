"""TensorRT engine and timing caches in the artifact, keyed by GPU model and TensorRT release (no TensorRT here: the
key is given, and the runner's options are checked before any session starts)."""

from __future__ import annotations

import json
import logging
import shutil

import pytest

from tvdeploy.errors import ArtifactError
from tvdeploy.export.artifact import not_replaceable
from tvdeploy.runtime.manifest import read_manifest
from tvdeploy.runtime.providers import SessionConfig
from tvdeploy.runtime.runners.onnx import OnnxRunner
from tvdeploy.runtime.tensorrt_cache import CACHE_FOLDER, CacheKey, cache_options, is_cache_file

H200 = CacheKey("NVIDIA H200", "10.3.0")


def test_the_key_names_the_gpu_and_the_release() -> None:
    assert H200.folder == "nvidia-h200-trt10.3.0"
    assert CacheKey("NVIDIA GeForce RTX 4090 (rev a1)", "10.13.2").folder == "nvidia-geforce-rtx-4090-rev-a1-trt10.13.2"
    assert is_cache_file(f"{CACHE_FOLDER}/x/model.engine") and not is_cache_file("model.onnx")


def test_the_first_start_says_it_builds_and_later_ones_load(tmp_path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="tvdeploy"):
        options = cache_options(tmp_path, H200)
    folder = tmp_path / CACHE_FOLDER / H200.folder
    assert options == {
        "trt_engine_cache_enable": True, "trt_engine_cache_path": str(folder), "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(folder),
    }  # fmt: skip
    assert "building TensorRT engines" in caplog.text and "NVIDIA H200" in caplog.text
    assert json.loads((folder / "key.json").read_text()) == {"gpu": "NVIDIA H200", "tensorrt": "10.3.0"}
    (folder / "resnet50_fp16.engine").write_bytes(b"engine")  # what ONNX Runtime's TensorRT provider saves
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tvdeploy"):
        cache_options(tmp_path, H200)
    assert "building" not in caplog.text


def test_a_cache_built_for_another_gpu_is_never_used(tmp_path, caplog) -> None:
    cache_options(tmp_path, H200)
    other = CacheKey("NVIDIA L4", "10.3.0")
    with caplog.at_level(logging.INFO, logger="tvdeploy"):
        options = cache_options(tmp_path, other)  # its own folder beside the H200's
    assert options["trt_engine_cache_path"].endswith("nvidia-l4-trt10.3.0")
    assert "also holds TensorRT engines for nvidia-h200-trt10.3.0 (not used on this GPU)" in caplog.text
    moved = tmp_path / CACHE_FOLDER / "nvidia-h100-trt10.3.0"  # the H200's folder renamed by hand
    shutil.copytree(tmp_path / CACHE_FOLDER / H200.folder, moved)
    with pytest.raises(ArtifactError, match=r"built for .*NVIDIA H200.*not for this NVIDIA H100"):
        cache_options(tmp_path, CacheKey("NVIDIA H100", "10.3.0"))


def test_a_read_only_artifact_keeps_its_caches_in_the_users_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr("tvdeploy.runtime.tensorrt_cache.os.access", lambda path, mode: False)
    artifact = tmp_path / "artifact"
    artifact.mkdir()
    options = cache_options(artifact, H200)
    assert options["trt_engine_cache_path"].startswith(str(tmp_path / "cache" / "tvdeploy" / "tensorrt"))
    assert not (artifact / CACHE_FOLDER).exists()


def test_a_tensorrt_runner_gets_the_artifacts_cache_and_force_may_replace_it(
    resnet18_artifacts, tmp_path, monkeypatch
) -> None:
    artifact = tmp_path / "onnx"
    shutil.copytree(resnet18_artifacts["onnx"], artifact)
    monkeypatch.setattr("tvdeploy.runtime.runners.onnx.current_key", lambda device: H200)
    runner = OnnxRunner.for_artifact(artifact, read_manifest(artifact), "tensorrt")
    assert runner.config.provider_options["trt_engine_cache_path"] == str(artifact / CACHE_FOLDER / H200.folder)
    (artifact / CACHE_FOLDER / H200.folder / "model.engine").write_bytes(b"engine")
    assert not_replaceable(artifact) is None  # the runtime's own files: --force may replace the artifact
    (artifact / "notes.txt").write_text("mine")
    assert "notes.txt" in (not_replaceable(artifact) or "")
    chosen = OnnxRunner.for_artifact(
        artifact, read_manifest(artifact), "tensorrt",
        config=SessionConfig(provider_options={"trt_engine_cache_path": "/x"}),
    )  # fmt: skip
    assert chosen.config.provider_options["trt_engine_cache_path"] == "/x"  # the caller's own path is kept


def test_an_oversized_key_file_is_refused_unread(tmp_path) -> None:
    folder = tmp_path / CACHE_FOLDER / H200.folder
    folder.mkdir(parents=True)
    (folder / "key.json").write_text(json.dumps({"gpu": "x" * 5000}))
    with pytest.raises(ArtifactError, match="larger than 4096 bytes"):
        cache_options(tmp_path, H200)
