"""Scoring a fine-tuned model, clean and under attack; `cgpt evaluate`.

`score(model, split)` runs a Split through a TaskModel and returns the task's metrics (train/metrics.py):
  classify  accuracy, macro_f1, loss, and the per-class report: "macro" and "per_class" {precision, recall,
            f1, support}
  tag       entity-level (conlleval) precision, recall, f1 (micro over entities), support, per_type, loss
  generate  loss (mean cross-entropy over response tokens, nats) and perplexity = exp(loss)
  regress   mse, mae, pearson (0 when either side is constant), loss (= mse for the built-in head)
each with "examples" (scored) and "truncated" (cut to the context, in the whole file). The training loop's
evaluation, the final report of `cgpt finetune` (summary.json's "val" and "test") and `cgpt evaluate --json`
all come from this one function, so they have the same form.

Robustness (`--attack`, repeatable), reported under "attacked" next to the clean metrics at the top level:
  embedding  the FGM perturbation of the embedding output of L2 norm epsilon per example (Miyato et al. 2017),
             computed from the true labels: the worst case to first order (model/adversarial.py)
  typo       character-level typos in a `typo_rate` fraction of the words (train/attacks.py), seeded
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model import GPT, GPTConfig
from model.adversarial import attacked_outputs
from model.heads import TaskModel
from train.checkpoint import load_checkpoint, load_weights
from train.encode import batches, word_predictions
from train.errors import CgptError
from train.finetune_config import FinetuneConfig, build_task_model, cwd_importable
from train.hardware import autocast, resolve_device, resolve_dtype
from train.metrics import classification_report, entity_scores, format_report
from train.runlog import RunDir
from train.task_data import Split, read_split
from train.tasks import LabelSet
from train.tokenizer import Tokenizer

ATTACK_KINDS = ("embedding", "typo")
EVAL_BATCH_SIZE = 32
SCALARS = ("accuracy", "macro_f1", "precision", "recall", "f1", "loss", "perplexity", "mse", "mae", "pearson")


@dataclass(frozen=True)
class Scores:
    metrics: dict[str, Any]  # JSON-ready
    true: list[int]  # label indices (tag: one per word), for a confusion matrix; empty for generate/regress
    pred: list[int]


# --- running the model --------------------------------------------------------------------------------------


def _count(labels: torch.Tensor) -> int:
    """How many targets a batch's mean loss averages over (token labels of -100 are ignored)."""
    return int((labels != -100).sum()) if labels.dim() > 1 else labels.shape[0]


@torch.no_grad()
def run_model(
    model: TaskModel,
    split: Split,
    device: torch.device,
    batch_size: int = EVAL_BATCH_SIZE,
    max_batches: int = 0,
    epsilon: float = 0.0,
) -> tuple[list[Any], float, int]:
    """(per-example predictions, mean loss, examples seen) over the first `max_batches` batches (0: all);
    `epsilon` > 0 attacks the embeddings (FGM). Predictions: a label index, word tag indices, or a value."""
    preds: list[Any] = []
    total, weight, seen = 0.0, 0, 0
    names = split.labels.names if split.labels else ()
    fill = names.index("O") if "O" in names else 0  # words cut off by truncation are predicted "O"
    for i, batch in enumerate(batches(split.encoded, batch_size, split.pad_id)):
        if max_batches and i == max_batches:
            break
        batch = {k: v.to(device) for k, v in batch.items()}
        outputs = attacked_outputs(model, batch, "fgm", epsilon) if epsilon > 0 else model(batch)[0]
        n = _count(batch["labels"])
        total, weight = total + float(model.head.loss(outputs, batch)) * n, weight + n
        if split.task == "tag":
            preds += word_predictions(model.head.predict(outputs, batch), batch, fill)
        elif split.task != "generate":
            preds += model.head.predict(outputs, batch).tolist()
        seen += batch["input_ids"].shape[0]
    return preds, total / max(weight, 1), seen


