"""`cgpt evaluate`: score a fine-tuned run on a labelled file, clean and under attack.

    cgpt evaluate --run runs/sst2 --data dev.tsv [--attack embedding --attack typo] [--json]

`--json` prints exactly what summary.json holds under "val" / "test": the task's metrics, "examples",
"truncated", and with --attack an "attacked" object ({"embedding": {"epsilon", ...}, "typo": {"rate", "seed",
...}}) beside the clean metrics (train/evaluation/evaluate.py).
"""

from __future__ import annotations

import argparse
import json

from train.cli import flags
from train.evaluation.attacks import ATTACK_KINDS
from train.finetune.config import EVAL_BATCH_SIZE


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score a fine-tuned run on a labelled file (clean and attacked)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    flags.add_run_flags(p, "a run directory written by `cgpt finetune`")
    flags.add_head_flag(p)
    p.add_argument("--data", required=True, help="a labelled file in the run's task format")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--attack", action="append", choices=ATTACK_KINDS, help="also score under this attack (repeatable)")
    p.add_argument(
        "--epsilon",
        type=flags.positive_float,
        default=0.05,
        help="L2 norm of the embedding attack per example (default 0.05)",
    )
    p.add_argument(
        "--typo-rate", type=flags.probability, default=0.1, help="fraction of words with a typo (default 0.1)"
    )
    p.add_argument("--seed", type=flags.integer, default=0, help="seed of the typos")
    p.add_argument("--batch-size", type=flags.positive_int, default=EVAL_BATCH_SIZE)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from train.evaluation.evaluate import evaluate
    from train.finetune.scoring import describe

    result = evaluate(
        args.run,
        args.data,
        tuple(args.attack or ()),
        args.epsilon,
        args.typo_rate,
        args.seed,
        args.checkpoint,
        args.device,
        args.batch_size,
        flags.user_head(args.head),
    )
    print(json.dumps(result, indent=2) if args.json else describe(result, str(args.data)))
    return 0
