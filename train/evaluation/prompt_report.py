"""What `cgpt prompt` reports: the result dict (means and spread over seeds, baselines), the table it prints,
and the files --out writes (examples.jsonl, confusion.png, result.json)."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from train.finetune.metrics import (
    classification_report,
    confusion_matrix,
    format_report,
    plot_confusion_matrix,
    save_report,
)
from train.runtime.files import atomic_write_text

if TYPE_CHECKING:
    from train.evaluation.fewshot import PromptFormat
    from train.evaluation.prompt import PromptConfig


def metrics(true: list[int], pred: list[int], labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 and the per-class report of label indices (train/finetune/metrics.py)."""
    report = classification_report([labels[t] for t in true], [labels[p] for p in pred], labels=list(labels))
    return {"accuracy": report["accuracy"], "macro_f1": report["macro"]["f1"], "per_class": report["per_class"]}


def mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def summarise(config: PromptConfig, fmt: PromptFormat, true: list[int], seeds: list[dict], wall: float) -> dict:
    """The result from each seed's metrics: means, the accuracy's sample standard deviation, the baselines
    (chance, the majority label of `true`), and the settings; `wall` is the seconds spent scoring."""
    labels = fmt.verbaliser.labels
    runs = len(seeds) if config.shots else 1  # zero-shot prompts draw nothing: one pass stands for every seed
    accuracy, std = mean_std([s["accuracy"] for s in seeds])
    counts = Counter(true)
    majority = max(range(len(labels)), key=lambda i: (counts[i], -i))
    per_class = {
        name: {k: float(np.mean([s["per_class"][name][k] for s in seeds])) for k in ("precision", "recall", "f1")}
        | {"support": counts[i]}
        for i, name in enumerate(labels)
    }
    result: dict[str, Any] = {
        "accuracy": accuracy,
        "accuracy_std": std,
        "macro_f1": float(np.mean([s["macro_f1"] for s in seeds])),
        "n": len(true),
        "shots": config.shots,
        "calibrated": config.calibrate,
        "per_class": per_class,
        "majority_baseline": counts[majority] / len(true),
        "majority_label": labels[majority],
        "chance": 1 / len(labels),
        "seeds": [{k: v for k, v in s.items() if k != "per_class"} for s in seeds],
        "truncated": sum(s["truncated"] for s in seeds[:runs]),  # prompts cut, over the seeds scored
    }
    if config.calibrate:
        raw_acc, raw_std = mean_std([s["uncalibrated"]["accuracy"] for s in seeds])
        result["uncalibrated"] = {"accuracy": raw_acc, "accuracy_std": raw_std}
    result.update(
        labels={label: list(words) for label, words in zip(labels, fmt.verbaliser.words, strict=True)},
        template=fmt.template,
        normalize=config.normalize,
        combine=config.combine,
        balanced=config.balanced,
        examples_per_s=runs * len(true) / wall if wall > 0 else math.inf,
    )
    return result


def write_outputs(out: Path, result: dict[str, Any], rows: list[dict[str, Any]], labels: Sequence[str]) -> None:
    """examples.jsonl (one row per example and seed), confusion.png (summed over seeds; needs matplotlib) and
    result.json (the result) in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "examples.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    true = [labels.index(r["label"]) for r in rows]
    pred = [labels.index(r["prediction"]) for r in rows]
    plot_confusion_matrix(confusion_matrix(true, pred, len(labels)), labels, out / "confusion.png")
    save_report(result, out / "result.json")


def describe(result: dict[str, Any], title: str) -> str:
    """The result as the table `cgpt prompt` prints."""
    seeds = [s["seed"] for s in result["seeds"]]
    setting = f"{result['shots']}-shot" + (" balanced" if result["balanced"] and result["shots"] else "")
    setting += ", calibrated" if result["calibrated"] else ""
    spread = f" +- {result['accuracy_std']:.4f} over seeds {','.join(map(str, seeds))}" if len(seeds) > 1 else ""
    lines = [
        f"{title}: {result['n']} examples, {setting}, normalize {result['normalize']}, "
        f"{result['examples_per_s']:.1f} examples/s",
        f"accuracy {result['accuracy']:.4f}{spread}   macro_f1 {result['macro_f1']:.4f}",
    ]
    if result["calibrated"]:
        lines.append(f"uncalibrated accuracy {result['uncalibrated']['accuracy']:.4f}")
    lines.append(
        f"baselines: chance {result['chance']:.4f}   majority {result['majority_baseline']:.4f} "
        f"(always {result['majority_label']!r})"
    )
    per_class = result["per_class"].values()
    macro = {k: float(np.mean([row[k] for row in per_class])) for k in ("precision", "recall", "f1")}
    report = {
        "per_class": result["per_class"],
        "macro": {**macro, "support": result["n"]},
        "accuracy": result["accuracy"],
    }
    lines.append(format_report(report))
    if result["truncated"]:
        lines.append(f"{result['truncated']} prompts cut to the context (demonstrations dropped first)")
    return "\n".join(lines)
