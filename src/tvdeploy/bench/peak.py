"""How far a measured speed is from what the host's cores could do: the peak MAC/s for a precision.

``peak = usable cores x frequency x MACs per cycle per core`` for the widest instructions this CPU has for that
precision. MACs per cycle per core (two vector FMA ports on server cores, as Intel's optimization manual counts):

| precision | instructions | MACs / cycle |
|---|---|---|
| fp32 | AVX-512 FMA (16 lanes x 2 ports) / AVX2 FMA (8 x 2) / SSE (4 x 1) | 32 / 16 / 4 |
| bf16 | AMX-BF16 tiles / AVX512_BF16 ``vdpbf16ps`` (16 lanes x 2 pairs x 2 ports) / none: fp32's | 512 / 64 |
| int8 | AMX-INT8 tiles / AVX512_VNNI ``vpdpbusd`` (16 x 4 x 2) / AVX-VNNI (8 x 4 x 2) / AVX2 ``vpmaddubsw`` (16 x 2 x 1) | 1024 / 128 / 64 / 32 |
| fp16 | computed as fp32 on CPUs (AVX512_FP16 is not used by the runtimes here) | fp32's |

The frequency is ``cpu MHz`` of Linux's /proc/cpuinfo: the nominal (TSC) frequency on a VM, which turbo
exceeds and AVX-512/AMX licences undercut, so the peak is a yardstick within about 30%, not a bound. The MACs of
a model come from its graph (:func:`tvdeploy.export.macs.count_macs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from tvdeploy.runtime.host import cpu_flags, cpuinfo_field, usable_cores

#: Per precision: (flag, MACs per cycle per core), widest first; the first flag the CPU has decides.
MACS_PER_CYCLE: dict[str, tuple[tuple[str, int], ...]] = {
    "fp32": (("avx512f", 32), ("fma", 16), ("sse2", 4)),
    "bf16": (("amx_bf16", 512), ("avx512_bf16", 64), ("avx512f", 32), ("fma", 16)),
    "int8": (("amx_int8", 1024), ("avx512_vnni", 128), ("avx_vnni", 64), ("avx2", 32), ("sse4_1", 16)),
    "fp16": (("avx512f", 32), ("fma", 16), ("sse2", 4)),
}


@dataclass(frozen=True)
class Peak:
    """A precision's peak on this host, and what it was computed from."""

    precision: str
    macs_per_s: float
    cores: int
    ghz: float
    macs_per_cycle: int
    instructions: str

    def describe(self) -> str:
        """``"8.6 TMAC/s (2 cores x 2.1 GHz x 1024 MACs/cycle, amx_int8)"``."""
        return (
            f"{self.macs_per_s / 1e12:.2f} TMAC/s ({self.cores} cores x {self.ghz:.2f} GHz x {self.macs_per_cycle} "
            f"MACs/cycle, {self.instructions})"
        )


@lru_cache(maxsize=1)
def cpu_ghz() -> float | None:
    """The CPU frequency Linux reports (``cpu MHz``), in GHz; None where it is not known."""
    value = cpuinfo_field("cpu MHz")
    try:
        return float(value) / 1000 if value else None
    except ValueError:
        return None


def peak(precision: str, flags: frozenset[str] | None = None, ghz: float | None = None) -> Peak | None:
    """This host's peak MAC/s at ``precision`` (None where the frequency or the precision's table is unknown)."""
    table = MACS_PER_CYCLE.get(precision)
    ghz = ghz if ghz is not None else cpu_ghz()
    if table is None or not ghz:
        return None
    flags = cpu_flags() if flags is None else flags
    flag, per_cycle = next(((f, m) for f, m in table if f in flags), ("scalar", 1))
    cores = usable_cores()
    return Peak(precision, cores * ghz * 1e9 * per_cycle, cores, ghz, per_cycle, flag)


def provider_peak(provider: str, precision: str) -> tuple[float | None, str | None]:
    """The peak MAC/s of the device ``provider`` computes on at ``precision``, or None and why there is none: this
    CPU's for CPU providers, the GPU's datasheet figure (:mod:`tvdeploy.bench.gpu_peak`) for GPU providers, never
    one for the other."""
    from tvdeploy.bench.gpu_peak import gpu_peak, missing_reason
    from tvdeploy.runtime.host import nvidia_gpus
    from tvdeploy.runtime.providers import get_provider

    if get_provider(provider).on_gpu:
        gpus = nvidia_gpus()
        if not gpus:
            return None, "no NVIDIA GPU identified on this host"
        top = gpu_peak(gpus[0], precision)
        return (top.macs_per_s, None) if top is not None else (None, missing_reason(gpus[0], precision))
    cpu = peak(precision)
    return (cpu.macs_per_s, None) if cpu is not None else (None, "this CPU's frequency is not known")
