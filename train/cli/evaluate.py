"""`cgpt evaluate`: score a run on data - a fine-tuned run on a labelled file (clean and under attack), or a
language model on held-out text (loss, perplexity, bits per byte).

    cgpt evaluate --run runs/sst2 --data dev.tsv [--attack embedding --attack typo] [--json]
    cgpt evaluate --run runs/books --data wiki.test.raw [more.txt ...] [--stride 128] [--json]

A fine-tuned run: `--json` prints exactly what summary.json holds under "val" / "test": the task's metrics,
"examples", "truncated", and with --attack an "attacked" object ({"embedding": {"epsilon", ...}, "typo":
{"rate", "seed", ...}}) beside the clean metrics (train/evaluation/evaluate.py).

A pretraining run (or a `--task generate` run given raw text rather than its .jsonl prompts and responses):
the files are read as `cgpt prepare` reads them (.txt, .gz, .jsonl {"text"}, folders, globs, Gutenberg headers
stripped), and `--json` prints {"loss", "perplexity", "bits_per_byte", "tokens", "bytes", "stride", "files"}
(train/evaluation/lm.py). --stride defaults to the context length: non-overlapping windows.
"""

from __future__ import annotations

import argparse
import json

from train.cli import flags
from train.errors import CgptError
from train.evaluation.attacks import ATTACK_KINDS
from train.finetune.config import EVAL_BATCH_SIZE


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score a run: a fine-tune on labelled data, or a language model on held-out text",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    flags.add_run_flags(p, "a run directory written by `cgpt finetune` or `cgpt pretrain`")
    flags.add_head_flag(p)
    p.add_argument(
        "--data",
        required=True,
        nargs="+",
        metavar="FILE",
        help="a labelled file in a fine-tuned run's task format; text files for a language model",
    )
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--stride", type=flags.positive_int, help="language model: tokens between windows (context)")
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


def scores_text(state: dict, files: list[str]) -> bool:
    """Whether this run is scored as a language model on text: a pretraining run, or a generation fine-tune
    given anything but its own .jsonl files of prompts and responses."""
    if "head" not in state:
        return True
    return state["finetune"]["task"] == "generate" and not all(f.endswith(".jsonl") for f in files)


def run(args: argparse.Namespace) -> int:
    from train.runs import open_run

    if scores_text(open_run(args.run, args.checkpoint).state, args.data):
        from train.evaluation.lm import describe_lm, evaluate_text

        if args.attack:
            raise CgptError("--attack scores a fine-tuned classifier or tagger; this run is scored as a language model")
        result = evaluate_text(args.run, args.data, args.stride, args.checkpoint, args.device, args.batch_size)
        print(json.dumps(result, indent=2) if args.json else describe_lm(result))
        return 0
    from train.evaluation.evaluate import evaluate
    from train.finetune.scoring import describe

    if len(args.data) != 1 or args.stride:
        raise CgptError("--data: a fine-tuned run is scored on one labelled file (--stride is for language models)")
    result = evaluate(args.run, args.data[0], tuple(args.attack or ()), args.epsilon, args.typo_rate, args.seed,
                      args.checkpoint, args.device, args.batch_size, flags.user_head(args.head))  # fmt: skip
    print(json.dumps(result, indent=2) if args.json else describe(result, str(args.data[0])))
    return 0
