"""Optimizers and the learning-rate schedule.

- AdamW (Loshchilov & Hutter 2019) with weight decay on matrices only (embeddings and linear weights), never on
  biases or norm gains - the GPT-2/nanoGPT convention; betas (0.9, 0.95) as in GPT-3 and Chinchilla. Fused on CUDA.
- SGD with momentum, for fine-tuning comparisons.
- Muon (Jordan et al. 2024; train/runtime/muon.py) for the blocks' matrices with AdamW for the rest: optional.
- Linear warmup, then cosine decay to 10% of the peak exactly at the last step. Chinchilla (Hoffmann et al. 2022,
  App. B) found the cosine cycle must match the training horizon: one set longer than the run leaves the model
  under-trained for its token count, which is how earlier work underestimated small models.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


def param_groups(
    model: nn.Module, weight_decay: float, lr_scales: dict[str, float] | None = None
) -> list[dict[str, Any]]:
    """Trainable parameters split into decayed (dim >= 2) and not decayed, each with an `lr_scale`.

    `lr_scales` maps a parameter name to a learning-rate multiplier (layer-wise decay in fine-tuning);
    parameters with the same (decay, scale) share a group. Frozen parameters (requires_grad=False) are left out.
    """
    groups: dict[tuple[bool, float], dict[str, Any]] = {}
    for name, p in model.named_parameters():  # a tied weight appears once
        if not p.requires_grad:
            continue
        decay = p.dim() >= 2
        scale = 1.0 if lr_scales is None else lr_scales.get(name, 1.0)
        group = groups.setdefault(
            (decay, scale),
            {"params": [], "names": [], "lr_scale": scale, "weight_decay": weight_decay if decay else 0.0},
        )
        group["params"].append(p)
        group["names"].append(name)
    return [groups[k] for k in sorted(groups)]


def build_optimizer(
    groups: list[dict[str, Any]],
    name: str,
    lr: float,
    betas: tuple[float, float],
    momentum: float,
    device: torch.device,
) -> torch.optim.Optimizer:
    clean = [{k: v for k, v in g.items() if k != "names"} for g in groups]
    if not clean:
        raise ValueError("no trainable parameters: everything is frozen")
    if name == "adamw":
        return torch.optim.AdamW(clean, lr=lr, betas=betas, fused=True)  # one kernel for all tensors (CPU too)
    if name == "sgd":
        return torch.optim.SGD(clean, lr=lr, momentum=momentum)
    if name == "muon":
        return _muon(groups, lr, betas)
    raise ValueError(f"optimizer={name!r} is not known (TrainConfig checks it: train/recipe.py)")


def _muon(groups: list[dict[str, Any]], lr: float, betas: tuple[float, float]) -> torch.optim.Optimizer:
    """Muon for the blocks' matrices, AdamW (with each group's decay and scale) for the rest: train/runtime/muon.py.
    Muon's matrices get no weight decay: its decay would multiply Muon's 10x larger rate."""
    from train.runtime.muon import MuonWithAdamW, split_for_muon

    matrices, rest = [], []
    for g in groups:
        mine, others = split_for_muon(zip(g["names"], g["params"], strict=True))
        matrices += mine
        if others:
            rest.append({**{k: v for k, v in g.items() if k not in ("names", "params")}, "params": others})
    return MuonWithAdamW(matrices, rest, lr=lr, betas=betas, weight_decay=0.0)


def lr_at(
    step: int, max_steps: int, peak: float, warmup: int, min_ratio: float = 0.1, schedule: str = "cosine"
) -> float:
    """Learning rate for optimizer step `step` (0-based): warmup over `warmup` steps, then the schedule."""
    if step < warmup:
        return peak * (step + 1) / warmup
    if schedule == "constant":
        return peak
    span = max(1, max_steps - 1 - warmup)
    progress = min(1.0, (step - warmup) / span)  # 0 after warmup .. 1 at the last step
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