# --- metrics per task ---------------------------------------------------------------------------------------


def _classify(split: Split, preds: list[int], loss: float) -> Scores:
    names = split.labels.names  # type: ignore[union-attr]
    true = [int(e.label) for e in split.encoded[: len(preds)]]  # type: ignore[arg-type]
    report = classification_report([names[t] for t in true], [names[p] for p in preds], labels=names)
    metrics = {
        "accuracy": report["accuracy"],
        "macro_f1": report["macro"]["f1"],
        "loss": loss,
        "macro": report["macro"],
        "per_class": report["per_class"],
    }
    return Scores(metrics, true, preds)


def _tag(split: Split, preds: list[list[int]], loss: float) -> Scores:
    names = split.labels.names  # type: ignore[union-attr]
    true_tags = [list(e.tags) for e in split.examples[: len(preds)]]  # type: ignore[union-attr]
    scores = entity_scores(true_tags, [[names[p] for p in row] for row in preds])
    true = [names.index(t) for row in true_tags for t in row]
    return Scores({**scores, "loss": loss}, true, [p for row in preds for p in row])


def _generate(split: Split, preds: list[Any], loss: float) -> Scores:
    return Scores({"loss": loss, "perplexity": math.exp(min(loss, 700.0))}, [], [])


def _regress(split: Split, preds: list[float], loss: float) -> Scores:
    y = np.array([e.label for e in split.encoded[: len(preds)]], dtype=np.float64)
    p = np.array(preds, dtype=np.float64)
    pearson = float(np.corrcoef(y, p)[0, 1]) if y.std() > 0 and p.std() > 0 else 0.0
    metrics = {
        "mse": float(np.mean((y - p) ** 2)),
        "mae": float(np.mean(np.abs(y - p))),
        "pearson": pearson,
        "loss": loss,
    }
    return Scores(metrics, [], [])


_METRICS = {"classify": _classify, "tag": _tag, "generate": _generate, "regress": _regress}


def score(
    model: TaskModel,
    split: Split,
    device: torch.device,
    batch_size: int = EVAL_BATCH_SIZE,
    max_batches: int = 0,
    epsilon: float = 0.0,
) -> Scores:
    """The task's metrics for `split` (the model should be in eval mode)."""
    preds, loss, seen = run_model(model, split, device, batch_size, max_batches, epsilon)
    scores = _METRICS[split.task](split, preds, loss)
    scores.metrics.update(examples=seen, truncated=split.truncated)
    return scores


def scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """The numbers to log during training; the loss becomes "val_loss" (the loop's record has its own)."""
    return {("val_loss" if k == "loss" else k): float(v) for k, v in metrics.items() if k in SCALARS}


# --- a fine-tuned run ---------------------------------------------------------------------------------------


@dataclass
class Finetuned:
    model: TaskModel  # in eval mode
    tokenizer: Tokenizer
    ft: FinetuneConfig
    labels: LabelSet | None
    checkpoint: Path

    @property
    def block_size(self) -> int:
        return self.model.backbone.config.block_size


def load_finetuned(run_dir: str | Path, which: str = "best", device: str = "auto") -> Finetuned:
    """The TaskModel, tokenizer and settings of a `cgpt finetune` run, from its directory alone."""
    run = RunDir(run_dir)
    if not run.path.is_dir():
        raise CgptError(f"{run.path}: run directory not found")
    path = Path(which) if which not in ("best", "last") else run.final_checkpoint(which)
    state = load_checkpoint(path)
    if "head" not in state or "finetune" not in state:
        raise CgptError(f"{path}: not a fine-tuned checkpoint (no head); pass a run made by `cgpt finetune`")
    tokenizer = Tokenizer.load(run.tokenizer)
    if state["tokenizer_hash"] != tokenizer.hash:
        raise CgptError(
            f"{path}: trained with tokenizer {state['tokenizer_hash']}, but {run.tokenizer} holds "
            f"{tokenizer.hash}"
        )
    ft = FinetuneConfig.from_dict(state["finetune"])
    labels = None if state["labels"] is None else LabelSet(tuple(state["labels"]))
    backbone = GPT(GPTConfig.from_dict(state["model_config"]))
    model = build_task_model(backbone, ft, state["num_labels"], seed=0)
    load_weights(model, state["model"], path)
    return Finetuned(model.to(resolve_device(device)).eval(), tokenizer, ft, labels, path)


