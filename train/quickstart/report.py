"""report.md: what the quickstart did and measured, in one page, with its plots beside it (in --out).

The plan, the loss curve (run/loss.png), samples, the fine-tuning metrics of both tasks next to the same
architecture trained from scratch and to chance, the prompting accuracy next to chance and the majority class,
the held-out perplexity and bits per byte, and the wall time of each stage. figures.json holds every number.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from train.planner.plan import Plan
from train.planner.table import format_table


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _finetune_rows(tuned: dict[str, Any]) -> list[str]:
    rows = ["| task | metric | pretrained | from scratch | trivial baseline | chance |", "|---|---|---|---|---|---|"]
    package, tokens = tuned["package"], tuned["tokens"]
    k = len(package["labels"])
    pre, scratch, base = package["pretrained"], package["scratch"], package["baseline"]
    rows.append(f"| package of a snippet ({k} classes, {package['counts']['test']} test snippets) | accuracy | "
                f"{_pct(pre['accuracy'])} | {_pct(scratch['accuracy'])} | {_pct(base['accuracy'])} | "
                f"{_pct(1 / k)} |")  # fmt: skip
    rows.append(f"| package of a snippet | macro F1 | {pre['macro_f1']:.3f} | {scratch['macro_f1']:.3f} | "
                f"{base['macro_f1']:.3f} | |")  # fmt: skip
    rows.append(f"| token types ({len(tokens['labels'])} types, {tokens['counts']['test']} test lines) | entity F1 | "
                f"{tokens['pretrained']['f1']:.3f} | {tokens['scratch']['f1']:.3f} | "
                f"{tokens['baseline']['f1']:.3f} | |")  # fmt: skip
    rows.append("")
    rows.append(f"Trivial baselines, fitted on the same training files: {package['baseline']['name']} (package); "
                f"{tokens['baseline']['name']} (token types).")  # fmt: skip
    return rows


def _prompt_rows(prompted: dict[str, Any]) -> list[str]:
    rows = ["| prompting (package task) | calibrated accuracy | uncalibrated | chance | majority class |",
            "|---|---|---|---|---|"]  # fmt: skip
    for name, r in prompted.items():
        raw = r.get("uncalibrated", {}).get("accuracy")
        rows.append(f"| {name}, {r['n']} examples | {_pct(r['accuracy'])} | {_pct(raw)} | {_pct(r['chance'])} | "
                    f"{_pct(r['majority_baseline'])} |")  # fmt: skip
    return rows


def write_report(out: Path, figures: dict[str, Any]) -> Path:
    """Write report.md and figures.json into `out`; returns the report's path."""
    pre, held, times = figures["pretrain"], figures["held_out"], figures["stage_seconds"]
    plan = Plan(**figures["plan"])
    lines = [
        "# chinchilla-gpt quickstart",
        "",
        f"A {figures['minutes']:g}-minute budget on this machine, from raw text to an adapted model. Every number "
        "below was measured in this run; `figures.json` holds them all.",
        "",
        "## Wall time per stage",
        "",
        "| " + " | ".join(times) + " | total |",
        "|" + "---|" * (len(times) + 1),
        "| " + " | ".join(f"{s:.0f} s" for s in times.values()) + f" | {sum(times.values()):.0f} s |",
        "",
        "## The plan",
        "",
        "```",
        format_table(plan),
        "```",
        "",
        "## Pretraining",
        "",
        f"{pre['steps']:,} steps, {pre['tokens']:,} tokens in {pre['wall_s']:.0f} s ({pre['tokens_per_s']:,.0f} "
        f"tokens/s). Validation: loss {pre['val_loss_full']:.3f} nats/token over the whole split, "
        f"{pre['val_bits_per_byte']:.3f} bits per byte.",
        "",
        f"![loss curve]({os.path.relpath(out / 'run' / 'loss.png', out)})",
        "",
        "Samples (temperature 0.8, top-k 50):",
        "",
        *[f"```python\n{s}\n```" for s in figures["samples"]],
        "",
        "## Held-out text",
        "",
        f"The stdlib files of the test split, never seen in pretraining: {held['tokens']:,} tokens, {held['bytes']:,} "
        f"bytes; loss {held['loss']:.3f} nats/token, perplexity {held['perplexity']:.1f}, "
        f"**{held['bits_per_byte']:.3f} bits per byte**.",
        "",
        "## Fine-tuning (test split: files never seen by pretraining or fine-tuning)",
        "",
        *_finetune_rows(figures["finetune"]),
        "",
        *[
            f"![confusion {o}](ft-package-{o}/confusion_test.png)"
            for o in ("pretrained", "scratch")
            if (out / f"ft-package-{o}" / "confusion_test.png").exists()
        ],  # fmt: skip
        "",
        "## Prompting the pretrained model (no gradient step)",
        "",
        *_prompt_rows(figures["prompt"]),
        "",
    ]
    (out / "figures.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report
