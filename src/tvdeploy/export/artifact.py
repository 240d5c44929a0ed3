"""Atomic artifact directories: everything is written to a temporary sibling, then renamed into place."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tvdeploy.errors import OutputExistsError


def check_output(output: Path, force: bool) -> None:
    """Refuse to overwrite an existing output unless ``force``."""
    if output.exists() and not force:
        raise OutputExistsError(f"{output} already exists", hint="pass --force to overwrite it, or choose --output")
    if output.exists() and not output.is_dir():
        raise OutputExistsError(f"{output} exists and is not a directory", hint="choose another --output")


@contextlib.contextmanager
def staged_directory(output: Path, force: bool) -> Iterator[Path]:
    """Yield a temporary directory next to ``output``; on success it replaces ``output``.

    On an exception the temporary directory is removed and ``output`` is left as it was.
    """
    check_output(output, force)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it 0700; the artifact gets the usual permissions
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    backup = None
    if output.exists():
        backup = output.with_name(f".{output.name}.old-{staging.name.rsplit('.', 1)[-1]}")
        output.rename(backup)
    staging.rename(output)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
