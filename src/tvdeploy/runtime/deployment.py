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

from tvdeploy.runtime.execution import Execution
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

    @property
    def execution(self) -> Execution:
        """The execution these settings make (what a command, serve or export-triton runs with)."""
        config = self.session_config
        return Execution(
            self.provider, config.intra_op_threads or None, config.streams, self.batch_size, config.provider_options
        )


def apply_deployment(
    manifest: Manifest, session_config: SessionConfig | None, batch_size: int | None, provider: str | None = None
) -> Applied:
    """:func:`resolve_execution` for ``load()``'s arguments: a provider, session settings and a batch size."""
    return resolve_execution(manifest, Execution.of(provider, session_config, batch_size), session_config)


def resolve_execution(manifest: Manifest, requested: Execution, base: SessionConfig | None = None) -> Applied:
    """The execution an artifact loads with: ``requested``'s fields where set, the deployment record's for the rest
    (see the module docstring; the one way every command, ``load()``, bench, serve, Ray and export-triton read a
    tuned record), on top of ``base``'s other session settings."""
    config = requested.session_config(base)
    record = manifest.deployment
    if record is None:
        return Applied(manifest, config, requested.batch_size, requested.provider or "cpu")
    provider = requested.provider or recorded_provider(manifest) or "cpu"
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
        return Applied(manifest, config, requested.batch_size, provider)
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
    if provider == record.provider and record.provider_options:  # the options it was measured with, under the caller's
        config = dataclasses.replace(config, provider_options={**record.provider_options, **config.provider_options})
    batch_size = requested.batch_size if requested.batch_size is not None else record.batch_size
    return Applied(manifest, config, batch_size, provider)


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
