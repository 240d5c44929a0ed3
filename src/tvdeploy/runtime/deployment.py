"""Applying a manifest's ``deployment`` record (what ``tvdeploy tune`` measured and chose) when an artifact loads.

On the host it was tuned on (same CPU feature signature) the record's threads, streams and batch size are used
wherever the caller left them open (streams only up to this host's usable cores). The record's execution provider
is used where the caller names none; a GPU provider this host does not offer is said so and the CPU is used. On
another host they may be wrong in either direction, so the record is set aside with a warning: all cores on one
stream, and, where this host cannot compute in the tuned precision (bf16 without AVX512_BF16/AMX), the artifact's
fp32 arithmetic, which gives the same answers within the bf16 criteria. Never a crash, never a silent change.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from tvdeploy.runtime.host import cpu_flags, cpu_signature, usable_cores
from tvdeploy.runtime.manifest import Manifest
from tvdeploy.runtime.precisions import Precision, get_precision
from tvdeploy.runtime.providers import SessionConfig, unavailable_reason
from tvdeploy.text import printable

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Applied:
    """What an artifact loads with: the manifest the runner reads, its session settings and batch size."""

    manifest: Manifest
    session_config: SessionConfig
    batch_size: int | None
    #: the provider to resolve: the caller's, else the record's (where this host offers it), else ``cpu``
    provider: str = "cpu"


def apply_deployment(
    manifest: Manifest, session_config: SessionConfig | None, batch_size: int | None, provider: str | None = None
) -> Applied:
    """The settings an artifact loads with, the deployment record's where the caller gave none (see the module
    docstring)."""
    config = session_config or SessionConfig()
    record = manifest.deployment
    if record is None:
        return Applied(manifest, config, batch_size, provider or "cpu")
    provider = provider or recorded_provider(manifest) or "cpu"
    if record.host_signature != cpu_signature():
        logger.warning(
            "this artifact was tuned on another CPU (%s: %s); this host is %s: using portable settings",
            printable(record.host_cpu),
            printable(record.host_signature),
            cpu_signature(),
        )
        missing = get_precision(manifest.precision).missing_features(manifest.format, cpu_flags())
        if missing:
            logger.warning(
                "this host cannot compute %s on %s (no %s): running the artifact in fp32",
                manifest.precision,
                manifest.format,
                " or ".join(missing),
            )
            manifest = dataclasses.replace(manifest, precision=Precision.FP32)
        return Applied(manifest, config, batch_size, provider)
    if config.intra_op_threads is None and record.threads is not None:
        if record.threads <= usable_cores():
            config = dataclasses.replace(config, intra_op_threads=record.threads)
        else:  # a host of the same CPU with fewer cores, or a hand-edited record
            logger.warning(
                "this artifact was tuned for %d threads; this host has %d usable cores: running on %d",
                record.threads, usable_cores(), usable_cores(),
            )  # fmt: skip
            config = dataclasses.replace(config, intra_op_threads=usable_cores())
    if config.streams is None and record.streams > 1:
        if record.streams <= usable_cores():
            config = dataclasses.replace(config, streams=record.streams)
        else:  # a host of the same CPU with fewer cores, or a hand-edited record
            logger.warning(
                "this artifact was tuned for %d streams; this host has %d usable cores: running on one stream",
                record.streams, usable_cores(),
            )  # fmt: skip
    return Applied(manifest, config, batch_size if batch_size is not None else record.batch_size, provider)


def recorded_provider(manifest: Manifest) -> str | None:
    """The provider the deployment record names where this host offers it, else the CPU (said so); None without a
    record."""
    if manifest.deployment is None:
        return None
    recorded = manifest.deployment.provider
    reason = unavailable_reason(recorded)
    if reason is None:
        return recorded
    logger.warning("this artifact was tuned on %s, which this host does not offer (%s): running on the CPU",
                   recorded, reason)  # fmt: skip
    return "cpu"
