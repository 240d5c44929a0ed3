"""Server subprocesses in tests: their output collected as it comes, waiting for an HTTP 200."""

from __future__ import annotations

import subprocess
import threading
import time
import urllib.error
import urllib.request
from typing import IO


def collect_lines(stream: IO[str] | None) -> list[str]:
    """The lines ``stream`` yields, appended by a daemon thread as they come (a full pipe would block the server)."""
    assert stream is not None
    lines: list[str] = []

    def collect() -> None:
        for line in stream:
            lines.append(line)

    threading.Thread(target=collect, daemon=True).start()
    return lines


def wait_until_ok(url: str, proc: subprocess.Popen, log: list[str], timeout: float = 60) -> None:
    """Poll ``url`` until it answers 200; fail with the server's ``log`` if it exits or ``timeout`` passes."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        assert proc.poll() is None, f"the server exited ({proc.returncode}):\n" + "".join(log)
        try:
            if urllib.request.urlopen(url, timeout=2).status == 200:
                return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"no 200 from {url} in {timeout} s:\n" + "".join(log))
