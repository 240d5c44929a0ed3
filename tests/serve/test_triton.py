"""`tvdeploy export-triton`: a model repository whose config.pbtxt Triton's own schema parses."""

from __future__ import annotations

import pytest

from tests.cli_helpers import run_cli

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
from google.protobuf import text_format  # noqa: E402


def test_repository_layout_and_config_parse_with_tritons_schema(resnet18_artifacts, tmp_path, capsys) -> None:
    repo = tmp_path / "repo"
    code, out, _ = run_cli(capsys, "export-triton", resnet18_artifacts["onnx"], "--output", repo, "--instances", "2",
                           "--max-batch-size", "16", "--max-queue-delay-us", "500")  # fmt: skip
    assert code == 0 and out.strip() == str(repo / "resnet18")
    model = repo / "resnet18"
    assert (model / "1" / "model.onnx").read_bytes() == (resnet18_artifacts["onnx"] / "model.onnx").read_bytes()
    labels = (model / "labels.txt").read_text().splitlines()
    assert len(labels) == 1000 and labels[0] == "tench"
    config = text_format.Parse((model / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert config.name == "resnet18" and config.backend == "onnxruntime" and config.max_batch_size == 16
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [
        ("input", model_config_pb2.TYPE_FP32, [3, 224, 224])
    ]
    assert [(o.name, list(o.dims), o.label_filename) for o in config.output] == [("logits", [1000], "labels.txt")]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert (
        config.instance_group[0].count == 2
        and config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    )
    code, _, err = run_cli(capsys, "export-triton", resnet18_artifacts["onnx"], "--output", repo)
    assert code == 2 and "--force" in err


def test_only_portable_onnx_artifacts_go_to_triton(resnet18_artifacts, tmp_path, capsys) -> None:
    code, _, err = run_cli(capsys, "export-triton", resnet18_artifacts["torchscript"], "--output", tmp_path)
    assert code == 2 and "takes ONNX" in err
    optimized = tmp_path / "optimized"
    assert run_cli(capsys, "optimize", resnet18_artifacts["onnx"], "--optimize", "--output", optimized)[0] == 0
    code, _, err = run_cli(capsys, "export-triton", optimized, "--output", tmp_path / "repo")
    assert code in (1, 2) and "--optimize extended" in err
