#!/usr/bin/env bash
# .triton-env: the Python a Triton container gives tvdeploy's preprocessing step (`export-triton --ensemble`), with
# the `tritonserver` binary and Python backend from NVIDIA's PyTriton wheel. tests/serve/test_triton_server.py serves
# the exported repository with it. tvdeploy's runtime only (no torch) and NumPy 1.x: the backend stub in that wheel is
# built against NumPy 1 and hands a NumPy 2 interpreter tensors of garbage. PyTriton's Python package (it pins
# numpy<2, which tvdeploy[all] cannot share: ExecuTorch needs NumPy 2) is installed without its dependencies and
# never imported: only the server binary and backend it carries are used.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
    echo "make_triton_env: skipped, PyTriton's tritonserver is built for Linux x86_64 only (the real-Triton test will skip)"
    exit 0
fi
python -m venv .triton-env
.triton-env/bin/python -m pip install --disable-pip-version-check -q "numpy<2" -e .
.triton-env/bin/python -m pip install --disable-pip-version-check -q --no-deps "nvidia-pytriton==0.7.0"
