"""Test stand-in for Triton's ONNX Runtime backend, which PyTriton's ``tritonserver`` lacks: a Python-backend model
that runs ``1/model.onnx`` with ONNX Runtime under the configuration ``export-triton`` wrote (its ``backend`` line
switched to ``python``), so the ensemble, dynamic batching and the classification extension run in real Triton.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnxruntime as ort
import triton_python_backend_utils as pb_utils  # Triton's Python backend provides it


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        config = json.loads(args["model_config"])
        self.input_name = config["input"][0]["name"]
        self.output_names = [output["name"] for output in config["output"]]
        path = Path(args["model_repository"]) / str(args["model_version"]) / "model.onnx"
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            batch = pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy()
            outputs = self.session.run(self.output_names, {self.input_name: batch})
            tensors = [pb_utils.Tensor(name, value) for name, value in zip(self.output_names, outputs, strict=True)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
