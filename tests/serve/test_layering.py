"""serve/ sits on the runtime alone: every module imports with torch, torchvision and tvdeploy's export, models,
bench and tune packages blocked, and only the KServe compatibility module reaches into KServe's private API."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

if importlib.util.find_spec("kserve") is None:  # not imported here: kserve and tritonclient.grpc clash in one process
    pytest.skip("the serve extra is not installed", allow_module_level=True)

SERVE = Path(__file__).resolve().parents[2] / "src" / "tvdeploy" / "serve"

BLOCK = textwrap.dedent("""
    import importlib.abc, sys

    BLOCKED = ("torch", "torchvision", "tvdeploy.export", "tvdeploy.models", "tvdeploy.bench", "tvdeploy.tune")

    class _Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if any(name == b or name.startswith(b + ".") for b in BLOCKED):
                raise ImportError(f"{name} is blocked: serve/ must not need it")
            return None

    sys.meta_path.insert(0, _Block())
""")


@pytest.mark.slow  # exports a model or runs subprocesses (seconds)
def test_every_serve_module_imports_on_the_runtime_alone() -> None:
    code = BLOCK + textwrap.dedent("""
        import importlib, pkgutil
        import tvdeploy.serve
        for module in pkgutil.walk_packages(tvdeploy.serve.__path__, "tvdeploy.serve."):
            if module.name != "tvdeploy.serve.triton_preprocess":  # Triton's Python backend runs it, inside Triton
                importlib.import_module(module.name)
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_the_blocker_blocks() -> None:
    proc = subprocess.run([sys.executable, "-c", BLOCK + "import tvdeploy.export.parity"], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert proc.returncode != 0 and "is blocked" in proc.stderr


#: What only serve/kserve_compat.py may say: KServe's private hooks and its import-time command-line parsing.
KSERVE_PRIVATE = ("_raw_data", "_add_middlewares", "kserve.model_server", "sys.argv", "decode_inference_request")


def test_only_the_compatibility_module_reaches_into_kserve() -> None:
    offenders = {
        (path.name, word)
        for path in SERVE.glob("*.py")
        if path.name != "kserve_compat.py"
        for word in KSERVE_PRIVATE
        if re.search(
            r"(?<![A-Za-z])" + re.escape(word) + r"(?![A-Za-z_])", path.read_text().replace("attach_raw_data", "")
        )
    }
    assert not offenders
    assert "kserve" not in (SERVE / "core.py").read_text().replace("KServe", "")  # the core is protocol-neutral
