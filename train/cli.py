"""`cgpt`: the command line. Every subcommand is a thin parser over a function that Python code can call.

Each command lives in its own module, which exposes `add_parser(subparsers)`: it adds one parser and sets
`func` (a callable taking the parsed `argparse.Namespace` and returning an exit code). The table below is the
only place that lists them; `cgpt bench` is a group whose members are listed the same way.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from train.errors import CgptError

# name -> module that provides `add_parser(subparsers)`
COMMANDS: dict[str, str] = {
    "quickstart": "train.quickstart",
    "prepare": "train.prepare_cli",
    "plan": "train.plan_cli",
    "pretrain": "train.pretrain_cli",
    "sample": "train.sample",
    "finetune": "train.finetune_cli",
    "evaluate": "train.evaluate",
    "predict": "train.predict",
    "info": "train.info",
}

# `cgpt bench NAME`: name -> module that provides `add_parser(subparsers)`
BENCHES: dict[str, str] = {
    "generate": "train.bench_generate",
    "matmul": "train.bench_matmul",
    "kernels": "kernels.bench_cli",
    "compile": "kernels.compile_report",
    "tokenizer": "train.bench_tokenizer",
    "prepare": "train.bench_prepare",
}


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("chinchilla-gpt")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0.0.0+source"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cgpt", description="chinchilla-gpt: plan, pretrain, fine-tune and benchmark a small GPT."
    )
    parser.add_argument("--version", action="version", version=f"cgpt {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        importlib.import_module(module).add_parser(sub)
    bench = sub.add_parser("bench", help="benchmarks that print figures (kernels, generation, tokenizer, ...)")
    bench_sub = bench.add_subparsers(dest="bench", metavar="BENCH")
    for module in BENCHES.values():
        importlib.import_module(module).add_parser(bench_sub)
    bench.set_defaults(func=lambda args: (bench.print_help(), 2)[1])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from model.attention import BackendError  # these import torch: not at module level (prepare's workers
    from model.config import ConfigError  # import us)

    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (CgptError, ConfigError, BackendError) as err:  # expected, user-facing failures: one line, exit 1
        print(f"cgpt {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"cgpt {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
