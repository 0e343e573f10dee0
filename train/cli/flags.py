"""Flag types shared by every command, and flags generated from the frozen config dataclasses.

Types (argparse `type=` functions; a bad value is a one-line error naming the flag, from `train.cli.Parser`):
  amount         a positive, finite number with an optional suffix: 1e17, 124M, 2.5B, 3G, 1.4T, 10k, 1_000
  count          a positive integer, suffixes allowed (50k steps, 124M parameters)
  integer, positive_int, nonneg_int, finite_float, positive_float, nonneg_float, probability (in [0, 1]),
  open_probability (in (0, 1]: a top-p mass), device (auto | cpu | cuda | cuda:N)
Where a config dataclass checks a value's range, its flag only parses the number (`integer`, `finite_float`)
and the dataclass names the field: one check per value.
`add_run_flags` adds the trio every command that reads a run shares: --run, --checkpoint, --device;
`add_law_flags` the scaling law's --constants (a published set's name, or a fit's summary.json) and --allocation.

`add_config_flags(parser, GPTConfig)` adds `--n-layer`, `--block-size`, `--bias/--no-bias`, ...; every flag
defaults to None, so `config_overrides(args, GPTConfig)` returns only the fields the user actually set - those
then override a preset or a plan. Booleans get `--x/--no-x`; tuples take comma-separated values; values are
checked by the dataclass itself, so a flag and a config file are validated the same way.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import sys
import typing
from collections.abc import Callable
from typing import Any

from train.errors import CgptError
from train.planner import scaling
from train.recipe import DEVICES

SUFFIXES = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}


def _bad(text: str, expected: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")


def _number(text: str) -> float:
    """'1e18', '124M', '2.5B', '1_000' -> float (nan when it is none of these)."""
    t = text.strip().replace("_", "").replace(",", "")
    scale = SUFFIXES.get(t[-1:].lower(), 1.0) if t and t[-1].isalpha() else 1.0
    try:
        return float(t[:-1] if scale != 1.0 else t) * scale
    except ValueError:
        return math.nan


def amount(text: str) -> float:
    value = _number(text)
    if not 0 < value < math.inf:
        raise _bad(text, "a positive number such as 1e18 or 124M")
    return value


def count(text: str) -> int:
    value = _number(text)
    if not 0 < value < math.inf or value != int(value):
        raise _bad(text, "a positive integer such as 2000 or 50k")
    return int(value)


def _checked(kind: Callable[[str], Any], ok: Callable[[Any], bool], expected: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise _bad(text, expected) from None
        if not ok(value):
            raise _bad(text, expected)
        return value

    parse.__name__ = expected  # argparse names the type in some messages
    return parse


integer = _checked(int, lambda v: True, "an integer")
positive_int = _checked(int, lambda v: v >= 1, "a positive integer")
nonneg_int = _checked(int, lambda v: v >= 0, "an integer >= 0")
finite_float = _checked(float, math.isfinite, "a finite number")
positive_float = _checked(float, lambda v: 0 < v < math.inf, "a positive number")
nonneg_float = _checked(float, lambda v: 0 <= v < math.inf, "a number >= 0")
probability = _checked(float, lambda v: 0 <= v <= 1, "a number in [0, 1]")
open_probability = _checked(float, lambda v: 0 < v <= 1, "a number in (0, 1]")


def device(text: str) -> str:
    if not re.fullmatch(DEVICES, text):
        raise _bad(text, "auto, cpu, cuda or cuda:N")
    return text


def add_device_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", type=device, default="auto", help="auto | cpu | cuda | cuda:N (default auto)")


def add_head_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--head",
        metavar="MODULE:CLASS",
        help="the run's own head class, when it is a user's module:Class (imported only because you name it here)",
    )


def add_run_flags(parser: argparse.ArgumentParser, what: str) -> None:
    """--run DIR (required), --checkpoint best | last | PATH, --device: how every command opens a run."""
    parser.add_argument("--run", required=True, metavar="DIR", help=what)
    parser.add_argument("--checkpoint", default="best", help="best | last | a checkpoint path (default best)")
    add_device_flag(parser)


def differs(flag: str, saved: Any, new: Any) -> Exception:
    """The error for a flag given with --resume whose value is not the run's (returned, to be raised)."""
    return CgptError(f"{flag}={new!r} differs from the run's {saved!r}; a resumed run keeps its settings "
                     "(drop the flag, or start a new run)")  # fmt: skip


