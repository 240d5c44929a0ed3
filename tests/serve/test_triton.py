"""`tvdeploy export-triton`: a model repository whose config.pbtxt Triton's own schema parses, and the ensemble's
Python-backend step run as Triton runs it."""

from __future__ import annotations

import importlib.util
import sys
import types

import numpy as np
import pytest

from tests.cli_helpers import run_cli
from tvdeploy.runtime import load

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
from google.protobuf import json_format, text_format  # noqa: E402


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
    assert code == 2 and "which no Triton backend runs" in err
    optimized = tmp_path / "optimized"
    assert run_cli(capsys, "optimize", resnet18_artifacts["onnx"], "--optimize", "--output", optimized)[0] == 0
    code, _, err = run_cli(capsys, "export-triton", optimized, "--output", tmp_path / "repo")
    assert code in (1, 2) and "--optimize extended" in err


class _PythonBackendUtils(types.ModuleType):
    """The part of Triton's ``triton_python_backend_utils`` a Python-backend model uses: tensors by name, responses,
    errors (so this runs in every install; test_triton_server.py runs the model in a real Triton)."""

    class Tensor:
        def __init__(self, name: str, array: np.ndarray) -> None:
            self.name, self.array = name, array

        def as_numpy(self) -> np.ndarray:
            return self.array

    class TritonError:
        def __init__(self, message: str) -> None:
            self.message = message

    class InferenceResponse:
        def __init__(self, output_tensors: list, error=None) -> None:
            self.output_tensors, self.error = output_tensors, error

    @staticmethod
    def get_input_tensor_by_name(request: dict, name: str):
        return request.get(name)


