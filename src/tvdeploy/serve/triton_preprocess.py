"""Triton Python-backend model: encoded images (BYTES) in, the network's input tensor out, decoded and
preprocessed exactly as tvdeploy's runtime does.

``tvdeploy export-triton --ensemble`` copies this file as ``<name>_preprocess/1/model.py`` next to a copy of the
artifact's manifest (``tvdeploy.json``); the ensemble feeds its output to the ONNX model. Triton's Python backend runs it
with the container's Python, which needs ``pip install tvdeploy`` (the runtime: NumPy and Pillow, no torch).
A bad image fails its own request with the runtime's message; the other requests of the batch go on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # Triton's Python backend provides it

from tvdeploy.errors import ImageError
from tvdeploy.runtime.decoder import ImageDecoder
from tvdeploy.runtime.manifest import read_manifest
from tvdeploy.serve.datatypes import ENCODED_IMAGES_INPUT


class TritonPythonModel:
    """Triton's Python-backend interface: ``initialize`` once per instance, ``execute`` per batch of requests."""

    def initialize(self, args: dict[str, Any]) -> None:
        version_dir = Path(args["model_repository"]) / str(args["model_version"])
        manifest = read_manifest(version_dir)
        self.output_name = manifest.input.name  # the network's input is this step's output (preprocess_config)
        self.decoder = ImageDecoder(manifest)

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            images = pb_utils.get_input_tensor_by_name(request, ENCODED_IMAGES_INPUT).as_numpy().reshape(-1)
            try:
                rows = np.stack([self.decoder(bytes(image)) for image in images])
            except ImageError as exc:
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(exc.message)))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.output_name, rows)]))
        return responses
