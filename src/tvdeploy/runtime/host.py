"""What a host's CPU is, in the terms that decide whether an ONNX Runtime graph optimized on another host runs here.

ONNX Runtime's ``all`` graph optimizations rewrite convolutions into blocked
(NCHWc) layouts whose block size follows the widest vector ISA (8 floats with
AVX2, 16 with AVX-512), so a graph saved at that level is tied to the CPU
features it was made with. :func:`cpu_signature` names those features.
"""

from __future__ import annotations

import platform
from functools import lru_cache
from pathlib import Path

#: The CPU flags (as Linux's /proc/cpuinfo spells them) that change which kernels and layouts ONNX Runtime picks.
RELEVANT_FLAGS = (
    "sse4_1",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)


@lru_cache(maxsize=1)
def cpu_signature() -> str:
    """``"<machine>:<flags>"``, e.g. ``x86_64:avx,avx2,f16c,fma,sse4_1``; just the machine where flags are unknown."""
    machine = platform.machine() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    flags: set[str] = set()
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith(("flags", "Features")):
                flags = set(line.split(":", 1)[1].split())
                break
    relevant = sorted(flags.intersection(RELEVANT_FLAGS))
    return f"{machine}:{','.join(relevant)}" if relevant else machine
