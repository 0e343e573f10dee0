"""Scoring a TaskModel on a labelled Split: the task's metrics, the same in training, in the final report of
`cgpt finetune` (summary.json's "val" and "test") and in `cgpt evaluate --json`.

`score(model, split)` returns, per task (metrics from train/finetune/metrics.py):
  classify  accuracy, macro_f1, loss, and the per-class report: "macro" and "per_class" {precision, recall,
            f1, support}
  tag       entity-level (conlleval) precision, recall, f1 (micro over entities), support, per_type, loss
  generate  loss (mean cross-entropy over response tokens, nats) and perplexity = exp(loss)
  regress   mse, mae, pearson (0 when either side is constant), loss (= mse for the built-in head)
each with "examples" (scored) and "truncated" (cut to the context, in the whole file). `epsilon` > 0 scores
under the FGM perturbation of the embedding output (model/adversarial.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from model.adversarial import attacked_outputs
from model.heads import TaskModel
from train.finetune.config import EVAL_BATCH_SIZE
from train.finetune.encode import batches, word_predictions
from train.finetune.metrics import classification_report, entity_scores, format_report
from train.finetune.splits import Split

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
