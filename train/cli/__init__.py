"""`cgpt`: the command line. Every command is a thin parser over one library function that Python code can call.

Each command lives in its own module of this package, which exposes `add_parser(subparsers)`: it adds one
parser whose `func` (taking the parsed `argparse.Namespace`, returning an exit code) calls the library. The
table below is the only place that lists them; `cgpt bench` is a group whose members `train/cli/bench.py` lists
the same way. Shared flag types (budgets with suffixes, positive counts, probabilities, the run / checkpoint /
device trio) live in `train/cli/flags.py`.

Errors a user can fix (`CgptError`, `ConfigError`, `BackendError`, and argparse's own) are printed as one line,
`cgpt COMMAND: error: ...`, with a non-zero exit; bugs keep their tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Sequence
from typing import NoReturn

from model.config import BackendError, ConfigError
from train.errors import CgptError
from train.runtime.info import cgpt_version

# name -> module that provides `add_parser(subparsers)`
COMMANDS: dict[str, str] = {
    "quickstart": "train.cli.quickstart",
    "prepare": "train.cli.prepare",
    "plan": "train.cli.plan",
    "sweep": "train.cli.sweep",
    "fit": "train.cli.fit",
    "pretrain": "train.cli.pretrain",
    "sample": "train.cli.sample",
    "finetune": "train.cli.finetune",
    "evaluate": "train.cli.evaluate",
    "predict": "train.cli.predict",
    "prompt": "train.cli.prompt",
    "info": "train.cli.info",
    "bench": "train.cli.bench",
}


class Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (`cgpt plan: error: argument --flops: ...`) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="cgpt", description="chinchilla-gpt: plan, pretrain, fine-tune and benchmark a small GPT.")
    parser.add_argument("--version", action="version", version=f"cgpt {cgpt_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for module in COMMANDS.values():
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    started = time.perf_counter()  # `--minutes M` counts the whole command from here ...
    if argv is None:  # ... and, run as the `cgpt` command, from the process's start
        from train.planner.timing import process_age

        started -= process_age()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version, or a bad flag (argparse has printed it)
        return int(done.code or 0)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    args.started = started
    name = args.command + (f" {args.bench}" if getattr(args, "bench", None) else "")
    try:
        return int(args.func(args) or 0)
    except (CgptError, ConfigError, BackendError) as err:  # expected, user-facing failures: one line, exit 1
        print(f"cgpt {name}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"cgpt {name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `cgpt ... | head`: the reader left; nothing more to say
        sys.stderr.close()
        return 141