def evaluate(
    run_dir: str | Path,
    data: str | Path,
    attacks: tuple[str, ...] = (),
    epsilon: float = 0.05,
    typo_rate: float = 0.1,
    seed: int = 0,
    checkpoint: str = "best",
    device: str = "auto",
    batch_size: int = EVAL_BATCH_SIZE,
) -> dict[str, Any]:
    """The metrics of a fine-tuned run on a labelled file, plus {"attacked": {kind: metrics}} if asked."""
    bad = [a for a in attacks if a not in ATTACK_KINDS]
    if bad:
        raise CgptError(f"attack={bad[0]!r}: expected one of {ATTACK_KINDS}")
    fin = load_finetuned(run_dir, checkpoint, device)
    dev = next(fin.model.parameters()).device
    split = read_split(fin.ft, data, fin.tokenizer, fin.labels, fin.block_size)
    with autocast(dev, resolve_dtype("auto", dev)):
        result = score(fin.model, split, dev, batch_size).metrics
        attacked = {}
        if "embedding" in attacks:
            attacked["embedding"] = {
                "kind": "fgm",
                "epsilon": epsilon,
                **score(fin.model, split, dev, batch_size, epsilon=epsilon).metrics,
            }
        if "typo" in attacks:
            noisy = read_split(fin.ft, data, fin.tokenizer, fin.labels, fin.block_size, typo_rate, seed)
            attacked["typo"] = {
                "rate": typo_rate,
                "seed": seed,
                **score(fin.model, noisy, dev, batch_size).metrics,
            }
    return {**result, "attacked": attacked} if attacked else result


def describe(result: dict[str, Any], title: str) -> str:
    """Metrics as text: the headline numbers, the per-class/per-type table, and any attacked numbers."""
    head = "  ".join(f"{k} {result[k]:.4f}" for k in SCALARS if k in result)
    lines = [f"{title}: {result['examples']} examples ({result['truncated']} truncated)", head]
    if "per_class" in result or "per_type" in result:
        lines.append(format_report(result))
    for kind, res in result.get("attacked", {}).items():
        setting = f"epsilon {res['epsilon']}" if kind == "embedding" else f"rate {res['rate']}"
        numbers = "  ".join(f"{k} {result[k]:.4f} -> {res[k]:.4f}" for k in SCALARS if k in res)
        lines.append(f"under {kind} attack ({setting}): {numbers}")
    return "\n".join(lines)


# --- cgpt evaluate ------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    cwd_importable()
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
    )
    print(json.dumps(result, indent=2) if args.json else describe(result, str(args.data)))
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score a fine-tuned run on a labelled file (clean and attacked)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--run", required=True, help="a run directory written by `cgpt finetune`")
    p.add_argument("--data", required=True, help="a labelled file in the run's task format")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument(
        "--attack", action="append", choices=ATTACK_KINDS, help="also score under this attack (repeatable)"
    )
    p.add_argument("--epsilon", type=float, default=0.05,
                   help="L2 norm of the embedding attack per example (default 0.05)")
    p.add_argument("--typo-rate", type=float, default=0.1, help="fraction of words with a typo (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the typos")
    p.add_argument("--checkpoint", default="best", help="best | last | a checkpoint path (default best)")
    p.add_argument("--batch-size", type=int, default=EVAL_BATCH_SIZE)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run)