def constants(text: str) -> str:
    """A published constant set by name, or the path of an existing file (a fit's summary.json)."""
    if text not in scaling.CONSTANTS and not os.path.isfile(text):
        raise _bad(text, f"one of {list(scaling.CONSTANTS)} or a fit's summary.json (no such file)")
    return text


def add_arch_flag(p: argparse.ArgumentParser) -> None:
    """--arch: the block a plan (or the default preset) builds: model.config.ARCHS."""
    from model.config import ARCHS, DEFAULT_ARCH

    p.add_argument(
        "--arch",
        choices=list(ARCHS),
        help=f"the block: {' | '.join(ARCHS)} (default {DEFAULT_ARCH} for a plan; see model/config.py ARCHS)",
    )


def add_probe_flags(p: argparse.ArgumentParser) -> None:
    """How a --minutes plan measures this machine (train/planner/probe.py, train/planner/timing.py)."""
    p.add_argument(
        "--probe-seconds",
        type=amount,
        help="for --minutes: timed seconds per probed shape (default 1%% of the budget, 0.2 to 1)",
    )
    p.add_argument(
        "--profile",
        metavar="FILE",
        help="for --minutes: the machine profile to reuse and extend (default $CGPT_PROFILE or "
        "~/.cache/cgpt/machine-profile.json)",
    )
    p.add_argument("--reprobe", action="store_true", help="for --minutes: measure again, ignoring the profile")
    p.add_argument("--no-profile", action="store_true", help="for --minutes: neither read nor write a profile")


def add_law_flags(p: argparse.ArgumentParser, allocation: bool = True) -> None:
    """--constants and --allocation: which fitted law splits the budget (shared with pretrain and sweep)."""
    p.add_argument(
        "--constants",
        default=scaling.DEFAULT_CONSTANTS,
        type=constants,
        metavar="NAME|FILE",
        help=f"Approach 3 law: {' | '.join(scaling.CONSTANTS)} or a `cgpt fit` summary.json (default %(default)s)",
    )
    if not allocation:
        return
    p.add_argument(
        "--allocation",
        default="approach3",
        choices=list(scaling.ALLOCATIONS),
        help="how the budget is split (default %(default)s)",
    )


def import_head(spec: str) -> type[Any]:
    """The head class `module.path:ClassName` the user named on the command line (`--head`). Only here, for a
    name typed by the user, is the working directory put on the import path and the module imported (the
    `cgpt` console script, unlike `python -m`, does not have the working directory there)."""
    import importlib

    from model.config import ConfigError
    from model.heads import check_head_class

    module_name, _, class_name = spec.partition(":")
    if not module_name or not class_name:
        raise ConfigError(f"--head={spec!r}: expected a built-in head name or module.path:ClassName")
    _cwd_importable()
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"--head={spec!r}: cannot import module {module_name!r} ({err})") from None
    if not hasattr(module, class_name):
        raise ConfigError(f"--head={spec!r}: module {module_name!r} has no {class_name!r}")
    return check_head_class(getattr(module, class_name), spec)


def user_head(spec: str | None) -> type[Any] | None:
    """`import_head(spec)` for a "module:Class" spec; None for a built-in head name (or no --head)."""
    return import_head(spec) if spec and ":" in spec else None


def _cwd_importable() -> None:
    """Put the working directory on sys.path, so `--head mymodule:MyHead` finds the user's own module."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


# --- flags from config dataclasses --------------------------------------------------------------------------


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parser_for(hint: Any) -> Any:
    """The argparse `type` for a field's type hint (int, float, str, X | None, tuple[str, ...])."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is tuple:
        return lambda s: tuple(x for x in s.split(",") if x)
    if args:  # Optional[X] / X | None
        return _parser_for(args[0])
    if hint is int:
        return integer
    if hint is float:
        return finite_float
    return hint


def add_config_flags(
    parser: argparse.ArgumentParser, cls: type, exclude: tuple[str, ...] = (), title: str | None = None
) -> None:
    group = parser.add_argument_group(title or f"{cls.__name__} fields")
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in exclude:
            continue
        hint = hints[field.name]
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        help_text = f"(default: {default})"
        if hint is bool:
            group.add_argument(_flag(field.name), action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            group.add_argument(
                _flag(field.name), type=_parser_for(hint), default=None, help=help_text, metavar=field.name.upper()
            )


def config_overrides(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """{field: value} for the fields of `cls` whose flags were given on the command line."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}
