"""`cgpt finetune`: flags -> Source, DataFiles, FinetuneConfig, TrainConfig overrides -> `train.finetune.recipe`.

    cgpt finetune --from RUN --task classify --train train.tsv --val dev.tsv [--test test.tsv] --out RUN2
    cgpt finetune --from scratch --like RUN ...       the same architecture and tokenizer, random weights
    cgpt finetune --out RUN2 --resume                 continue from its last checkpoint, as it was set up

Fine-tuning flags (FinetuneConfig, train/finetune/config.py):
  --head NAME | module:Class   default: the task's own (classify also has classify-mean); module must be
                               importable from the working directory
  --metric NAME                picks the best: classify accuracy | macro_f1; regress mse | mae | pearson
  --freeze SPEC                none | embeddings | bottom:K | all-but-head (a linear probe)
  --layer-decay F              block i trains at lr * F^(n_layer - i), the embeddings at lr * F^(n_layer + 1)
  --adversarial KIND           none | fgm | pgd, with --epsilon (L2 radius), --alpha and --adv-steps (PGD)
  --dropout P, --attention B   replace the backbone's (default 0.1 and auto: the Triton kernel on a GPU)
  --attention-mask M           causal | bidirectional (every real token attends to the whole sequence; not
                               for --task generate). Default: bidirectional for tag, causal otherwise
  --epochs E                   sets --max-steps unless it is given
  --max-train-examples N, --text-field F, --label-field F, --strict (a too-long text is an error)
  --baseline                   also score a trivial model on the same files, in summary.json "baseline": for
                               classify a bag-of-words + bigram logistic regression, for tag the CoNLL-2003
                               shared-task baseline (entity spans seen in training, longest match)
Training flags (TrainConfig) left unset take fine-tuning defaults derived from the data: batch 16, 3 epochs,
an evaluation (the whole --val file) and a checkpoint each epoch, 6% warmup then cosine to 0, lr 1e-4
(1e-3 with --freeze all-but-head), weight decay 0.01, --patience 3, the best checkpoint restored at the end.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from model.config import TASKS
from train.cli import flags
from train.cli.flags import add_config_flags, config_overrides
from train.errors import CgptError
from train.finetune.config import DataFiles, FinetuneConfig, Source
from train.recipe import TrainConfig

# flag -> (the argparse name, where config.json keeps it)
_RUN_FLAGS = {
    "--from": ("from_run", ("source", "run")),
    "--like": ("like", ("source", "like")),
    "--checkpoint": ("checkpoint", ("source", "checkpoint")),
    "--train": ("train", ("data", "files", "train")),
    "--val": ("val", ("data", "files", "val")),
    "--test": ("test", ("data", "files", "test")),
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "finetune",
        help="fine-tune a pretrained run on labelled data (or from scratch)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--from", dest="from_run", help="a pretraining run directory, or 'scratch' (with --like)")
    p.add_argument("--like", help="with --from scratch: the run whose architecture and tokenizer to use")
    p.add_argument("--checkpoint", default="best", help="best | last | a checkpoint path of --from (default best)")
    p.add_argument("--task", choices=TASKS, help="what the data holds and the head predicts")
    p.add_argument("--train", help="training file (TSV/CSV/JSONL; CoNLL or JSONL for tag; JSONL for generate)")
    p.add_argument("--val", help="validation file: picks the best checkpoint, drives early stopping")
    p.add_argument("--test", help="test file, scored once with the best checkpoint at the end")
    p.add_argument("--out", required=True, help="the run directory to create (or --resume)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--force", action="store_true", help="overwrite a run that already exists in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_flags(p, FinetuneConfig, exclude=("task",), title="fine-tuning")
    add_config_flags(p, TrainConfig, title="training (defaults derived from the data; see above)")
    p.set_defaults(func=run)


def resolve(args: argparse.Namespace) -> tuple[Source, DataFiles, FinetuneConfig, dict[str, Any]]:
    """The typed configs these flags describe (validated here, before any file is read)."""
    missing = [
        flag
        for flag, value in (
            ("--from", args.from_run),
            ("--task", args.task),
            ("--train", args.train),
            ("--val", args.val),
        )
        if value is None
    ]
    if missing:
        raise CgptError(f"missing {', '.join(missing)} (required unless --resume)")
    source = Source(args.from_run, args.like, args.checkpoint)
    ft = FinetuneConfig(**config_overrides(args, FinetuneConfig))  # --task is among them
    return source, DataFiles(args.train, args.val, args.test), ft, config_overrides(args, TrainConfig)


def check_resume_flags(args: argparse.Namespace, saved: dict[str, Any]) -> None:
    """Source, data and fine-tuning flags given with --resume must be the run's own (the same command with --resume
    appended is accepted); a differing one is refused naming it, its saved and its new value. Training flags are
    checked by train.recipe.resumed_train_config."""
    for flag, (name, (*keys, last)) in _RUN_FLAGS.items():
        given, where = getattr(args, name), saved
        for key in keys:
            where = where[key]
        same = given == where[last] or (flag in ("--train", "--val", "--test") and _same_file(given, where[last]))
        if given is not None and not (flag == "--checkpoint" and given == "best") and not same:
            raise flags.differs(flag, where[last], given)
    for name, value in config_overrides(args, FinetuneConfig).items():
        if saved["finetune"].get(name) != value:
            raise flags.differs("--" + name.replace("_", "-"), saved["finetune"].get(name), value)


def _same_file(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and os.path.abspath(a) == os.path.abspath(b)


def run(args: argparse.Namespace) -> int:
    from train.finetune.recipe import finetune
    from train.runtime.rundir import RunDir

    if args.resume:  # the same command with --resume appended: what was given again must match the run
        saved = RunDir(args.out).saved_config("finetune")
        check_resume_flags(args, saved)
        head = flags.user_head(saved["finetune"]["head"] if args.head else None)
        summary = finetune(args.out, train_overrides=config_overrides(args, TrainConfig), resume=True,
                           progress=not args.no_progress, head_class=head)  # fmt: skip
    else:
        source, files, ft, overrides = resolve(args)
        summary = finetune(args.out, source, files, ft, overrides, force=args.force, progress=not args.no_progress,
                           head_class=flags.user_head(ft.head))  # fmt: skip
    print(summary_line(summary))
    return 0


def summary_line(s: dict[str, Any]) -> str:
    test = s["test"]
    tested = "" if test is None else f", test {s['metric']} {test.get(_key(s['metric']), float('nan')):.4f}"
    stopped = " (stopped early)" if s["stopped_early"] else ""
    return (
        f"done: {s['steps']} steps{stopped} in {s['wall_s']:.1f}s; best val {s['metric']} "
        f"{s['best_val_metric']:.4f}{tested}"
    )


def _key(metric: str) -> str:
    return "loss" if metric == "val_loss" else metric
