"""How a model runs: one execution record for every command, ``load()``, bench, serve, Ray, export-triton and the
deployment record that ``tune`` writes.

An :class:`Execution` names the provider (and so the device), the intra-op threads, the parallel streams, the
batch size and the provider's options. Fields left ``None`` take the artifact's deployment record's where it has
one for this host (:func:`tvdeploy.runtime.deployment.apply_deployment`), else the defaults. The command-line
flags of these fields are declared once, here (:func:`provider_flag` and the others), and every option dataclass
that has them uses these declarations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tvdeploy.errors import ProviderError
from tvdeploy.flags import flag, positive_int
from tvdeploy.runtime.providers import (
    PROVIDER_CHOICES,
    RECORDED_PROVIDER_HELP,
    Device,
    DeviceKind,
    SessionConfig,
    get_provider,
)

#: The batch size of a classifier where neither the caller nor a deployment record gives one.
DEFAULT_BATCH_SIZE = 8


def provider_flag(help: str = RECORDED_PROVIDER_HELP) -> Any:  # argparse's word
    """The ``--provider`` field of an option dataclass."""
    return flag(None, help, choices=PROVIDER_CHOICES)


def threads_flag(help: str = "intra-op threads (default: the tuned deployment's, else all usable cores)") -> Any:
    """The ``--threads`` field of an option dataclass."""
    return flag(None, help, parse=positive_int)


def streams_flag(
    help: str = "batches run at once on parallel streams, each on --threads threads (OpenVINO; default: the tuned "
    "deployment's, else 1)",
) -> Any:
    """The ``--streams`` field of an option dataclass."""
    return flag(None, help, parse=positive_int)


def batch_size_flag(help: str = "images per model call (default: the tuned deployment's, else 8)") -> Any:
    """The ``--batch-size`` field of an option dataclass."""
    return flag(None, help, parse=positive_int)


@dataclass(frozen=True)
class Execution:
    """Provider, threads, streams, batch size and provider options of a model's execution (``None``: the
    deployment record's where there is one for this host, else the default)."""

    provider: str | None = provider_flag()
    threads: int | None = threads_flag()
    streams: int | None = streams_flag()
    batch_size: int | None = batch_size_flag()
    provider_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.provider is not None and self.provider != "auto":
            get_provider(self.provider)
        for name in ("threads", "streams", "batch_size"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ProviderError(f"{name} must be a positive integer, got {value!r}")
        if self.provider_options and self.provider not in (None, "auto"):
            get_provider(self.provider).check_options(self.provider_options, f"{self.provider} provider options")

    @property
    def device(self) -> Device | None:
        """The device it runs on (``cpu``, ``cuda:N`` with the ``device_id`` option); None while the provider is
        open or ``auto``."""
        if self.provider in (None, "auto"):
            return None
        kind = get_provider(self.provider).device
        return Device(kind, int(self.provider_options.get("device_id", 0)) if kind != DeviceKind.CPU else 0)

    def session_config(self, base: SessionConfig | None = None) -> SessionConfig:
        """``base`` (the backend's other settings) with these threads, streams and provider options where set."""
        base = base or SessionConfig()
        return dataclasses.replace(
            base,
            intra_op_threads=self.threads if self.threads is not None else base.intra_op_threads,
            streams=self.streams if self.streams is not None else base.streams,
            provider_options={**base.provider_options, **self.provider_options},
        )

    @classmethod
    def of(
        cls, provider: str | None = None, config: SessionConfig | None = None, batch_size: int | None = None
    ) -> Execution:
        """The execution that a provider name, session settings and a batch size say (``load()``'s arguments)."""
        config = config or SessionConfig()
        threads = config.intra_op_threads or None  # 0: the runtime's own choice, as if none were given
        return cls(provider, threads, config.streams, batch_size, dict(config.provider_options))
