"""serve/ sits on the runtime alone: every module imports with torch, torchvision and tvdeploy's export, models,
bench and tune packages blocked, and only the KServe compatibility module reaches into KServe's private API."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("kserve")

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


def test_every_serve_module_imports_on_the_runtime_alone() -> None:
    code = BLOCK + textwrap.dedent("""
        import importlib, pkgutil
        import tvdeploy.serve
        for module in pkgutil.walk_packages(tvdeploy.serve.__path__, "tvdeploy.serve."):
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
