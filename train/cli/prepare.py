"""`cgpt prepare`: raw text -> tokenizer, train/val token shards and meta.json (over `run_prepare`)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from train.cli import flags
from train.data.datasets import DATASETS
from train.data.pool import default_workers
from train.errors import CgptError

if TYPE_CHECKING:
    from train.data.prepare import PrepareConfig

EXAMPLES = """examples:
  cgpt prepare --input stdlib --tokenizer train:8192 --out data/stdlib
  cgpt prepare --input tinyshakespeare --tokenizer char --out data/shakespeare_char
  cgpt prepare --input 'books/**/*.txt' notes/ --tokenizer gpt2 --out data/books --json
  cgpt prepare --input stdlib --tokenizer train:auto --budget 1e14 --out data/stdlib-small"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "prepare",
        help="turn raw text into token shards (and train the tokenizer) for pretraining",
        description=f"Read files, directories, globs, 'stdlib' or a named dataset ({', '.join(DATASETS)});\n"
        "tokenize; write train.bin, val.bin, the tokenizer files and meta.json to --out.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--input",
        nargs="+",
        required=True,
        metavar="PATH",
        help="files, directories (recursive), globs, 'stdlib', or a dataset name",
    )
    parser.add_argument(
        "--tokenizer",
        required=True,
        metavar="SPEC",
        help="train:VOCAB | train:auto (with --budget) | FILE.tiktoken | DIR | gpt2 | cl100k_base | o200k_base | char",
    )
    parser.add_argument(
        "--budget",
        type=flags.amount,
        metavar="FLOPS",
        help="train:auto: the training budget (C = 6ND) to size the vocabulary for (train/planner/vocab.py)",
    )
    parser.add_argument("--block-size", type=flags.count, default=256, help="train:auto: the context it plans for")
    parser.add_argument("--out", required=True, metavar="DIR")
    parser.add_argument("--val-fraction", type=flags.finite_float, default=0.1, metavar="F")
    parser.add_argument("--json", action="store_true", help="print only a JSON summary")
    parser.add_argument("--force", action="store_true", help="replace what --out already holds")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="binary files and invalid UTF-8 are errors (default: skipped / replaced, counted)",
    )
    parser.add_argument("--jsonl-field", default="text", metavar="NAME", help="the text field of .jsonl lines")
    parser.add_argument("--cache-dir", metavar="DIR", help="where named datasets are found or downloaded to")
    parser.add_argument("--workers", type=flags.integer, default=default_workers(), help="encoding processes")
    parser.add_argument("--max-files", type=flags.integer, metavar="N", help="use only the first N files")
    parser.add_argument(
        "--tokenizer-sample-mb",
        type=flags.finite_float,
        default=100.0,
        metavar="MB",
        help="train:VOCAB learns from the first MB million characters",
    )
    parser.set_defaults(func=run)
    return parser


def tokenizer_spec(args: argparse.Namespace) -> str:
    """--tokenizer, with train:auto resolved to train:VOCAB for --budget (Tao et al. 2024's vocabulary law)."""
    if args.tokenizer != "train:auto":
        return args.tokenizer
    if args.budget is None:
        raise CgptError("--tokenizer train:auto sizes the vocabulary for a budget: give --budget FLOPS (e.g. 1e15)")
    from train.planner.vocab import vocab_for_flops

    vocab = vocab_for_flops(args.budget, args.block_size)
    if not args.json:
        print(f"train:auto -> train:{vocab} for {args.budget:.3g} FLOPs (vocabulary law of Tao et al. 2024)")
    return f"train:{vocab}"


def config_from_args(args: argparse.Namespace) -> PrepareConfig:
    from train.data.prepare import PrepareConfig

    return PrepareConfig(
        inputs=tuple(args.input),
        tokenizer=tokenizer_spec(args),
        out_dir=args.out,
        val_fraction=args.val_fraction,
        strict=args.strict,
        jsonl_field=args.jsonl_field,
        cache_dir=args.cache_dir,
        workers=args.workers,
        max_files=args.max_files,
        tokenizer_sample_mb=args.tokenizer_sample_mb,
        progress=not args.json and sys.stderr.isatty(),
        force=args.force,
    )


def run(args: argparse.Namespace) -> int:
    from train.data.prepare import run_prepare

    config = config_from_args(args)
    if not args.json:
        print(f"prepare: {config}")
    result = run_prepare(config)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"  {key:16s} {value}")
        print(f"wrote {config.out_dir}/train.bin, val.bin, meta.json and the tokenizer files")
    return 0
