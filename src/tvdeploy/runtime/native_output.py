"""Lines that native libraries write straight to the process's stderr (file descriptor 2), below Python's logging.

ExecuTorch's runtime prints its CPU probing at info level when a method loads (``[cpuinfo_utils.cpp:87] Failed to
open midr file ...``: the ARM identification files, absent on x86), with no switch to turn it off; a successful
load must not print it. :func:`dropped_native_lines` runs a block with descriptor 2 captured and writes back every
line but the ones it was told to drop, so that anything else (a real error) still reaches the user.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator

#: Python loggers of libraries whose import-time notices are not the user's business, and the level they get.
QUIET_LOGGERS = {
    # torch 2.14 warns once per Enum that ExecuTorch registers with pytree (register_constant() is deprecated)
    "torch.utils._pytree": logging.ERROR,
}


def quiet_library_loggers() -> None:
    """Raise the level of :data:`QUIET_LOGGERS` (call before importing the library that logs)."""
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def dropped_native_lines(prefixes: tuple[str, ...] = (), containing: tuple[str, ...] = ()) -> Iterator[None]:
    """Run the block with file descriptor 2 captured; write back every captured line that neither starts with one
    of ``prefixes`` nor contains one of ``containing`` (written back when the block ends)."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 to capture (a daemon): nothing to drop
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode("utf-8", "replace").splitlines(keepends=True):
                if not line.startswith(prefixes) and not any(text in line for text in containing):
                    sys.stderr.write(line)
            sys.stderr.flush()
