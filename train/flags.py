"""Command-line flags generated from frozen config dataclasses, so every config field can be set by a flag.

`add_config_flags(parser, GPTConfig)` adds `--n-layer`, `--block-size`, `--bias/--no-bias`, ...; every flag
defaults to None, so `config_overrides(args, GPTConfig)` returns only the fields the user actually set - those
then override a preset or a plan. Booleans get `--x/--no-x`; tuples take comma-separated values.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parser_for(hint: Any) -> Any:
    """The argparse `type` for a field's type hint (int, float, str, X | None, tuple[str, ...])."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is tuple:
        return lambda s: tuple(x for x in s.split(",") if x)
    if args:  # Optional[X] / X | None
        return _parser_for(args[0])
    return hint


def add_config_flags(parser: argparse.ArgumentParser, cls: type, exclude: tuple[str, ...] = (),
                     title: str | None = None) -> None:
    group = parser.add_argument_group(title or f"{cls.__name__} fields")
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in exclude:
            continue
        hint = hints[field.name]
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        help_text = f"(default: {default})"
        if hint is bool:
            group.add_argument(_flag(field.name), action=argparse.BooleanOptionalAction, default=None,
                               help=help_text)
        else:
            group.add_argument(_flag(field.name), type=_parser_for(hint), default=None, help=help_text,
                               metavar=field.name.upper())


def config_overrides(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """{field: value} for the fields of `cls` whose flags were given on the command line."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}
