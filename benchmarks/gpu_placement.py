"""Where ONNX Runtime puts an artifact's nodes on a GPU provider: the Memcpy nodes it adds between the host and the
device, and the tensors they copy. Run by ``gpu_check.py``.

    python benchmarks/gpu_placement.py ARTIFACT --out placement.json [--provider cuda]

ONNX Runtime leaves small shape computations on the host by design (their inputs are shapes, their outputs feed
inputs that kernels read from host memory); a Memcpy node on an image-sized tensor means part of the preprocessing
or the model runs on the CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--provider", default="cuda")
    args = parser.parse_args()

    import onnx
    import onnxruntime as ort

    from tvdeploy.runtime.manifest import read_manifest
    from tvdeploy.runtime.providers import ort_provider_list

    manifest = read_manifest(args.artifact)
    with tempfile.TemporaryDirectory() as scratch:
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(Path(scratch) / "placed.onnx")
        ort.InferenceSession(
            str(args.artifact / manifest.model_file.path), options, providers=ort_provider_list(args.provider)
        )
        placed = onnx.load(options.optimized_model_filepath, load_external_data=False)
    copies = [
        {"op": node.op_type, "inputs": list(node.input), "outputs": list(node.output)}
        for node in placed.graph.node
        if node.op_type.startswith("Memcpy")
    ]
    report = {
        "artifact": str(args.artifact),
        "provider": args.provider,
        "nodes": len(placed.graph.node),
        "memcpy": copies,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
