"""Atomic artifact directories: everything is written to a temporary sibling, then renamed into place.

``--force`` replaces a tvdeploy artifact and nothing else: a directory whose ``tvdeploy.json`` is a manifest and
that holds only the files it lists (or an empty directory). Any other directory, a file, or the input of the same
command is refused before any work is done, naming what is in the way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from tvdeploy.errors import OutputExistsError, TvdeployError
from tvdeploy.files import check_parent
from tvdeploy.runtime.manifest import MANIFEST_NAME, read_manifest
from tvdeploy.runtime.tensorrt_cache import is_cache_file
from tvdeploy.text import printable

#: How many of the files that stop ``--force`` an error names.
_NAMED_FILES = 3


def absolute(path: Path) -> Path:
    """``path`` made absolute with ``.`` and ``..`` removed (``d/..`` is the directory itself), symlinks kept."""
    return Path(os.path.abspath(path))


def check_output(output: Path, force: bool, inputs: Iterable[Path] = ()) -> Path:
    """The absolute output directory, once it is known that writing it can work and harms nothing: it is not one
    of ``inputs`` (nor inside or above one), its parent can be made and written, and where it exists ``force`` was
    given and it is a tvdeploy artifact (see the module docstring). Everything else is an
    :class:`~tvdeploy.errors.OutputExistsError` that names the problem."""
    target = absolute(output)
    for given in inputs:
        source = absolute(given)
        if target == source or source in target.parents or target in source.parents:
            raise OutputExistsError(
                f"--output {printable(output)} is the input {printable(given)} (or inside or around it)",
                hint="write the result to another directory; the input is never replaced",
            )
    check_parent(target)
    if not target.exists() and not target.is_symlink():
        return target
    if not force:
        raise OutputExistsError(
            f"{printable(output)} already exists", hint="pass --force to overwrite it, or choose --output"
        )
    if not target.is_dir() or target.is_symlink():
        raise OutputExistsError(
            f"{printable(output)} exists and is not a directory", hint="choose another --output (--force replaces "
            "only tvdeploy artifacts)"
        )  # fmt: skip
    reason = not_replaceable(target)
    if reason:
        raise OutputExistsError(
            f"{printable(output)} is not a tvdeploy artifact ({reason}): --force replaces only artifacts",
            hint="choose another --output, or move the directory away yourself",
        )
    return target


def not_replaceable(directory: Path) -> str | None:
    """Why ``--force`` must not replace ``directory`` (None: an empty directory, or an artifact holding only its
    manifest and the files the manifest lists)."""
    entries = list(directory.iterdir())
    if not entries:
        return None
    if not (directory / MANIFEST_NAME).is_file():
        return f"no {MANIFEST_NAME}"
    try:
        manifest = read_manifest(directory)
    except TvdeployError as exc:
        return f"its {MANIFEST_NAME} is not a manifest: {exc.message}"
    listed = {MANIFEST_NAME, *(entry.path for entry in manifest.files)}
    unlisted = sorted(
        str(path.relative_to(directory))
        for path in directory.rglob("*")
        if not path.is_dir() or path.is_symlink()
        if str(path.relative_to(directory)) not in listed and not is_cache_file(path.relative_to(directory).as_posix())
    )
    if unlisted:
        named = ", ".join(printable(name) for name in unlisted[:_NAMED_FILES])
        more = f" and {len(unlisted) - _NAMED_FILES} more" if len(unlisted) > _NAMED_FILES else ""
        return f"it holds files its manifest does not list: {named}{more}"
    return None


@contextlib.contextmanager
def staged_directory(output: Path, force: bool, inputs: Iterable[Path] = ()) -> Iterator[Path]:
    """Yield a temporary directory next to ``output``; on success it replaces ``output``.

    On an exception (an interrupt included) the temporary directory is removed and ``output`` is left as it was.
    """
    output = check_output(output, force, inputs)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it 0700; the artifact gets the usual permissions
    try:
        yield staging
        backup = None
        if output.exists():
            check_output(output, force, inputs)  # still an artifact after the work (nothing moved in meanwhile)
            backup = output.with_name(f".{output.name}.old-{staging.name.rsplit('.', 1)[-1]}")
            output.rename(backup)
        try:
            staging.rename(output)
        except BaseException:
            if backup is not None:
                backup.rename(output)
            raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
