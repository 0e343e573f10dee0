"""`cgpt quickstart`: the whole life of a small model in one command, on a corpus every machine has.

Prepare the Python standard library's sources, plan the compute-optimal model for the budget on this machine,
pretrain it and sample from it, fine-tune two heads on tasks derived from the same corpus (against the same
model from scratch), prompt it zero- and few-shot, evaluate it on held-out files, and write report.md
(train/quickstart/pipeline.py). Everything lands in --out.
"""

from __future__ import annotations

import argparse

from train.cli import flags


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("quickstart", help="the whole pipeline on the stdlib: prepare, plan, pretrain, "
                              "fine-tune, prompt, evaluate, report", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--out", default="runs/quickstart", help="directory for data, plan, runs and report.md")
    p.add_argument("--minutes", type=flags.amount, default=10.0, help="wall-clock budget of the pipeline (default 10)")
    p.add_argument("--vocab-size", type=flags.count, help="BPE vocabulary (default: sized for the budget)")
    p.add_argument("--block-size", type=flags.count, default=256)
    flags.add_device_flag(p)
    p.add_argument("--max-files", type=flags.positive_int, default=None, help="use only the first N stdlib files")
    p.add_argument("--prompt", default="def ", help="the first sample's prompt")
    p.add_argument("--probe-seconds", type=flags.amount, default=1.0, help="timed seconds per probed shape")
    p.add_argument("--force", action="store_true", help="run again over an existing quickstart in --out")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from train.quickstart.pipeline import quickstart

    quickstart(args.out, args.minutes, args.block_size, args.device, args.force, args.max_files,
               progress=not args.no_progress, probe_seconds=args.probe_seconds, vocab_size=args.vocab_size,
               prompt=args.prompt)  # fmt: skip
    return 0
