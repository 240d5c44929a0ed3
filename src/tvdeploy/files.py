"""Checks on where a command will write, made before the work: a failure after a long tune or benchmark loses
what it measured."""

from __future__ import annotations

import os
from pathlib import Path

from tvdeploy.errors import OutputExistsError
from tvdeploy.text import printable


def check_parent(target: Path) -> None:
    """The nearest existing ancestor of ``target`` must be a writable directory (the rest can be made)."""
    ancestor = Path(os.path.abspath(target)).parent
    while not ancestor.exists() and not ancestor.is_symlink():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputExistsError(
            f"cannot write {printable(target)}: {printable(ancestor)} is not a directory", hint="choose another path"
        )
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputExistsError(
            f"cannot write {printable(target)}: {printable(ancestor)} is not writable", hint="choose another path"
        )


def check_file_output(path: Path, flag: str) -> None:
    """``path`` can be written as a file: not a directory, and its directory can be made and written."""
    if path.is_dir():
        raise OutputExistsError(f"{flag} {printable(path)} is a directory", hint=f"give {flag} a file name")
    check_parent(path)
