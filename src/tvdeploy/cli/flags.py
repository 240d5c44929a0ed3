"""argparse flags from the option dataclasses' :func:`tvdeploy.flags.flag` fields, and the dataclasses back."""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Collection
from typing import Any, TypeVar

from tvdeploy.flags import Flag, field_default, finite_float, flag_fields

T = TypeVar("T")


def add_option_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    options: type,
    exclude: Collection[str] = (),
    only: Collection[str] | None = None,
) -> None:
    """One flag per :func:`~tvdeploy.flags.flag` field of ``options`` (those in ``only`` where given, but not
    ``exclude``), its dest the field name."""
    hints = typing.get_type_hints(options)
    for field, spec in flag_fields(options):
        if field.name in exclude or (only is not None and field.name not in only):
            continue
        default = field_default(field)
        kind = _value_type(hints[field.name])
        names = (spec.flag_name(field.name), *spec.aliases)
        if kind is bool:
            action = "store_false" if default else "store_true"
            parser.add_argument(*names, dest=field.name, action=action, help=spec.help)
            continue
        shown = default / spec.unit if isinstance(default, (int, float)) and spec.unit != 1 else default
        parser.add_argument(
            *names,
            dest=field.name,
            type=spec.parse or (finite_float if kind is float else kind),
            default=shown,
            choices=spec.choices,
            metavar=spec.metavar or (None if spec.choices else names[0].lstrip("-").replace("-", "_").upper()),
            help=_help(spec, shown),
        )


def options_from_args(options: type[T], args: argparse.Namespace, **given: Any) -> T:
    """``options(**fields)`` from the parsed flags (units applied, ``0`` as ``None`` where the field says so),
    with ``given`` for fields that are not flags or are set otherwise."""
    hints = typing.get_type_hints(options)
    values: dict[str, Any] = {}
    for field, spec in flag_fields(options):
        if field.name in given or not hasattr(args, field.name):
            continue
        value = getattr(args, field.name)
        if spec.zero_is_none and value == 0:
            value = None
        elif value is not None and spec.unit != 1:
            value = _value_type(hints[field.name])(value * spec.unit)
        elif isinstance(value, list) and _value_type(hints[field.name]) is tuple:
            value = tuple(value)
        values[field.name] = value
    return options(**values, **given)


def _value_type(hint: Any) -> Any:
    """``int`` for ``int | None``; the hint itself otherwise (``tuple[int, ...]``: the parse function decides)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return typing.get_origin(hint) or hint


def _help(spec: Flag, shown: Any) -> str:
    if not spec.show_default or shown is None:
        return spec.help
    text = (
        ",".join(str(v) for v in shown)
        if isinstance(shown, (list, tuple))
        else f"{shown:g}"
        if isinstance(shown, float)
        else str(shown)
    )
    return f"{spec.help} (default {text}{'; 0: none' if spec.zero_is_none else ''})"