def test_ensemble_decodes_bytes_images_like_the_runtime(resnet18_artifacts, tmp_path, capsys, photo_files) -> None:
    repo = tmp_path / "repo"
    code, out, _ = run_cli(capsys, "export-triton", resnet18_artifacts["onnx"], "--output", repo, "--ensemble")
    assert code == 0 and out.split() == [
        str(repo / n) for n in ("resnet18", "resnet18_preprocess", "resnet18_ensemble")
    ]
    parse = lambda name: text_format.Parse((repo / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())  # noqa: E731
    preprocess, ensemble = parse("resnet18_preprocess"), parse("resnet18_ensemble")
    assert preprocess.backend == "python" and preprocess.max_batch_size == 8
    assert [(i.name, i.data_type, list(i.dims)) for i in preprocess.input] == [
        ("image_bytes", model_config_pb2.TYPE_STRING, [1])
    ]
    assert [(o.name, list(o.dims)) for o in preprocess.output] == [("input", [3, 224, 224])]
    assert ensemble.platform == "ensemble" and [i.name for i in ensemble.input] == ["image_bytes"]
    assert [(o.name, o.label_filename) for o in ensemble.output] == [("logits", "labels.txt")]
    steps = ensemble.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["resnet18_preprocess", "resnet18"]
    assert dict(steps[0].output_map) == {"input": "preprocessed"} and dict(steps[1].input_map) == {
        "input": "preprocessed"
    }
    assert (repo / "resnet18_ensemble" / "1").is_dir() and (repo / "resnet18_ensemble" / "labels.txt").exists()

    # the Python-backend model as Triton runs it, on a batch of requests: a bad image fails its own request
    sys.modules["triton_python_backend_utils"] = _PythonBackendUtils("triton_python_backend_utils")
    try:
        spec = importlib.util.spec_from_file_location("preprocess_model", repo / "resnet18_preprocess/1/model.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        del sys.modules["triton_python_backend_utils"]
    model = module.TritonPythonModel()
    model.initialize({"model_repository": str(repo / "resnet18_preprocess"), "model_version": "1",
                      "model_config": json_format.MessageToJson(preprocess)})  # fmt: skip
    images = np.array([[p.read_bytes()] for p in photo_files[:2]], dtype=np.object_)  # Triton's (N, 1) BYTES
    Tensor = _PythonBackendUtils.Tensor
    good, bad = model.execute([{"image_bytes": Tensor("image_bytes", images)},
                               {"image_bytes": Tensor("image_bytes", np.array([[b"not an image"]], dtype=np.object_))}])  # fmt: skip
    runtime = load(resnet18_artifacts["onnx"])
    assert good.error is None and good.output_tensors[0].name == "input"
    np.testing.assert_array_equal(
        good.output_tensors[0].as_numpy(), np.stack([runtime.preprocess(p) for p in photo_files[:2]])
    )
    assert bad.output_tensors == [] and "image" in bad.error.message


def test_ensemble_refuses_artifacts_that_take_decoded_images(resnet18_artifacts, tmp_path, capsys) -> None:
    embedded = tmp_path / "embedded"
    assert run_cli(capsys, "optimize", resnet18_artifacts["onnx"], "--embed-preprocess", "--output", embedded)[0] == 0
    code, _, err = run_cli(capsys, "export-triton", embedded, "--output", tmp_path / "repo", "--ensemble")
    assert code == 2 and "--embed-preprocess" in err


def _renamed_copy(artifact, directory, name) -> object:
    import json
    import shutil

    shutil.copytree(artifact, directory)
    manifest = json.loads((directory / "tvdeploy.json").read_text())
    manifest["name"] = name
    (directory / "tvdeploy.json").write_text(json.dumps(manifest))
    return directory


@pytest.mark.parametrize("name", ["../escaped", "/tmp/tvdeploy_abs_target", "a/b", "", "."])
def test_a_hostile_manifest_name_writes_nothing_outside_the_repository(resnet18_artifacts, tmp_path, capsys, name):
    artifact = _renamed_copy(resnet18_artifacts["onnx"], tmp_path / "artifact", name)
    repo = tmp_path / "sandbox" / "repo"
    repo.mkdir(parents=True)
    (repo / "keep").mkdir()  # with --force, a bad name once removed the whole repository
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code, _, err = run_cli(capsys, "export-triton", artifact, "--output", repo, "--force")
    assert code == 2 and "is not a valid model name" in err and "Traceback" not in err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_force_replaces_only_models_that_export_triton_wrote(resnet18_artifacts, tmp_path, capsys) -> None:
    repo = tmp_path / "repo"
    (repo / "resnet18").mkdir(parents=True)
    (repo / "resnet18" / "precious.txt").write_text("not tvdeploy's")
    code, _, err = run_cli(capsys, "export-triton", resnet18_artifacts["onnx"], "--output", repo, "--force")
    assert code == 2 and "was not written by tvdeploy export-triton" in err
    assert (repo / "resnet18" / "precious.txt").read_text() == "not tvdeploy's"
    (repo / "resnet18" / "precious.txt").unlink()
    (repo / "resnet18").rmdir()
    assert run_cli(capsys, "export-triton", resnet18_artifacts["onnx"], "--output", repo)[0] == 0
    assert run_cli(capsys, "export-triton", resnet18_artifacts["onnx"], "--output", repo, "--force")[0] == 0
    assert (repo / "resnet18" / "1" / "model.onnx").is_file()


def test_export_refuses_a_name_that_is_not_a_model_name(tmp_path, capsys) -> None:
    code, _, err = run_cli(capsys, "export", "--model", "resnet18", "--weights", "none", "--name", "../evil",
                           "--output", tmp_path / "out")  # fmt: skip
    assert code == 2 and "--name '../evil' is not a valid model name" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil").exists()


def test_an_openvino_artifact_gets_tritons_openvino_backend(resnet18_artifacts, tmp_path, capsys) -> None:
    pytest.importorskip("openvino")
    artifact = tmp_path / "ov"
    assert run_cli(capsys, "optimize", resnet18_artifacts["onnx"], "--format", "openvino", "--output", artifact)[0] == 0
    repo = tmp_path / "repo"
    code, _, err = run_cli(capsys, "export-triton", artifact, "--output", repo)
    assert code == 0, err
    config = text_format.Parse((repo / "resnet18" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert config.backend == "openvino" and config.parameters["PERFORMANCE_HINT"].string_value == "LATENCY"
    assert sorted(p.name for p in (repo / "resnet18" / "1").iterdir()) == ["model.bin", "model.xml"]
    assert "cannot pin f32" in err  # said, not hidden: Triton's backend may compute an fp32 IR in bf16


def test_a_deployment_tuned_for_streams_gets_them_in_tritons_openvino_config(caplog) -> None:
    from tests.runtime.test_manifest import make_manifest
    from tvdeploy.runtime.host import cpu_signature
    from tvdeploy.runtime.manifest import Deployment
    from tvdeploy.serve.triton import TritonOptions, model_config

    record = Deployment(format="openvino", precision="int8", provider="cpu", threads=1, streams=2, batch_size=8,
                        objective="throughput", host_cpu="x", host_signature=cpu_signature())  # fmt: skip
    manifest = make_manifest(format="openvino", precision="int8", deployment=record)
    config = text_format.Parse(model_config(manifest, TritonOptions(instances=2)), model_config_pb2.ModelConfig())
    parameters = {key: value.string_value for key, value in config.parameters.items()}
    assert parameters == {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": "2", "INFERENCE_NUM_THREADS": "2"}
    assert config.instance_group[0].count == 2
    model_config(manifest, TritonOptions(instances=1))
    assert "give --instances 2 to keep them busy" in caplog.text  # one instance would leave a stream idle


@pytest.mark.parametrize(
    ("provider", "precision", "options", "accelerator", "unexpressed"),
    [
        ("cuda", "fp16", {"prefer_nhwc": 1, "cudnn_conv_algo_search": "HEURISTIC"}, None, "prefer_nhwc=1"),
        ("tensorrt", "int8", {"device_id": 0}, "INT8", None),
        ("cpu", "fp32", {}, None, None),
    ],
)
def test_a_gpu_deployment_gets_gpu_instances_and_its_accelerator(
    caplog, provider: str, precision: str, options: dict, accelerator: str | None, unexpressed: str | None
) -> None:
    from tests.runtime.test_manifest import make_manifest
    from tvdeploy.runtime.host import cpu_signature
    from tvdeploy.runtime.manifest import Deployment
    from tvdeploy.serve.triton import TritonOptions, model_config

    record = Deployment(format="onnx", precision=precision, provider=provider, threads=16, batch_size=64,
                        objective="throughput", host_cpu="x", host_signature=cpu_signature(),
                        provider_options=options)  # fmt: skip
    manifest = make_manifest(precision=precision, deployment=record)
    config = text_format.Parse(model_config(manifest, TritonOptions()), model_config_pb2.ModelConfig())
    kind = config.instance_group[0].kind
    assert kind == (model_config_pb2.ModelInstanceGroup.KIND_CPU if provider == "cpu" else
                    model_config_pb2.ModelInstanceGroup.KIND_GPU)  # fmt: skip
    accelerators = list(config.optimization.execution_accelerators.gpu_execution_accelerator)
    if accelerator is None:
        assert accelerators == []
    else:
        assert [(a.name, dict(a.parameters)) for a in accelerators] == [("tensorrt", {"precision_mode": accelerator})]
    if "cudnn_conv_algo_search" in options:
        assert config.parameters["cudnn_conv_algo_search"].string_value == "HEURISTIC"
    assert (unexpressed in caplog.text) if unexpressed else "has no setting" not in caplog.text
    forced = text_format.Parse(model_config(manifest, TritonOptions(kind="KIND_CPU")), model_config_pb2.ModelConfig())
    assert forced.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU  # --kind decides
