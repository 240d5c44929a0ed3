"""TensorRT engine and timing caches kept in the artifact, keyed by GPU model and TensorRT version.

ONNX Runtime's TensorRT provider builds an engine per model and input profile on a session's first run (minutes
for a ResNet-50) and can save it (``trt_engine_cache_*``) with the kernel timings it measured
(``trt_timing_cache_*``). An engine is only valid on the GPU model and TensorRT release that built it, so the
artifact keeps one folder per key, ``tensorrt-cache/<gpu>-trt<version>/``: a second start on the same kind of
machine loads the engines instead of rebuilding, and a machine with another GPU or TensorRT never loads a cache
built elsewhere (it builds its own beside it). A folder whose key file names another GPU than its name says
(moved by hand) is refused. ``tune`` copies the winner's caches into the tuned artifact. An artifact folder that is
not writable (a read-only deployment) keeps its caches under ``~/.cache/tvdeploy/tensorrt`` instead.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from tvdeploy.errors import ArtifactError
from tvdeploy.runtime.host import nvidia_gpus
from tvdeploy.text import printable

logger = logging.getLogger(__name__)

#: The artifact's folder of TensorRT caches (not listed in the manifest: the runtime writes it).
CACHE_FOLDER = "tensorrt-cache"
KEY_FILE = "key.json"
_MAX_KEY_BYTES = 4096  # a key file is two short fields; a larger one is not read
#: TensorRT's runtime library (TensorRT 10), whose ``getInferLibVersion`` gives its version.
LIBRARY = "libnvinfer.so.10"


@dataclass(frozen=True)
class CacheKey:
    """What a TensorRT engine is valid for: the GPU model and the TensorRT release."""

    gpu: str
    tensorrt: str

    @property
    def folder(self) -> str:
        """``nvidia-h200-trt10.3.0``: the key as a folder name."""
        slug = re.sub(r"[^a-z0-9]+", "-", self.gpu.lower()).strip("-") or "gpu"
        return f"{slug}-trt{self.tensorrt}"

    def to_dict(self) -> dict[str, str]:
        return {"gpu": self.gpu, "tensorrt": self.tensorrt}


@functools.cache
def tensorrt_version() -> str | None:
    """The loaded TensorRT's version (``10.3.0``), or None where its library does not load."""
    try:
        library = ctypes.CDLL(LIBRARY)
        number = int(library.getInferLibVersion())
    except (OSError, AttributeError):
        return None
    return f"{number // 10000}.{number // 100 % 100}.{number % 100}"


def current_key(device: int = 0) -> CacheKey | None:
    """This machine's key for GPU ``device``, or None without a GPU or TensorRT."""
    gpus, version = nvidia_gpus(), tensorrt_version()
    if not gpus or version is None:
        return None
    return CacheKey(gpus[min(device, len(gpus) - 1)], version)


def is_cache_file(relative: str | PurePosixPath) -> bool:
    """Whether a path inside an artifact belongs to its TensorRT caches (the runtime's, not the user's)."""
    parts = PurePosixPath(relative).parts
    return len(parts) > 1 and parts[0] == CACHE_FOLDER


def cache_folder(artifact_dir: Path, key: CacheKey) -> Path:
    """Where the artifact's caches for ``key`` live: in the artifact where it is writable, else in the user's
    cache (``~/.cache/tvdeploy/tensorrt/<artifact path hash>/``)."""
    root = artifact_dir / CACHE_FOLDER
    if not os.access(artifact_dir, os.W_OK) and not root.is_dir():
        digest = hashlib.sha256(str(artifact_dir.resolve()).encode()).hexdigest()[:16]
        root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tvdeploy" / "tensorrt" / digest
    return root / key.folder


def cache_options(artifact_dir: Path, key: CacheKey) -> dict[str, Any]:
    """The TensorRT provider options that keep this artifact's engines and timings for ``key``; says, before a
    session starts, whether it will build (minutes) or load them, and refuses a folder made for another key."""
    folder = cache_folder(artifact_dir, key)
    key_file = folder / KEY_FILE
    if key_file.is_file():
        try:
            if key_file.stat().st_size > _MAX_KEY_BYTES:
                raise ValueError(f"larger than {_MAX_KEY_BYTES} bytes")
            recorded = json.loads(key_file.read_text())
        except (OSError, ValueError) as exc:
            raise ArtifactError(
                f"{key_file} is not readable: {printable(str(exc))}", hint=f"delete {folder} to rebuild"
            ) from exc
        if recorded != key.to_dict():
            raise ArtifactError(
                f"{folder} holds TensorRT engines built for {printable(str(recorded))}, not for this {key.gpu} with TensorRT "
                f"{key.tensorrt}: an engine runs only where it was built",
                hint=f"delete {folder}; the next start builds engines for this GPU",
            )
    others = sorted(p.name for p in folder.parent.glob("*") if p.is_dir() and p.name != key.folder)
    if others:
        logger.info("%s also holds TensorRT engines for %s (not used on this GPU)", artifact_dir, ", ".join(others))
    if not any(folder.glob("*.engine")):
        logger.warning(
            "building TensorRT engines for %s on %s with TensorRT %s: this first start takes minutes; later starts "
            "load them from %s", artifact_dir, key.gpu, key.tensorrt, folder,
        )  # fmt: skip
        folder.mkdir(parents=True, exist_ok=True)
        key_file.write_text(json.dumps(key.to_dict()) + "\n")
    return {
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(folder),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(folder),
    }
