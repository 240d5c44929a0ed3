"""The host's peak MAC/s per precision: cores x frequency x MACs per cycle of the widest instructions found."""

from __future__ import annotations

import pytest

from tvdeploy.bench.peak import peak
from tvdeploy.runtime.host import usable_cores

AMX_HOST = frozenset({"avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"})
AVX2_HOST = frozenset({"avx2", "fma", "sse2", "sse4_1"})


@pytest.mark.parametrize(
    ("precision", "flags", "per_cycle", "instructions"),
    [
        ("fp32", AMX_HOST, 32, "avx512f"),
        ("bf16", AMX_HOST, 512, "amx_bf16"),
        ("int8", AMX_HOST, 1024, "amx_int8"),
        ("fp32", AVX2_HOST, 16, "fma"),
        ("bf16", AVX2_HOST, 16, "fma"),  # no bf16 instructions: as fp32
        ("int8", AVX2_HOST, 32, "avx2"),
    ],
)
def test_peak_is_cores_times_frequency_times_macs_per_cycle(precision, flags, per_cycle, instructions) -> None:
    result = peak(precision, flags=flags, ghz=2.0)
    assert result is not None
    assert (result.macs_per_cycle, result.instructions) == (per_cycle, instructions)
    assert result.macs_per_s == usable_cores() * 2.0e9 * per_cycle
    assert f"x {per_cycle} MACs/cycle, {instructions}" in result.describe()


def test_an_unknown_precision_or_frequency_has_no_peak() -> None:
    assert peak("fp8", flags=AMX_HOST, ghz=2.0) is None
    assert peak("fp32", flags=AMX_HOST, ghz=0.0) is None
