"""Pretrained weights through torchvision's own download and cache (``$TORCH_HOME/hub/checkpoints``).

A cached file is used without touching the network. When the file is not
cached, the host is probed with a short connect timeout first, so a machine
without network fails in seconds with a message naming the file expected in
the cache, instead of hanging. ``TVDEPLOY_OFFLINE=1`` skips the probe and fails
at once (for air-gapped machines and tests).
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from tvdeploy.errors import WeightsError

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_ENV = "TVDEPLOY_CONNECT_TIMEOUT"
OFFLINE_ENV = "TVDEPLOY_OFFLINE"
DEFAULT_CONNECT_TIMEOUT = 5.0
DOWNLOAD_SOCKET_TIMEOUT = 60.0


def cache_path(url: str) -> Path:
    """Where torch hub keeps the file for ``url``."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def _not_cached_error(url: str, reason: str) -> WeightsError:
    expected = cache_path(url)
    return WeightsError(
        f"pretrained weights are not cached and cannot be downloaded ({reason}); expected the file {expected}",
        hint=(
            f"download {url} on a machine with network and place it at {expected} (TORCH_HOME moves the cache), "
            "or export with --weights none (random init) or --weights PATH (your checkpoint)"
        ),
    )


def _probe(url: str, timeout: float) -> None:
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    with socket.create_connection((parsed.hostname, port), timeout=timeout):
        pass


def ensure_cached(url: str, progress: bool = True) -> Path:
    """Make sure torch hub's cache holds the file at ``url`` (downloading it, hash-checked, if not).

    torchvision's builders then load it from the cache without network.
    """
    import torch.hub

    cached = cache_path(url)
    if cached.is_file():
        return cached
    if os.environ.get(OFFLINE_ENV, "").lower() in ("1", "true", "yes"):
        raise _not_cached_error(url, f"{OFFLINE_ENV} is set")
    timeout = float(os.environ.get(CONNECT_TIMEOUT_ENV, DEFAULT_CONNECT_TIMEOUT))
    try:
        _probe(url, timeout)
    except OSError as exc:
        raise _not_cached_error(url, f"no connection to {urlparse(url).hostname}: {exc}") from exc
    logger.info("downloading %s to %s", url, cached)
    match = torch.hub.HASH_REGEX.search(cached.name)
    cached.parent.mkdir(parents=True, exist_ok=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_SOCKET_TIMEOUT)
    try:
        torch.hub.download_url_to_file(
            url, str(cached), hash_prefix=match.group(1) if match else None, progress=progress
        )
    except OSError as exc:  # URLError, timeouts, disk errors
        raise _not_cached_error(url, f"download failed: {exc}") from exc
    except RuntimeError as exc:  # hash mismatch
        raise WeightsError(f"downloaded weights from {url} are corrupt: {exc}", hint="try again") from exc
    finally:
        socket.setdefaulttimeout(previous)
    return cached
