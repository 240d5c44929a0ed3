"""Command-line flags as data on the option dataclasses: each field says its flag, help and unit once.

An option dataclass (``ServeOptions``, ``TritonOptions``, ``BenchConfig``, ``TuneRequest``, ...) declares a field
with :func:`flag` instead of a bare default; the CLI builds the flag from it (name, type, default, help with the
default filled in) and the dataclass back from the parsed flags, so a default or a limit is written in one place
and a new option is one field. The parse functions here are argparse ``type=`` callables (argparse is the
standard library's; the option classes stay usable without the CLI).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Flag:
    """How a field appears on the command line.

    Args:
        help: what the option does (the default is appended: "(default 8)").
        name: the flag (default ``--`` + the field name with dashes).
        unit: the field holds the flag's value times this (``--max-body-mb`` for a field in bytes).
        zero_is_none: ``0`` on the command line means ``None`` in the field (no limit).
        parse: turns the flag's text into the flag's value (default: the field's type).
        metavar: the value's name in ``--help``.
        choices: the values the flag takes (default: none given).
        show_default: append "(default ...)" to the help.
        aliases: other spellings of the flag.
    """

    help: str
    name: str | None = None
    aliases: tuple[str, ...] = ()
    unit: float = 1
    zero_is_none: bool = False
    parse: Callable[[str], Any] | None = None
    metavar: str | None = None
    choices: Sequence[str] | None = None
    show_default: bool = True

    def flag_name(self, field_name: str) -> str:
        """``--max-queue`` for ``max_queue``."""
        return self.name or "--" + field_name.replace("_", "-")


def flag(default: Any = dataclasses.MISSING, help: str = "", **spec: Any) -> Any:  # argparse's word
    """A dataclass field with a default (a list default becomes a factory) that is also a command-line flag."""
    metadata = {"flag": Flag(help, **spec)}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def flag_fields(options: type) -> list[tuple[dataclasses.Field[Any], Flag]]:
    """The fields of an option dataclass that are command-line flags, in declaration order."""
    return [(f, f.metadata["flag"]) for f in dataclasses.fields(options) if "flag" in f.metadata]


def field_default(field: dataclasses.Field[Any]) -> Any:
    """A field's default value (its factory's value for a list)."""
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None if field.default is dataclasses.MISSING else field.default


def positive_int(text: str) -> int:
    """``"8"`` -> 8; zero, negatives and non-integers are refused."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1: {text}")
    return value


def finite_float(text: str) -> float:
    """``"2.5"`` -> 2.5; ``nan`` and ``inf`` are refused (a limit or a timeout must be a number)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number: {text}")
    return value


def positive_int_list(text: str) -> list[int]:
    """``"1,8"`` -> [1, 8] (batch sizes)."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, e.g. 1,8: {text}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"batch sizes must be positive: {text}")
    return values


def float_triple(text: str) -> tuple[float, float, float]:
    """``"0.485,0.456,0.406"`` -> a triple (per-channel mean or std)."""
    parts = [p for p in text.replace(" ", "").split(",") if p]
    if len(parts) != 3:
        raise argparse.ArgumentTypeError("expected three comma-separated numbers, e.g. 0.485,0.456,0.406")
    try:
        return (float(parts[0]), float(parts[1]), float(parts[2]))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not numbers: {text}") from None
