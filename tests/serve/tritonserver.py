"""A real Triton Inference Server for tests, as a Triton container runs it: the ``tritonserver`` binary and Python
backend from NVIDIA's PyTriton wheel, with ``.triton-env`` (``tools/make_triton_env.sh``) as the Python its
backend runs models with (tvdeploy's runtime, NumPy 1.x, no torch).

The wheel has no ONNX Runtime backend (Triton's containers do), so tests that need the classifier step stand in for
it with ``triton_onnxruntime_standin.py``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.serve.server_process import collect_lines, wait_until_ok

TRITON_ENV = Path(__file__).resolve().parents[2] / ".triton-env"
INSTALL_HINT = "tools/make_triton_env.sh makes it (Linux x86_64)"

_FIND = """
import importlib.util, sys, sysconfig
spec = importlib.util.find_spec("pytriton")  # the package is found, not imported
print(next(iter(spec.submodule_search_locations)) if spec else "")
print(f"{sys.version_info.major}.{sys.version_info.minor}")
print(sysconfig.get_config_var("LIBDIR"))
"""


@dataclass(frozen=True)
class TritonInstall:
    """Where the parts are: the server (``bin/``, ``backends/``, a backend stub per Python version), the Python
    its backend runs with, that Python's version and the directory of its ``libpython``."""

    server: Path
    python: Path
    python_version: str
    libpython_dir: str


def find_install(env: Path = TRITON_ENV) -> TritonInstall | None:
    """The install in ``env``, or None when it is not made, PyTriton is missing from it or has no backend stub for
    its Python."""
    python = env / "bin" / "python"
    if not python.exists():
        return None
    package, version, libdir = subprocess.run(
        [str(python), "-c", _FIND], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    server = Path(package) / "tritonserver" if package else None
    if server is None or not (server / "bin" / "tritonserver").exists():
        return None
    if not (server / "python_backend_stubs" / version).is_dir():
        return None  # the wheel has no backend stub for this Python version
    return TritonInstall(server, python, version, libdir)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TritonServer:
    """``tritonserver`` on a loopback port in explicit model control mode (models are loaded by the test)."""

    def __init__(self, install: TritonInstall, repository: Path, workdir: Path) -> None:
        backends = workdir / "backends"
        shutil.copytree(install.server / "backends", backends, ignore=shutil.ignore_patterns("__pycache__"))
        stub = install.server / "python_backend_stubs" / install.python_version / "triton_python_backend_stub"
        shutil.copy(stub, backends / "python")  # the stub built for that Python
        libraries = [install.libpython_dir, str(install.server.parent.parent / "nvidia_pytriton.libs")]
        env = {
            **os.environ,
            "LD_LIBRARY_PATH": os.pathsep.join(filter(None, [*libraries, os.environ.get("LD_LIBRARY_PATH")])),
            # the stub's embedded Python takes its environment from the first python on PATH (pyvenv.cfg)
            "PATH": os.pathsep.join([str(install.python.parent), os.environ.get("PATH", "")]),
        }
        self.port = _free_port()
        self.url = f"127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                str(install.server / "bin" / "tritonserver"), f"--model-repository={repository}", f"--backend-directory={backends}",
                "--model-control-mode=explicit", "--http-address=127.0.0.1", f"--http-port={self.port}",
                "--allow-grpc=false", "--allow-metrics=false", "--exit-timeout-secs=10",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )  # fmt: skip
        self.log = collect_lines(self.proc.stdout)

    def wait_live(self, timeout: float = 60) -> None:
        wait_until_ok(f"http://{self.url}/v2/health/live", self.proc, self.log, timeout)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)
