"""`evaluate`: a fine-tuned run's metrics on a labelled file, clean and under attack (`cgpt evaluate`).

The clean metrics come from the same `score` the training loop and the final report use (train/finetune/
scoring.py), so they have the same form. Robustness (`attacks`, any of ATTACK_KINDS), reported under "attacked"
next to the clean metrics at the top level:
  embedding  the FGM perturbation of the embedding output of L2 norm epsilon per example (Miyato et al. 2017),
             computed from the true labels: the worst case to first order (model/adversarial.py)
  typo       character-level typos in a `typo_rate` fraction of the words (train/evaluation/attacks.py), seeded
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from model.heads import Head
from train.errors import CgptError
from train.evaluation.attacks import ATTACK_KINDS, with_typos
from train.finetune.config import EVAL_BATCH_SIZE
from train.finetune.scoring import score
from train.finetune.splits import encode, read_examples
from train.runs import load_finetuned
from train.runtime.hardware import autocast, resolve_dtype


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
    head_class: type[Head] | None = None,
) -> dict[str, Any]:
    """The metrics of a fine-tuned run on a labelled file, plus {"attacked": {kind: metrics}} if asked."""
    bad = [a for a in attacks if a not in ATTACK_KINDS]
    if bad:
        raise CgptError(f"attack={bad[0]!r}: expected one of {ATTACK_KINDS}")
    fin = load_finetuned(run_dir, checkpoint, device, head_class)
    dev = next(fin.model.parameters()).device
    examples = read_examples(fin.ft, data)
    split = encode(fin.ft, data, examples, fin.tokenizer, fin.labels, fin.block_size)
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
            noisy = encode(
                fin.ft, data, with_typos(examples, typo_rate, seed), fin.tokenizer, fin.labels, fin.block_size
            )
            attacked["typo"] = {
                "rate": typo_rate,
                "seed": seed,
                **score(fin.model, noisy, dev, batch_size).metrics,
            }
    return {**result, "attacked": attacked} if attacked else result
