"""`cgpt quickstart`: the whole life of a small model in one command, on a corpus every machine has.

Prepare the Python standard library's sources, plan the compute-optimal model for the budget on this machine,
pretrain it and sample from it (train/quickstart/pipeline.py). Everything lands in --out.
"""

from __future__ import annotations

import argparse

from train.cli import flags


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "quickstart",
        help="prepare the stdlib corpus, plan, pretrain and sample",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="runs/quickstart", help="directory for data, plan and run")
    p.add_argument("--minutes", type=flags.amount, default=5.0, help="wall-clock training budget (default 5)")
    p.add_argument("--vocab-size", type=flags.count, default=4096)
    p.add_argument("--block-size", type=flags.count, default=256)
    flags.add_device_flag(p)
    p.add_argument("--max-files", type=flags.positive_int, default=None, help="use only the first N stdlib files")
    p.add_argument("--prompt", default="def ")
    p.add_argument("--probe-seconds", type=flags.amount, default=1.0, help="timed seconds per probed shape")
    p.add_argument("--force", action="store_true", help="train again over an existing run")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from train.quickstart.pipeline import quickstart

    quickstart(
        args.out,
        args.minutes,
        args.vocab_size,
        args.block_size,
        args.device,
        args.force,
        args.max_files,
        args.prompt,
        progress=not args.no_progress,
        probe_seconds=args.probe_seconds,
    )
    return 0
